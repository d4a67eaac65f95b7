"""Server names by the appendix grammar: host, port, IPv4 and IPv6 literals."""

from __future__ import annotations

import ipaddress

import pytest

from homeserver.identifiers import parse_server_name


@pytest.mark.parametrize("name, host, port, url_host", [
    ("matrix.org", "matrix.org", None, "matrix.org"),
    ("Matrix.ORG:8888", "matrix.org", 8888, "matrix.org"),
    ("1.2.3.4", "1.2.3.4", None, "1.2.3.4"),
    ("127.0.0.2:8448", "127.0.0.2", 8448, "127.0.0.2"),
    ("[1234:5678::abcd]", "1234:5678::abcd", None, "[1234:5678::abcd]"),
    ("[::1]:65535", "::1", 65535, "[::1]"),
    ("localhost", "localhost", None, "localhost"),
])
def test_valid_server_names_split_into_host_and_port(name, host, port, url_host):
    parsed = parse_server_name(name)
    assert (parsed.host, parsed.port, parsed.host_for_url) == (host, port, url_host)
    assert (parsed.ip is not None) == (host[0].isdigit() or ":" in host)
    if parsed.ip is not None:
        assert parsed.ip == ipaddress.ip_address(host)


@pytest.mark.parametrize("name, problem", [
    ("1.2.3.256", "not an IPv4 address"),
    ("[1.2.3.4]", "not an IPv6 address"),
    ("[::g]", "not a valid server name"),
    ("example.org:0", "port must be"),
    ("example.org:65536", "port must be"),
    ("example.org:", "not a valid server name"),
    ("a..example.org", "not a valid DNS name"),
    ("-bad.example.org", "not a valid DNS name"),
    ("under_score.example", "not a valid server name"),
    ("", "not a valid server name"),
])
def test_invalid_server_names_are_refused_with_the_reason(name, problem):
    with pytest.raises(ValueError, match=problem):
        parse_server_name(name)
