"""Inbound PDU checks (format and size, signatures, content hash) on events built and signed by a fake
remote server, with its keys fetched over TLS and cached in the database."""

from __future__ import annotations

import time

import pytest

from federation.pdu_checks import PduRejected, check_inbound_pdu, required_signers
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import get_room_version
from homeserver.events.signing import generate_signing_key, sign_event

V1, V4, V5, V9, V11 = (get_room_version(v) for v in ("1", "4", "5", "9", "11"))


async def test_an_event_signed_by_its_senders_server_passes_unchanged(fed_hs, remote):
    pdu = remote.make_event(V11)
    checked = await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)
    assert checked.pdu == pdu
    assert not checked.redacted_for_hash
    assert checked.event_id == compute_event_id(pdu, V11)


async def test_a_forged_signature_rejects_the_event(fed_hs, remote):
    forger = generate_signing_key(remote.signing_key.version)
    pdu = remote.make_event(V11, signers=[(remote.server_name, forger)])
    with pytest.raises(PduRejected, match=f"bad signature by {remote.server_name}"):
        await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)


async def test_an_event_not_signed_by_its_senders_server_is_rejected(fed_hs, make_remote):
    sender_server = await make_remote("127.0.0.2")
    other = await make_remote("127.0.0.3")
    pdu = sender_server.make_event(V11, signers=[(other.server_name, other.signing_key)])
    with pytest.raises(PduRejected, match=f"not signed by {sender_server.server_name}"):
        await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)


async def test_a_signature_only_by_an_unknown_key_rejects_the_event(fed_hs, remote):
    pdu = remote.make_event(V11, signers=[(remote.server_name, generate_signing_key("nobody"))])
    with pytest.raises(PduRejected, match="no verifiable signature .*unknown key ed25519:nobody"):
        await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)


async def test_a_bad_content_hash_gives_the_redacted_event(fed_hs, remote):
    pdu = remote.make_event(V11, content={"msgtype": "m.text", "body": "original"})
    tampered = {**pdu, "content": {"msgtype": "m.text", "body": "changed in transit"}}
    checked = await check_inbound_pdu(tampered, V11, fed_hs.federation.key_fetcher)
    assert checked.redacted_for_hash
    assert checked.pdu["content"] == {}
    # The signature covers the redacted form, so the event ID is that of the original event.
    assert checked.event_id == compute_event_id(pdu, V11)


async def test_a_malformed_event_is_rejected_with_the_field(fed_hs, remote):
    pdu = remote.make_event(V11)
    with pytest.raises(PduRejected, match="depth"):
        await check_inbound_pdu({**pdu, "depth": "deep"}, V11, fed_hs.federation.key_fetcher)


async def test_an_oversized_event_is_rejected(fed_hs, remote):
    pdu = remote.make_event(V11, content={"msgtype": "m.text", "body": "x" * 70_000})
    with pytest.raises(PduRejected, match="65536-byte limit"):
        await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)


async def test_a_restricted_join_needs_the_authorising_servers_signature(fed_hs, make_remote):
    joiner = await make_remote("127.0.0.2")
    resident = await make_remote("127.0.0.3")
    content = {"membership": "join", "join_authorised_via_users_server": f"@admin:{resident.server_name}"}
    extra = {"state_key": f"@remote:{joiner.server_name}"}
    only_joiner = joiner.make_event(V9, event_type="m.room.member", content=content, extra=extra)
    with pytest.raises(PduRejected, match=f"not signed by {resident.server_name}"):
        await check_inbound_pdu(only_joiner, V9, fed_hs.federation.key_fetcher)
    both = sign_event(only_joiner, V9, resident.server_name, resident.signing_key)
    checked = await check_inbound_pdu(both, V9, fed_hs.federation.key_fetcher)
    assert checked.pdu["content"]["join_authorised_via_users_server"] == content["join_authorised_via_users_server"]


async def test_in_room_v1_the_event_id_server_must_sign_too(fed_hs, make_remote):
    sender = await make_remote("127.0.0.2")
    minter = await make_remote("127.0.0.3")
    pdu = sender.make_event(V1, extra={"event_id": f"$abc:{minter.server_name}"})
    assert required_signers(pdu, V1) == {sender.server_name, minter.server_name}
    with pytest.raises(PduRejected, match=f"not signed by {minter.server_name}"):
        await check_inbound_pdu(pdu, V1, fed_hs.federation.key_fetcher)
    checked = await check_inbound_pdu(sign_event(pdu, V1, minter.server_name, minter.signing_key), V1,
                                      fed_hs.federation.key_fetcher)
    assert checked.event_id == f"$abc:{minter.server_name}"


async def test_from_room_v5_a_key_must_be_valid_when_the_event_was_sent(fed_hs, remote):
    # The remote's key response says its key is only good until an hour ago.
    remote.valid_until_ms = int(time.time() * 1000) - 3600_000
    for version, accepted in ((V4, True), (V5, False)):
        pdu = remote.make_event(version)
        if accepted:
            await check_inbound_pdu(pdu, version, fed_hs.federation.key_fetcher)
        else:
            with pytest.raises(PduRejected, match="only valid until"):
                await check_inbound_pdu(pdu, version, fed_hs.federation.key_fetcher)


async def test_an_event_signed_with_an_old_key_before_it_expired_passes(fed_hs, remote):
    old = generate_signing_key("old1")
    now = int(time.time() * 1000)
    remote.old_keys["ed25519:old1"] = (old, now)
    pdu = add_content_hash({"type": "m.room.message", "room_id": "!r:example.org",
                            "sender": f"@remote:{remote.server_name}", "content": {"body": "before rotation"},
                            "origin_server_ts": now - 60_000, "depth": 3, "prev_events": [], "auth_events": []})
    pdu = sign_event(pdu, V11, remote.server_name, old)
    await check_inbound_pdu(pdu, V11, fed_hs.federation.key_fetcher)
    late = sign_event(add_content_hash({**pdu, "origin_server_ts": now + 1, "signatures": {}}), V11,
                      remote.server_name, old)
    with pytest.raises(PduRejected, match="expired"):
        await check_inbound_pdu(late, V11, fed_hs.federation.key_fetcher)
