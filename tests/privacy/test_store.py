"""The privacy database on SQLite and PostgreSQL: requests, the append-only audit log, the inbox."""

from __future__ import annotations

import pytest

from appservices.privacy.config import DatabaseConfig
from appservices.privacy.database import Database
from appservices.privacy.store import PrivacyStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        config = DatabaseConfig(engine="sqlite", path=str(tmp_path / "p.db"))
    else:
        config = DatabaseConfig(engine="postgres", dsn=request.getfixturevalue("postgres_dsn"))
    db = Database(config)
    await db.open()
    yield PrivacyStore(db), db
    await db.close()


async def test_requests_have_ids_timestamps_and_an_audit_entry_per_step(store):
    s, _ = store
    request = await s.create_request(1000, "@a:x", "erase", status="awaiting_confirmation", code="ABC")
    assert [r.request_id for r in await s.open_requests()] == [request.request_id]
    await s.update_request(2500, request.request_id, "done", {"removed": {"media": 2}}, actor="service",
                           action="erase.completed")
    done = await s.get_request(request.request_id)
    assert (done.status, done.created_ts, done.completed_ts, done.detail) == ("done", 1000, 2500,
                                                                              {"removed": {"media": 2}})
    assert await s.open_requests() == []
    entries = await s.audit_entries(user_id="@a:x")
    assert [(e["action"], e["request_id"]) for e in entries] == [("erase.requested", request.request_id),
                                                                 ("erase.completed", request.request_id)]


async def test_the_audit_log_refuses_updates_and_deletes(store):
    s, db = store
    await s.audit(1, "@a:x", "@a:x", "export.requested")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("UPDATE audit_log SET action = 'x'")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("DELETE FROM audit_log")
    assert [e["action"] for e in await s.audit_entries()] == ["export.requested"]


async def test_a_transaction_is_stored_once_and_its_events_wait_until_processed(store):
    s, _ = store
    assert await s.store_transaction(1, "t1", [{"event_id": "$a"}, {"event_id": "$b"}])
    assert not await s.store_transaction(2, "t1", [{"event_id": "$a"}])
    pending = await s.unprocessed_events()
    assert [(t, i, e["event_id"]) for t, i, e in pending] == [("t1", 0, "$a"), ("t1", 1, "$b")]
    await s.mark_processed("t1", 0)
    assert [e["event_id"] for _, _, e in await s.unprocessed_events()] == ["$b"]
    await s.prune_transactions(before_ts=100)  # t1 still has an unhandled event: kept
    assert not await s.store_transaction(3, "t1", [])
    await s.mark_processed("t1", 1)
    await s.prune_transactions(before_ts=100)
    assert await s.store_transaction(4, "t1", [])  # forgotten once handled and old


async def test_consent_is_recorded_once_per_version(store):
    s, _ = store
    assert await s.record_consent(10, "@a:x", "1", None)
    assert not await s.record_consent(20, "@a:x", "1", None)
    assert await s.record_consent(30, "@a:x", "2", None)
    assert [(c["version"], c["ts"]) for c in await s.consents_of("@a:x")] == [("1", 10), ("2", 30)]
