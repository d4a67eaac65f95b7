"""Server keys: what we publish, the notary, trusted key servers, rotation from the command line."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from federation.keys import KeyLookupError
from homeserver.__main__ import main
from homeserver.events.signing import (
    SignatureError,
    decode_verify_key,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    read_signing_key_file,
    sign_json,
    verify_json_signature,
)
from homeserver.signing_keys import load_old_verify_keys, rotate_signing_key, write_new_signing_key
from tests.conftest import free_port
from tests.federation.helpers import federation_overrides, tls_session


async def test_our_server_keys_are_signed_by_our_key_and_valid_for_a_day(fed_hs, ca):
    async with tls_session(fed_hs, ca) as session:
        async with session.get("/_matrix/key/v2/server") as resp:
            assert resp.status == 200
            body = await resp.json()
    name = fed_hs.config.server_name
    key_id = f"ed25519:{fed_hs.signing_key.version}"
    assert body["server_name"] == name
    assert list(body["verify_keys"]) == [key_id]
    assert body["old_verify_keys"] == {}
    verify_json_signature(body, name, decode_verify_key(key_id, body["verify_keys"][key_id]["key"]))
    now = int(time.time() * 1000)
    assert now + 23 * 3600_000 < body["valid_until_ts"] <= now + 24 * 3600_000 + 60_000


async def test_a_rotated_key_is_published_under_old_verify_keys_with_its_expiry(tmp_path, make_homeserver, ca):
    keys = tmp_path / "keys"
    keys.mkdir()
    old = write_new_signing_key(str(keys / "signing.key"))
    new, old_key_id = rotate_signing_key(str(keys / "signing.key"), str(keys / "old.json"), 1234)
    assert old_key_id == f"ed25519:{old.version}"
    overrides = federation_overrides(ca, free_port(), old_signing_keys_path=str(keys / "old.json"))
    hs = await make_homeserver(signing_key_path=str(keys / "signing.key"), **overrides)
    async with tls_session(hs, ca) as session:
        async with session.get("/_matrix/key/v2/server") as resp:
            body = await resp.json()
    assert list(body["verify_keys"]) == [f"ed25519:{new.version}"]
    assert body["old_verify_keys"][old_key_id]["expired_ts"] == 1234
    assert body["old_verify_keys"][old_key_id]["key"] == encode_verify_key_base64(get_verify_key(old))
    verify_json_signature(body, hs.config.server_name, get_verify_key(new))


def test_generate_keys_rotate_moves_the_old_key_to_the_old_keys_file(tmp_path):
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump({"server_name": "example.org", "data_dir": str(tmp_path)}))
    assert main(["generate-keys", "--config", str(config_path)]) == 0
    [first] = read_signing_key_file(tmp_path / "signing.key")
    assert main(["generate-keys", "--config", str(config_path), "--rotate"]) == 0
    [second] = read_signing_key_file(tmp_path / "signing.key")
    assert second.version != first.version
    old = load_old_verify_keys(str(tmp_path / "old_signing_keys.json"))
    assert list(old) == [f"ed25519:{first.version}"]
    assert old[f"ed25519:{first.version}"]["expired_ts"] <= int(time.time() * 1000)
    assert main(["generate-keys", "--config", str(config_path), "--rotate"]) == 0
    assert len(json.loads((tmp_path / "old_signing_keys.json").read_text())) == 2


async def test_the_notary_returns_a_remote_servers_keys_signed_by_it_and_by_us(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/key/v2/query",
                                json={"server_keys": {remote.server_name: {}}}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        [answer] = body["server_keys"]
        assert answer["server_name"] == remote.server_name
        verify_json_signature(answer, remote.server_name, get_verify_key(remote.signing_key))
        verify_json_signature(answer, fed_hs.config.server_name, get_verify_key(fed_hs.signing_key))
        # A second query is served from the database.
        async with session.get(f"/_matrix/key/v2/query/{remote.server_name}") as resp:
            [again] = (await resp.json())["server_keys"]
    assert again["verify_keys"] == answer["verify_keys"]
    assert remote.key_requests == 1


async def test_the_notary_refetches_when_asked_for_keys_valid_later_than_it_has(fed_hs, ca, remote):
    async with tls_session(fed_hs, ca) as session:
        async with session.get(f"/_matrix/key/v2/query/{remote.server_name}") as resp:
            assert resp.status == 200
        remote.valid_until_ms += 3600_000
        wanted = remote.valid_until_ms - 1
        async with session.get(f"/_matrix/key/v2/query/{remote.server_name}?minimum_valid_until_ts={wanted}") as r:
            [answer] = (await r.json())["server_keys"]
    assert answer["valid_until_ts"] == remote.valid_until_ms
    assert remote.key_requests == 2


async def test_the_notary_answers_for_our_own_name_and_nothing_for_an_unreachable_server(fed_hs, ca):
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/key/v2/query", json={"server_keys": {
                fed_hs.config.server_name: {}, "127.0.0.1:1": {}}}) as resp:
            body = await resp.json()
    assert [k["server_name"] for k in body["server_keys"]] == [fed_hs.config.server_name]


async def test_the_notary_names_a_malformed_query(fed_hs, ca):
    async with tls_session(fed_hs, ca) as session:
        async with session.post("/_matrix/key/v2/query", json={"server_keys": []}) as resp:
            assert (resp.status, (await resp.json())["errcode"]) == (400, "M_BAD_JSON")
        async with session.post("/_matrix/key/v2/query", json={"server_keys": {"bad name!": {}}}) as resp:
            assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM")
        async with session.post("/_matrix/key/v2/query", json={"server_keys": {"example.org": {
                "ed25519:a": {"minimum_valid_until_ts": "soon"}}}}) as resp:
            body = await resp.json()
            assert (resp.status, body["errcode"]) == (400, "M_INVALID_PARAM")
            assert "minimum_valid_until_ts" in body["error"]


async def test_keys_come_from_the_trusted_key_server_when_one_is_configured(make_federating_homeserver, ca, remote):
    notary = await make_federating_homeserver()
    notary_key = {f"ed25519:{notary.signing_key.version}": encode_verify_key_base64(get_verify_key(notary.signing_key))}
    hs = await make_federating_homeserver(
        trusted_key_servers=[{"server_name": notary.config.server_name, "verify_keys": notary_key}])
    key = await hs.federation.key_fetcher.get_verify_key(remote.server_name, remote.key_id,
                                                         valid_at_ts=int(time.time() * 1000))
    assert key.encode() == get_verify_key(remote.signing_key).encode()
    assert remote.key_requests == 1  # asked once, by the notary
    assert await notary.federation.key_store.get_server_key(remote.server_name, remote.key_id) is not None


async def test_a_trusted_key_server_whose_signature_does_not_match_is_not_believed(make_federating_homeserver, ca,
                                                                                   remote):
    notary = await make_federating_homeserver()
    wrong = generate_signing_key(notary.signing_key.version)
    hs = await make_federating_homeserver(trusted_key_servers=[{
        "server_name": notary.config.server_name,
        "verify_keys": {f"ed25519:{wrong.version}": encode_verify_key_base64(get_verify_key(wrong))}}])
    key = await hs.federation.key_fetcher.get_verify_key(remote.server_name, remote.key_id,
                                                         valid_at_ts=int(time.time() * 1000))
    assert key.encode() == get_verify_key(remote.signing_key).encode()
    # Asked once by the notary (whose answer we refused), then once by us directly.
    assert remote.key_requests == 2


async def test_keys_are_fetched_directly_when_the_trusted_key_server_is_unreachable(make_federating_homeserver,
                                                                                    remote):
    hs = await make_federating_homeserver(trusted_key_servers=[{"server_name": "127.0.0.1:1"}])
    key = await hs.federation.key_fetcher.get_verify_key(remote.server_name, remote.key_id,
                                                         valid_at_ts=int(time.time() * 1000))
    assert key.encode() == get_verify_key(remote.signing_key).encode()
    assert remote.key_requests == 1


async def test_an_unreachable_server_with_no_stored_keys_is_a_key_lookup_error(fed_hs):
    with pytest.raises(KeyLookupError, match="unknown key"):
        await fed_hs.federation.key_fetcher.get_verify_key("127.0.0.1:1", "ed25519:x",
                                                           valid_at_ts=int(time.time() * 1000))


def test_signature_error_is_raised_for_a_key_that_did_not_sign():
    signed = sign_json({"a": 1}, "x", generate_signing_key("k"))
    try:
        verify_json_signature(signed, "x", get_verify_key(generate_signing_key("k")))
    except SignatureError:
        pass
    else:
        raise AssertionError("verified with the wrong key")
