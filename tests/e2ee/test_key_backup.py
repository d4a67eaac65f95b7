"""Server-side key backup: versions, keys, replacement rules and the current-version check."""

from __future__ import annotations

import pytest

from homeserver.e2ee.key_backup import parse_room_key, should_replace
from homeserver.errors import MatrixError
from storage.stores.key_backup import RoomKey
from tests.support.rooms import new_user

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
VERSION_BODY = {"algorithm": ALGORITHM, "auth_data": {"public_key": "abc"}}


def key(verified=False, index=0, forwarded=0, data="x"):
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": data}}


def room_key(**kwargs):
    return parse_room_key(key(**kwargs), "!r", "s", "body")


@pytest.mark.parametrize(("current", "new", "replaced"), [
    (room_key(verified=False), room_key(verified=True, index=9), True),
    (room_key(verified=True), room_key(verified=False, index=0), False),
    (room_key(index=5), room_key(index=2), True),
    (room_key(index=2), room_key(index=5), False),
    (room_key(forwarded=3), room_key(forwarded=1), True),
    (room_key(forwarded=1), room_key(forwarded=3), False),
    (room_key(), room_key(data="other"), False),
])
def test_a_session_is_replaced_only_by_a_better_copy(current: RoomKey, new: RoomKey, replaced: bool):
    assert should_replace(current, new) is replaced


@pytest.mark.parametrize(("value", "field"), [
    ({**key(), "first_message_index": -1}, "body.first_message_index"),
    ({**key(), "forwarded_count": "1"}, "body.forwarded_count"),
    ({**key(), "is_verified": 1}, "body.is_verified"),
    ({**key(), "session_data": "x"}, "body.session_data"),
])
def test_malformed_key_data_names_the_field(value, field):
    with pytest.raises(MatrixError) as caught:
        parse_room_key(value, "!r", "s", "body")
    assert caught.value.message.startswith(field)


