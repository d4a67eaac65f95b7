"""Setting the service up: generated config and registration, and the bot made a server admin."""

from __future__ import annotations

import yaml

from appservices.privacy.__main__ import main
from appservices.privacy.config import load_privacy_config
from tests.admin.helpers import q
from tests.conftest import SHARED_SECRET


def test_generate_config_writes_a_loadable_config_and_the_registration_beside_it(tmp_path):
    homeserver_yaml = tmp_path / "homeserver.yaml"
    homeserver_yaml.write_text(yaml.safe_dump({"registration": {"shared_secret": "s3cret"}}))
    path = tmp_path / "data" / "privacy.yaml"
    assert main(["--config", str(path), "--generate-config", "--server-name", "example.org",
                 "--homeserver-config", str(homeserver_yaml)]) == 0
    config = load_privacy_config(str(path))
    assert config.server_name == "example.org" and config.homeserver_shared_secret == "s3cret"
    registration = yaml.safe_load((tmp_path / "data" / "privacy-registration.yaml").read_text())
    assert registration["as_token"] == config.as_token and registration["hs_token"] == config.hs_token
    assert registration["namespaces"]["users"] == [{"regex": r"@privacy:example\.org", "exclusive": True}]
    again = tmp_path / "again.yaml"
    assert main(["--config", str(path), "--generate-registration", str(again)]) == 0
    assert yaml.safe_load(again.read_text()) == registration


def test_homeserver_generate_config_writes_both_configs_and_the_registration_it_names(tmp_path):
    from homeserver.__main__ import main as homeserver_main
    from homeserver.config import load_config

    data = tmp_path / "data"
    assert homeserver_main(["generate-config", "--server-name", "example.org", "--data-dir", str(data),
                            "--set", "listeners.0.port=8018", "--privacy-port", "8020"]) == 0
    config = load_config(str(data / "homeserver.yaml"))
    assert config.app_service_config_files == (str(data / "privacy-registration.yaml"),)
    privacy = load_privacy_config(str(data / "privacy.yaml"))
    assert privacy.server_name == "example.org" and privacy.homeserver_url == "http://127.0.0.1:8018"
    assert privacy.homeserver_shared_secret == config.registration["shared_secret"]
    assert privacy.public_url == "http://127.0.0.1:8020"
    registration = yaml.safe_load((data / "privacy-registration.yaml").read_text())
    assert (registration["as_token"], registration["url"]) == (privacy.as_token, privacy.public_url)
    # An older data directory without the service: its config alone, homeserver.yaml untouched.
    (data / "privacy.yaml").unlink()
    (data / "privacy-registration.yaml").unlink()
    before = (data / "homeserver.yaml").read_text()
    assert homeserver_main(["generate-config", "--privacy-only", "--data-dir", str(data)]) == 0
    assert load_privacy_config(str(data / "privacy.yaml")).as_token != privacy.as_token
    assert (data / "homeserver.yaml").read_text() == before
    # Opting out writes homeserver.yaml alone, naming no registration.
    bare = tmp_path / "bare"
    assert homeserver_main(["generate-config", "--server-name", "example.org", "--data-dir", str(bare),
                            "--no-privacy-service"]) == 0
    assert load_config(str(bare / "homeserver.yaml")).app_service_config_files == ()
    assert not (bare / "privacy.yaml").exists()


def test_a_bad_config_is_reported_and_the_process_exits_1(tmp_path, capsys):
    path = tmp_path / "privacy.yaml"
    path.write_text("server_name: x\n")
    assert main(["--config", str(path)]) == 1
    assert "as_token" in capsys.readouterr().err


async def test_with_the_shared_secret_the_service_makes_its_bot_a_server_admin(make_privacy):
    env = await make_privacy({"homeserver_shared_secret": SHARED_SECRET}, promote_bot=False)
    try:
        assert (await env.admin.admin("GET", f"/v1/users/{q(env.bot)}/admin")) == {"admin": True}
        helpers = (await env.admin.admin("GET", "/v2/users", deactivated="true", name="privacy-setup"))["users"]
        assert [u["deactivated"] for u in helpers] == [True]
        member = await env.member("nina")
        assert "Je sessies" in (await member.ask("sessies"))[0]["content"]["body"]  # admin calls work
    finally:
        await env.close()


def test_the_sample_config_is_valid():
    config = load_privacy_config("privacy.sample.yaml")
    assert config.language == "nl" and config.retention.inactivity_days == 182
