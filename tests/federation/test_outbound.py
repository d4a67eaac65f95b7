"""Outbound requests: the federation client signs them, verifies TLS, sends the right Host header,
refuses blocked addresses and denied servers; server name resolution follows the spec's steps."""

from __future__ import annotations

import pytest
from aiohttp import web

from federation.client import FederationClient, FederationDenied, FederationHttpError, FederationUnreachable
from federation.policy import ServerPolicy
from federation.resolver import DEFAULT_PORT, ServerResolver, SrvRecord, Target
from federation.x_matrix import parse_x_matrix, signed_request_json
from homeserver.clock import Clock
from homeserver.events.signing import generate_signing_key, get_verify_key, verify_json_signature
from homeserver.ip_blocklist import LOOPBACK_NETWORKS, parse_networks

OURS = "ours.example:8448"


def make_client(ca_path: str | None, *, loopback: bool = True, denylist=(), resolver=None) -> FederationClient:
    return FederationClient(OURS, generate_signing_key("k1"), Clock(), policy=ServerPolicy(None, denylist),
                            ip_allowlist=parse_networks(LOOPBACK_NETWORKS if loopback else ()),
                            ca_bundle_path=ca_path, timeout_s=10, resolver=resolver)


def echo_routes(remote):
    async def profile(request: web.Request) -> web.Response:
        return web.json_response({"displayname": "Remote Bob", "host": request.headers["Host"],
                                  "path": request.raw_path})

    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "no such user"}, status=404)

    async def big(request: web.Request) -> web.Response:
        return web.json_response({"chunk": ["x" * 1000] * 2000})

    remote.route("GET", "/_matrix/federation/v1/query/profile", profile)
    remote.route("GET", "/_matrix/federation/v1/publicRooms", big)
    remote.route("GET", "/_matrix/federation/v1/query/directory", fail)


async def test_an_outbound_request_is_signed_and_verifies_against_our_key(ca, make_remote):
    remote = await make_remote(routes=echo_routes)
    client = make_client(ca.ca_path)
    try:
        body = await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile",
                                     {"user_id": f"@bob:{remote.server_name}", "field": "displayname"})
    finally:
        await client.close()
    assert body["displayname"] == "Remote Bob"
    assert body["host"] == remote.server_name  # the server name, port included
    [(method, uri, authorization)] = remote.requests
    auth = parse_x_matrix(authorization)
    assert (auth.origin, auth.destination) == (OURS, remote.server_name)
    verify_json_signature(signed_request_json(auth, method, uri, remote.server_name), OURS,
                          get_verify_key(client._signing_key))
    assert "user_id=%40bob%3A127.0.0.2" in uri


async def test_a_large_answer_is_read_whole(ca, make_remote):
    remote = await make_remote(routes=echo_routes)
    client = make_client(ca.ca_path)
    try:
        body = await client.get_json(remote.server_name, "/_matrix/federation/v1/publicRooms")
    finally:
        await client.close()
    assert len(body["chunk"]) == 2000


async def test_an_error_answer_raises_with_its_errcode(ca, make_remote):
    remote = await make_remote(routes=echo_routes)
    client = make_client(ca.ca_path)
    try:
        with pytest.raises(FederationHttpError) as raised:
            await client.get_json(remote.server_name, "/_matrix/federation/v1/query/directory", {"room_alias": "#a:b"})
    finally:
        await client.close()
    assert (raised.value.status, raised.value.errcode) == (404, "M_NOT_FOUND")


async def test_loopback_is_refused_unless_allowed_even_for_ip_literal_names(ca, make_remote):
    remote = await make_remote(routes=echo_routes)
    client = make_client(ca.ca_path, loopback=False)
    try:
        with pytest.raises(FederationDenied, match="blocked"):
            await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile")
    finally:
        await client.close()
    assert remote.requests == []


async def test_a_denied_destination_is_refused_before_any_connection(ca, make_remote):
    remote = await make_remote(routes=echo_routes)
    client = make_client(ca.ca_path, denylist=["127.0.0.2"])
    try:
        with pytest.raises(FederationDenied, match="denied"):
            await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile")
    finally:
        await client.close()
    assert remote.requests == []


