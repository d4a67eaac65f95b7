"""The `federation` config section, and the shared outbound IP block list it feeds."""

from __future__ import annotations

import ipaddress

import pytest

from federation.policy import ServerPolicy
from federation.wiring import federation_ip_allowlist
from homeserver.config import ConfigError, parse_config
from homeserver.ip_blocklist import BlockedAddress, check_host, is_address_allowed


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_federation_defaults_are_on_with_private_ranges_blocked():
    config = parse_config({"server_name": "example.org", "data_dir": "/srv/hs"})
    section = config.section("federation")
    assert section["enabled"] is True
    assert section["allow_loopback"] is False and section["allow_private_ranges"] is False
    assert section["trusted_key_servers"] == []
    assert section["server_allowlist"] is None and section["server_denylist"] == []
    assert section["min_retry_interval_ms"] == 60_000
    assert section["old_signing_keys_path"] == "/srv/hs/old_signing_keys.json"
    assert federation_ip_allowlist(section) == []


def test_bad_federation_settings_are_each_named():
    raw = {"server_name": "example.org", "federation": {
        "ip_range_allowlist": ["10.0.0.0/8", "not-a-range"],
        "server_denylist": ["ok.example", "bad name!"],
        "trusted_key_servers": [{"verify_keys": {}}],
        "min_retry_interval_ms": -1,
        "allow_loopback": "yes",
    }}
    problems = problems_of(raw)
    assert 'federation.ip_range_allowlist[1]: "not-a-range" is not an IP range (CIDR)' in problems
    assert 'federation.server_denylist[1]: "bad name!" is not a server name' in problems
    assert "federation.trusted_key_servers[0].server_name: required key is missing" in problems
    assert any(p.startswith("federation.min_retry_interval_ms:") for p in problems)
    assert any(p.startswith("federation.allow_loopback:") for p in problems)


def test_loopback_and_private_toggles_open_exactly_their_ranges():
    def allowed(section_overrides: dict, address: str) -> bool:
        section = parse_config({"server_name": "e.org", "federation": section_overrides}).section("federation")
        return is_address_allowed(ipaddress.ip_address(address), federation_ip_allowlist(section))

    assert not allowed({}, "127.0.0.1")
    assert allowed({"allow_loopback": True}, "127.0.0.2")
    assert allowed({"allow_loopback": True}, "::1")
    assert not allowed({"allow_loopback": True}, "10.1.2.3")
    assert allowed({"allow_private_ranges": True}, "10.1.2.3")
    assert allowed({"allow_private_ranges": True}, "fd00::5")
    assert not allowed({"allow_private_ranges": True}, "127.0.0.1")
    assert allowed({"ip_range_allowlist": ["169.254.0.0/16"]}, "169.254.1.1")
    assert allowed({}, "8.8.8.8")


async def test_ip_literals_are_checked_without_dns_and_ipv4_mapped_addresses_too():
    with pytest.raises(BlockedAddress):
        await check_host("127.0.0.1", [])
    with pytest.raises(BlockedAddress):
        await check_host("[::ffff:10.0.0.1]", [])
    assert await check_host("8.8.8.8", []) == [ipaddress.ip_address("8.8.8.8")]


def test_server_lists_match_names_ports_and_wildcards():
    deny = ServerPolicy(None, ["evil.example", "*.spam.example", "127.0.0.2"])
    assert deny.denial_reason("evil.example:8448") is not None
    assert deny.denial_reason("a.spam.example") is not None
    assert deny.denial_reason("127.0.0.2:1234") is not None
    assert deny.denial_reason("good.example") is None
    allow = ServerPolicy(["friends.example", "[::1]"], [])
    assert allow.denial_reason("friends.example:443") is None
    assert allow.denial_reason("[::1]:8448") is None
    assert "allow list" in allow.denial_reason("stranger.example")
