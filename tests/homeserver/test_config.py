"""Configuration loading: every problem is reported, one line each, naming key and expectation."""

from __future__ import annotations

import os

import pytest
import yaml

from homeserver.__main__ import main
from homeserver.config import ConfigError, apply_override, generate_config_dict, load_config, parse_config


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_a_minimal_config_gets_every_default():
    config = parse_config({"server_name": "example.org"})
    assert config.server_name == "example.org"
    assert config.database["engine"] == "sqlite"
    assert config.listeners[0].port == 8008
    assert config.public_baseurl == "http://example.org/"
    assert config.default_room_version == "11"


def test_a_port_that_is_not_an_integer_names_the_listener_and_the_value():
    raw = {"server_name": "example.org", "listeners": [{"port": "80a"}]}
    assert problems_of(raw) == ['listeners[0].port: expected an integer, got "80a"']


def test_every_problem_is_reported_at_once():
    raw = {
        "server_name": "example.org",
        "listeners": [{"port": 70000, "resources": ["client", "nonsense"]}],
        "logging": {"level": "LOUD"},
        "colour": "blue",
    }
    problems = problems_of(raw)
    assert "colour: unknown key" in problems
    assert "listeners[0].port: expected a value at most 65535, got 70000" in problems
    assert any(p.startswith("listeners[0].resources[1]: expected one of") for p in problems)
    assert any(p.startswith("logging.level: expected one of") for p in problems)
    assert len(problems) == 4


def test_missing_server_name_is_named():
    assert problems_of({}) == ["server_name: required key is missing"]


def test_postgres_needs_a_dsn():
    raw = {"server_name": "example.org", "database": {"engine": "postgres"}}
    assert problems_of(raw) == ["database.dsn: required for the postgres engine"]


def test_unknown_room_version_is_refused():
    problems = problems_of({"server_name": "x", "default_room_version": "99"})
    assert problems[0].startswith('default_room_version: expected one of')


def test_overrides_set_nested_keys_and_list_items_with_yaml_values():
    raw = {"server_name": "example.org", "listeners": [{"port": 8008}]}
    apply_override(raw, "registration.enabled=true")
    apply_override(raw, "listeners.0.port=8018")
    apply_override(raw, "listeners.1.port=9100")
    apply_override(raw, "listeners.1.resources=[metrics]")
    config = parse_config(raw)
    assert config.registration["enabled"] is True
    assert [(lst.port, lst.resources) for lst in config.listeners] == [
        (8018, ("client", "federation", "admin")),
        (9100, ("metrics",)),
    ]


@pytest.mark.parametrize("assignment", ["colour=blue", "registration.colour=1", "listeners.x.port=1"])
def test_an_override_of_an_unknown_key_is_an_error(assignment):
    with pytest.raises(ConfigError):
        apply_override({"server_name": "x"}, assignment)


def test_generate_config_then_check_config_round_trips(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["generate-config", "--server-name", "example.org", "--data-dir", str(data),
                 "--set", "listeners.0.port=8018", "--generate-keys"]) == 0
    config_file = data / "homeserver.yaml"
    assert main(["check-config", str(config_file)]) == 0
    config = load_config(str(config_file))
    assert config.listeners[0].port == 8018
    assert os.path.exists(config.signing_key_path)
    assert config.signing_key_path.startswith(str(data))
    assert config.registration["shared_secret"]


def test_generate_config_refuses_an_unknown_key(tmp_path, capsys):
    code = main(["generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path),
                 "--set", "nope.nothing=1"])
    assert code == 2
    assert "config error: nope.nothing: unknown key 'nope'" in capsys.readouterr().err


def test_check_config_prints_one_line_per_problem(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"server_name": "x", "listeners": [{"port": "80a"}], "extra": 1}))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["config error: extra: unknown key", 'config error: listeners[0].port: expected an integer, got "80a"']


def test_yaml_syntax_errors_are_reported_with_the_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("server_name: [unclosed\n")
    assert main(["check-config", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_set_reaches_the_database_options_the_engine_takes(tmp_path):
    raw = generate_config_dict("example.org", str(tmp_path), ["database.engine=postgres",
                                                             "database.dsn=postgresql://postgres@127.0.0.1/x",
                                                             "database.pool_max=3"])
    config = parse_config(raw)
    assert config.database["dsn"] == "postgresql://postgres@127.0.0.1/x" and config.database["pool_max"] == 3
    with pytest.raises(ConfigError) as error:
        parse_config(generate_config_dict("example.org", str(tmp_path), ["database.colour=blue"]))
    assert "colour" in str(error.value)
