"""Server ACL evaluation (m.room.server_acl), in the order the event's schema gives."""

from __future__ import annotations

import pytest

from federation.server_acl import server_allowed_by_acl

CASES = [
    ("no ACL allows everyone", "evil.example", None, True),
    ("an empty ACL allows nobody", "good.example", {}, False),
    ("allow * lets a name in", "good.example:8448", {"allow": ["*"]}, True),
    ("deny beats allow", "evil.example", {"allow": ["*"], "deny": ["evil.example"]}, False),
    ("the port is ignored", "evil.example:1234", {"allow": ["*"], "deny": ["evil.example"]}, False),
    ("globs match subdomains", "a.evil.example", {"allow": ["*"], "deny": ["*.evil.example"]}, False),
    ("? matches one character", "ab.example", {"allow": ["a?.example"]}, True),
    ("matching is case-insensitive", "EVIL.example", {"allow": ["*"], "deny": ["evil.EXAMPLE"]}, False),
    ("not on the allow list is denied", "other.example", {"allow": ["good.example"]}, False),
    ("IP literals are allowed by default", "127.0.0.2:8448", {"allow": ["*"]}, True),
    ("allow_ip_literals false denies IPv4 literals", "127.0.0.2:8448", {"allow": ["*"], "allow_ip_literals": False},
     False),
    ("allow_ip_literals false denies IPv6 literals", "[::1]:8448", {"allow": ["*"], "allow_ip_literals": False},
     False),
    ("a non-boolean allow_ip_literals means true", "127.0.0.2", {"allow": ["*"], "allow_ip_literals": "no"}, True),
    ("non-string patterns are ignored", "good.example", {"allow": [1, None, "good.example"]}, True),
    ("a non-list allow allows nobody", "good.example", {"allow": "*"}, False),
]


@pytest.mark.parametrize(("server", "acl", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_server_acl(server, acl, allowed):
    assert server_allowed_by_acl(server, acl) is allowed
