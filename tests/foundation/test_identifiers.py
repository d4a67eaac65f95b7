"""Identifier grammars match whole strings: a trailing newline never slips past `$`."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.events.signing import generate_signing_key
from homeserver.identifiers import (
    check_new_localpart,
    is_valid_event_id,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
)
from homeserver.media.ids import is_valid_media_id

VALID = {
    "user": "@alice:example.org",
    "room": "!abc:example.org",
    "event": "$abcDEF123_-",
    "alias": "#kamer-ä:example.org",
    "server": "example.org:8448",
}
CHECKS = {
    "user": is_valid_user_id,
    "room": is_valid_room_id,
    "event": is_valid_event_id,
    "alias": is_valid_room_alias,
    "server": is_valid_server_name,
}


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_each_grammar_accepts_its_valid_example(kind):
    assert CHECKS[kind](VALID[kind])


@pytest.mark.parametrize("kind", sorted(CHECKS))
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_each_grammar_rejects_trailing_whitespace(kind, suffix):
    assert not CHECKS[kind](VALID[kind] + suffix)


@pytest.mark.parametrize("value", ["@name-\n:example.org", "@na\nme:example.org", "@name:exa\nmple.org"])
def test_user_ids_with_an_embedded_newline_are_invalid(value):
    assert not is_valid_user_id(value)


def test_room_ids_without_a_server_name_are_valid_as_room_version_12_makes_them():
    assert is_valid_room_id("!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM")
    assert not is_valid_room_id("!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM\n")


@pytest.mark.parametrize("localpart", ["name-\n", "name\n", "name\r"])
def test_new_localparts_with_a_trailing_newline_are_m_invalid_username(localpart):
    with pytest.raises(MatrixError) as raised:
        check_new_localpart(localpart, "example.org")
    assert raised.value.errcode == "M_INVALID_USERNAME"


def test_media_ids_with_a_trailing_newline_are_invalid():
    assert is_valid_media_id("abcDEF")
    assert not is_valid_media_id("abcDEF\n")


def test_signing_key_versions_with_a_trailing_newline_are_refused():
    generate_signing_key("abc")
    with pytest.raises(ValueError):
        generate_signing_key("abc\n")


# --- the same inputs through the client API ------------------------------------------------------

async def test_a_profile_lookup_for_a_user_id_with_a_trailing_newline_is_m_invalid_param(hs, client):
    from tests.accounts.helpers import register

    await register(client, "alice")
    async with client.get(f"/_matrix/client/v3/profile/@alice:{hs.config.server_name}%0A") as resp:
        assert resp.status == 400
        assert (await resp.json())["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize("alias", ["%23kitchen:{server}%0A", "%23kitchen%0A:{server}"])
async def test_an_alias_with_a_newline_is_refused(hs, client, alias):
    from tests.support.rooms import new_user

    alice = await new_user(client, "alice")
    room_id = await alice.create_room()
    path = f"/directory/room/{alias.format(server=hs.config.server_name)}"
    body = await alice.call("PUT", path, {"room_id": room_id}, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"
