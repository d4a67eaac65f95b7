"""Third-party invites and 3PID bind/unbind through an identity server (a small one on loopback)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from homeserver.events.signing import (
    compute_json_signature,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    sign_json,
)
from tests.support.rooms import User, new_user

ACCESS_TOKEN = "is-access-token"
PEPPER = "matrixrocks"
IS_CONFIG = {"scheme": "http", "ip_range_allowlist": ["127.0.0.0/8"]}


class IdentityServer:
    """An identity server on loopback: v2 hashed lookup, store-invite, bind (calling the homeserver's
    onbind with signed invites, as real ones do) and unbind (checking the homeserver's signature)."""

    def __init__(self, homeserver: Any) -> None:
        self.homeserver = homeserver
        self.key = generate_signing_key("0")
        self.ephemeral_key = generate_signing_key("eph")
        self.bindings: dict[tuple[str, str], str] = {}  # (medium, address) -> mxid
        self.sessions: dict[str, tuple[str, str, str]] = {}  # sid -> (client_secret, medium, address)
        self.stored_invites: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.unbind_requests: list[dict[str, Any]] = []
        self.name = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/_matrix/identity/v2/hash_details", self._hash_details)
        app.router.add_post("/_matrix/identity/v2/lookup", self._lookup)
        app.router.add_post("/_matrix/identity/v2/store-invite", self._store_invite)
        app.router.add_post("/_matrix/identity/v2/3pid/bind", self._bind)
        app.router.add_post("/_matrix/identity/v2/3pid/unbind", self._unbind)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.name = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def public_key(self, key: Any) -> str:
        return encode_verify_key_base64(get_verify_key(key))

    def _authorised(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path))
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            raise web.HTTPUnauthorized(text='{"errcode": "M_UNAUTHORIZED", "error": "bad token"}',
                                       content_type="application/json")

    async def _hash_details(self, request: web.Request) -> web.Response:
        self._authorised(request)
        return web.json_response({"algorithms": ["none", "sha256"], "lookup_pepper": PEPPER})

    async def _lookup(self, request: web.Request) -> web.Response:
        self._authorised(request)
        body = await request.json()
        assert body["algorithm"] == "sha256" and body["pepper"] == PEPPER
        hashed = {hash_of(address, medium): mxid for (medium, address), mxid in self.bindings.items()}
        return web.json_response({"mappings": {a: hashed[a] for a in body["addresses"] if a in hashed}})

    async def _store_invite(self, request: web.Request) -> web.Response:
        self._authorised(request)
        body = await request.json()
        token = f"tok{len(self.stored_invites)}"
        self.stored_invites.append({**body, "token": token})
        base = f"http://{self.name}/_matrix/identity/v2/pubkey"
        return web.json_response({
            "token": token, "display_name": "b...@e...",
            "public_keys": [{"public_key": self.public_key(self.key), "key_validity_url": f"{base}/isvalid"},
                            {"public_key": self.public_key(self.ephemeral_key),
                             "key_validity_url": f"{base}/ephemeral/isvalid"}]})

    async def _bind(self, request: web.Request) -> web.Response:
        self._authorised(request)
        body = await request.json()
        secret, medium, address = self.sessions[body["sid"]]
        assert body["client_secret"] == secret
        mxid = body["mxid"]
        self.bindings[(medium, address)] = mxid
        invites = [{"medium": medium, "address": address, "mxid": mxid, "room_id": i["room_id"],
                    "sender": i["sender"], "signed": self.sign({"mxid": mxid, "token": i["token"]})}
                   for i in self.stored_invites if (i["medium"], i["address"]) == (medium, address)]
        if invites:
            async with aiohttp.ClientSession() as session:
                url = self.homeserver.base_url("client") + "/_matrix/federation/v1/3pid/onbind"
                async with session.put(url, json={"medium": medium, "address": address, "mxid": mxid,
                                                  "invites": invites}) as response:
                    assert response.status == 200, await response.text()
        return web.json_response(self.sign({"medium": medium, "address": address, "mxid": mxid,
                                            "not_before": 0, "not_after": 2**40, "ts": 1}))

    async def _unbind(self, request: web.Request) -> web.Response:
        body = await request.json()
        header = request.headers.get("Authorization", "")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
        signed_request = {"method": "POST", "uri": request.path, "origin": fields.get("origin"),
                          "destination": self.name, "content": body}
        expected = compute_json_signature(signed_request, self.homeserver.signing_key)
        if not header.startswith("X-Matrix ") or fields.get("sig") != expected:
            return web.json_response({"errcode": "M_UNAUTHORIZED", "error": "bad signature"}, status=401)
        self.unbind_requests.append(body)
        self.bindings.pop((body["threepid"]["medium"], body["threepid"]["address"]), None)
        return web.json_response({})

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(obj, self.name, self.key)


