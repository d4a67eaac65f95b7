"""The server key store on both engines: what a later or older response may change."""

from __future__ import annotations

import pytest

from storage import create_database
from storage.stores.server_keys import ServerKeyStore, StoredServerKey


@pytest.fixture
async def store(database_config):
    db = await create_database(database_config)
    yield ServerKeyStore(db)
    await db.close()


def key(key_id: str, valid_until: int, expired: int | None = None, fetched: int = 1) -> StoredServerKey:
    return StoredServerKey("remote.example", key_id, "a" * 43, valid_until, expired, fetched)


async def test_keys_and_the_response_are_stored_and_read_back(store):
    response = {"server_name": "remote.example", "valid_until_ts": 500}
    await store.store_server_keys("remote.example", [key("ed25519:a", 500), key("ed25519:old", 100, 100)],
                                  response, 500, 1)
    assert await store.get_server_key("remote.example", "ed25519:a") == key("ed25519:a", 500)
    assert [k.key_id for k in await store.get_server_keys("remote.example")] == ["ed25519:a", "ed25519:old"]
    assert await store.get_key_response("remote.example") == (response, 500)
    assert await store.get_server_key("remote.example", "ed25519:none") is None
    assert await store.get_key_response("other.example") is None


async def test_an_older_response_never_shortens_validity_or_replaces_the_newer_one(store):
    await store.store_server_keys("remote.example", [key("ed25519:a", 900)], {"v": 900}, 900, 1)
    await store.store_server_keys("remote.example", [key("ed25519:a", 300, fetched=2)], {"v": 300}, 300, 2)
    stored = await store.get_server_key("remote.example", "ed25519:a")
    assert (stored.valid_until_ts, stored.fetched_ts) == (900, 2)
    assert await store.get_key_response("remote.example") == ({"v": 900}, 900)


async def test_a_key_once_expired_stays_expired(store):
    await store.store_server_keys("remote.example", [key("ed25519:a", 400, expired=400)], {"v": 1}, 400, 1)
    await store.store_server_keys("remote.example", [key("ed25519:a", 900)], {"v": 2}, 900, 2)
    assert (await store.get_server_key("remote.example", "ed25519:a")).expired_ts == 400
