"""The media admin API: quarantine by item, room and user, protection, deletion, listings."""

from __future__ import annotations

from tests.admin.helpers import Caller, assert_admin_only, new_admin, new_caller, q
from tests.media.helpers import MediaUser, media_id_of


async def uploader(client, caller: Caller) -> MediaUser:
    return MediaUser(client, {"user_id": caller.user_id, "access_token": caller.token})


MEDIA_ENDPOINTS = [
    ("POST", "/v1/media/quarantine/{s}/abc", {}), ("POST", "/v1/media/unquarantine/{s}/abc", {}),
    ("POST", "/v1/media/protect/abc", {}), ("POST", "/v1/media/unprotect/abc", {}),
    ("GET", "/v1/media/{s}/abc", None), ("DELETE", "/v1/media/{s}/abc", None),
    ("POST", "/v1/media/delete?before_ts=1", {}), ("POST", "/v1/purge_media_cache?before_ts=1", {}),
    ("GET", "/v1/room/!r:{s}/media", None), ("POST", "/v1/room/!r:{s}/media/quarantine", {}),
    ("POST", "/v1/user/{u}/media/quarantine", {}), ("GET", "/v1/users/{u}/media", None),
    ("DELETE", "/v1/users/{u}/media", None), ("GET", "/v1/statistics/users/media", None),
]


async def test_every_media_endpoint_refuses_a_non_admin_with_forbidden(hs, client):
    await new_admin(client)
    mallory = await new_caller(client, "mallory")
    for method, path, body in MEDIA_ENDPOINTS:
        await assert_admin_only(mallory, method, path.format(s=hs.config.server_name, u=q(mallory.user_id)), body)


async def test_quarantining_one_item_hides_it_until_released_unless_protected(hs, client):
    admin = await new_admin(client)
    alice = await uploader(client, await new_caller(client, "alice"))
    server = hs.config.server_name
    bad = await alice.upload(b"bad", "text/plain")
    kept = await alice.upload(b"precious", "text/plain")
    await admin.admin("POST", f"/v1/media/quarantine/{server}/{media_id_of(bad)}", {})
    assert (await alice.download(bad))[0] == 404
    info = await admin.admin("GET", f"/v1/media/{server}/{media_id_of(bad)}")
    assert info["media_info"]["quarantined_by"] == admin.user_id
    await admin.admin("POST", f"/v1/media/unquarantine/{server}/{media_id_of(bad)}", {})
    assert (await alice.download(bad))[0] == 200
    await admin.admin("POST", f"/v1/media/protect/{media_id_of(kept)}", {})
    await admin.admin("POST", f"/v1/media/quarantine/{server}/{media_id_of(kept)}", {})
    assert (await alice.download(kept))[0] == 200
    await admin.admin("POST", f"/v1/media/unprotect/{media_id_of(kept)}", {})
    await admin.admin("POST", f"/v1/media/quarantine/{server}/{media_id_of(kept)}", {})
    assert (await alice.download(kept))[0] == 404
    for path in (f"/v1/media/quarantine/{server}/nothing", "/v1/media/protect/nothing",
                 f"/v1/media/{server}/nothing"):
        method = "GET" if path.startswith("/v1/media/" + server) else "POST"
        assert (await admin.admin(method, path, {} if method == "POST" else None, expect=404))["errcode"] == \
            "M_NOT_FOUND"


async def test_a_rooms_media_is_listed_and_quarantined_together(hs, client):
    admin = await new_admin(client)
    alice_caller = await new_caller(client, "alice")
    alice = await uploader(client, alice_caller)
    room_id = await alice_caller.create_room()
    picture = await alice.upload(b"picture", "image/png")
    other = await alice.upload(b"elsewhere", "text/plain")
    await alice_caller.send(room_id, "look", msgtype="m.image", url=picture)
    await alice_caller.send(room_id, "remote", msgtype="m.image", url="mxc://remote.example/abc")
    media = await admin.admin("GET", f"/v1/room/{q(room_id)}/media")
    assert media == {"local": [picture], "remote": ["mxc://remote.example/abc"]}
    result = await admin.admin("POST", f"/v1/room/{q(room_id)}/media/quarantine", {})
    assert result == {"num_quarantined": 1}
    assert (await alice.download(picture))[0] == 404 and (await alice.download(other))[0] == 200
    unknown = q("!nowhere:" + hs.config.server_name)
    assert (await admin.admin("GET", f"/v1/room/{unknown}/media", expect=404))["errcode"] == "M_NOT_FOUND"


