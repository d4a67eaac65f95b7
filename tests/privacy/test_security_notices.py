"""Security notices: a login from a new IP or device gets a DM (and an e-mail with SMTP configured)
with a one-word command that signs that session out."""

from __future__ import annotations

import time

import pytest
from aiosmtpd.controller import Controller

from tests.accounts.helpers import login
from tests.admin.helpers import q
from tests.support.ports import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's handler name)
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


async def test_a_new_device_login_gets_a_dm_notice_and_an_email_whose_command_signs_it_out(make_privacy, smtp):
    port, inbox = smtp
    env = await make_privacy({"smtp": {"host": "127.0.0.1", "port": port, "from": "privacy@example.org"}})
    try:
        member = await env.member("iris")
        await env.admin.admin("PUT", f"/v2/users/{q(member.user_id)}",
                              {"threepids": [{"medium": "email", "address": "iris@example.org"}]})
        # The login record as the homeserver's /_huiskamer/admin/v1/logins reports it.
        intruder = await login(env.client, member.user_id, device_id="INTRUDER")
        await env.service.bot.login_notice({"user_id": member.user_id, "device_id": "INTRUDER", "ip": "203.0.113.9",
                                            "user_agent": "curl/8", "ts": int(time.time() * 1000),
                                            "new_ip": True, "new_device": True})
        notice = (await member.next_replies(until="afmelden-INTRUDER"))[-1]["content"]["body"]
        assert "203.0.113.9" in notice and "nieuw apparaat" in notice
        [(recipients, mail)] = inbox.messages
        assert recipients == ["iris@example.org"] and "afmelden-INTRUDER" in mail
        done = (await member.ask("afmelden-INTRUDER"))[0]["content"]["body"]
        assert "INTRUDER" in done
        devices = await env.admin.admin("GET", f"/v2/users/{q(member.user_id)}/devices")
        assert "INTRUDER" not in [d["device_id"] for d in devices["devices"]]
        async with env.client.get("/_matrix/client/v3/account/whoami",
                                  headers={"Authorization": f"Bearer {intruder['access_token']}"}) as resp:
            assert resp.status == 401
    finally:
        await env.close()


async def test_a_login_from_a_new_ip_reaches_the_member_as_a_dm(make_privacy):
    """The homeserver's login feed (`GET /_huiskamer/admin/v1/logins`) drives the notice. The promised
    latency (< 5 s) is measured by bench/privacy_export.py; here a generous wait, so load cannot fail it."""
    env = await make_privacy(http={"x_forwarded": True})  # the login comes "from" another address
    try:
        member = await env.member("joost")
        await member.wait_for(lambda: _running(env), what="the login watcher")
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": member.user_id},
                "password": "correct horse", "device_id": "LAPTOP2"}
        async with env.client.post("/_matrix/client/v3/login", json=body,
                                   headers={"X-Forwarded-For": "203.0.113.7"}) as resp:
            assert resp.status == 200
        replies = await member.next_replies(until="LAPTOP2", timeout=30.0)
        notice = replies[-1]["content"]["body"]
        assert "afmelden-LAPTOP2" in notice and "203.0.113.7" in notice
    finally:
        await env.close()


async def _running(env) -> bool:
    return env.service.login_watcher_state == "running"
