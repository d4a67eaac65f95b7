"""`homeserver admin ...` against a running server, over HTTP with an admin token."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import pytest

from homeserver.__main__ import main
from tests.admin.helpers import new_admin, new_caller
from tests.media.helpers import MediaUser


async def run_cli(hs, token: str | None, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            base = ["admin", "--url", hs.base_url("client")] + (["--token", token] if token else [])
            return main([*base, *argv])

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_the_cli_lists_shows_and_deactivates_users_with_progress(hs, client):
    admin = await new_admin(client)
    bob = await new_caller(client, "bob")
    code, out, err = await run_cli(hs, admin.token, "users", "list")
    assert code == 0 and bob.user_id in out and admin.user_id in out and out.startswith("name")
    assert "Listing users" in err and "2 fetched" in err
    code, out, _ = await run_cli(hs, admin.token, "users", "show", bob.user_id)
    assert json.loads(out)["name"] == bob.user_id
    code, out, _ = await run_cli(hs, admin.token, "users", "deactivate", bob.user_id, "--erase")
    assert code == 0 and "Deactivated" in out
    details = await admin.admin("GET", f"/v2/users/{bob.user_id}")
    assert details["deactivated"] is True and details["erased"] is True


async def test_the_cli_lists_and_purges_rooms_and_quarantines_media(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room(name="Doomed")
    code, out, _ = await run_cli(hs, admin.token, "--json", "rooms", "list")
    assert [r["room_id"] for r in json.loads(out)] == [room_id]
    uploader = MediaUser(client, {"user_id": alice.user_id, "access_token": alice.token})
    mxc = await uploader.upload(b"bad", "text/plain")
    code, out, err = await run_cli(hs, admin.token, "media", "quarantine", mxc)
    assert code == 0 and "1 quarantined" in err
    assert (await uploader.download(mxc))[0] == 404
    code, out, _ = await run_cli(hs, admin.token, "media", "quarantine", "--user", alice.user_id)
    assert "Quarantined 1 media items" in out
    code, out, err = await run_cli(hs, admin.token, "rooms", "purge", room_id, "--block")
    assert code == 0 and json.loads(out)["status"] == "complete" and "Deleting room" in err
    assert (await admin.admin("GET", f"/v1/rooms/{room_id}", expect=404))["errcode"] == "M_NOT_FOUND"


async def test_the_cli_reports_refusals_and_missing_tokens(hs, client):
    await new_admin(client)
    bob = await new_caller(client, "bob")
    with pytest.raises(SystemExit) as refused:
        await run_cli(hs, bob.token, "users", "list")
    assert "403" in str(refused.value) and "M_FORBIDDEN" in str(refused.value)
    with pytest.raises(SystemExit) as missing:
        await run_cli(hs, None, "users", "list")
    assert "token" in str(missing.value)


async def test_the_cli_purges_a_room_with_the_media_only_it_used(hs, client):
    admin = await new_admin(client)
    alice = await new_caller(client, "alice")
    room_id = await alice.create_room()
    uploader = MediaUser(client, {"user_id": alice.user_id, "access_token": alice.token})
    mxc = await uploader.upload(b"picture", "image/png")
    await alice.send(room_id, "a picture", msgtype="m.image", url=mxc)
    code, out, err = await run_cli(hs, admin.token, "rooms", "purge", room_id, "--delete-media")
    assert code == 0 and json.loads(out)["shutdown_room"]["deleted_media"] == [mxc.rsplit("/", 1)[1]]
    assert (await uploader.download(mxc))[0] == 404