def hash_of(address: str, medium: str) -> str:
    digest = hashlib.sha256(f"{address} {medium} {PEPPER}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@pytest.fixture
async def setup(make_homeserver):
    hs = await make_homeserver(identity=IS_CONFIG)
    identity = IdentityServer(hs)
    await identity.start()
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        yield hs, identity, client
    await identity.stop()


def invite_body(identity: IdentityServer, address: str, **extra: Any) -> dict[str, Any]:
    return {"id_server": identity.name, "id_access_token": ACCESS_TOKEN, "medium": "email", "address": address,
            **extra}


async def member_of(user: User, room_id: str, target: str) -> dict[str, Any]:
    return await user.call("GET", f"/rooms/{room_id}/state/m.room.member/{target}")


async def test_inviting_a_bound_address_invites_the_user_it_is_bound_to(setup):
    _, identity, client = setup
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    identity.bindings[("email", "bob@example.org")] = bob.user_id
    room_id = await alice.create_room(preset="private_chat")
    await alice.call("POST", f"/rooms/{room_id}/invite", invite_body(identity, "bob@example.org"))
    assert (await member_of(alice, room_id, bob.user_id))["membership"] == "invite"
    assert ("POST", "/_matrix/identity/v2/store-invite") not in identity.requests


async def test_an_unbound_address_gets_a_stored_invite_then_a_signed_invite_on_binding_that_can_be_joined(setup):
    _, identity, client = setup
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    await alice.call("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "Alice A"})
    room_id = await alice.create_room(preset="private_chat", name="Tuin")
    await alice.call("POST", f"/rooms/{room_id}/invite", invite_body(identity, "bob@example.org"))
    [stored] = identity.stored_invites
    assert {k: stored[k] for k in ("medium", "address", "room_id", "sender", "room_name", "sender_display_name",
                                   "room_join_rules")} == {
        "medium": "email", "address": "bob@example.org", "room_id": room_id, "sender": alice.user_id,
        "room_name": "Tuin", "sender_display_name": "Alice A", "room_join_rules": "invite"}
    pending = await alice.call("GET", f"/rooms/{room_id}/state/m.room.third_party_invite/{stored['token']}")
    assert pending["display_name"] == "b...@e..."
    assert pending["public_key"] == identity.public_key(identity.key)
    assert [k["public_key"] for k in pending["public_keys"]] == [identity.public_key(identity.key),
                                                                identity.public_key(identity.ephemeral_key)]
    # Bob validates the address with the identity server and binds it through his homeserver.
    identity.sessions["sid1"] = ("secret", "email", "bob@example.org")
    await bob.call("POST", "/account/3pid/bind", {"id_server": identity.name, "id_access_token": ACCESS_TOKEN,
                                                  "sid": "sid1", "client_secret": "secret"})
    assert identity.bindings[("email", "bob@example.org")] == bob.user_id
    invited = await member_of(alice, room_id, bob.user_id)
    assert invited["membership"] == "invite"
    assert invited["third_party_invite"]["signed"]["token"] == stored["token"]
    assert invited["third_party_invite"]["display_name"] == "b...@e..."
    await bob.join(room_id)
    assert (await member_of(alice, room_id, bob.user_id))["membership"] == "join"


async def test_an_onbind_with_a_signature_from_another_key_invites_nobody(setup):
    hs, identity, client = setup
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    room_id = await alice.create_room(preset="private_chat")
    await alice.call("POST", f"/rooms/{room_id}/invite", invite_body(identity, "bob@example.org"))
    token = identity.stored_invites[0]["token"]
    forged = sign_json({"mxid": bob.user_id, "token": token}, identity.name, generate_signing_key("0"))
    body = {"medium": "email", "address": "bob@example.org", "mxid": bob.user_id,
            "invites": [{"medium": "email", "address": "bob@example.org", "mxid": bob.user_id, "room_id": room_id,
                         "sender": alice.user_id, "signed": forged}]}
    async with client.put("/_matrix/federation/v1/3pid/onbind", json=body) as response:
        assert response.status == 403
        assert (await response.json())["errcode"] == "M_FORBIDDEN"
    await alice.call("GET", f"/rooms/{room_id}/state/m.room.member/{bob.user_id}", expect=404)


async def test_unbind_goes_to_the_server_the_address_was_bound_through_signed_by_the_homeserver(setup):
    _, identity, client = setup
    bob = await new_user(client, "bob")
    nothing = await bob.call("POST", "/account/3pid/unbind", {"medium": "email", "address": "bob@example.org"})
    assert nothing == {"id_server_unbind_result": "no-support"}
    identity.sessions["sid1"] = ("secret", "email", "bob@example.org")
    await bob.call("POST", "/account/3pid/bind", {"id_server": identity.name, "id_access_token": ACCESS_TOKEN,
                                                  "sid": "sid1", "client_secret": "secret"})
    result = await bob.call("POST", "/account/3pid/unbind", {"medium": "email", "address": "bob@example.org"})
    assert result == {"id_server_unbind_result": "success"}
    assert identity.unbind_requests == [{"mxid": bob.user_id,
                                         "threepid": {"medium": "email", "address": "bob@example.org"}}]
    assert ("email", "bob@example.org") not in identity.bindings
    # Forgotten here too: a second unbind has nowhere to go.
    again = await bob.call("POST", "/account/3pid/unbind", {"medium": "email", "address": "bob@example.org"})
    assert again == {"id_server_unbind_result": "no-support"}


async def test_a_third_party_invite_needs_every_field_and_a_member_inviter(setup):
    _, identity, client = setup
    alice, eve = await new_user(client, "alice"), await new_user(client, "eve")
    room_id = await alice.create_room(preset="private_chat")
    body = invite_body(identity, "bob@example.org")
    del body["id_access_token"]
    missing = await alice.call("POST", f"/rooms/{room_id}/invite", body, expect=400)
    assert missing["errcode"] == "M_MISSING_PARAM" and "id_access_token" in missing["error"]
    outsider = await eve.call("POST", f"/rooms/{room_id}/invite", invite_body(identity, "bob@example.org"),
                              expect=403)
    assert outsider["errcode"] == "M_FORBIDDEN"
    assert identity.requests == []


@pytest.mark.parametrize("database_config", ["sqlite"], indirect=True)
async def test_identity_servers_on_private_addresses_or_not_trusted_are_refused(make_homeserver):
    guarded = await make_homeserver(identity={"scheme": "http"})
    identity = IdentityServer(guarded)
    await identity.start()
    try:
        async with aiohttp.ClientSession(guarded.base_url("client")) as client:
            alice = await new_user(client, "alice")
            room_id = await alice.create_room(preset="private_chat")
            refused = await alice.call("POST", f"/rooms/{room_id}/invite", invite_body(identity, "x@example.org"),
                                       expect=400)
            assert refused["errcode"] == "M_SERVER_NOT_TRUSTED"
            bind = await alice.call("POST", "/account/3pid/bind", {
                "id_server": identity.name, "id_access_token": ACCESS_TOKEN, "sid": "s", "client_secret": "c"},
                expect=400)
            assert bind["errcode"] == "M_SERVER_NOT_TRUSTED"
        assert identity.requests == []
        listed = await make_homeserver(identity={**IS_CONFIG, "trusted_servers": ["id.example.org"]})
        async with aiohttp.ClientSession(listed.base_url("client")) as client:
            alice = await new_user(client, "alice")
            room_id = await alice.create_room(preset="private_chat")
            untrusted = await alice.call("POST", f"/rooms/{room_id}/invite",
                                         invite_body(identity, "x@example.org"), expect=400)
            assert untrusted["errcode"] == "M_SERVER_NOT_TRUSTED"
        assert identity.requests == []
    finally:
        await identity.stop()
