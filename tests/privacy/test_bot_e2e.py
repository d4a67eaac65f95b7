"""End to end over HTTP: our homeserver with the privacy service registered; members DM the bot."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import aiohttp

from appservices.privacy.attachment_crypto import decrypt_attachment
from appservices.privacy.export_format import EXPORT_CLASSES
from appservices.privacy.service import PrivacyService
from tests.admin.helpers import q


async def test_the_bot_joins_a_dm_from_a_local_member_and_answers_help_in_dutch(env):
    member = await env.member("anna")
    replies = await member.ask("help")
    assert "privacybot" in replies[0]["content"]["body"]
    assert replies[0]["content"]["msgtype"] == "m.notice"


async def test_english_command_words_get_english_replies_and_language_sticks(env):
    member = await env.member("bob")
    english = await member.ask("sessions please")
    assert "Your sessions" in english[0]["content"]["body"]
    dutch = await member.ask("hulp")
    assert "privacybot" in dutch[0]["content"]["body"]
    await member.ask("language en")
    assert "I am this server's privacy bot" in (await member.ask("hulp"))[0]["content"]["body"]


async def test_sessions_lists_devices_with_ips_and_signout_deletes_one(env):
    member = await env.member("carla")
    await env.admin.admin("POST", f"/v2/users/{q(member.user_id)}/devices", {"device_id": "OLDPHONE"}, expect=201)
    await env.hs.auth.flush_last_seen()  # the batched last-seen IPs
    listing = (await member.ask("sessies"))[0]["content"]["body"]
    assert member.caller.device_id in listing and "OLDPHONE" in listing and "127.0.0.1" in listing
    done = (await member.ask("afmelden OLDPHONE"))[0]["content"]["body"]
    assert "OLDPHONE" in done and "afgemeld" in done
    devices = await env.admin.admin("GET", f"/v2/users/{q(member.user_id)}/devices")
    assert [d["device_id"] for d in devices["devices"]] == [member.caller.device_id]
    audit = await env.privacy_admin("GET", "/audit", user_id=member.user_id)
    assert {"signout.requested", "signout.done", "sessions.listed"} <= {e["action"] for e in audit["entries"]}


async def fetch_export(env, member, file_event) -> tuple[dict, zipfile.ZipFile]:
    info = file_event["content"]["file"]
    server, media_id = info["url"].removeprefix("mxc://").split("/", 1)
    async with env.client.get(f"/_matrix/client/v1/media/download/{server}/{media_id}",
                              headers={"Authorization": f"Bearer {member.caller.token}"}) as resp:
        assert resp.status == 200
        ciphertext = await resp.read()
    archive = zipfile.ZipFile(io.BytesIO(decrypt_attachment(ciphertext, info)))
    return json.loads(archive.read("export.json")), archive


async def test_export_delivers_an_encrypted_zip_covering_every_data_class(env):
    member = await env.member("dirk")
    caller = member.caller
    await caller.call("PUT", f"/profile/{q(caller.user_id)}/displayname", {"displayname": "Dirk de Vries"})
    await env.admin.admin("PUT", f"/v2/users/{q(caller.user_id)}",
                          {"threepids": [{"medium": "email", "address": "dirk@example.org"}]})
    await caller.call("PUT", f"/user/{q(caller.user_id)}/account_data/nl.example.prefs", {"theme": "dark"})
    group = (await caller.call("POST", "/createRoom", {"name": "Buurt", "preset": "private_chat"}))["room_id"]
    public = (await caller.call("POST", "/createRoom", {"name": "Plein", "preset": "public_chat"}))["room_id"]
    await caller.call("POST", f"/rooms/{q(group)}/send/m.room.message",
                      {"msgtype": "m.text", "body": "zie https://example.org/buurt."})
    await caller.call("POST", f"/rooms/{q(public)}/send/m.room.message", {"msgtype": "m.text", "body": "hallo plein"})
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    async with env.client.post("/_matrix/media/v3/upload", data=picture,
                               headers={"Authorization": f"Bearer {caller.token}",
                                        "Content-Type": "image/png"}, params={"filename": "kat.png"}) as resp:
        assert resp.status == 200
        mxc = (await resp.json())["content_uri"]
    await member.say("privé bericht")
    await member.next_replies()  # the bot's "unknown command" answer to the DM message
    await env.hs.auth.flush_last_seen()  # the batched last-seen IPs

    replies = await member.ask("export", until="export-")
    file_event = next(e for e in replies if e["content"].get("msgtype") == "m.file")
    assert "url" not in file_event["content"]  # only the encrypted file: the key is in `file`
    export, archive = await fetch_export(env, member, file_event)

    assert "index.html" in archive.namelist()
    assert "Dirk de Vries" in archive.read("index.html").decode()
    for cls in EXPORT_CLASSES:
        assert cls in export, cls
    assert export["user_id"] == caller.user_id
    assert export["profile"]["displayname"] == "Dirk de Vries"
    assert [t["address"] for t in export["threepids"]] == ["dirk@example.org"]
    assert caller.device_id in [d["device_id"] for d in export["devices"]]
    assert any(c["ip"] == "127.0.0.1" for c in export["connections"])
    assert export["logins"], "the login log is exported"
    assert export["account_data"]["global"]["nl.example.prefs"] == {"theme": "dark"}
    assert "global" in export["push_rules"]
    kinds = {r["room_id"]: r["kind"] for r in export["rooms"]}
    assert kinds[group] == "group" and kinds[public] == "public" and kinds[member.room_id] == "private"
    bodies = {k: [e["content"].get("body") for e in v if e["type"] == "m.room.message"]
              for k, v in export["messages"].items()}
    assert "zie https://example.org/buurt." in bodies["group"]
    assert "hallo plein" in bodies["public"]
    assert "privé bericht" in bodies["private"]
    assert [link["url"] for link in export["links"]] == ["https://example.org/buurt"]
    media = [m for m in export["media"] if m["mxc"] == mxc]
    assert media and archive.read(media[0]["file"]) == picture
    assert export["payment_details"]["held"] is False
    assert any(r["kind"] == "export" for r in export["privacy_requests"])

    request = await env.privacy_admin("GET", f"/requests/{export['request_id']}")
    assert request["status"] == "done" and request["completed_ts"] >= request["created_ts"]


async def test_an_expired_export_is_deleted_from_the_homeserver(env):
    member = await env.member("eva")
    replies = await member.ask("export", until="export-")
    file_event = next(e for e in replies if e["content"].get("msgtype") == "m.file")
    server, media_id = file_event["content"]["file"]["url"].removeprefix("mxc://").split("/", 1)
    env.clock.advance(2 * 3600 * 1000)  # past export.expiry_hours

    async def gone() -> bool:
        async with env.client.get(f"/_matrix/client/v1/media/download/{server}/{media_id}",
                                  headers={"Authorization": f"Bearer {member.caller.token}"}) as resp:
            return resp.status == 404

    await member.wait_for(gone, what="the expired export to be deleted")
    audit = await env.privacy_admin("GET", "/audit", user_id=member.user_id)
    assert "export.expired" in [e["action"] for e in audit["entries"]]


async def test_the_admin_api_lists_open_requests_with_their_age_and_needs_its_token(env):
    member = await env.member("fenna")
    await member.ask("wis")  # waits for confirmation: an open request
    env.clock.advance(5000)
    listing = await env.privacy_admin("GET", "/requests")
    [request] = [r for r in listing["requests"] if r["user_id"] == member.user_id]
    assert request["kind"] == "erase" and request["status"] == "awaiting_confirmation"
    assert request["age_ms"] >= 5000
    assert (await env.privacy_admin("GET", "/requests", token="wrong", expect=401))["errcode"] == "M_UNKNOWN_TOKEN"
    async with aiohttp.ClientSession() as session, session.get(env.service.url + "/_privacy/admin/v1/audit") as resp:
        assert resp.status == 401 and (await resp.json())["errcode"] == "M_MISSING_TOKEN"


async def test_transactions_need_the_hs_token(env):
    async with aiohttp.ClientSession() as session:
        url = env.service.url + "/_matrix/app/v1/transactions/1"
        async with session.put(url, json={"events": []}) as resp:
            assert resp.status == 401
        async with session.put(url, json={"events": []}, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 403 and (await resp.json())["errcode"] == "M_FORBIDDEN"


async def test_erase_needs_the_confirmation_code_then_reports_what_was_removed_and_kept(env):
    member = await env.member("gijs")
    caller = member.caller
    group = (await caller.call("POST", "/createRoom", {"name": "Club", "preset": "private_chat"}))["room_id"]
    sent = await caller.call("POST", f"/rooms/{q(group)}/send/m.room.message", {"msgtype": "m.text", "body": "geheim"})
    confirm = (await member.ask("wis"))[0]["content"]["body"]
    code = confirm.split("'wis ")[1].split("'")[0]
    wrong = (await member.ask("wis ZZZZZZ"))[0]["content"]["body"]
    assert "klopt niet" in wrong
    assert not (await env.admin.admin("GET", f"/v2/users/{q(caller.user_id)}"))["deactivated"]

    replies = await member.ask(f"wis {code}", until="Bewaard")
    report = replies[-1]["content"]["body"]
    assert "Verwijderd" in report and "privacy_records" in report
    user = await env.admin.admin("GET", f"/v2/users/{q(caller.user_id)}")
    assert user["deactivated"] is True
    event = await env.admin.admin("GET", f"/v1/fetch_event/{q(sent['event_id'])}", expect=None)
    assert event.get("errcode") == "M_NOT_FOUND" or event["event"]["content"] == {}  # redacted or purged
    [request] = [r for r in (await env.service.store.requests_of(caller.user_id)) if r.kind == "erase"
                 and r.status == "done"]
    assert request.completed_ts is not None and "removed" in request.detail
    actions = [e["action"] for e in (await env.privacy_admin("GET", "/audit", user_id=caller.user_id))["entries"]]
    assert actions.index("erase.requested") < actions.index("erase.bad_code") < actions.index("erase.confirmed") \
        < actions.index("erase.completed")


async def test_consent_shows_the_policy_records_acceptance_once_and_serves_the_document(consent_env):
    env = consent_env
    member = await env.member("hanna")
    status = (await member.ask("toestemming"))[0]["content"]["body"]
    assert "versie 1" in status and "nog niet ingestemd" in status
    url = status.split(" staat op ")[1].split()[0]
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200 and "Privacybeleid 1" in await resp.text()
    recorded = (await member.ask("toestemming akkoord"))[0]["content"]["body"]
    assert "versie 1" in recorded and "vastgelegd" in recorded
    again = (await member.ask("consent accept"))[0]["content"]["body"]
    assert "already agreed to version 1" in again
    assert [r["version"] for r in await env.service.store.consents_of(member.user_id)] == ["1"]
    state = (await member.ask("consent"))[0]["content"]["body"]
    assert "You agreed on" in state


async def test_a_large_export_sends_progress_messages(env):
    member = await env.member("olga")
    room = (await member.caller.call("POST", "/createRoom", {"name": "Veel"}))["room_id"]
    for i in range(60):  # the tests' export.progress_every is 50
        await member.caller.call("PUT", f"/rooms/{q(room)}/send/m.room.message/p{i}",
                                 {"msgtype": "m.text", "body": f"bericht {i}"})
    replies = await member.ask("export", until="export-")
    bodies = [e["content"]["body"] for e in replies]
    assert any("berichten verzameld" in b for b in bodies), bodies
    export, _ = await fetch_export(env, member, next(e for e in replies if e["content"].get("msgtype") == "m.file"))
    sent = [e for e in export["messages"]["group"] if e["room_id"] == room and e["type"] == "m.room.message"]
    assert len(sent) == 60


async def test_an_unconsented_member_is_refused_elsewhere_but_talks_to_the_bot_and_consents(consent_env):
    """The homeserver's consent tracking (`PUT /_huiskamer/admin/v1/consent/policy`) blocks and unblocks."""
    env = consent_env
    member = await env.member("piet")  # registering signs in: the bot opens a DM and asks
    [asked] = member.consent_request
    assert "versie 1" in asked["content"]["body"] and "toestemming akkoord" in asked["content"]["body"]
    refused = await member.caller.call("POST", "/createRoom", {"preset": "private_chat"}, expect=403)
    assert refused["errcode"] == "M_CONSENT_NOT_GIVEN"
    await env.admin.call("PUT", f"/_huiskamer/admin/v1/users/{q(env.admin.user_id)}/consent", {"version": "1"})
    room = (await env.admin.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await member.caller.call("POST", f"/join/{q(room)}", {}, expect=None)
    refused = await member.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                       {"msgtype": "m.text", "body": "hoi"}, expect=403)
    assert refused["errcode"] == "M_CONSENT_NOT_GIVEN"
    await member.ask("toestemming akkoord")
    record = await env.admin.call("GET", f"/_huiskamer/admin/v1/users/{q(member.user_id)}/consent")
    assert record["version"] == "1"
    await member.caller.call("POST", f"/join/{q(room)}", {})
    await member.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message", {"msgtype": "m.text", "body": "hoi"})


