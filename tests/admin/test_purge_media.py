"""Purges with `delete_media` (ours) also delete local media that only the purged events used."""

from __future__ import annotations

from tests.admin.helpers import Caller, new_admin, new_caller, q
from tests.admin.test_admin_rooms import wait_for_status
from tests.media.helpers import MediaUser


async def upload(user: Caller, data: bytes) -> str:
    return await MediaUser(user.client, {"user_id": user.user_id, "access_token": user.token}).upload(
        data, "image/png")


async def media_exists(admin: Caller, mxc: str) -> bool:
    server, media_id = mxc.removeprefix("mxc://").split("/")
    status = await admin.admin("GET", f"/v1/media/{q(server)}/{q(media_id)}", expect=None)
    return "media_info" in status


async def send_image(user: Caller, room_id: str, mxc: str) -> str:
    return await user.send(room_id, "a picture", msgtype="m.image", url=mxc)


async def test_a_history_purge_deletes_media_only_the_purged_events_used(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    only_old, shared, protected, kept_by_default = [await upload(alice, bytes([i]) * 10) for i in range(4)]
    elsewhere = await alice.create_room()
    for mxc in (only_old, shared, protected):
        await send_image(alice, room_id, mxc)
    await admin.admin("POST", f"/v1/media/protect/{q(protected.rsplit('/', 1)[1])}", {})
    boundary = await alice.send(room_id, "boundary")
    await send_image(alice, elsewhere, shared)
    await alice.send(room_id, "new")

    started = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}/{q(boundary)}",
                                {"delete_local_events": True, "delete_media": True})
    assert (await wait_for_status(admin, f"/v1/purge_history_status/{started['purge_id']}"))["status"] == "complete"
    assert not await media_exists(admin, only_old)
    assert await media_exists(admin, shared) and await media_exists(admin, protected)
    assert await media_exists(admin, kept_by_default)

    # Without `delete_media` (Synapse's behaviour) media stays.
    await send_image(alice, room_id, kept_by_default)
    boundary = await alice.send(room_id, "second boundary")
    started = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}/{q(boundary)}",
                                {"delete_local_events": True})
    assert (await wait_for_status(admin, f"/v1/purge_history_status/{started['purge_id']}"))["status"] == "complete"
    assert await media_exists(admin, kept_by_default)
    bad = await admin.admin("POST", f"/v1/purge_history/{q(room_id)}", {"purge_up_to_ts": 1, "delete_media": "yes"},
                            expect=400)
    assert "delete_media" in bad["error"]


async def test_deleting_a_room_with_delete_media_keeps_media_used_elsewhere_or_as_an_avatar(client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    doomed, elsewhere = await alice.create_room(), await alice.create_room()
    only_here, shared, avatar = [await upload(alice, bytes([i]) * 10) for i in range(3)]
    for mxc in (only_here, shared, avatar):
        await send_image(alice, doomed, mxc)
    await send_image(alice, elsewhere, shared)
    await alice.call("PUT", f"/profile/{q(alice.user_id)}/avatar_url", {"avatar_url": avatar})

    delete_id = (await admin.admin("DELETE", f"/v2/rooms/{q(doomed)}", {"delete_media": True}))["delete_id"]
    status = await wait_for_status(admin, f"/v2/rooms/delete_status/{delete_id}")
    assert status["status"] == "complete"
    assert status["shutdown_room"]["deleted_media"] == [only_here.rsplit("/", 1)[1]]
    assert not await media_exists(admin, only_here)
    assert await media_exists(admin, shared) and await media_exists(admin, avatar)
