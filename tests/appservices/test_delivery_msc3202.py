"""MSC3202 in transactions: one-time-key counts of the bridge's devices and device list changes of
the users it shares rooms with, sent only to services registered with `org.matrix.msc3202: true`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.appservices.support import AsClient, TransactionRecorder, registration_yaml
from tests.support.rooms import User, new_user

FAST_RETRIES = {"min_retry_interval_s": 0.05, "max_retry_interval_s": 0.2}
COUNTS = "org.matrix.msc3202.device_one_time_key_counts"
COUNTS_OLD = "org.matrix.msc3202.device_one_time_keys_count"
FALLBACK = "org.matrix.msc3202.device_unused_fallback_key_types"
DEVICE_LISTS = "org.matrix.msc3202.device_lists"
SIGNED = "signed_curve25519"


@pytest.fixture
async def encrypted() -> AsyncIterator[TransactionRecorder]:
    service = TransactionRecorder()
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def plain() -> AsyncIterator[TransactionRecorder]:
    service = TransactionRecorder(hs_token="hs-token-of-the-plain-bridge")
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def hs(make_homeserver, encrypted, plain, tmp_path):
    """`bridge` (users @bridge_*) with MSC3202; `plain` follows the same users without it (but with
    ephemeral data, so only the MSC3202 fields can make the difference)."""
    with_flag = registration_yaml(tmp_path, encrypted.url, **{"org.matrix.msc3202": True})
    without = registration_yaml(
        tmp_path, plain.url, name="plain", as_token="as-token-of-the-plain-bridge", hs_token=plain.hs_token,
        namespaces={"users": [{"regex": "@bridge_.*:.*", "exclusive": False}], "aliases": [], "rooms": []},
        **{"receive_ephemeral": True})
    return await make_homeserver(app_service_config_files=[with_flag, without], outbound=FAST_RETRIES)


@pytest.fixture
async def session(hs) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        yield client


def signed_key(n: int) -> dict[str, Any]:
    return {"key": f"curve-key-{n}", "signatures": {"@x:y": {"ed25519:X": "sig"}}}


def device_keys(user_id: str, device_id: str) -> dict[str, Any]:
    return {"user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": f"ed-{user_id}-{device_id}",
                     f"curve25519:{device_id}": f"cu-{user_id}-{device_id}"},
            "signatures": {user_id: {f"ed25519:{device_id}": "not checked here"}}}


def latest(recorder: TransactionRecorder, field: str) -> dict[str, Any]:
    """The field as the most recent transaction carrying it had it."""
    return next((t.body[field] for t in reversed(recorder.processed) if field in t.body), {})


def device_list_changes(recorder: TransactionRecorder) -> list[tuple[str, str]]:
    """(changed|left, user) in the order the transactions said them."""
    out = []
    for transaction in recorder.processed:
        lists = transaction.body.get(DEVICE_LISTS, {})
        out += [("changed", u) for u in lists.get("changed", [])] + [("left", u) for u in lists.get("left", [])]
    return out


async def test_one_time_key_counts_of_a_ghost_device_follow_uploads_and_claims(hs, session, encrypted, plain):
    bridge = AsClient(session)
    ghost = (await bridge.register("bridge_keys", device_id="GHOSTDEV"))["user_id"]
    alice = await new_user(session, "alice")
    await bridge.call("POST", "/keys/upload", {
        "device_keys": device_keys(ghost, "GHOSTDEV"),
        "one_time_keys": {f"{SIGNED}:k{n}": signed_key(n) for n in range(3)},
        "fallback_keys": {f"{SIGNED}:fb": {**signed_key(99), "fallback": True}},
    }, user_id=ghost, device_id="GHOSTDEV")

    def ghost_counts() -> dict[str, int] | None:
        return latest(encrypted, COUNTS).get(ghost, {}).get("GHOSTDEV")

    await encrypted.wait_for(lambda: ghost_counts() == {SIGNED: 3})
    assert latest(encrypted, FALLBACK) == {ghost: {"GHOSTDEV": [SIGNED]}}
    # Synapse sends the counts under both spellings of the key.
    assert latest(encrypted, COUNTS_OLD) == latest(encrypted, COUNTS)

    # A human's uploads are no business of the bridge's.
    alice_device = alice.device_id
    await alice.call("POST", "/keys/upload", {"one_time_keys": {f"{SIGNED}:a1": signed_key(7)}})

    claim = {"one_time_keys": {ghost: {"GHOSTDEV": SIGNED}}}
    claimed = await alice.call("POST", "/keys/claim", claim)
    assert list(claimed["one_time_keys"][ghost]["GHOSTDEV"]) == [f"{SIGNED}:k0"]
    await encrypted.wait_for(lambda: ghost_counts() == {SIGNED: 2})
    for _ in range(3):  # the last two one-time keys, then the fallback key
        await alice.call("POST", "/keys/claim", claim)
    await encrypted.wait_for(lambda: ghost_counts() == {SIGNED: 0}
                             and latest(encrypted, FALLBACK).get(ghost) == {"GHOSTDEV": []})
    every_user = {u for t in encrypted.processed for field in (COUNTS, FALLBACK) for u in t.body.get(field, {})}
    assert every_user == {ghost}
    assert alice_device not in str(encrypted.processed)

    # The service without the flag heard none of it, though it follows the same users.
    room_id = await alice.create_room(preset="public_chat")
    await bridge.call("POST", f"/join/{room_id}", {}, user_id=ghost)
    marker = await alice.send(room_id, "marker")
    await plain.wait_for_event(marker)
    await encrypted.wait_for_event(marker)
    assert plain.processed
    assert not [k for t in plain.processed for k in t.body if k.startswith("org.matrix.msc3202")]


async def test_device_list_changes_of_users_sharing_a_room_with_a_ghost(hs, session, encrypted, plain):
    bridge = AsClient(session)
    alice = await new_user(session, "alice")
    carol = await new_user(session, "carol")
    stranger = await new_user(session, "stranger")
    room_id = await alice.create_room(preset="public_chat")
    ghost = (await bridge.register("bridge_lists", inhibit_login=True))["user_id"]
    await bridge.call("POST", f"/join/{room_id}", {}, user_id=ghost)
    # The ghost joining starts sharing the room with alice.
    await encrypted.wait_for(lambda: ("changed", alice.user_id) in device_list_changes(encrypted))

    async def upload(user: User) -> None:
        await user.call("POST", "/keys/upload", {"device_keys": device_keys(user.user_id, user.device_id)})

    await upload(stranger)  # shares no room with any bridge user
    await carol.join(room_id)
    await upload(carol)
    await carol.call("POST", f"/rooms/{room_id}/leave", {})
    await upload(alice)
    await encrypted.wait_for(lambda: device_list_changes(encrypted).count(("changed", alice.user_id)) >= 2)
    changes = device_list_changes(encrypted)
    assert [c for c in changes if c[1] == carol.user_id] == [
        ("changed", carol.user_id),  # joined the ghost's room
        ("changed", carol.user_id),  # uploaded keys while sharing it
        ("left", carol.user_id),  # shares no room with a bridge user any more
    ]
    assert stranger.user_id not in {u for _, u in changes}
    assert ghost not in {u for _, u in changes}  # inhibit_login: no device, no key change

    marker = await alice.send(room_id, "marker")
    await plain.wait_for_event(marker)
    assert not [k for t in plain.processed for k in t.body if k.startswith("org.matrix.msc3202")]


async def test_a_service_that_was_down_gets_the_current_counts_when_it_returns(hs, session, encrypted):
    bridge = AsClient(session)
    ghost = (await bridge.register("bridge_away", device_id="AWAYDEV"))["user_id"]
    alice = await new_user(session, "alice")
    await bridge.call("POST", "/keys/upload", {"one_time_keys": {f"{SIGNED}:k{n}": signed_key(n) for n in range(4)}},
                      user_id=ghost, device_id="AWAYDEV")
    await encrypted.wait_for(lambda: latest(encrypted, COUNTS).get(ghost) == {"AWAYDEV": {SIGNED: 4}})
    await encrypted.stop()
    for _ in range(3):
        await alice.call("POST", "/keys/claim", {"one_time_keys": {ghost: {"AWAYDEV": SIGNED}}})
    seen = len(encrypted.processed)
    await encrypted.start()
    await encrypted.wait_for(lambda: latest(encrypted, COUNTS).get(ghost) == {"AWAYDEV": {SIGNED: 1}})
    # Three claims while away: the counts come as they are now, not as each claim left them.
    missed = [t.body[COUNTS][ghost]["AWAYDEV"] for t in encrypted.processed[seen:] if COUNTS in t.body]
    assert missed and all(counts == {SIGNED: 1} for counts in missed)
