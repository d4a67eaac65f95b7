"""The database interface, run against both engines: helpers, transactions, isolation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storage import Database, DatabaseError, Transaction


async def add_user(db: Database, user_id: str, **extra: object) -> None:
    await db.simple_insert("users", {"user_id": user_id, "created_ts": 1000, **extra})


async def count_users(db: Database) -> int:
    return await db.fetch_value("count_users", "SELECT COUNT(*) FROM users")


async def test_inserted_rows_are_read_back_with_booleans_as_bools(db: Database) -> None:
    await add_user(db, "@alice:example.org", admin=True, password_hash="hash")
    row = await db.simple_select_one(
        "users", {"user_id": "@alice:example.org"}, ["user_id", "admin", "deactivated", "password_hash"]
    )
    assert row == {
        "user_id": "@alice:example.org",
        "admin": True,
        "deactivated": False,
        "password_hash": "hash",
    }
    assert type(row["admin"]) is bool and type(row["deactivated"]) is bool


async def test_select_one_raises_on_a_missing_row_unless_allowed(db: Database) -> None:
    assert await db.simple_select_one("users", {"user_id": "@nobody:x"}, ["user_id"], allow_none=True) is None
    with pytest.raises(DatabaseError, match="no row"):
        await db.simple_select_one("users", {"user_id": "@nobody:x"}, ["user_id"])


async def test_select_list_filters_and_orders(db: Database) -> None:
    for user, admin in [("@c:x", True), ("@a:x", True), ("@b:x", False)]:
        await add_user(db, user, admin=admin)
    rows = await db.simple_select_list("users", {"admin": True}, ["user_id"], order_by=["user_id"])
    assert rows == [{"user_id": "@a:x"}, {"user_id": "@c:x"}]


async def test_null_key_values_match_null_columns(db: Database) -> None:
    await add_user(db, "@typed:x", user_type="bot")
    await add_user(db, "@plain:x")
    rows = await db.simple_select_list("users", {"user_type": None}, ["user_id"])
    assert rows == [{"user_id": "@plain:x"}]


async def test_update_and_delete_report_how_many_rows_they_touched(db: Database) -> None:
    await add_user(db, "@a:x")
    await add_user(db, "@b:x")
    assert await db.simple_update("users", {"user_id": "@a:x"}, {"deactivated": True}) == 1
    assert await db.simple_update("users", {"user_id": "@missing:x"}, {"deactivated": True}) == 0
    assert await db.simple_delete("users", {"deactivated": False}) == 1
    assert await db.simple_select_list("users", {}, ["user_id"]) == [{"user_id": "@a:x"}]


async def test_upsert_inserts_then_updates_only_the_given_values(db: Database) -> None:
    key = {"user_id": "@a:x", "device_id": "DEV"}
    await db.simple_upsert("devices", key, {"display_name": "phone"}, insertion_values={"created_ts": 5})
    await db.simple_upsert("devices", key, {"display_name": "laptop"}, insertion_values={"created_ts": 99})
    rows = await db.simple_select_list(
        "devices", {"user_id": "@a:x"}, ["device_id", "display_name", "created_ts"]
    )
    assert rows == [{"device_id": "DEV", "display_name": "laptop", "created_ts": 5}]


async def test_upsert_without_values_keeps_the_existing_row(db: Database) -> None:
    key = {"user_id": "@a:x", "device_id": "DEV"}
    await db.simple_upsert("devices", key, {}, insertion_values={"created_ts": 5, "display_name": "first"})
    await db.simple_upsert("devices", key, {}, insertion_values={"created_ts": 6, "display_name": "second"})
    row = await db.simple_select_one("devices", key, ["display_name", "created_ts"])
    assert row == {"display_name": "first", "created_ts": 5}


async def test_generated_ids_come_back_through_returning(db: Database) -> None:
    async def issue(txn: Transaction, token_hash: str) -> int:
        return await txn.fetch_value(
            "INSERT INTO access_tokens (token_hash, user_id, created_ts) VALUES (?, ?, ?) RETURNING id",
            (token_hash, "@a:x", 0),
        )

    first = await db.run_interaction("issue", issue, "h1")
    second = await db.run_interaction("issue", issue, "h2")
    assert isinstance(first, int) and second > first


async def test_executemany_inserts_every_row(db: Database) -> None:
    async def insert(txn: Transaction) -> int:
        await txn.insert_many("users", ["user_id", "created_ts"], [(f"@u{i}:x", i) for i in range(25)])
        return txn.rowcount

    assert await db.run_interaction("insert_many", insert) == 25
    assert await count_users(db) == 25


async def test_bytes_round_trip_through_a_blob_column(db: Database) -> None:
    blob = db.dialect.schema_tokens["BLOB"]
    payload = bytes(range(256))

    async def store(txn: Transaction) -> bytes:
        await txn.execute(f"CREATE TABLE blobs (k TEXT PRIMARY KEY, v {blob})")
        await txn.execute("INSERT INTO blobs (k, v) VALUES (?, ?)", ("k", payload))
        return await txn.fetch_value("SELECT v FROM blobs WHERE k = ?", ("k",))

    assert bytes(await db.run_interaction("blobs", store)) == payload


async def test_fetchone_walks_the_buffered_result(db: Database) -> None:
    async def walk(txn: Transaction) -> list[object]:
        await txn.execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 ORDER BY 1")
        return [txn.fetchone(), txn.fetchall(), txn.fetchone()]

    assert await db.run_interaction("walk", walk, write=False) == [(1,), [(2,), (3,)], None]


async def test_a_batch_of_reads_returns_each_statements_rows_in_order(db: Database) -> None:
    for i in range(3):
        await add_user(db, f"@u{i}:x")

    async def read(txn: Transaction) -> tuple[list[list[object]], int]:
        clause, params = txn.dialect.in_list("user_id", ["@u0:x", "@u2:x", "@nobody:x"])
        batch = await txn.fetch_all_batch([
            ("SELECT COUNT(*) FROM users", ()),
            (f"SELECT user_id FROM users WHERE {clause} ORDER BY user_id", params),
            ("SELECT user_id FROM users WHERE user_id = ?", ("@nobody:x",)),
        ])
        return batch, txn.statements

    batch, statements = await db.run_interaction("batch", read, write=False)
    assert batch == [[(3,)], [("@u0:x",), ("@u2:x",)], []]
    assert statements == 3


async def test_a_failing_statement_in_a_batch_fails_the_interaction_and_the_connection_stays_usable(
        db: Database) -> None:
    async def read(txn: Transaction) -> None:
        await txn.fetch_all_batch([("SELECT COUNT(*) FROM users", ()), ("SELECT nonsense FROM users", ())])

    for _ in range(3):
        with pytest.raises(Exception, match="nonsense"):
            await db.run_interaction("bad_batch", read, write=False)
    assert await count_users(db) == 0


async def test_an_exception_rolls_back_everything_the_transaction_wrote(db: Database) -> None:
    async def doomed(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@doomed:x", "created_ts": 0})
        await txn.insert("profiles", {"user_id": "@doomed:x", "displayname": "D"})
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await db.run_interaction("doomed", doomed)
    assert await count_users(db) == 0
    assert await db.fetch_value("profiles", "SELECT COUNT(*) FROM profiles") == 0


async def test_a_failing_statement_rolls_back_earlier_statements(db: Database) -> None:
    await add_user(db, "@taken:x")

    async def clash(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@new:x", "created_ts": 0})
        await txn.insert("users", {"user_id": "@taken:x", "created_ts": 0})

    with pytest.raises(Exception) as caught:
        await db.run_interaction("clash", clash)
    assert "unique" in str(caught.value).lower()
    assert await count_users(db) == 1


async def test_after_commit_callbacks_run_once_after_commit_and_never_after_rollback(db: Database) -> None:
    seen: list[str] = []

    async def ok(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@ok:x", "created_ts": 0})
        txn.call_after_commit(seen.append, "ok")

    async def fails(txn: Transaction) -> None:
        txn.call_after_commit(seen.append, "fails")
        raise ValueError("no")

    await db.run_interaction("ok", ok)
    with pytest.raises(ValueError):
        await db.run_interaction("fails", fails)
    assert seen == ["ok"]


async def test_read_only_interactions_cannot_write(db: Database) -> None:
    with pytest.raises(Exception) as caught:
        await db.run_interaction(
            "sneaky", Transaction.insert, "users", {"user_id": "@r:x", "created_ts": 0}, write=False
        )
    assert "read" in str(caught.value).lower()
    assert await count_users(db) == 0


async def test_a_read_transaction_sees_one_snapshot_even_while_writes_commit(db: Database) -> None:
    await add_user(db, "@first:x")
    first_read_done = asyncio.Event()
    write_committed = asyncio.Event()

    async def read_twice(txn: Transaction) -> tuple[int, int]:
        before = await txn.fetch_value("SELECT COUNT(*) FROM users")
        first_read_done.set()
        await write_committed.wait()
        after = await txn.fetch_value("SELECT COUNT(*) FROM users")
        return before, after

    async def write_between() -> None:
        await first_read_done.wait()
        await add_user(db, "@second:x")
        write_committed.set()

    counts, _ = await asyncio.gather(
        db.run_interaction("read_twice", read_twice, write=False), write_between()
    )
    assert counts == (1, 1)
    assert await count_users(db) == 2


async def test_readers_proceed_while_a_write_transaction_is_open(db: Database) -> None:
    inserted = asyncio.Event()
    release = asyncio.Event()

    async def slow_write(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@pending:x", "created_ts": 0})
        inserted.set()
        await release.wait()

    writer = asyncio.create_task(db.run_interaction("slow_write", slow_write))
    await inserted.wait()
    # Must finish while the writer still holds its transaction open, and not see its row.
    assert await asyncio.wait_for(count_users(db), timeout=5) == 0
    release.set()
    await writer
    assert await count_users(db) == 1


async def test_a_closed_database_refuses_interactions(db: Database) -> None:
    await db.close()
    with pytest.raises(DatabaseError, match="closed"):
        await count_users(db)


async def test_interaction_functions_receive_extra_positional_and_keyword_arguments(db: Database) -> None:
    async def combine(txn: Transaction, a: int, b: int, *, scale: int) -> int:
        return await txn.fetch_value("SELECT (? + ?) * ?", (a, b, scale))

    assert await db.run_interaction("combine", combine, 2, 3, scale=10, write=False) == 50


async def test_starting_an_interaction_inside_another_is_refused_rather_than_deadlocking(
    db: Database,
) -> None:
    async def outer(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@outer:x", "created_ts": 0})
        await db.simple_insert("users", {"user_id": "@inner:x", "created_ts": 0})

    with pytest.raises(DatabaseError, match="inside interaction 'outer'"):
        await asyncio.wait_for(db.run_interaction("outer", outer), timeout=5)
    assert await count_users(db) == 0


async def test_after_commit_callbacks_may_use_the_database(db: Database) -> None:
    copied: list[int] = []

    async def copy_count() -> None:
        copied.append(await count_users(db))

    async def write(txn: Transaction) -> None:
        await txn.insert("users", {"user_id": "@a:x", "created_ts": 0})
        txn.call_after_commit(copy_count)

    await db.run_interaction("write", write)
    assert copied == [1]


async def test_a_failing_first_statement_raises_its_error_and_leaves_the_connection_usable(db: Database) -> None:
    # On PostgreSQL the first statement travels with the BEGIN; its error must surface as usual.
    await add_user(db, "@taken:x")
    for _ in range(6):  # more than the pool holds, so a connection left broken would show up
        with pytest.raises(Exception) as caught:
            await db.run_interaction(
                "clash_first", Transaction.insert, "users", {"user_id": "@taken:x", "created_ts": 0}
            )
        assert "unique" in str(caught.value).lower()
        with pytest.raises(Exception) as caught:
            await db.fetch_value("bad_read", "SELECT no_such_column FROM users")
        assert "no_such_column" in str(caught.value)
    assert await count_users(db) == 1
    await add_user(db, "@after:x")
    assert await count_users(db) == 2


async def test_many_concurrent_reads_finish_and_leave_room_for_writes(db: Database) -> None:
    # Read-only transactions give their connection back once their COMMIT is answered, after
    # the caller has its result: a burst far larger than the pool must neither hang nor starve.
    await add_user(db, "@a:x")

    async def two_reads(txn: Transaction) -> tuple[int, int]:
        first = await txn.fetch_value("SELECT COUNT(*) FROM users")
        second = await txn.fetch_value("SELECT COUNT(*) FROM users WHERE user_id = ?", ("@a:x",))
        return first, second

    async def nothing(txn: Transaction) -> str:
        return "no statement"

    results = await asyncio.gather(
        *(db.run_interaction("two_reads", two_reads, write=False) for _ in range(40)),
        *(count_users(db) for _ in range(40)),
        *(db.run_interaction("nothing", nothing, write=False) for _ in range(10)),
    )
    assert results[:40] == [(1, 1)] * 40
    assert results[40:80] == [1] * 40
    assert results[80:] == ["no statement"] * 10
    await add_user(db, "@b:x")
    assert await count_users(db) == 2


async def test_a_write_that_runs_no_statement_commits_nothing_and_succeeds(db: Database) -> None:
    seen: list[str] = []

    async def empty(txn: Transaction) -> int:
        txn.call_after_commit(seen.append, "done")
        return 7

    assert await db.run_interaction("empty", empty) == 7
    assert seen == ["done"]


async def test_a_relaxed_commit_is_kept_and_the_next_transaction_is_durable_again(db: Database) -> None:
    # Stream stages commit their derived writes without waiting for the disk; the setting must
    # not outlive that transaction, or acknowledged events would lose their fsync.
    async def durability(txn: Transaction) -> Any:
        if db.dialect.is_postgres:
            return await txn.fetch_value("SHOW synchronous_commit")
        return await txn.fetch_value("PRAGMA synchronous")

    async def write(txn: Transaction, name: str, fail: bool = False) -> Any:
        await txn.execute("INSERT INTO stream_positions (stream_name, position) VALUES (?, ?)", (name, 7))
        setting = await durability(txn)
        if fail:
            raise RuntimeError("rolled back")
        return setting

    full, relaxed = ("on", "off") if db.dialect.is_postgres else (2, 1)  # FULL, NORMAL
    assert await db.run_interaction("durability", durability) == full
    for i in range(3):
        assert await db.run_interaction("relaxed", write, f"relaxed{i}", durable=False) == relaxed
        assert await db.run_interaction("durability", durability) == full
    with pytest.raises(RuntimeError):
        await db.run_interaction("relaxed", write, "failed", True, durable=False)
    assert await db.run_interaction("durable", write, "durable") == full
    names = await db.fetch_all("names", "SELECT stream_name FROM stream_positions WHERE position = 7")
    assert sorted(n for (n,) in names) == ["durable", "relaxed0", "relaxed1", "relaxed2"]


async def test_a_single_statement_read_runs_and_a_second_round_trip_is_refused(db):
    await db.execute("seed_single", "CREATE TABLE single_probe (n INTEGER)")
    await db.execute("seed_single_row", "INSERT INTO single_probe (n) VALUES (1)")
    assert await db.fetch_value("single_probe", "SELECT n FROM single_probe") == 1

    async def two(txn):
        await txn.fetch_all("SELECT n FROM single_probe")
        return await txn.fetch_all("SELECT n FROM single_probe")

    if db.engine == "postgres":
        with pytest.raises(DatabaseError, match="second round trip"):
            await db.run_interaction("two_statements", two, write=False, single_statement=True)
    else:  # SQLite's reads cost no hop for BEGIN or COMMIT: the promise changes nothing there
        assert await db.run_interaction("two_statements", two, write=False, single_statement=True) == [(1,)]
    with pytest.raises(ValueError):
        await db.run_interaction("a_write", two, single_statement=True)
    # The connection went back to the pool usable, outside any transaction.
    assert await db.run_interaction("two_statements_in_a_block", two, write=False) == [(1,)]
