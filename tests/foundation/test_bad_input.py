"""Bad input a fuzzer or a hostile client sends gets a Matrix error naming the problem, never a 500."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.accounts.helpers import bearer
from tests.support.rooms import User, new_user

HUGE = 97746853369262833664  # past 2^64: SQLite cannot bind it
PAST_SAFE = 2**53  # one past the spec's largest integer


async def raw(client: aiohttp.ClientSession, method: str, path: str, *, token: str | None = None,
              data: bytes | None = None, headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None) -> tuple[int, Any]:
    url = path if path.startswith("/_") else "/_matrix/client/v3" + path
    all_headers = {**(bearer(token) if token else {}), **(headers or {})}
    async with client.request(method, url, data=data, headers=all_headers, params=params) as resp:
        body = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


def assert_refused(status: int, body: Any, errcode: str, names: str | None = None, code: int = 400) -> None:
    assert status == code, (status, body)
    assert body["errcode"] == errcode, body
    if names is not None:
        assert names in body["error"], body


@pytest.fixture
async def alice(client: aiohttp.ClientSession) -> User:
    return await new_user(client, "alice")


@pytest.fixture
async def room(alice: User) -> str:
    return await alice.create_room()


# --- integers ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [str(HUGE), str(PAST_SAFE), str(-PAST_SAFE), "1_000", "+5", "٣"])
async def test_timestamp_to_event_refuses_a_ts_outside_the_safe_integer_range_naming_it(client, alice, room,
                                                                                        value):
    status, body = await raw(client, "GET", f"/_matrix/client/v1/rooms/{room}/timestamp_to_event", token=alice.token,
                             params={"ts": value, "dir": "b"})
    assert_refused(status, body, "M_INVALID_PARAM", "ts")


@pytest.mark.parametrize(("path", "param"), [
    ("/rooms/{room}/messages", "limit"),
    ("/_matrix/client/v1/rooms/{room}/relations/$x", "limit"),
    ("/sync", "timeout"),
    ("/notifications", "limit"),
    ("/publicRooms", "limit"),
])
async def test_integer_query_parameters_past_the_safe_range_are_refused_naming_them(client, alice, room, path,
                                                                                  param):
    status, body = await raw(client, "GET", path.format(room=room), token=alice.token,
                             params={param: str(HUGE), "dir": "b"})
    assert_refused(status, body, "M_INVALID_PARAM", param)


@pytest.mark.parametrize(("path", "param", "value"), [
    ("/sync", "since", f"s{HUGE}"),
    ("/rooms/{room}/messages", "from", f"t{HUGE}-1"),
    ("/rooms/{room}/messages", "from", f"s1_{HUGE}"),
    ("/notifications", "from", str(HUGE)),
    ("/publicRooms", "since", f"p{HUGE}"),
])
async def test_tokens_holding_integers_past_the_safe_range_are_refused_naming_them(client, alice, room, path,
                                                                                 param, value):
    status, body = await raw(client, "GET", path.format(room=room), token=alice.token,
                             params={param: value, "dir": "b"})
    assert_refused(status, body, "M_INVALID_PARAM", param)


async def test_a_search_batch_token_past_the_safe_range_is_refused(client, alice, room):
    status, body = await raw(client, "POST", "/search", token=alice.token, params={"next_batch": f"r{HUGE}"},
                             data=b'{"search_categories": {"room_events": {"search_term": "hello"}}}')
    assert_refused(status, body, "M_INVALID_PARAM", "next_batch")


@pytest.mark.parametrize(("method", "path", "body", "names"), [
    ("PUT", "/rooms/{room}/send/m.room.message/t1", '{"msgtype": "m.text", "body": "x", "n": %d}', "n"),
    ("PUT", "/rooms/{room}/state/m.room.power_levels", '{"users": {"@alice:x": %d}}', "users.@alice:x"),
    ("PUT", "/rooms/{room}/typing/{user}", '{"typing": true, "timeout": %d}', "timeout"),
    ("POST", "/user/{user}/filter", '{"room": {"timeline": {"limit": %d}}}', "room.timeline.limit"),
    ("PUT", "/user/{user}/account_data/x.y", '{"deep": [{"n": %d}]}', "deep[0].n"),
])
@pytest.mark.parametrize("number", [HUGE, 2**64 - 1, PAST_SAFE, -PAST_SAFE])
async def test_json_numbers_past_the_safe_integer_range_are_refused_naming_where(client, alice, room, method, path,
                                                                                 body, names, number):
    status, answer = await raw(client, method, path.format(room=room, user=quote(alice.user_id)),
                               token=alice.token, data=(body % number).encode())
    assert_refused(status, answer, "M_INVALID_PARAM", names)


async def test_a_filter_limit_past_the_safe_range_in_a_query_string_is_refused(client, alice, room):
    for path in ("/sync", f"/rooms/{room}/messages"):
        status, body = await raw(client, "GET", path, token=alice.token,
                                 params={"filter": '{"room": {"timeline": {"limit": 18446744073709551615}}}',
                                         "dir": "b"})
        assert_refused(status, body, "M_INVALID_PARAM", "limit")


async def test_the_largest_safe_integer_is_still_accepted(client, alice, room):
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/big", {"msgtype": "m.text", "body": "x",
                                                                         "n": 2**53 - 1, "m": -(2**53 - 1)})
    status, _ = await raw(client, "GET", f"/_matrix/client/v1/rooms/{room}/timestamp_to_event", token=alice.token,
                          params={"ts": str(2**53 - 1), "dir": "b"})
    assert status == 200


# --- UIA bodies ------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [{"type": {"a": 1}}, {"type": ["m.login.password"]}, {"type": 1},
                                  {"session": {"a": 1}}, "m.login.password", ["x"]])
@pytest.mark.parametrize(("method", "path", "extra"), [
    ("POST", "/delete_devices", {"devices": ["NOPE"]}),
    ("DELETE", "/devices/NOPE", {}),
    ("POST", "/account/password", {"new_password": "another horse"}),
    ("POST", "/account/deactivate", {}),
    ("POST", "/keys/device_signing/upload", {}),
    ("POST", "/register", {"username": "newcomer"}),
])
async def test_every_uia_endpoint_refuses_a_malformed_auth_object(client, alice, method, path, extra, auth):
    body = {**extra, "auth": auth}
    status, answer = await raw(client, method, path, token=alice.token, data=_json(body))
    assert_refused(status, answer, "M_BAD_JSON", "auth")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- createRoom --------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("preset", ["public_chat"]), ("preset", {"a": 1}), ("preset", 1), ("preset", "open_chat"),
    ("visibility", ["public"]), ("visibility", {"a": 1}), ("visibility", "secret"),
    ("invite", "@bob:x"), ("invite", [{"a": 1}]), ("invite", ["not a user"]),
    ("invite_3pid", {"a": 1}), ("invite_3pid", ["x"]), ("invite_3pid", [{"medium": "email"}]),
    ("initial_state", {"type": "m.room.topic"}), ("initial_state", [{"type": ["x"], "content": {}}]),
    ("initial_state", [{"type": "m.room.topic", "content": "x"}]),
    ("initial_state", [{"type": "m.room.topic", "content": {}, "state_key": 1}]),
    ("creation_content", ["x"]), ("power_level_content_override", ["x"]),
    ("room_version", 10), ("room_version", {"a": 1}), ("name", {"a": 1}), ("topic", ["x"]),
    ("room_alias_name", {"a": 1}), ("is_direct", "yes"),
])
async def test_create_room_refuses_each_field_of_the_wrong_shape_naming_it(client, alice, field, value):
    status, body = await raw(client, "POST", "/createRoom", token=alice.token, data=_json({field: value}))
    assert 400 <= status < 500, (status, body)
    assert body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_UNSUPPORTED_ROOM_VERSION"), body
    assert field in body["error"], body


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/presence/{user}/status", {"presence": ["online"]}),
    ("PUT", "/presence/{user}/status", {"presence": {"a": 1}}),
    ("PUT", "/directory/list/room/{room}", {"visibility": ["public"]}),
    ("POST", "/search", {"search_categories": {"room_events": {"search_term": "x", "order_by": ["rank"]}}}),
    ("POST", "/search", {"search_categories": {"room_events": {"search_term": "x", "keys": [["content.body"]]}}}),
    ("PUT", "/rooms/{room}/state/m.room.member/{user}", {"membership": ["join"]}),
    ("POST", "/login", {"type": {"a": 1}}),
    ("POST", "/login", {"type": "m.login.password", "identifier": {"type": {"a": 1}}, "password": "x"}),
    ("PUT", "/pushrules/global/override/r1", {"actions": [["notify"]], "conditions": []}),
    ("POST", "/account/3pid/delete", {"medium": ["email"], "address": "a@b"}),
])
async def test_membership_tests_on_unvalidated_values_answer_400_not_500(client, alice, room, method, path, body):
    status, answer = await raw(client, method, path.format(room=room, user=quote(alice.user_id)),
                               token=alice.token, data=_json(body))
    assert 400 <= status < 500, (status, answer)
    assert "errcode" in answer, answer


# --- U+0000 -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "body", "names"), [
    ("PUT", "/rooms/{room}/send/m.room.message/n1", '{"msgtype": "m.text", "body": "a\\u0000b"}', "body"),
    ("PUT", "/rooms/{room}/state/m.room.topic", '{"topic": "a\\u0000b"}', "topic"),
    ("PUT", "/profile/{user}/displayname", '{"displayname": "a\\u0000b"}', "displayname"),
    ("PUT", "/user/{user}/account_data/x.y", '{"a\\u0000": 1}', "a"),
    ("PUT", "/user/{user}/rooms/{room}/account_data/x.y", '{"v": ["\\u0000"]}', "v[0]"),
    ("POST", "/createRoom", '{"name": "\\u0000"}', "name"),
    ("PUT", "/devices/{device}", '{"display_name": "x\\u0000"}', "display_name"),
])
async def test_nul_in_a_json_string_is_refused_the_same_on_both_engines(client, alice, room, method, path, body,
                                                                       names):
    status, answer = await raw(client, method, path.format(room=room, user=quote(alice.user_id),
                                                           device=alice.device_id),
                               token=alice.token, data=body.encode())
    assert_refused(status, answer, "M_BAD_JSON", names)


@pytest.mark.parametrize(("method", "path", "names"), [
    ("PUT", "/rooms/{room}/state/m.room.topic/a%00b", "stateKey"),
    ("PUT", "/rooms/{room}/send/m.x%00y/n2", "eventType"),
    ("PUT", "/user/{user}/account_data/x%00y", "type"),
    ("GET", "/profile/%40a%00b%3Ax", "user_id"),
])
async def test_nul_in_a_path_part_is_refused_naming_it(client, alice, room, method, path, names):
    url = "/_matrix/client/v3" + path.format(room=quote(room), user=quote(alice.user_id))
    async with client.request(method, aiohttp.client.URL(url, encoded=True), data=b"{}",
                              headers=bearer(alice.token)) as resp:
        assert_refused(resp.status, await resp.json(), "M_INVALID_PARAM", names)


async def test_nul_in_a_query_parameter_is_refused_naming_it(client, alice, room):
    status, body = await raw(client, "GET", f"/rooms/{room}/messages", token=alice.token,
                             params={"from": "s1\x00", "dir": "b"})
    assert_refused(status, body, "M_INVALID_PARAM", "from")


# --- empty bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/createRoom"),
    ("POST", "/register"),
    ("POST", "/knock/{room}"),
    ("PUT", "/rooms/{room}/redact/$nope/e1"),
    ("POST", "/rooms/{room}/report/$nope"),
    ("POST", "/rooms/{room}/report"),
    ("POST", "/account/deactivate"),
    ("PUT", "/directory/list/room/{room}"),
    ("POST", "/publicRooms"),
    ("POST", "/rooms/{room}/receipt/m.read/$nope"),
    ("PUT", "/rooms/{room}/send/m.room.message/e2"),
])
async def test_an_empty_body_where_the_spec_requires_an_object_is_m_not_json(client, alice, room, method, path):
    status, body = await raw(client, method, path.format(room=room), token=alice.token, data=b"")
    assert_refused(status, body, "M_NOT_JSON")


async def test_membership_endpoints_accept_an_empty_body_as_synapse_does(client, alice, room):
    bob = await new_user(client, "bob")
    status, body = await raw(client, "POST", f"/rooms/{room}/invite", token=alice.token, data=b"")
    assert_refused(status, body, "M_MISSING_PARAM", "user_id")
    status, body = await raw(client, "POST", f"/rooms/{room}/kick", token=alice.token, data=b"")
    assert_refused(status, body, "M_MISSING_PARAM", "user_id")
    await alice.call("POST", f"/rooms/{room}/invite", {"user_id": bob.user_id})
    status, _ = await raw(client, "POST", f"/join/{room}", token=bob.token, data=b"")
    assert status == 200
    status, _ = await raw(client, "POST", f"/rooms/{room}/leave", token=bob.token, data=b"")
    assert status == 200


# --- access tokens ---------------------------------------------------------------------------

async def test_a_request_carrying_a_header_token_and_a_query_token_is_refused(client, alice):
    for query_token in ("unknown-token", alice.token):
        status, body = await raw(client, "GET", "/account/whoami", token=alice.token,
                                 params={"access_token": query_token})
        assert_refused(status, body, "M_MISSING_TOKEN", code=401)


async def test_a_request_with_two_query_tokens_is_refused(client, alice):
    async with client.get(f"/_matrix/client/v3/account/whoami?access_token={alice.token}&access_token=x") as resp:
        assert_refused(resp.status, await resp.json(), "M_MISSING_TOKEN", code=401)


async def test_either_token_alone_still_authenticates(client, alice):
    status, body = await raw(client, "GET", "/account/whoami", token=alice.token)
    assert (status, body["user_id"]) == (200, alice.user_id)
    status, body = await raw(client, "GET", "/account/whoami", params={"access_token": alice.token})
    assert (status, body["user_id"]) == (200, alice.user_id)


# --- requests aiohttp's parser refuses -------------------------------------------------------

PARSER_CASES = {
    "url over 8 KB": (b"GET /_matrix/client/versions?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                      "M_TOO_LARGE"),
    "header over 8 KB": (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
                         "M_TOO_LARGE"),
    "2,000 headers": (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n"
                      + b"".join(b"X-%d: 1\r\n" % i for i in range(2000)) + b"\r\n", "M_TOO_LARGE"),
    "unknown method": (b"BREW /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n", "M_UNRECOGNIZED"),
    "content-length with transfer-encoding": (
        b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "M_UNRECOGNIZED"),
    "negative content-length": (b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                                "M_UNRECOGNIZED"),
}


@pytest.mark.parametrize("case", list(PARSER_CASES))
async def test_requests_the_http_parser_refuses_get_a_matrix_error_and_one_log_line(hs, caplog, case):
    request, errcode = PARSER_CASES[case]
    host, port = hs.base_url("client").removeprefix("http://").rsplit(":", 1)
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], head
    assert b"application/json" in head.lower()
    answer = json.loads(body)
    assert answer["errcode"] == errcode, answer
    assert b"a" * 100 not in body  # the request is not echoed back
    refusals = [r for r in caplog.records if "unparsable request" in r.getMessage()]
    assert len(refusals) == 1
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


# --- errcode on every 4xx ----------------------------------------------------------------------

async def test_every_4xx_answer_carries_an_errcode(client, alice, room):
    """A battery of bad requests: each 4xx has an errcode, except the spec's UIA challenge shape."""
    token = alice.token
    cases: list[tuple[str, str, bytes | None, str | None]] = [
        ("POST", "/register", b"", None),
        ("POST", "/register", b"{}", None),
        ("POST", "/register", b'{"username": 5}', None),
        ("POST", "/register", b"[]", None),
        ("POST", "/login", b"{}", None),
        ("GET", "/account/whoami", None, None),
        ("GET", "/account/whoami", None, "bad-token"),
        ("GET", "/nope", None, token),
        ("PATCH", "/createRoom", b"{}", token),
        ("POST", "/createRoom", b"{", token),
        ("POST", "/delete_devices", b'{"devices": []}', token),
        ("POST", "/delete_devices", b'{"devices": "x"}', token),
        ("GET", f"/rooms/{room}/messages", None, token),
        ("GET", f"/rooms/{room}/messages?dir=x", None, token),
        ("GET", f"/rooms/{room}/event/$nope", None, token),
        ("GET", "/rooms/!nope:x/state", None, token),
        ("PUT", f"/rooms/{room}/send/m.room.message/{'x' * 300}", b"{}", token),
        ("GET", "/user/@someone:else/filter/1", None, token),
        ("GET", f"/profile/@nobody:{alice.user_id.split(':', 1)[1]}", None, token),
        ("POST", "/join/#nope:nowhere", b"{}", token),
        ("GET", "/sync?since=garbage", None, token),
        ("GET", "/sync?timeout=-1", None, token),
        ("GET", "/_matrix/media/v3/download/x/y", None, token),
        ("POST", "/_matrix/media/v3/upload", b"x" * 10, None),
        ("GET", "/_matrix/client/v1/media/config", None, None),
        ("POST", "/keys/query", b'{"device_keys": 5}', token),
    ]
    for method, path, data, tok in cases:
        status, body = await raw(client, method, path, token=tok, data=data)
        if 400 <= status < 500:
            assert isinstance(body, dict), (method, path, status, body)
            if status == 401 and "flows" in body:
                assert isinstance(body.get("session"), str), (method, path, body)  # the UIA challenge
            else:
                assert isinstance(body.get("errcode"), str), (method, path, status, body)
        else:
            assert status < 500, (method, path, status, body)
