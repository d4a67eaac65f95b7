"""Device keys, one-time and fallback keys, cross-signing keys and signatures, and the device_lists stream.

Every write that changes what /keys/query would answer for a user allocates a position on the
`device_lists` stream in the same transaction and records the user there, so /sync and
/keys/changes can ask "whose keys changed between two positions". Membership changes that start
or may end room sharing are recorded on the same stream (`device_list_membership_changes`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.jsonutil import decode, encode_str
from storage.database import Database, Transaction
from storage.stores import room_state, to_device
from storage.streams import allocate_stream_positions, get_stream_position

DEVICE_LISTS = "device_lists"
# device_id of a device-list change that is about the user's cross-signing keys, not one device.
NO_DEVICE = ""


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    user_id: str
    device_id: str
    algorithm: str


@dataclass(frozen=True, slots=True)
class DeviceKeysRow:
    user_id: str
    device_id: str
    keys: dict[str, Any]
    display_name: str | None


@dataclass(frozen=True, slots=True)
class SignatureRow:
    signer_user_id: str
    signer_key_id: str
    target_user_id: str
    target_key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class MembershipChange:
    room_id: str
    user_id: str
    joined: bool


@dataclass(frozen=True, slots=True)
class DeviceListDelta:
    """What moved on the device_lists stream between two positions."""

    key_changes: frozenset[str]
    memberships: tuple[MembershipChange, ...]


@dataclass(frozen=True, slots=True)
class DeviceListChange:
    """A row of the device_lists stream: `device_id` NO_DEVICE for the user's cross-signing keys;
    `previous` the position of the user's device change before it (None for their first)."""

    stream_id: int
    user_id: str
    device_id: str
    previous: int | None


def _merged(keys: dict[str, Any], extra: dict[str, dict[str, str]]) -> dict[str, Any]:
    signatures = {signer: dict(by) for signer, by in (keys.get("signatures") or {}).items()}
    for signer, by in extra.items():
        signatures.setdefault(signer, {}).update(by)
    return {**keys, "signatures": signatures}


class OneTimeKeyConflict(Exception):
    """A one-time key ID was uploaded again with different content."""

    def __init__(self, key_id: str):
        super().__init__(key_id)
        self.key_id = key_id


def _in_list(txn: Transaction, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """`column IN (...)` for a qualified column name (the dialect helper takes plain identifiers only)."""
    values = list(values)
    if txn.dialect.is_postgres:
        return f"{column} = ANY(?)", (values,)
    return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)


async def bump_device_lists(txn: Transaction, changes: Iterable[tuple[str, str]]) -> int:
    """Record (user_id, device_id) changes on the device_lists stream; the last new position.

    Each change gets a position of its own: over federation every `m.device_list_update` needs a
    stream ID unique for its user, and these positions are those IDs.
    """
    unique = list(dict.fromkeys(changes))
    if not unique:
        (position,) = await allocate_stream_positions(txn, DEVICE_LISTS)
        return position
    positions = await allocate_stream_positions(txn, DEVICE_LISTS, len(unique))
    await txn.insert_many("device_list_changes", ("stream_id", "user_id", "device_id"),
                          [(position, user_id, device_id)
                           for position, (user_id, device_id) in zip(positions, unique, strict=True)])
    return positions[-1]


# Decoded device keys by their stored text. Keyed by content, an entry can never be stale: a device
# whose keys change is stored as another text. /keys/query reads hundreds of devices at a time and
# their decoding was a third of its time; callers must not change the dicts handed out.
DEVICE_KEYS_CACHE_SIZE = 50_000


@functools.lru_cache(maxsize=DEVICE_KEYS_CACHE_SIZE)
def _device_keys_of(key_json: str) -> dict[str, Any]:
    return decode(key_json)


_DEVICE_KEYS_SQL = ("SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
                    " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE ")


