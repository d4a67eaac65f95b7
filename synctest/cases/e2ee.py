"""End-to-end encryption plumbing: device and one-time keys, cross-signing, to-device messages, key backup."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from synctest.checks import expect, expect_error, expect_schema, expect_status
from synctest.context import Context
from synctest.registry import case
from synctest.users import User

CLIENT = "/_matrix/client/v3"
KEYS_UPLOAD = CLIENT + "/keys/upload"
KEYS_QUERY = CLIENT + "/keys/query"
KEYS_CLAIM = CLIENT + "/keys/claim"
KEYS_CHANGES = CLIENT + "/keys/changes"
DEVICE_SIGNING = CLIENT + "/keys/device_signing/upload"
SIGNATURES = CLIENT + "/keys/signatures/upload"
SEND_TO_DEVICE = CLIENT + "/sendToDevice/{eventType}/{txnId}"
SYNC = CLIENT + "/sync"
BACKUP_VERSION = CLIENT + "/room_keys/version"
BACKUP_VERSION_ID = CLIENT + "/room_keys/version/{version}"
BACKUP_KEYS = CLIENT + "/room_keys/keys"
BACKUP_ROOM = CLIENT + "/room_keys/keys/{roomId}"
BACKUP_SESSION = CLIENT + "/room_keys/keys/{roomId}/{sessionId}"
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 1}}})
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"

_txn = iter(range(1, 1_000_000))


def q(part: str) -> str:
    return quote(part, safe="")


def public_key(signing_key: Any) -> str:
    return encode_verify_key_base64(get_verify_key(signing_key))


def device_keys(user: User) -> tuple[dict[str, Any], Any]:
    """Self-signed device keys for the user's device; (keys, the device's signing key)."""
    assert user.device_id is not None
    key = generate_signing_key(user.device_id)
    body = {
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{user.device_id}": public_key(generate_signing_key("c")),
                 f"ed25519:{user.device_id}": public_key(key)},
    }
    return sign_json(body, user.user_id, key), key


def cross_signing_key(user: User, usage: str, signer: Any | None = None) -> tuple[dict[str, Any], Any]:
    key = generate_signing_key("")
    key.version = public_key(key)  # signatures by it are named ed25519:<public key>
    body = {"user_id": user.user_id, "usage": [usage], "keys": {f"ed25519:{key.version}": key.version}}
    return (sign_json(body, user.user_id, signer) if signer is not None else body), key


async def upload_keys(ctx: Context, user: User, body: dict[str, Any]) -> dict[str, Any]:
    response = await ctx.post(KEYS_UPLOAD, json=body, token=user.access_token)
    expect_status(response, 200)
    return expect_schema(response, KEYS_UPLOAD)


async def query_keys(ctx: Context, user: User, user_ids: list[str]) -> dict[str, Any]:
    response = await ctx.post(KEYS_QUERY, json={"device_keys": {u: [] for u in user_ids}}, token=user.access_token)
    expect_status(response, 200)
    return expect_schema(response, KEYS_QUERY)


async def sync(ctx: Context, user: User, since: str | None = None, timeout_ms: int = 0) -> dict[str, Any]:
    params = {"filter": SYNC_FILTER, "timeout": str(timeout_ms)}
    if since:
        params["since"] = since
    response = await ctx.get(SYNC, token=user.access_token, params=params)
    expect_status(response, 200)
    return expect_schema(response, SYNC)


async def sync_until(ctx: Context, user: User, found: Callable[[dict[str, Any]], bool], since: str | None,
                     wait_s: float = 10.0) -> dict[str, Any]:
    """Long-poll until a response satisfies `found`; that response."""
    deadline = time.monotonic() + wait_s
    while True:
        body = await sync(ctx, user, since, timeout_ms=1000)
        if found(body):
            return body
        expect(time.monotonic() < deadline, "the expected change never showed up in /sync")
        since = body["next_batch"]


async def shared_room(ctx: Context) -> tuple[User, User, str]:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    created = await ctx.post(CLIENT + "/createRoom", json={"preset": "public_chat"}, token=alice.access_token)
    expect_status(created, 200)
    room_id = created.json["room_id"]
    expect_status(await ctx.post(f"{CLIENT}/join/{q(room_id)}", json={}, token=bob.access_token), 200)
    return alice, bob, room_id


# --- device and one-time keys ---------------------------------------------------------------
@case
async def uploaded_device_keys_are_returned_by_query(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    keys, _ = device_keys(alice)
    counts = await upload_keys(ctx, alice, {"device_keys": keys})
    expect(counts["one_time_key_counts"].get("signed_curve25519", 0) == 0, f"counts {counts}")
    body = await query_keys(ctx, bob, [alice.user_id])
    served = body["device_keys"].get(alice.user_id, {}).get(alice.device_id)
    expect(served is not None, f"alice's device missing from {body['device_keys']}")
    expect(served["keys"] == keys["keys"], f"keys differ: {served['keys']}")
    expect(served["signatures"][alice.user_id] == keys["signatures"][alice.user_id], "self-signature lost")


@case
async def device_keys_with_a_bad_self_signature_are_stored_for_clients_to_judge(ctx: Context) -> None:
    # Synapse stores them; clients check the self-signature on /keys/query before trusting a device.
    alice = await ctx.register_user()
    keys, _ = device_keys(alice)
    keys["signatures"][alice.user_id][f"ed25519:{alice.device_id}"] = "bm90IGEgc2lnbmF0dXJl"
    await upload_keys(ctx, alice, {"device_keys": keys})
    served = (await query_keys(ctx, alice, [alice.user_id]))["device_keys"].get(alice.user_id, {})
    expect(alice.device_id in served, f"the device's keys were not stored: {served}")
    expect(served[alice.device_id]["keys"] == keys["keys"], f"keys differ: {served[alice.device_id]}")


@case
async def one_time_keys_are_counted_and_claimed_once_then_the_fallback(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    _, device_key = device_keys(alice)
    otks = {f"signed_curve25519:K{i}": sign_json({"key": f"key{i}"}, alice.user_id, device_key) for i in range(2)}
    fallback = {"signed_curve25519:FB": sign_json({"key": "fallback", "fallback": True}, alice.user_id, device_key)}
    counts = await upload_keys(ctx, alice, {"one_time_keys": otks, "fallback_keys": fallback})
    expect(counts["one_time_key_counts"].get("signed_curve25519") == 2, f"counts {counts}")
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    claimed = []
    for _ in range(3):
        response = await ctx.post(KEYS_CLAIM, json=claim, token=bob.access_token)
        expect_status(response, 200)
        body = expect_schema(response, KEYS_CLAIM)
        claimed += list(body["one_time_keys"].get(alice.user_id, {}).get(alice.device_id, {}))
    expect(sorted(claimed[:2]) == sorted(otks), f"claimed {claimed}")
    expect(claimed[2] == "signed_curve25519:FB", f"third claim should give the fallback key: {claimed}")
    body = await sync(ctx, alice)
    expect(body.get("device_one_time_keys_count", {}).get("signed_curve25519", 0) == 0,
           f"count after claims: {body.get('device_one_time_keys_count')}")


@case
async def sync_reports_one_time_key_counts(ctx: Context) -> None:
    alice = await ctx.register_user()
    _, device_key = device_keys(alice)
    await upload_keys(ctx, alice, {"one_time_keys": {f"signed_curve25519:{k}": sign_json({"key": k}, alice.user_id,
                                                                                        device_key)
                                                     for k in ("A", "B")}})
    first = await sync(ctx, alice)
    expect(first.get("device_one_time_keys_count", {}).get("signed_curve25519") == 2,
           f"initial sync count {first.get('device_one_time_keys_count')}")
    second = await sync(ctx, alice, first["next_batch"])
    expect(second.get("device_one_time_keys_count", {}).get("signed_curve25519") == 2,
           f"incremental sync count {second.get('device_one_time_keys_count')}")


@case
async def room_mates_key_changes_appear_in_device_lists_and_keys_changes(ctx: Context) -> None:
    alice, bob, _ = await shared_room(ctx)
    start = (await sync(ctx, alice))["next_batch"]
    keys, _ = device_keys(bob)
    await upload_keys(ctx, bob, {"device_keys": keys})
    body = await sync_until(ctx, alice, lambda b: bob.user_id in b.get("device_lists", {}).get("changed", []),
                            start)
    response = await ctx.get(KEYS_CHANGES, token=alice.access_token,
                             params={"from": start, "to": body["next_batch"]})
    expect_status(response, 200)
    changes = expect_schema(response, KEYS_CHANGES)
    expect(bob.user_id in changes.get("changed", []), f"/keys/changes: {changes}")


@case
async def a_room_mate_who_leaves_appears_in_device_lists_left(ctx: Context) -> None:
    alice, bob, room_id = await shared_room(ctx)
    start = (await sync(ctx, alice))["next_batch"]
    expect_status(await ctx.post(f"{CLIENT}/rooms/{q(room_id)}/leave", json={}, token=bob.access_token), 200)
    await sync_until(ctx, alice, lambda b: bob.user_id in b.get("device_lists", {}).get("left", []), start)


# --- cross-signing ----------------------------------------------------------------------------
@case
async def cross_signing_keys_and_signatures_round_trip(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    keys, _ = device_keys(alice)
    await upload_keys(ctx, alice, {"device_keys": keys})
    master, master_key = cross_signing_key(alice, "master")
    self_signing, ssk = cross_signing_key(alice, "self_signing", master_key)
    user_signing, _ = cross_signing_key(alice, "user_signing", master_key)
    # Setting cross-signing up for the first time needs no UIA.
    response = await ctx.post(DEVICE_SIGNING, token=alice.access_token, json={
        "master_key": master, "self_signing_key": self_signing, "user_signing_key": user_signing})
    expect_status(response, 200)
    signed = sign_json(copy.deepcopy(keys), alice.user_id, ssk)
    response = await ctx.post(SIGNATURES, json={alice.user_id: {alice.device_id: signed}}, token=alice.access_token)
    expect_status(response, 200)
    result = expect_schema(response, SIGNATURES)
    expect(not result.get("failures"), f"failures: {result}")
    mine = await query_keys(ctx, alice, [alice.user_id])
    expect(mine["master_keys"][alice.user_id]["keys"] == master["keys"], "master key differs")
    expect(mine["self_signing_keys"][alice.user_id]["keys"] == self_signing["keys"], "self-signing key differs")
    expect(mine["user_signing_keys"][alice.user_id]["keys"] == user_signing["keys"], "user-signing key differs")
    theirs = await query_keys(ctx, bob, [alice.user_id])
    expect(alice.user_id not in theirs.get("user_signing_keys", {}), "user-signing keys are private")
    device = theirs["device_keys"][alice.user_id][alice.device_id]
    expect(f"ed25519:{ssk.version}" in device["signatures"][alice.user_id],
           f"the self-signing signature is missing: {device['signatures']}")


@case
async def replacing_cross_signing_keys_needs_the_password(ctx: Context) -> None:
    alice = await ctx.register_user()
    master, _ = cross_signing_key(alice, "master")
    expect_status(await ctx.post(DEVICE_SIGNING, json={"master_key": master}, token=alice.access_token), 200)
    other, _ = cross_signing_key(alice, "master")
    response = await ctx.post(DEVICE_SIGNING, json={"master_key": other}, token=alice.access_token)
    expect_status(response, 401)
    challenge = response.json
    response = await ctx.post(DEVICE_SIGNING, token=alice.access_token, json={"master_key": other, "auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": alice.password, "session": challenge["session"]}})
    expect_status(response, 200)
    mine = await query_keys(ctx, alice, [alice.user_id])
    expect(mine["master_keys"][alice.user_id]["keys"] == other["keys"], "the master key was not replaced")


@case
async def a_signature_by_the_wrong_key_is_a_per_key_failure(ctx: Context) -> None:
    alice = await ctx.register_user()
    keys, _ = device_keys(alice)
    await upload_keys(ctx, alice, {"device_keys": keys})
    master, master_key = cross_signing_key(alice, "master")
    self_signing, _ = cross_signing_key(alice, "self_signing", master_key)
    expect_status(await ctx.post(DEVICE_SIGNING, token=alice.access_token,
                                 json={"master_key": master, "self_signing_key": self_signing}), 200)
    stranger = generate_signing_key("")
    stranger.version = public_key(stranger)
    forged = sign_json(copy.deepcopy(keys), alice.user_id, stranger)
    response = await ctx.post(SIGNATURES, json={alice.user_id: {alice.device_id: forged}}, token=alice.access_token)
    expect_status(response, 200)
    failures = expect_schema(response, SIGNATURES).get("failures", {})
    expect(alice.device_id in failures.get(alice.user_id, {}), f"no failure for the forged signature: {failures}")


@case
async def cross_signing_upload_is_served_under_unstable(ctx: Context) -> None:
    alice = await ctx.register_user()
    master, _ = cross_signing_key(alice, "master")
    response = await ctx.post("/_matrix/client/unstable/keys/device_signing/upload", json={"master_key": master},
                              token=alice.access_token)
    expect_status(response, 200)


# --- to-device --------------------------------------------------------------------------------
@case
async def to_device_messages_arrive_once_and_are_gone_after_acknowledgement(ctx: Context) -> None:
    alice, bob = await ctx.register_user(), await ctx.register_user()
    start = (await sync(ctx, bob))["next_batch"]
    txn_id = f"synctest{next(_txn)}-{time.monotonic_ns()}"
    path = f"{CLIENT}/sendToDevice/m.synctest/{txn_id}"
    message = {"messages": {bob.user_id: {bob.device_id: {"hello": "bob"}}}}
    for _ in range(2):  # a retried transaction is delivered once
        response = await ctx.put(path, json=message, token=alice.access_token)
        expect_status(response, 200)
        expect_schema(response, SEND_TO_DEVICE)
    body = await sync_until(ctx, bob, lambda b: bool(b.get("to_device", {}).get("events")), start)
    events = body["to_device"]["events"]
    expect(events == [{"type": "m.synctest", "sender": alice.user_id, "content": {"hello": "bob"}}],
           f"to_device events: {events}")
    after = await sync(ctx, bob, body["next_batch"])
    expect(not after.get("to_device", {}).get("events"), f"delivered again: {after.get('to_device')}")


# --- key backup -------------------------------------------------------------------------------
def backup_key(index: int, data: str, verified: bool = False) -> dict[str, Any]:
    return {"first_message_index": index, "forwarded_count": 0, "is_verified": verified,
            "session_data": {"ciphertext": data, "ephemeral": "e", "mac": "m"}}


@case
async def no_backup_is_404_not_found(ctx: Context) -> None:
    alice = await ctx.register_user()
    expect_error(await ctx.get(BACKUP_VERSION, token=alice.access_token), 404, "M_NOT_FOUND")


@case
async def backup_versions_are_created_updated_and_deleted(ctx: Context) -> None:
    alice = await ctx.register_user()
    body = {"algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": "pub"}}
    response = await ctx.post(BACKUP_VERSION, json=body, token=alice.access_token)
    expect_status(response, 200)
    version = expect_schema(response, BACKUP_VERSION)["version"]
    response = await ctx.get(BACKUP_VERSION, token=alice.access_token)
    expect_status(response, 200)
    current = expect_schema(response, BACKUP_VERSION)
    expect(current["version"] == version and current["count"] == 0, f"current backup {current}")
    response = await ctx.put(f"{CLIENT}/room_keys/version/{version}", token=alice.access_token,
                             json={**body, "auth_data": {"public_key": "pub2"}, "version": version})
    expect_status(response, 200)
    response = await ctx.get(f"{CLIENT}/room_keys/version/{version}", token=alice.access_token)
    expect_status(response, 200)
    expect(expect_schema(response, BACKUP_VERSION_ID)["auth_data"] == {"public_key": "pub2"}, "not updated")
    expect_status(await ctx.delete(f"{CLIENT}/room_keys/version/{version}", token=alice.access_token), 200)
    expect_error(await ctx.get(f"{CLIENT}/room_keys/version/{version}", token=alice.access_token),
                 404, "M_NOT_FOUND")


@case
async def backup_auth_data_given_as_a_string_is_served_back_unchanged(ctx: Context) -> None:
    # Older clients send auth_data as an opaque string; Synapse keeps whatever JSON it gets.
    alice = await ctx.register_user()
    body = {"algorithm": BACKUP_ALGORITHM, "auth_data": "dGhpcyBzaG91bGQgYmUgZW5jcnlwdGVkIGpzb24K"}
    response = await ctx.post(BACKUP_VERSION, json=body, token=alice.access_token)
    expect_status(response, 200)
    version = response.json["version"]
    response = await ctx.get(f"{CLIENT}/room_keys/version/{version}", token=alice.access_token)
    expect_status(response, 200)
    expect(response.json.get("auth_data") == body["auth_data"], f"auth_data came back as {response.json}")


@case
async def backed_up_keys_keep_the_better_copy_and_refuse_old_versions(ctx: Context) -> None:
    alice = await ctx.register_user()
    body = {"algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": "pub"}}
    old = (await ctx.post(BACKUP_VERSION, json=body, token=alice.access_token)).json["version"]
    version = (await ctx.post(BACKUP_VERSION, json=body, token=alice.access_token)).json["version"]
    room = q("!room:example.org")
    session_path = f"{CLIENT}/room_keys/keys/{room}/session1"
    params = {"version": version}
    response = await ctx.put(session_path, json=backup_key(5, "first"), token=alice.access_token, params=params)
    expect_status(response, 200)
    stored = expect_schema(response, BACKUP_SESSION)
    expect(stored["count"] == 1, f"count {stored}")
    response = await ctx.put(session_path, json=backup_key(9, "worse"), token=alice.access_token, params=params)
    expect_status(response, 200)
    response = await ctx.put(f"{CLIENT}/room_keys/keys/{room}", token=alice.access_token, params=params,
                             json={"sessions": {"session2": backup_key(0, "two")}})
    expect_status(response, 200)
    response = await ctx.get(session_path, token=alice.access_token, params=params)
    expect_status(response, 200)
    expect(expect_schema(response, BACKUP_SESSION)["session_data"]["ciphertext"] == "first",
           "a worse copy replaced the stored key")
    response = await ctx.get(BACKUP_KEYS, token=alice.access_token, params=params)
    expect_status(response, 200)
    everything = expect_schema(response, BACKUP_KEYS)
    expect(set(everything["rooms"]["!room:example.org"]["sessions"]) == {"session1", "session2"},
           f"keys: {everything}")
    wrong = await ctx.put(session_path, json=backup_key(0, "x"), token=alice.access_token, params={"version": old})
    error = expect_error(wrong, 403, "M_WRONG_ROOM_KEYS_VERSION")
    # The spec means the current version; Synapse echoes the requested one, so only the type is checked.
    expect(isinstance(error.get("current_version"), str), f"current_version in {error}")
    response = await ctx.delete(f"{CLIENT}/room_keys/keys/{room}", token=alice.access_token, params=params)
    expect_status(response, 200)
    expect(expect_schema(response, BACKUP_ROOM)["count"] == 0, "keys left after deleting the room's")