async def test_a_certificate_from_an_untrusted_ca_is_refused(make_remote, tmp_path):
    from tests.support.tls_ca import TestCA

    remote = await make_remote(routes=echo_routes)
    other_ca = TestCA(tmp_path / "other")
    for ca_path in (other_ca.ca_path, None):  # another CA, and the system store
        client = make_client(ca_path)
        try:
            with pytest.raises(FederationUnreachable):
                await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile")
        finally:
            await client.close()
    assert remote.requests == []


async def test_a_certificate_for_another_address_is_refused(ca, make_remote):
    remote = await make_remote(routes=echo_routes, cert_names=("127.0.0.3", "remote.example"))
    client = make_client(ca.ca_path)
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile")
    finally:
        await client.close()
    assert remote.requests == []


# --- resolution ------------------------------------------------------------------------------------


class FakeDns:
    """SRV answers for the resolver, counting lookups; DNS is the outside world here."""

    def __init__(self, records: dict[str, list[SrvRecord]]):
        self.records = records
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[SrvRecord]:
        self.asked.append(name)
        return self.records.get(name, [])


class WellKnown:
    def __init__(self, answers: dict[str, tuple[int, object, str | None]]):
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, hostname: str):
        self.asked.append(hostname)
        if hostname not in self.answers:
            raise ConnectionRefusedError("nothing listens")
        return self.answers[hostname]


class StepClock(Clock):
    def __init__(self):
        self.now = 1_000_000

    def time_ms(self) -> int:
        return self.now


async def test_ip_literals_and_explicit_ports_are_used_as_they_are():
    dns, wk = FakeDns({}), WellKnown({})
    resolver = ServerResolver(Clock(), wk, dns)
    assert await resolver.resolve("1.2.3.4") == [Target("1.2.3.4", DEFAULT_PORT, "1.2.3.4", "1.2.3.4")]
    assert await resolver.resolve("[2001:db8::1]:8000") == [
        Target("2001:db8::1", 8000, "[2001:db8::1]:8000", "2001:db8::1")]
    assert (await resolver.resolve("[2001:db8::1]:8000"))[0].url_host == "[2001:db8::1]"
    assert await resolver.resolve("matrix.example:1234") == [
        Target("matrix.example", 1234, "matrix.example:1234", "matrix.example")]
    assert dns.asked == [] and wk.asked == []


async def test_well_known_delegation_is_followed_and_cached():
    clock = StepClock()
    wk = WellKnown({"example.org": (200, {"m.server": "matrix.example.org:443"}, "max-age=60")})
    resolver = ServerResolver(clock, wk, FakeDns({}))
    expected = [Target("matrix.example.org", 443, "matrix.example.org:443", "matrix.example.org")]
    assert await resolver.resolve("example.org") == expected
    assert await resolver.resolve("example.org") == expected
    assert wk.asked == ["example.org"]
    clock.now += 61_000  # Cache-Control max-age=60 has passed
    await resolver.resolve("example.org")
    assert wk.asked == ["example.org", "example.org"]


async def test_delegation_without_a_port_uses_srv_of_the_delegated_name_with_its_certificate():
    wk = WellKnown({"example.org": (200, {"m.server": "matrix.example.org"}, None)})
    dns = FakeDns({"_matrix-fed._tcp.matrix.example.org": [SrvRecord(10, 0, 8443, "host1.example.net")]})
    resolver = ServerResolver(Clock(), wk, dns)
    assert await resolver.resolve("example.org") == [
        Target("host1.example.net", 8443, "matrix.example.org", "matrix.example.org")]


async def test_without_well_known_srv_matrix_fed_comes_before_the_deprecated_matrix_record():
    dns = FakeDns({"_matrix-fed._tcp.example.org": [SrvRecord(10, 0, 8443, "fed.example.org")],
                   "_matrix._tcp.example.org": [SrvRecord(10, 0, 9000, "old.example.org")]})
    resolver = ServerResolver(Clock(), WellKnown({}), dns)
    assert await resolver.resolve("example.org") == [Target("fed.example.org", 8443, "example.org", "example.org")]
    dns2 = FakeDns({"_matrix._tcp.example.org": [SrvRecord(10, 0, 9000, "old.example.org")]})
    resolver2 = ServerResolver(Clock(), WellKnown({}), dns2)
    assert await resolver2.resolve("example.org") == [Target("old.example.org", 9000, "example.org", "example.org")]
    assert dns2.asked == ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]


