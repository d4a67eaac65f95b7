"""Real end-to-end encryption with matrix-nio (vodozemac): two users exchange Megolm messages.

Alice creates an encrypted room and invites Bob. Each client's own `sync_forever` loop uploads
device and one-time keys, follows device lists and claims keys; Alice's message reaches Bob
encrypted and decrypts there, and Bob's answer decrypts at Alice's. This exercises /keys/upload,
/keys/query, /keys/claim, /sendToDevice and the E2EE parts of /sync together, as a stock client
uses them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

nio = pytest.importorskip("nio")
pytest.importorskip("vodozemac")

from tests.interop.nio_support import SyncingClient, expect, raw_json, register_user  # noqa: E402

ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@asynccontextmanager
async def encrypting_client(base_url: str, store: Path, name: str) -> AsyncIterator[SyncingClient]:
    store.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=2,
                                   max_limit_exceeded=0, request_timeout=30)
    client = nio.AsyncClient(base_url, store_path=str(store), config=config)
    syncing = SyncingClient(name, client)
    try:
        await register_user(client, name)
        yield syncing
    finally:
        await syncing.stop()
        await client.close()


def decrypted_text(body: str):
    def matches(kind: str, _room: Any, event: Any) -> bool:
        return kind == "timeline" and isinstance(event, nio.RoomMessageText) and event.body == body
    return matches


async def test_two_nio_clients_exchange_encrypted_messages(hs, tmp_path):
    url = hs.base_url()
    async with encrypting_client(url, tmp_path / "alice", "alice") as alice, \
            encrypting_client(url, tmp_path / "bob", "bob") as bob:
        await alice.start(poll_timeout_ms=1000)
        await bob.start(poll_timeout_ms=1000)
        created = expect(await alice.client.room_create(invite=[bob.client.user_id], initial_state=[ENCRYPTION]),
                         nio.RoomCreateResponse, "create the encrypted room")
        room_id = created.room_id
        await bob.seen.wait_for("the invite", lambda kind, room, _e: kind == "invite" and room == room_id)
        expect(await bob.client.join(room_id), nio.JoinResponse, "bob joins")
        await alice.seen.wait_for("bob's join", lambda kind, room, e: kind == "timeline" and room == room_id
                                  and isinstance(e, nio.RoomMemberEvent) and e.state_key == bob.client.user_id
                                  and e.membership == "join")

        mark = bob.seen.mark()
        expect(await alice.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"},
                                            ignore_unverified_devices=True),
               nio.RoomSendResponse, "alice sends encrypted")
        await bob.seen.wait_for("alice's message, decrypted", decrypted_text("hello bob"), mark)

        mark = alice.seen.mark()
        expect(await bob.client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"},
                                          ignore_unverified_devices=True),
               nio.RoomSendResponse, "bob sends encrypted")
        await alice.seen.wait_for("bob's answer, decrypted", decrypted_text("hi alice"), mark)

        # The messages really travelled encrypted: the server only ever held ciphertext.
        status, history = await raw_json(alice.client, "GET",
                                         f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=10")
        assert status == 200
        types = [e["type"] for e in history["chunk"]]
        assert types.count("m.room.encrypted") == 2 and "m.room.message" not in types
