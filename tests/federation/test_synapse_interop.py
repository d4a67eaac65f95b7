"""Interop with a real Synapse over TLS on loopback, certificate verification on both sides: each
server fetches the other's keys, and each accepts the other's X-Matrix-signed requests.

Our server is 127.0.0.1:PORT, Synapse 127.0.0.2:PORT; both trust only the throwaway test CA.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import aiohttp

from homeserver.events.signing import get_verify_key, verify_json_signature
from tests.federation.helpers import user_with_displayname
from tests.support.synapse_federation import FederatingSynapse


def _session(synapse: FederatingSynapse) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(synapse.url, connector=aiohttp.TCPConnector(ssl=synapse.ssl_context()))


async def test_synapse_fetches_our_keys_through_its_notary_endpoint(fed_hs, synapse):
    ours = fed_hs.config.server_name
    key_id = f"ed25519:{fed_hs.signing_key.version}"
    # Synapse only goes to the origin for a key ID it has not cached; with none named it answers from cache.
    async with _session(synapse) as session:
        async with session.post("/_matrix/key/v2/query", json={"server_keys": {ours: {key_id: {"minimum_valid_until_ts": 0}}}}
                                ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
    [answer] = [k for k in body["server_keys"] if k["server_name"] == ours]
    verify_json_signature(answer, ours, get_verify_key(fed_hs.signing_key))
    assert synapse.server_name in answer["signatures"]  # countersigned by Synapse


async def test_we_fetch_synapses_keys_and_synapse_accepts_our_signed_profile_query(fed_hs, synapse):
    bob = await synapse.register(f"bob{int(time.time() * 1000)}", "Bob on Synapse")
    federation = fed_hs.federation
    body = await federation.client.get_json(synapse.server_name, "/_matrix/federation/v1/query/profile",
                                            {"user_id": bob["user_id"], "field": "displayname"})
    assert body == {"displayname": "Bob on Synapse"}
    await federation.key_fetcher.refresh(synapse.server_name, force=True)
    stored = await federation.key_store.get_server_keys(synapse.server_name)
    assert stored and all(k.valid_until_ts > int(time.time() * 1000) for k in stored if k.expired_ts is None)


async def test_our_notary_serves_synapses_keys_signed_by_both(fed_hs, ca, synapse):
    from tests.federation.helpers import tls_session

    async with tls_session(fed_hs, ca) as session:
        async with session.get(f"/_matrix/key/v2/query/{synapse.server_name}") as resp:
            [answer] = (await resp.json())["server_keys"]
    assert answer["server_name"] == synapse.server_name
    assert set(answer["signatures"]) == {synapse.server_name, fed_hs.config.server_name}


async def test_synapse_proxies_a_client_profile_lookup_to_us_with_a_signed_request(fed_hs, ca, synapse):
    alice = await user_with_displayname(fed_hs, ca, "alice", "Alice on huiskamer")
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    async with _session(synapse) as session:
        async with session.get(f"/_matrix/client/v3/profile/{quote(alice['user_id'], safe='')}",
                               headers={"Authorization": f"Bearer {bob['access_token']}"}) as resp:
            body = await resp.json()
    assert resp.status == 200, (body, synapse.log_tail())
    assert body["displayname"] == "Alice on huiskamer"


async def test_synapse_works_as_our_trusted_key_server(make_federating_homeserver, make_remote, synapse):
    remote = await make_remote("127.0.0.3")
    hs = await make_federating_homeserver(trusted_key_servers=[{"server_name": synapse.server_name}])
    key = await hs.federation.key_fetcher.get_verify_key(remote.server_name, remote.key_id,
                                                         valid_at_ts=int(time.time() * 1000))
    assert key.encode() == get_verify_key(remote.signing_key).encode()
    assert remote.key_requests == 1  # by Synapse, on our behalf


async def test_synapse_clients_resolve_our_aliases_and_list_our_public_rooms(fed_hs, ca, synapse):
    from tests.federation.helpers import tls_session

    alice = await user_with_displayname(fed_hs, ca, "alice", "Alice")
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/client/v3/createRoom", json={
                "visibility": "public", "name": "Huiskamer lobby", "room_alias_name": "lobby"},
                headers={"Authorization": f"Bearer {alice['access_token']}"}) as resp:
            assert resp.status == 200, await resp.text()
            room_id = (await resp.json())["room_id"]
    bob = await synapse.register(f"bob{int(time.time() * 1000)}")
    headers = {"Authorization": f"Bearer {bob['access_token']}"}
    ours = fed_hs.config.server_name
    async with _session(synapse) as session:
        alias = quote(f"#lobby:{ours}", safe="")
        async with session.get(f"/_matrix/client/v3/directory/room/{alias}", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, (body, synapse.log_tail())
            assert body["room_id"] == room_id and ours in body["servers"]
        async with session.get("/_matrix/client/v3/publicRooms", params={"server": ours},
                               headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, (body, synapse.log_tail())
            assert [(r["room_id"], r.get("name")) for r in body["chunk"]] == [(room_id, "Huiskamer lobby")]
        async with session.post("/_matrix/client/v3/publicRooms", params={"server": ours}, headers=headers,
                                json={"filter": {"generic_search_term": "lobby"}, "limit": 5}) as resp:
            body = await resp.json()
            assert resp.status == 200, (body, synapse.log_tail())
            assert [r["room_id"] for r in body["chunk"]] == [room_id]