async def test_with_nothing_found_the_name_itself_on_8448_is_used():
    wk = WellKnown({"example.org": (404, None, None)})
    resolver = ServerResolver(Clock(), wk, FakeDns({}))
    assert await resolver.resolve("example.org") == [Target("example.org", 8448, "example.org", "example.org")]


async def test_srv_targets_come_in_priority_order():
    dns = FakeDns({"_matrix-fed._tcp.example.org": [SrvRecord(20, 0, 2, "b.example"), SrvRecord(10, 5, 1, "a.example"),
                                                     SrvRecord(30, 0, 3, ".")]})
    resolver = ServerResolver(Clock(), WellKnown({}), dns)
    assert [t.connect_host for t in await resolver.resolve("example.org")] == ["a.example", "b.example"]


async def test_well_known_errors_are_cached_for_less_time_than_answers_and_back_off():
    clock = StepClock()
    wk = WellKnown({"example.org": (500, None, None)})
    resolver = ServerResolver(clock, wk, FakeDns({}))
    await resolver.resolve("example.org")
    await resolver.resolve("example.org")
    assert len(wk.asked) == 1
    first = resolver._well_known["example.org"][1] - clock.now
    clock.now += first + 1
    await resolver.resolve("example.org")
    second = resolver._well_known["example.org"][1] - clock.now
    assert len(wk.asked) == 2
    assert first < second <= 3600_000 < 24 * 3600_000


async def test_an_invalid_delegated_name_falls_back_to_srv_and_the_name():
    wk = WellKnown({"example.org": (200, {"m.server": "not a name!"}, None)})
    resolver = ServerResolver(Clock(), wk, FakeDns({}))
    assert await resolver.resolve("example.org") == [Target("example.org", 8448, "example.org", "example.org")]


async def test_resolving_an_invalid_server_name_is_a_value_error():
    resolver = ServerResolver(Clock(), WellKnown({}), FakeDns({}))
    for bad in ("1.2.3.999", "example.org:0", "[nope]", "exa mple.org"):
        with pytest.raises(ValueError):
            await resolver.resolve(bad)


async def test_a_dns_name_is_verified_against_its_certificate_and_sent_as_host(ca, make_remote):
    remote = await make_remote("127.0.0.1", routes=echo_routes, cert_names=("localhost",))
    client = make_client(ca.ca_path)
    name = f"localhost:{remote.port}"
    try:
        body = await client.get_json(name, "/_matrix/federation/v1/query/profile")
    finally:
        await client.close()
    assert body["host"] == name
    assert parse_x_matrix(remote.requests[0][2]).destination == name


async def test_a_name_without_port_is_delegated_by_its_well_known_over_https(ca, make_remote):
    """End to end: `localhost` publishes /.well-known/matrix/server on 443 naming the remote's port."""
    import ssl as ssl_module

    remote = await make_remote("127.0.0.1", routes=echo_routes, cert_names=("localhost",))
    app = web.Application()

    async def well_known(request: web.Request) -> web.Response:
        return web.json_response({"m.server": f"localhost:{remote.port}"}, headers={"Cache-Control": "max-age=600"})

    app.router.add_get("/.well-known/matrix/server", well_known)
    cert = ca.issue("localhost")
    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.certificate_path, cert.private_key_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, "127.0.0.1", 443, ssl_context=context).start()
        except OSError as e:
            pytest.skip(f"cannot listen on 127.0.0.1:443 here: {e}")
        client = make_client(ca.ca_path, resolver=None)
        try:
            body = await client.get_json("localhost", "/_matrix/federation/v1/query/profile")
        finally:
            await client.close()
    finally:
        await runner.cleanup()
    # Delegated with a port: Host is the delegated name with its port; the X-Matrix destination
    # stays the original server name.
    assert body["host"] == f"localhost:{remote.port}"
    assert parse_x_matrix(remote.requests[0][2]).destination == "localhost"


async def test_an_ipv6_literal_server_name_is_reached_with_its_certificate(ca, make_remote):
    remote = await make_remote("::1", routes=echo_routes)
    assert remote.server_name.startswith("[::1]:")
    client = make_client(ca.ca_path)
    try:
        body = await client.get_json(remote.server_name, "/_matrix/federation/v1/query/profile")
    finally:
        await client.close()
    assert body["host"] == remote.server_name