def _device_keys_statements(txn: Transaction, queries: dict[str, list[str]]) -> list[tuple[str, tuple[Any, ...]]]:
    """Statements reading (user_id, device_id, key_json, display_name) of the queried devices: one
    for the users asked about whole, one per user asked about some devices."""
    statements = []
    whole = [user_id for user_id, devices in queries.items() if not devices]
    if whole:
        clause, params = _in_list(txn, "k.user_id", whole)
        statements.append((_DEVICE_KEYS_SQL + clause, params))
    for user_id, devices in queries.items():
        if devices:
            clause, params = _in_list(txn, "k.device_id", devices)
            statements.append((_DEVICE_KEYS_SQL + "k.user_id = ? AND " + clause, (user_id, *params)))
    return statements


async def _query_device_keys_txn(txn: Transaction, queries: dict[str, list[str]]) -> list[DeviceKeysRow]:
    rows = await txn.fetch_all_batch(_device_keys_statements(txn, queries))
    return [DeviceKeysRow(r[0], r[1], _device_keys_of(r[2]), r[3]) for batch in rows for r in batch]


async def _cross_signing_rows_txn(txn: Transaction, user_ids: list[str]) -> list[Any]:
    if not user_ids:
        return []
    clause, params = txn.dialect.in_list("user_id", user_ids)
    return await txn.fetch_all(
        f"SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE {clause}", params)