async def test_a_users_media_is_listed_quarantined_and_deleted(hs, client):
    admin = await new_admin(client)
    bob_caller = await new_caller(client, "bob")
    bob = await uploader(client, bob_caller)
    uploaded = [await bob.upload(f"file {i}".encode(), "text/plain", filename=f"f{i}.txt") for i in range(3)]
    base = f"/v1/users/{q(bob.user_id)}/media"
    listed = await admin.admin("GET", base, limit=2)
    assert listed["total"] == 3 and listed["next_token"] == 2
    assert set(listed["media"][0]) == {"media_id", "media_type", "media_length", "upload_name", "created_ts",
                                       "last_access_ts", "quarantined_by", "safe_from_quarantine"}
    by_name = await admin.admin("GET", base, order_by="upload_name", dir="b")
    assert [m["upload_name"] for m in by_name["media"]] == ["f2.txt", "f1.txt", "f0.txt"]
    assert await admin.admin("POST", f"/v1/user/{q(bob.user_id)}/media/quarantine", {}) == {"num_quarantined": 3}
    assert (await bob.download(uploaded[0]))[0] == 404
    deleted = await admin.admin("DELETE", base, limit=2, order_by="upload_name")
    assert deleted["total"] == 2 and set(deleted["deleted_media"]) == {media_id_of(u) for u in uploaded[:2]}
    assert (await admin.admin("GET", base))["total"] == 1
    assert (await admin.admin("GET", base, order_by="size", expect=400))["errcode"] == "M_INVALID_PARAM"
    ghost = q("@ghost:" + hs.config.server_name)
    assert (await admin.admin("GET", f"/v1/users/{ghost}/media", expect=404))["errcode"] == "M_NOT_FOUND"


async def test_local_media_is_deleted_by_id_and_by_age_and_size(hs, client):
    admin = await new_admin(client)
    carol_caller = await new_caller(client, "carol")
    carol = await uploader(client, carol_caller)
    server = hs.config.server_name
    one = await carol.upload(b"x" * 10, "text/plain")
    assert await admin.admin("DELETE", f"/v1/media/{server}/{media_id_of(one)}") == {
        "deleted_media": [media_id_of(one)], "total": 1}
    assert (await carol.download(one))[0] == 404
    small = await carol.upload(b"s", "text/plain")
    big = await carol.upload(b"b" * 100, "text/plain")
    avatar = await carol.upload(b"a" * 100, "image/png")
    await carol_caller.call("PUT", f"/profile/{q(carol.user_id)}/avatar_url", {"avatar_url": avatar})
    far_future = 2 ** 50
    result = await admin.admin("POST", f"/v1/media/delete?before_ts={far_future}&size_gt=50", {})
    assert result == {"deleted_media": [media_id_of(big)], "total": 1}
    assert (await carol.download(small))[0] == 200 and (await carol.download(avatar))[0] == 200
    assert (await admin.admin("POST", "/v1/media/delete", {}, expect=400))["errcode"] == "M_MISSING_PARAM"
    assert (await admin.admin("POST", "/v1/media/delete?before_ts=x", {}, expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert (await admin.admin("DELETE", "/v1/media/remote.example/abc", expect=400))["errcode"] == \
        "M_INVALID_PARAM"
    assert await admin.admin("POST", f"/v1/purge_media_cache?before_ts={far_future}", {}) == {"deleted": 0}


async def test_media_statistics_count_and_size_each_users_uploads(hs, client):
    admin = await new_admin(client)
    alice_caller, bob_caller = await new_caller(client, "alice"), await new_caller(client, "bob")
    await new_caller(client, "carol")  # uploads nothing, so is not listed
    alice, bob = await uploader(client, alice_caller), await uploader(client, bob_caller)
    for data in (b"a" * 10, b"b" * 30):
        await alice.upload(data, "text/plain")
    await bob.upload(b"c" * 5, "text/plain")
    await bob_caller.call("PUT", f"/profile/{q(bob_caller.user_id)}/displayname", {"displayname": "Bobby"})

    stats = await admin.admin("GET", "/v1/statistics/users/media")
    assert stats == {"total": 2, "users": [
        {"user_id": alice_caller.user_id, "displayname": "alice", "media_count": 2, "media_length": 40},
        {"user_id": bob_caller.user_id, "displayname": "Bobby", "media_count": 1, "media_length": 5}]}
    by_size = await admin.admin("GET", "/v1/statistics/users/media", order_by="media_length", dir="b", limit=1)
    assert [u["user_id"] for u in by_size["users"]] == [alice_caller.user_id] and by_size["next_token"] == 1
    rest = await admin.admin("GET", "/v1/statistics/users/media", order_by="media_length", dir="b",
                             **{"from": by_size["next_token"]})
    assert [u["user_id"] for u in rest["users"]] == [bob_caller.user_id] and "next_token" not in rest
    searched = await admin.admin("GET", "/v1/statistics/users/media", search_term="bobb")
    assert [u["user_id"] for u in searched["users"]] == [bob_caller.user_id]
    assert (await admin.admin("GET", "/v1/statistics/users/media", until_ts=1))["users"] == []
    for params, field in (({"order_by": "size"}, "order_by"), ({"from": "-1"}, "from"),
                          ({"from_ts": "soon"}, "from_ts"), ({"from_ts": 5, "until_ts": 1}, "until_ts"),
                          ({"search_term": ""}, "search_term"), ({"dir": "up"}, "dir")):
        bad = await admin.admin("GET", "/v1/statistics/users/media", expect=400, **params)
        assert bad["errcode"] == "M_INVALID_PARAM" and field in bad["error"], (params, bad)
