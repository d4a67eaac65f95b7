"""Federation destinations admin API (Synapse's `/_synapse/admin/v1/federation/destinations...`):
a remote server that fails shows its retry state, `reset_connection` clears it and delivery
resumes at once, `/rooms` lists the rooms it shares with us; paging, ordering and errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from storage.stores.federation_outbound import FEDERATION_KIND
from storage.stores.outbound import OutboundStore
from tests.admin.helpers import Caller, assert_admin_only, new_admin, new_caller, q
from tests.federation.conftest import ca, make_federating_homeserver, make_remote  # noqa: F401
from tests.federation.helpers import tls_session
from tests.federation.remote_rooms import TransactionInbox, join_remote_user, local_user

BASE = "/v1/federation/destinations"


async def wait_for_state(admin: Caller, destination: str, predicate, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = await admin.admin("GET", f"{BASE}/{q(destination)}")
        if predicate(state):
            return state
        assert time.monotonic() < deadline, f"timed out; last state {state}"
        await asyncio.sleep(0.05)


async def test_a_failing_remote_shows_its_backoff_and_reset_connection_delivers_at_once(
        make_federating_homeserver, make_remote, ca):  # noqa: F811 (fixtures)
    inboxes: list[TransactionInbox] = []
    remote = await make_remote(routes=lambda r: inboxes.append(TransactionInbox(r)))
    [inbox] = inboxes
    inbox.fail_with = 500
    # A first retry a minute after the failure: only reset_connection can bring it forward in this test.
    hs = await make_federating_homeserver(min_retry_interval_ms=60_000)
    async with tls_session(hs, ca) as session:
        admin = await new_admin(session)
        alice = await local_user(session, "alice")
        room_id = await alice.create_room(preset="public_chat")
        await join_remote_user(hs, remote, room_id)
        sent = await alice.send(room_id, "while the remote is down")
        await inbox.wait_for(lambda: len(inbox.attempts) >= 1)

        failing = await wait_for_state(admin, remote.server_name, lambda s: s["retry_last_ts"] > 0)
        assert failing["destination"] == remote.server_name
        assert 48_000 <= failing["retry_interval"] <= 72_000  # the first interval, with its jitter
        assert failing["failure_ts"] == failing["retry_last_ts"]  # the run of failures began with this one
        assert failing["last_successful_stream_ordering"] is None
        listed = await admin.admin("GET", BASE)
        assert listed == {"destinations": [failing], "total": 1}

        rooms = await admin.admin("GET", f"{BASE}/{q(remote.server_name)}/rooms")
        assert rooms["total"] == 1 and [r["room_id"] for r in rooms["rooms"]] == [room_id]
        assert "next_token" not in rooms

        inbox.fail_with = None
        assert await admin.admin("POST", f"{BASE}/{q(remote.server_name)}/reset_connection", {}) == {}
        await inbox.wait_for(lambda: sent in inbox.pdu_ids, timeout=10)  # long before the minute is up
        healthy = await wait_for_state(
            admin, remote.server_name, lambda s: s["last_successful_stream_ordering"] is not None)
        assert healthy["retry_last_ts"] == 0 and healthy["retry_interval"] == 0 and healthy["failure_ts"] is None
        # The newest event the remote accepted is the room's newest: the message.
        rooms = await admin.admin("GET", f"{BASE}/{q(remote.server_name)}/rooms")
        assert healthy["last_successful_stream_ordering"] == rooms["rooms"][0]["stream_ordering"]

        again = await admin.admin("POST", f"{BASE}/{q(remote.server_name)}/reset_connection", {}, expect=400)
        assert again["errcode"] == "M_UNKNOWN"

        # Healthy now, the destination's next failure starts a new run (failure_ts moves on).
        inbox.fail_with = 500
        await alice.send(room_id, "down again")
        second = await wait_for_state(admin, remote.server_name, lambda s: s["retry_last_ts"] > 0)
        assert second["failure_ts"] == second["retry_last_ts"] > failing["failure_ts"]
        assert 48_000 <= second["retry_interval"] <= 72_000  # reset_connection forgot the earlier failures


async def test_a_server_only_sharing_a_room_is_known_but_not_listed(
        make_federating_homeserver, make_remote, ca):  # noqa: F811 (fixtures)
    remote = await make_remote()
    hs = await make_federating_homeserver(enabled=False)  # nothing is ever queued for it
    async with tls_session(hs, ca) as session:
        admin = await new_admin(session)
        alice = await local_user(session, "alice")
        rooms = sorted([await alice.create_room(preset="public_chat") for _ in range(3)])
        for room_id in rooms:
            await join_remote_user(hs, remote, room_id)
        assert await admin.admin("GET", BASE) == {"destinations": [], "total": 0}
        assert await admin.admin("GET", f"{BASE}/{q(remote.server_name)}") == {
            "destination": remote.server_name, "retry_last_ts": 0, "retry_interval": 0, "failure_ts": None,
            "last_successful_stream_ordering": None}
        path = f"{BASE}/{q(remote.server_name)}/rooms"
        first = await admin.admin("GET", path, limit=2)
        assert [r["room_id"] for r in first["rooms"]] == rooms[:2] and first["total"] == 3
        assert first["next_token"] == "2"
        rest = await admin.admin("GET", path, limit=2, **{"from": first["next_token"]})
        assert [r["room_id"] for r in rest["rooms"]] == rooms[2:] and "next_token" not in rest
        backwards = await admin.admin("GET", path, dir="b")
        assert [r["room_id"] for r in backwards["rooms"]] == rooms[::-1]
        assert all(isinstance(r["stream_ordering"], int) and r["stream_ordering"] > 0 for r in backwards["rooms"])
        # Nothing to reset for a destination that never failed.
        answer = await admin.admin("POST", f"{BASE}/{q(remote.server_name)}/reset_connection", {}, expect=400)
        assert answer["errcode"] == "M_UNKNOWN"


async def test_destinations_are_paged_ordered_and_filtered(hs, client):
    admin = await new_admin(client)
    store = OutboundStore(hs.db)
    # Three federation destinations in backoff, failing since different times, one healthy one, and a
    # pusher destination (another kind of the same queue) that the federation list never shows.
    for name, failed_at, interval in (("b.example", 3_000, 50_000), ("a.example", 2_000, 90_000),
                                      ("c.example", 1_000, 70_000)):
        await store.record_failure(FEDERATION_KIND, name, "down", failed_at + interval, failed_at)
    await store.record_failure(FEDERATION_KIND, "c.example", "still down", 9_000 + 70_000, 9_000)
    await store.complete(FEDERATION_KIND, "d.example", _empty_batch(), 5_000)
    await store.record_failure("pusher", "https://push.example/_matrix/push/v1/notify", "down", 10, 1)

    everything = await admin.admin("GET", BASE)
    assert everything["total"] == 4 and "next_token" not in everything
    by_name = {d["destination"]: d for d in everything["destinations"]}
    assert [d["destination"] for d in everything["destinations"]] == ["a.example", "b.example", "c.example",
                                                                      "d.example"]
    assert by_name["c.example"] == {"destination": "c.example", "retry_last_ts": 9_000, "retry_interval": 70_000,
                                    "failure_ts": 1_000, "last_successful_stream_ordering": None}
    assert by_name["d.example"] == {"destination": "d.example", "retry_last_ts": 0, "retry_interval": 0,
                                    "failure_ts": None, "last_successful_stream_ordering": None}

    async def names(**params: Any) -> list[str]:
        return [d["destination"] for d in (await admin.admin("GET", BASE, **params))["destinations"]]

    assert await names(order_by="retry_last_ts") == ["d.example", "a.example", "b.example", "c.example"]
    assert await names(order_by="retry_interval", dir="b") == ["a.example", "c.example", "b.example", "d.example"]
    assert await names(order_by="failure_ts") == ["d.example", "c.example", "a.example", "b.example"]
    assert await names(order_by="destination", dir="b") == ["d.example", "c.example", "b.example", "a.example"]
    assert await names(destination="B.EX") == ["b.example"]

    page = await admin.admin("GET", BASE, limit=3)
    assert [d["destination"] for d in page["destinations"]] == ["a.example", "b.example", "c.example"]
    assert page["next_token"] == "3" and page["total"] == 4
    last = await admin.admin("GET", BASE, limit=3, **{"from": page["next_token"]})
    assert [d["destination"] for d in last["destinations"]] == ["d.example"] and "next_token" not in last

    for params, named in (({"from": "-1"}, "from"), ({"limit": "x"}, "limit"), ({"order_by": "bogus"}, "order_by"),
                          ({"dir": "up"}, "dir")):
        answer = await admin.admin("GET", BASE, expect=400, **params)
        assert answer["errcode"] == "M_INVALID_PARAM" and named in answer["error"], answer


async def test_unknown_destinations_are_404_and_non_admins_are_refused(hs, client):
    admin = await new_admin(client)
    mallory = await new_caller(client, "mallory")
    for method, path in (("GET", BASE), ("GET", f"{BASE}/other.example"), ("GET", f"{BASE}/other.example/rooms"),
                         ("POST", f"{BASE}/other.example/reset_connection")):
        await assert_admin_only(mallory, method, path, {} if method == "POST" else None)
    for name in ("other.example", hs.config.server_name):  # never known: ourselves included
        for method, path in (("GET", f"{BASE}/{q(name)}"), ("GET", f"{BASE}/{q(name)}/rooms"),
                             ("POST", f"{BASE}/{q(name)}/reset_connection")):
            answer = await admin.admin(method, path, {} if method == "POST" else None, expect=404)
            assert answer["errcode"] == "M_NOT_FOUND" and answer["error"] == "Unknown destination"


def _empty_batch():
    from storage.stores.outbound import OutboundBatch

    return OutboundBatch(txn_id="0", item_ids=(), payloads=(), oldest_ts=0)