def _cross_signing_by_user(rows: Iterable[Any]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for user_id, key_type, key_json in rows:
        out.setdefault(user_id, {})[key_type] = decode(key_json)
    return out


async def _signatures_over_users_txn(txn: Transaction, users: list[str]) -> list[SignatureRow]:
    out: list[SignatureRow] = []
    for start in range(0, len(users), 500):
        clause, params = txn.dialect.in_list("target_user_id", users[start:start + 500])
        rows = await txn.fetch_all(
            "SELECT signer_user_id, signer_key_id, target_user_id, target_key_id, signature"
            f" FROM e2e_cross_signing_signatures WHERE {clause}", params)
        out += [SignatureRow(*r) for r in rows]
    return out


# Users whose key counts are kept in memory (every /sync response carries its device's counts).
KEY_COUNT_CACHE_USERS = 10_000


class E2eeKeyStore:
    def __init__(self, db: Database):
        self.db = db
        # user -> what get_key_counts_of_user read; dropped by this store's own writes to the key
        # tables (the only writers). A read that overlapped a write (the user's version moved while
        # it ran) is returned but not kept.
        self._key_counts: OrderedDict[str, tuple[dict[str, dict[str, int]], dict[str, list[str]]]] = OrderedDict()
        self._key_versions: dict[str, int] = {}

    def _keys_changed(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            self._key_versions[user_id] = self._key_versions.get(user_id, 0) + 1
            self._key_counts.pop(user_id, None)

    async def current_device_lists_position(self) -> int:
        return await self.db.run_interaction("device_lists_position", get_stream_position, DEVICE_LISTS,
                                             write=False)

    # --- device keys ---------------------------------------------------------------------
    async def get_device_keys(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        value = await self.db.fetch_value(
            "get_device_keys", "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            (user_id, device_id))
        return None if value is None else decode(value)

    async def set_device_keys(self, user_id: str, device_id: str, keys: dict[str, Any], now_ms: int) -> int:
        """Store (or overwrite) a device's keys and announce the change; the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            await txn.upsert("e2e_device_keys", {"user_id": user_id, "device_id": device_id},
                             {"key_json": encode_str(keys)}, {"added_ts": now_ms})
            return await bump_device_lists(txn, [(user_id, device_id)])

        return await self.db.run_interaction("set_device_keys", txn_fn, isolation="read_committed")

    async def query_device_keys(self, queries: dict[str, list[str]]) -> list[DeviceKeysRow]:
        """Keys of existing devices; an empty device list asks for every device of that user."""
        return await self.db.run_interaction("query_device_keys", _query_device_keys_txn, queries, write=False)

    async def query_keys(self, queries: dict[str, list[str]]
                         ) -> tuple[list[DeviceKeysRow], dict[str, dict[str, dict[str, Any]]], list[SignatureRow]]:
        """What /keys/query reads about local users: query_device_keys, get_cross_signing_keys and
        get_signatures_over_users of the queried users, as one batch of statements (one hop to a
        SQLite reader, one round trip to PostgreSQL)."""
        users = list(queries)
        if not users:
            return [], {}, []

        async def txn_fn(txn: Transaction) -> list[list[Any]]:
            statements = _device_keys_statements(txn, queries)
            cross_signing, params = txn.dialect.in_list("user_id", users)
            statements.append((f"SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE {cross_signing}",
                               params))
            signed, params = txn.dialect.in_list("target_user_id", users)
            statements.append(("SELECT signer_user_id, signer_key_id, target_user_id, target_key_id, signature"
                               f" FROM e2e_cross_signing_signatures WHERE {signed}", params))
            return await txn.fetch_all_batch(statements)

        *device_rows, cross_signing_rows, signature_rows = await self.db.run_interaction("query_keys", txn_fn,
                                                                                         write=False)
        devices = [DeviceKeysRow(r[0], r[1], _device_keys_of(r[2]), r[3]) for rows in device_rows for r in rows]
        return devices, _cross_signing_by_user(cross_signing_rows), [SignatureRow(*r) for r in signature_rows]

    # --- one-time and fallback keys ---------------------------------------------------------
    async def add_one_time_keys(self, user_id: str, device_id: str,
                                keys: Sequence[tuple[str, str, dict[str, Any]]], now_ms: int) -> None:
        """Add (algorithm, key_id, key) triples; re-uploading an identical key is a no-op.

        Raises OneTimeKeyConflict when a key ID is already stored with other content.
        """

        async def txn_fn(txn: Transaction) -> None:
            new = []
            for algorithm, key_id, key in keys:
                existing = await txn.fetch_value(
                    "SELECT key_json FROM e2e_one_time_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?",
                    (user_id, device_id, algorithm, key_id))
                if existing is None:
                    new.append((user_id, device_id, algorithm, key_id, encode_str(key), now_ms))
                elif decode(existing) != key:
                    raise OneTimeKeyConflict(f"{algorithm}:{key_id}")
            # A duplicate within one upload with equal content collapses to one row.
            unique = {row[2:4]: row for row in new}
            await txn.insert_many("e2e_one_time_keys",
                                  ("user_id", "device_id", "algorithm", "key_id", "key_json", "added_ts"),
                                  unique.values())

        try:
            await self.db.run_interaction("add_one_time_keys", txn_fn)
        finally:
            self._keys_changed([user_id])

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.fetch_all(
            "count_one_time_keys",
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
            " GROUP BY algorithm", (user_id, device_id))
        return {algorithm: int(count) for algorithm, count in rows}

    async def set_fallback_keys(self, user_id: str, device_id: str,
                                keys: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Replace the fallback key of each algorithm; re-uploading the same key keeps its used flag."""

        async def txn_fn(txn: Transaction) -> None:
            for algorithm, key_id, key in keys:
                row = await txn.fetch_one(
                    "SELECT key_id, key_json FROM e2e_fallback_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ?", (user_id, device_id, algorithm))
                if row is not None and row[0] == key_id and decode(row[1]) == key:
                    continue
                await txn.upsert("e2e_fallback_keys",
                                 {"user_id": user_id, "device_id": device_id, "algorithm": algorithm},
                                 {"key_id": key_id, "key_json": encode_str(key), "used": False})

        try:
            await self.db.run_interaction("set_fallback_keys", txn_fn)
        finally:
            self._keys_changed([user_id])

    async def get_key_counts_of_user(self, user_id: str
                                     ) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
        """For every device of the user, in one read: one-time key counts by algorithm, and the
        algorithms of its unused fallback keys (what /sync reports per device)."""

        async def txn_fn(txn: Transaction) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
            counts: dict[str, dict[str, int]] = {}
            rows = await txn.fetch_all(
                "SELECT device_id, algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?"
                " GROUP BY device_id, algorithm", (user_id,))
            for device_id, algorithm, count in rows:
                counts.setdefault(device_id, {})[algorithm] = int(count)
            fallback: dict[str, list[str]] = {}
            rows = await txn.fetch_all(
                "SELECT device_id, algorithm FROM e2e_fallback_keys WHERE user_id = ? AND used = FALSE"
                " ORDER BY device_id, algorithm", (user_id,))
            for device_id, algorithm in rows:
                fallback.setdefault(device_id, []).append(algorithm)
            return counts, fallback

        cached = self._key_counts.get(user_id)
        if cached is not None:
            self._key_counts.move_to_end(user_id)
            return cached
        version = self._key_versions.get(user_id, 0)
        found = await self.db.run_interaction("key_counts_of_user", txn_fn, write=False)
        if self._key_versions.get(user_id, 0) == version:
            self._key_counts[user_id] = found
            while len(self._key_counts) > KEY_COUNT_CACHE_USERS:
                self._key_counts.popitem(last=False)
        return found

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        rows = await self.db.fetch_all(
            "unused_fallback_key_types",
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = FALSE"
            " ORDER BY algorithm", (user_id, device_id))
        return [r[0] for r in rows]

    async def claim_keys(self, requests: Sequence[ClaimRequest]
                         ) -> dict[ClaimRequest, tuple[str, dict[str, Any]]]:
        """Take one one-time key per request (or the fallback key when none is left): {request: (key_id, key)}.

        Keys go out in the order they were uploaded, as the spec asks (oldest upload first).

        The key is deleted by the statement that reads it, so two concurrent claims can never both
        get it: on PostgreSQL the candidate row is locked with SKIP LOCKED (a concurrent claimer
        moves on to the next key), on SQLite the single writer serialises claims.
        """

        async def txn_fn(txn: Transaction) -> dict[ClaimRequest, tuple[str, dict[str, Any]]]:
            lock = " FOR UPDATE SKIP LOCKED" if txn.dialect.is_postgres else ""
            out: dict[ClaimRequest, tuple[str, dict[str, Any]]] = {}
            for request in dict.fromkeys(requests):
                params = (request.user_id, request.device_id, request.algorithm)
                row = await txn.fetch_one(
                    "DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?"
                    " AND key_id = (SELECT key_id FROM e2e_one_time_keys"
                    " WHERE user_id = ? AND device_id = ? AND algorithm = ? ORDER BY added_ts, key_id LIMIT 1"
                    + lock + ")"
                    " RETURNING key_id, key_json", params + params)
                if row is None:
                    row = await txn.fetch_one(
                        "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = ? AND device_id = ?"
                        " AND algorithm = ? RETURNING key_id, key_json", params)
                if row is not None:
                    out[request] = (row[0], decode(row[1]))
            return out

        try:
            return await self.db.run_interaction("claim_keys", txn_fn, isolation="read_committed")
        finally:
            self._keys_changed({request.user_id for request in requests})

    # --- cross-signing ---------------------------------------------------------------------
    async def get_cross_signing_keys(self, user_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """{user_id: {key_type: key}} for the users that have any."""
        if not user_ids:
            return {}
        return _cross_signing_by_user(await self.db.run_interaction(
            "get_cross_signing_keys", _cross_signing_rows_txn, list(user_ids), write=False))

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, tuple[str, dict[str, Any]]],
                                     now_ms: int) -> int:
        """Store {key_type: (public_key, key)} for the user; the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            for key_type, (public_key, key) in keys.items():
                await txn.upsert("e2e_cross_signing_keys", {"user_id": user_id, "key_type": key_type},
                                 {"public_key": public_key, "key_json": encode_str(key), "added_ts": now_ms})
            return await bump_device_lists(txn, [(user_id, NO_DEVICE)])

        return await self.db.run_interaction("set_cross_signing_keys", txn_fn, isolation="read_committed")

    async def add_signatures(self, signatures: Sequence[SignatureRow],
                             announce: Iterable[tuple[str, str]]) -> int | None:
        """Store signatures and announce the (user_id, device_id) changes they make (NO_DEVICE for a
        user's cross-signing keys); the position, if any."""
        if not signatures:
            return None

        async def txn_fn(txn: Transaction) -> int:
            for s in signatures:
                await txn.upsert("e2e_cross_signing_signatures",
                                 {"target_user_id": s.target_user_id, "target_key_id": s.target_key_id,
                                  "signer_user_id": s.signer_user_id, "signer_key_id": s.signer_key_id},
                                 {"signature": s.signature})
            return await bump_device_lists(txn, announce)

        return await self.db.run_interaction("add_signatures", txn_fn, isolation="read_committed")

    async def get_signatures(self, targets: Sequence[tuple[str, str]]) -> list[SignatureRow]:
        """Uploaded signatures over the (target_user_id, target_key_id) keys."""
        if not targets:
            return []
        wanted = set(targets)
        # One statement for every target user (a key query asks about many users at once); the
        # few signatures over keys not asked about are dropped here.
        rows = await self.get_signatures_over_users(sorted({user_id for user_id, _ in targets}))
        return [row for row in rows if (row.target_user_id, row.target_key_id) in wanted]

    async def get_signatures_over_users(self, user_ids: Sequence[str]) -> list[SignatureRow]:
        """Every uploaded signature over a key of these users (their devices' and cross-signing keys)."""
        if not user_ids:
            return []
        return await self.db.run_interaction("get_signatures", _signatures_over_users_txn, list(user_ids),
                                             write=False)

    async def record_device_change(self, user_id: str, device_ids: Sequence[str]) -> int:
        """Announce a change to these devices (e.g. a new login); the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            return await bump_device_lists(txn, [(user_id, device_id) for device_id in device_ids])

        return await self.db.run_interaction("record_device_change", txn_fn, isolation="read_committed")

    # --- devices going away -------------------------------------------------------------------
    async def delete_device_keys(self, user_id: str, device_ids: Sequence[str]) -> int:
        """Forget everything E2EE about these devices and announce it; the new device_lists position."""

        async def txn_fn(txn: Transaction) -> int:
            for device_id in device_ids:
                for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
                    await txn.delete(table, {"user_id": user_id, "device_id": device_id})
                await to_device.forget_device_txn(txn, user_id, device_id)
                await txn.delete("e2e_cross_signing_signatures",
                                 {"target_user_id": user_id, "target_key_id": device_id})
            return await bump_device_lists(txn, [(user_id, device_id) for device_id in device_ids])

        try:
            return await self.db.run_interaction("delete_device_keys", txn_fn, isolation="read_committed")
        finally:
            self._keys_changed([user_id])

    # --- what other servers are told -----------------------------------------------------------
    async def get_device_list_changes(self, after: int, upto: int, limit: int) -> list[DeviceListChange]:
        """Up to `limit` changes with after < position <= upto, oldest first, each with the position
        of the same user's previous device change (its `prev_id` over federation)."""
        rows = await self.db.fetch_all(
            "get_device_list_changes",
            "SELECT c.stream_id, c.user_id, c.device_id, (SELECT MAX(p.stream_id) FROM device_list_changes p"
            " WHERE p.user_id = c.user_id AND p.device_id <> '' AND p.stream_id < c.stream_id)"
            " FROM device_list_changes c WHERE c.stream_id > ? AND c.stream_id <= ? ORDER BY c.stream_id LIMIT ?",
            (after, upto, limit))
        return [DeviceListChange(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3])) for r in rows]

    async def get_last_device_change(self, user_id: str) -> int:
        """The position of the user's latest device change (0 when none): their device list's version."""
        value = await self.db.fetch_value(
            "last_device_change",
            "SELECT MAX(stream_id) FROM device_list_changes WHERE user_id = ? AND device_id <> ''", (user_id,))
        return 0 if value is None else int(value)

    async def get_devices_with_keys(self, user_id: str) -> list[DeviceKeysRow]:
        """Every device of a local user (hidden ones aside), with its keys and uploaded signatures
        merged in; `keys` is empty for a device that has uploaded none."""

        async def txn_fn(txn: Transaction) -> list[DeviceKeysRow]:
            rows = await txn.fetch_all(
                "SELECT d.device_id, d.display_name, k.key_json FROM devices d LEFT JOIN e2e_device_keys k"
                " ON k.user_id = d.user_id AND k.device_id = d.device_id WHERE d.user_id = ? AND d.hidden = FALSE"
                " ORDER BY d.device_id", (user_id,))
            signatures = await txn.fetch_all(
                "SELECT target_key_id, signer_user_id, signer_key_id, signature FROM e2e_cross_signing_signatures"
                " WHERE target_user_id = ?", (user_id,))
            extra: dict[str, dict[str, dict[str, str]]] = {}
            for target, signer, key_id, signature in signatures:
                extra.setdefault(target, {}).setdefault(signer, {})[key_id] = signature
            out = []
            for device_id, display_name, key_json in rows:
                keys = decode(key_json) if key_json is not None else {}
                if keys and device_id in extra:
                    keys = _merged(keys, extra[device_id])
                out.append(DeviceKeysRow(user_id, device_id, keys, display_name))
            return out

        return await self.db.run_interaction("devices_with_keys", txn_fn, write=False)

    # --- device-list stream ------------------------------------------------------------------
    async def record_membership_change(self, room_id: str, user_id: str, joined: bool) -> int:
        async def txn_fn(txn: Transaction) -> int:
            (position,) = await allocate_stream_positions(txn, DEVICE_LISTS)
            await txn.insert("device_list_membership_changes",
                             {"stream_id": position, "room_id": room_id, "user_id": user_id, "joined": joined})
            return position

        return await self.db.run_interaction("record_membership_change", txn_fn, isolation="read_committed")

    async def get_device_list_delta(self, from_position: int, to_position: int) -> DeviceListDelta:
        """Users whose keys changed, and membership changes, with from < position <= to."""

        async def txn_fn(txn: Transaction) -> DeviceListDelta:
            users = await txn.fetch_all(
                "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_id > ? AND stream_id <= ?",
                (from_position, to_position))
            members = await txn.fetch_all(
                "SELECT room_id, user_id, joined FROM device_list_membership_changes"
                " WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id", (from_position, to_position))
            return DeviceListDelta(frozenset(r[0] for r in users),
                                   tuple(MembershipChange(r[0], r[1], bool(r[2])) for r in members))

        return await self.db.run_interaction("get_device_list_delta", txn_fn, write=False)

    async def get_joined_rooms(self, user_id: str) -> set[str]:
        return set(await self.db.run_interaction("e2ee_joined_rooms", room_state.rooms_for_user, user_id, ("join",),
                                                 write=False))

    async def get_joined_members(self, room_ids: Sequence[str]) -> set[str]:
        """Everyone joined to any of these rooms now."""
        if not room_ids:
            return set()

        return await self.db.run_interaction("e2ee_joined_members", room_state.joined_members, room_ids, write=False)

    async def get_users_sharing_a_room_joined_before(self, user_id: str, room_id: str, stream_ordering: int
                                                     ) -> set[str]:
        """Users joined to a room other than `room_id` whose current membership of the user is a join
        older than `stream_ordering` (who shared a room with the user before that join)."""
        return await self.db.run_interaction("users_sharing_a_room_joined_before",
                                             room_state.users_sharing_a_room_joined_before, user_id, room_id,
                                             stream_ordering, write=False)

    async def get_users_sharing_a_room(self, user_id: str, candidates: Sequence[str] | None = None) -> set[str]:
        """Users joined to a room the user is joined to (the user included when joined anywhere).

        With `candidates`, only those among them are looked up.
        """
        if candidates is not None and not candidates:
            return set()
        return await self.db.run_interaction("users_sharing_a_room", room_state.users_sharing_a_room, user_id,
                                             candidates, write=False)


async def delete_room_membership_changes_txn(txn: Transaction, room_id: str) -> None:
    """The room's entries on the device-list membership stream (the room is being deleted)."""
    await txn.execute("DELETE FROM device_list_membership_changes WHERE room_id = ?", (room_id,))
