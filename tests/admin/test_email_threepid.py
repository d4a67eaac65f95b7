"""Adding an e-mail address: a validation mail through a real (local aiosmtpd) SMTP server, its link,
then `/account/3pid/add`; and the errors the spec names."""

from __future__ import annotations

import asyncio
import email
import re
from collections.abc import Iterator
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from tests.accounts.helpers import register
from tests.accounts.test_devices import V3, call, with_password
from tests.support.ports import free_port

LINK_RE = re.compile(r"https?://\S+submit_token\?\S+")


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    async def wait_for(self, count: int) -> Message:
        for _ in range(500):
            if len(self.messages) >= count:
                return self.messages[count - 1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no message number {count} arrived")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


async def follow(client: aiohttp.ClientSession, link: str) -> tuple[int, str]:
    """Open the mailed link against the server under test (the configured base URL is not loopback)."""
    parts = urlsplit(link)
    async with client.get(f"{parts.path}?{parts.query}", allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location", "") or await resp.text()


@pytest.fixture
async def mail_hs(make_homeserver, smtp):
    inbox, port = smtp
    hs = await make_homeserver(email={"smtp_host": "127.0.0.1", "smtp_port": port,
                                      "notif_from": "Huiskamer <noreply@huiskamer.test>", "app_name": "Huiskamer"})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        yield client, inbox


async def test_a_member_adds_an_e_mail_address_by_following_the_mailed_link(mail_hs):
    client, inbox = mail_hs
    user = await register(client, "anouk")
    request = {"client_secret": "secret-1", "email": "Anouk@Example.org", "send_attempt": 1}
    status, body = await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None, request)
    assert status == 200 and body["sid"]
    message = await inbox.wait_for(1)
    assert message["To"] == "anouk@example.org" and "Huiskamer" in message["Subject"]
    assert message["From"] == "Huiskamer <noreply@huiskamer.test>"
    link = LINK_RE.search(text_of(message)).group(0)
    # Before the link is followed the address cannot be added.
    add = {"client_secret": "secret-1", "sid": body["sid"]}
    status, early = await with_password(client, "POST", f"{V3}/account/3pid/add", user["access_token"],
                                        user["user_id"], add)
    assert (status, early["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    status, page = await follow(client, link)
    assert status == 200 and "confirmed" in page
    status, added = await with_password(client, "POST", f"{V3}/account/3pid/add", user["access_token"],
                                        user["user_id"], add)
    assert (status, added) == (200, {})
    status, listed = await call(client, "GET", f"{V3}/account/3pid", user["access_token"])
    assert [(t["medium"], t["address"]) for t in listed["threepids"]] == [("email", "anouk@example.org")]
    assert listed["threepids"][0]["validated_at"] > 0
    # The address now belongs to her: nobody else can start validating it.
    status, taken = await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None,
                               {**request, "client_secret": "other"})
    assert (status, taken["errcode"]) == (400, "M_THREEPID_IN_USE")
    status, deleted = await call(client, "POST", f"{V3}/account/3pid/delete", user["access_token"],
                                 {"medium": "email", "address": "anouk@example.org"})
    assert status == 200 and deleted["id_server_unbind_result"] == "no-support"
    assert (await call(client, "GET", f"{V3}/account/3pid", user["access_token"]))[1] == {"threepids": []}


async def test_a_retried_request_sends_once_and_a_higher_send_attempt_sends_again(mail_hs):
    client, inbox = mail_hs
    request = {"client_secret": "secret-2", "email": "bram@example.org", "send_attempt": 1,
               "next_link": "https://app.example/done"}
    first = (await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None, request))[1]
    again = (await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None, request))[1]
    assert first == again
    await inbox.wait_for(1)
    await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None, {**request, "send_attempt": 2})
    second = await inbox.wait_for(2)
    assert len(inbox.messages) == 2
    status, location = await follow(client, LINK_RE.search(text_of(second)).group(0))
    assert (status, location) == (302, "https://app.example/done")


async def test_a_wrong_token_or_secret_fails_and_a_validated_session_serves_only_its_secret(mail_hs):
    client, inbox = mail_hs
    user = await register(client, "cas")
    request = {"client_secret": "secret-3", "email": "cas@example.org", "send_attempt": 1}
    sid = (await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None, request))[1]["sid"]
    link = LINK_RE.search(text_of(await inbox.wait_for(1))).group(0)
    async with client.get(f"/_matrix/client/unstable/add_threepid/email/submit_token?token=bad"
                          f"&client_secret=secret-3&sid={sid}") as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_THREEPID_AUTH_FAILED"
    async with client.get("/_matrix/client/unstable/add_threepid/email/submit_token?sid=x") as resp:
        assert resp.status == 400 and (await resp.json())["errcode"] == "M_MISSING_PARAM"
    assert (await follow(client, link))[0] == 200
    status, wrong = await with_password(client, "POST", f"{V3}/account/3pid/add", user["access_token"],
                                        user["user_id"], {"client_secret": "guess", "sid": sid})
    assert (status, wrong["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    status, bad = await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None,
                             {**request, "email": "not an address"})
    assert (status, bad["errcode"]) == (400, "M_INVALID_PARAM") and bad["error"].startswith("email")


async def test_an_unreachable_smtp_server_is_an_error_not_a_silent_success(make_homeserver):
    hs = await make_homeserver(email={"smtp_host": "127.0.0.1", "smtp_port": free_port(), "timeout_s": 5})
    async with aiohttp.ClientSession(hs.base_url("client")) as client:
        status, body = await call(client, "POST", f"{V3}/account/3pid/email/requestToken", None,
                                  {"client_secret": "s", "email": "d@example.org", "send_attempt": 1})
        assert status == 500 and body["errcode"] == "M_UNKNOWN"
