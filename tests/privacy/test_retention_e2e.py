"""The retention engine against our homeserver, with the service's clock moved forward."""

from __future__ import annotations

from appservices.privacy.retention import DAY_MS
from tests.admin.helpers import q


async def test_an_idle_member_is_warned_then_erased_and_each_run_is_logged(make_privacy):
    env = await make_privacy({"retention": {"interval_hours": 0, "inactivity_days": 180, "warn_days_before": 14}})
    try:
        member = await env.member("kees")
        other = await env.member("lotte", dm=False)
        await env.hs.auth.flush_last_seen()
        env.clock.advance(170 * DAY_MS)
        first = await env.privacy_admin("POST", "/retention/run")
        assert first["warned"] == 2 and first["erased"] == 0  # both idle for 170 days (root and the bot exempt)
        warning = (await member.next_replies(until="verwijderd"))[-1]["content"]["body"]
        assert "niet gebruikt" in warning
        assert first["users_checked"] == 4
        again = await env.privacy_admin("POST", "/retention/run")
        assert again["warned"] == 0 and again["erased"] == 0  # warned once; the notice period runs
        env.clock.advance(15 * DAY_MS)
        second = await env.privacy_admin("POST", "/retention/run")
        assert second["erased"] == 2
        for user_id in (member.user_id, other.user_id):
            assert (await env.admin.admin("GET", f"/v2/users/{q(user_id)}"))["deactivated"] is True
        runs = (await env.privacy_admin("GET", "/retention/runs"))["runs"]
        assert [r["run_id"] for r in runs] == [second["run_id"], again["run_id"], first["run_id"]]
        assert runs[0]["counts"]["erased"] == second["erased"] and runs[0]["finished_ts"] is not None
        actions = [e["action"] for e in (await env.privacy_admin("GET", "/audit"))["entries"]]
        assert actions.count("retention.finished") == 3 and "retention.warned" in actions
    finally:
        await env.close()


async def test_room_history_older_than_its_retention_policy_is_purged(make_privacy):
    env = await make_privacy({"retention": {"interval_hours": 0, "inactivity_days": None,
                                            "room_min_lifetime_days": 1}})
    try:
        member = await env.member("mila", dm=False)
        room = (await member.caller.call("POST", "/createRoom", {"name": "Kort", "preset": "private_chat",
                                                                 "initial_state": [{
                                                                     "type": "m.room.retention", "state_key": "",
                                                                     "content": {"max_lifetime": 2 * DAY_MS}}]}))
        room_id = room["room_id"]
        for i in range(3):
            await member.caller.call("POST", f"/rooms/{q(room_id)}/send/m.room.message",
                                     {"msgtype": "m.text", "body": f"oud {i}"})
        env.clock.advance(3 * DAY_MS)
        run = await env.privacy_admin("POST", "/retention/run")
        assert run["rooms_purged"] == 1 and run["errors"] == 0
        page = await env.admin.admin("GET", f"/v1/rooms/{q(room_id)}/messages", dir="f", limit=100)
        bodies = [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]
        assert bodies == ["oud 2"]  # the room's newest event (its forward extremity) is never purged
    finally:
        await env.close()