async def test_without_a_backup_the_current_version_is_not_found(client):
    alice = await new_user(client, "alice")
    body = await alice.call("GET", "/room_keys/version", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    await alice.call("GET", "/room_keys/version/1", expect=404)
    await alice.call("GET", "/room_keys/version/notanumber", expect=404)


async def test_versions_are_created_read_updated_and_deleted(client):
    alice = await new_user(client, "alice")
    first = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    second = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    assert int(second) > int(first)
    current = await alice.call("GET", "/room_keys/version")
    assert current == {**VERSION_BODY, "version": second, "count": 0, "etag": current["etag"]}
    await alice.call("PUT", f"/room_keys/version/{second}",
                     {"algorithm": ALGORITHM, "auth_data": {"public_key": "new"}, "version": second})
    assert (await alice.call("GET", f"/room_keys/version/{second}"))["auth_data"] == {"public_key": "new"}
    body = await alice.call("PUT", f"/room_keys/version/{second}",
                            {"algorithm": "other", "auth_data": {}}, expect=400)
    assert body["error"].startswith("algorithm")
    await alice.call("DELETE", f"/room_keys/version/{second}")
    assert (await alice.call("GET", "/room_keys/version"))["version"] == first
    await alice.call("DELETE", f"/room_keys/version/{second}", expect=404)
    third = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    assert int(third) > int(second)  # version numbers are never reused


async def test_a_version_with_an_algorithm_the_spec_does_not_define_is_refused(client):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/room_keys/version",
                            {"algorithm": "org.example.unknown", "auth_data": {}}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"
    assert body["error"].startswith("algorithm")
    await alice.call("GET", "/room_keys/version", expect=404)


async def test_auth_data_given_as_a_string_by_older_clients_is_kept_and_served_as_a_string(client):
    alice = await new_user(client, "alice")
    legacy = {"algorithm": ALGORITHM, "auth_data": "dGhpcyBzaG91bGQgYmUgZW5jcnlwdGVkIGpzb24K"}
    version = (await alice.call("POST", "/room_keys/version", legacy))["version"]
    assert (await alice.call("GET", "/room_keys/version"))["auth_data"] == legacy["auth_data"]
    await alice.call("PUT", f"/room_keys/version/{version}", {**legacy, "auth_data": "bmV3"})
    assert (await alice.call("GET", f"/room_keys/version/{version}"))["auth_data"] == "bmV3"


@pytest.mark.parametrize("auth_data", [None, 5, ["a"], True])
async def test_auth_data_neither_object_nor_string_is_bad_json(client, auth_data):
    alice = await new_user(client, "alice")
    body = await alice.call("POST", "/room_keys/version", {"algorithm": ALGORITHM, "auth_data": auth_data},
                            expect=400)
    assert body["errcode"] == "M_BAD_JSON"
    assert body["error"].startswith("auth_data")


async def test_keys_round_trip_at_every_level_and_the_etag_moves(client):
    alice = await new_user(client, "alice")
    version = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    etag0 = (await alice.call("GET", "/room_keys/version"))["etag"]
    body = await alice.call("PUT", "/room_keys/keys", {"rooms": {"!a:x": {"sessions": {"s1": key(), "s2": key()}}}},
                            version=version)
    assert body["count"] == 2 and body["etag"] != etag0
    await alice.call("PUT", "/room_keys/keys/!b:x", {"sessions": {"s/3+": key()}}, version=version)
    await alice.call("PUT", "/room_keys/keys/!b:x/s4", key(index=3), version=version)
    everything = await alice.call("GET", "/room_keys/keys", version=version)
    assert set(everything["rooms"]) == {"!a:x", "!b:x"}
    assert set(everything["rooms"]["!b:x"]["sessions"]) == {"s/3+", "s4"}
    assert await alice.call("GET", "/room_keys/keys/!b:x/s4", version=version) == key(index=3)
    assert await alice.call("GET", "/room_keys/keys/!b:x/s%2F3%2B", version=version) == key()
    assert (await alice.call("GET", "/room_keys/keys/!none:x", version=version)) == {"sessions": {}}
    await alice.call("GET", "/room_keys/keys/!none:x/s", version=version, expect=404)
    deleted = await alice.call("DELETE", "/room_keys/keys/!a:x", version=version)
    assert deleted["count"] == 2
    deleted = await alice.call("DELETE", "/room_keys/keys/!b:x/s4", version=version)
    assert deleted["count"] == 1
    assert (await alice.call("GET", "/room_keys/version"))["count"] == 1


async def test_an_upload_keeps_the_better_copy(client):
    alice = await new_user(client, "alice")
    version = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    await alice.call("PUT", "/room_keys/keys/!a:x/s", key(index=5, data="first"), version=version)
    etag = (await alice.call("GET", "/room_keys/version"))["etag"]
    await alice.call("PUT", "/room_keys/keys/!a:x/s", key(index=7, data="worse"), version=version)
    assert (await alice.call("GET", "/room_keys/keys/!a:x/s", version=version))["session_data"] == {
        "ciphertext": "first"}
    assert (await alice.call("GET", "/room_keys/version"))["etag"] == etag
    await alice.call("PUT", "/room_keys/keys/!a:x/s", key(index=1, data="better"), version=version)
    assert (await alice.call("GET", "/room_keys/keys/!a:x/s", version=version))["session_data"] == {
        "ciphertext": "better"}


async def test_writing_to_an_old_version_is_wrong_room_keys_version(client):
    alice = await new_user(client, "alice")
    old = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    new = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    body = await alice.call("PUT", "/room_keys/keys/!a:x/s", key(), version=old, expect=403)
    assert body["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert body["current_version"] == new
    body = await alice.call("PUT", "/room_keys/keys/!a:x/s", key(), expect=400)
    assert body["error"].startswith("version")


async def test_another_users_backup_is_invisible(client):
    alice, bob = await new_user(client, "alice"), await new_user(client, "bob")
    version = (await alice.call("POST", "/room_keys/version", VERSION_BODY))["version"]
    await bob.call("GET", f"/room_keys/version/{version}", expect=404)
    await bob.call("GET", "/room_keys/keys", version=version, expect=404)