async def test_an_export_a_restart_interrupted_runs_again_when_the_service_is_back(env):
    member = await env.member("quinten")
    store = env.service.store
    request = await store.create_request(env.clock(), member.user_id, "export", status="in_progress")
    await env.service.stop()
    again = PrivacyService(env.service.config, clock=env.clock, login_poll_timeout_ms=2000)
    await again.start()
    try:
        await asyncio.wait_for(again.ready.wait(), 30)
        replies = await member.next_replies(until="export-", timeout=180)
        assert request.request_id in replies[0]["content"]["body"]
        assert (await again.store.get_request(request.request_id)).status == "done"
        actions = [e["action"] for e in await again.store.audit_entries(user_id=member.user_id)]
        assert "export.resumed" in actions
    finally:
        await again.stop()


async def test_the_bot_leaves_a_room_with_other_members_and_answers_nothing_there(env):
    member = await env.member("rob", dm=False)
    other = await env.member("sanne", dm=False)
    room = (await member.caller.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await other.caller.call("POST", f"/join/{q(room)}", {})
    await member.caller.call("POST", f"/rooms/{q(room)}/invite", {"user_id": env.bot})

    async def refused() -> bool:
        entries = (await env.privacy_admin("GET", "/audit", user_id=member.user_id))["entries"]
        return "dm.refused" in [e["action"] for e in entries]

    await member.wait_for(refused, what="the bot to refuse the group room")
    members = await member.caller.call("GET", f"/rooms/{q(room)}/joined_members")
    assert env.bot not in members["joined"]
    assert await env.service.store.dm_room(member.user_id) is None


async def test_with_the_homeservers_privacy_endpoints_the_export_misses_nothing(env):
    """Through `GET /_huiskamer/admin/v1/users/{userId}/events` and the other endpoints of ours."""
    member = await env.member("tess")
    room = (await member.caller.call("POST", "/createRoom", {"name": "Weg"}))["room_id"]
    sent = await member.caller.call("POST", f"/rooms/{q(room)}/send/m.room.message",
                                    {"msgtype": "m.text", "body": "spijt"})
    await member.caller.call("PUT", f"/rooms/{q(room)}/redact/{q(sent['event_id'])}/r1", {})
    await env.hs.auth.flush_last_seen()
    replies = await member.ask("export", until="export-")
    export, _ = await fetch_export(env, member, next(e for e in replies if e["content"].get("msgtype") == "m.file"))
    assert export["unreachable"] == {}
    [redacted] = [e for e in export["messages"]["group"] if e["event_id"] == sent["event_id"]]
    assert redacted["redacted"] is True
    assert export["consent"]["homeserver"] is not None or export["consent"]["records"] == []


async def test_with_the_homeservers_erase_task_the_report_lists_its_classes(env):
    """Through `POST /_huiskamer/admin/v1/users/{userId}/erase`."""
    member = await env.member("umar")
    confirm = (await member.ask("erase"))[0]["content"]["body"]
    code = confirm.split("'erase ")[1].split("'")[0]
    await member.ask(f"erase {code}", until="Kept")
    [request] = [r for r in await env.service.store.requests_of(member.user_id) if r.kind == "erase"]
    assert request.status == "done" and request.detail["method"] == "huiskamer"
    assert "redacted_originals" in request.detail["removed"]
    assert (await env.admin.admin("GET", f"/v2/users/{q(member.user_id)}"))["deactivated"] is True
