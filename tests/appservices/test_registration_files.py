"""Registration files: parsed as bridges write them, every problem reported at start-up, one per line."""

from __future__ import annotations

import aiohttp
import pytest
import yaml

from appservices.registration import load_registrations
from homeserver.config import ConfigError, parse_config
from homeserver.server import HomeServer
from tests.appservices.support import AsClient, registration_yaml
from tests.conftest import make_test_config

MAUTRIX_STYLE = """\
id: telegram
url: http://localhost:29317
as_token: wfghWEGh3wgWHEf3478sHFWE
hs_token: ugw8243igya57aaABGFfgeyu
sender_localpart: telegrambot
namespaces:
  users:
  - exclusive: true
    regex: '@telegram_.*:example\\.org'
  aliases:
  - exclusive: true
    regex: '#telegram_.*:example\\.org'
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
receive_ephemeral: true
org.matrix.msc3202: true
io.element.msc4190: true
protocols: [telegram]
"""


def test_a_mautrix_style_registration_loads_with_every_field(tmp_path):
    path = tmp_path / "telegram.yaml"
    path.write_text(MAUTRIX_STYLE)
    [registration] = load_registrations([str(path)], "example.org")
    assert registration.id == "telegram"
    assert registration.url == "http://localhost:29317"
    assert registration.sender == "@telegrambot:example.org"
    assert registration.is_exclusive_user("@telegram_123:example.org")
    assert not registration.is_interested_in_user("@alice:example.org")
    assert registration.is_exclusive_alias("#telegram_chat:example.org")
    assert registration.rooms == ()
    assert registration.rate_limited is False
    assert (registration.receive_ephemeral, registration.unstable_ephemeral) == (True, True)
    assert (registration.msc3202, registration.msc4190) == (True, True)
    assert registration.protocols == ("telegram",)


def test_a_null_url_is_accepted_and_a_missing_url_is_not(tmp_path):
    registration_yaml(tmp_path, None, name="quiet")
    [quiet] = load_registrations([str(tmp_path / "quiet-registration.yaml")], "example.org")
    assert quiet.url is None
    raw = yaml.safe_load((tmp_path / "quiet-registration.yaml").read_text())
    del raw["url"]
    (tmp_path / "nourl.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_registrations([str(tmp_path / "nourl.yaml")], "example.org")
    assert error.value.problems == [f"{tmp_path / 'nourl.yaml'}: url: required, expected a URL or null"]


def test_every_problem_of_every_file_is_reported_on_its_own_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "id": "bad", "url": "ftp://nope", "as_token": "", "hs_token": "h", "sender_localpart": "bad bot",
        "namespaces": {"users": [{"regex": "@bad_(", "exclusive": True}, {"regex": "@x", "exclusive": "yes"}]},
        "rate_limited": "no", "org.matrix.msc3202": "on",
    }))
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as error:
        load_registrations([str(bad), str(missing)], "example.org")
    problems = error.value.problems
    assert [p.split(": ")[1] for p in problems] == [
        "as_token", "url", "sender_localpart", "namespaces.users[0].regex", "namespaces.users[1].exclusive",
        "rate_limited", "org.matrix.msc3202", "cannot read the registration file",
    ]
    assert all("\n" not in p for p in problems)


def test_duplicate_ids_and_tokens_are_refused(tmp_path):
    first = registration_yaml(tmp_path, None, name="one", as_token="same-token")
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = registration_yaml(second_dir, None, name="one", as_token="same-token")
    with pytest.raises(ConfigError) as error:
        load_registrations([first, second], "example.org")
    assert error.value.problems == [
        f"{second}: id: one is already used by {first}",
        f"{second}: as_token: (the same token) is already used by {first}",
        f"{second}: sender_localpart: @onebot:example.org is already used by {first}",
    ]


def test_the_config_option_takes_a_list_of_paths_relative_to_the_config_file(tmp_path):
    config = parse_config({"server_name": "example.org", "app_service_config_files": ["bridges/a.yaml"]},
                          base_dir=str(tmp_path))
    assert config.app_service_config_files == (str(tmp_path / "bridges" / "a.yaml"),)
    with pytest.raises(ConfigError) as error:
        parse_config({"server_name": "example.org", "app_service_config_files": "a.yaml"})
    assert error.value.problems == ['app_service_config_files: expected a list, got "a.yaml"']


async def test_the_server_refuses_to_start_with_a_broken_registration(tmp_path, database_config):
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\nurl: null\n")
    server = HomeServer(parse_config(make_test_config(tmp_path, database_config,
                                                      app_service_config_files=[str(broken)])))
    with pytest.raises(ConfigError) as error:
        await server.start()
    assert f"{broken}: as_token: required, expected a non-empty string" in error.value.problems
    assert server.db is None


async def test_the_sender_user_is_created_at_start_up(bridged_hs, bridge):
    assert await bridge.call("GET", "/account/whoami") == {"user_id": f"@bridgebot:{bridged_hs.config.server_name}",
                                                           "is_guest": False}
    profile = await bridge.call("GET", f"/profile/@bridgebot:{bridged_hs.config.server_name}")
    assert profile == {"displayname": "bridgebot"}


async def test_a_restarted_server_keeps_serving_the_appservice_and_its_ghosts(bridged_hs, bridge):
    ghost = f"@bridge_olga:{bridged_hs.config.server_name}"
    await bridge.register("bridge_olga", inhibit_login=True)
    await bridged_hs.stop()
    await bridged_hs.start()
    async with aiohttp.ClientSession(bridged_hs.base_url("client")) as session:
        assert (await AsClient(session).call("GET", "/account/whoami", user_id=ghost))["user_id"] == ghost
