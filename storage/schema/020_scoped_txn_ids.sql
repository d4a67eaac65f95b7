-- Transaction IDs are scoped to the request path as well as the device: stored keys become
-- '<length of scope>:<scope>:<client txn id>' with scope 'send|<room>|<type>' or
-- 'redact|<room>|<redacted event>' (homeserver.rooms.transactions). Redactions are keyed by
-- the event they redact, every other event by its type, as the endpoints that sent them.
UPDATE event_txn_ids SET txn_id = (
    SELECT CAST(length('redact|' || r.redacts) + length(event_txn_ids.room_id) + 1 AS TEXT)
        || ':redact|' || event_txn_ids.room_id || '|' || r.redacts || ':' || event_txn_ids.txn_id
    FROM redactions r WHERE r.event_id = event_txn_ids.event_id
)
WHERE EXISTS (SELECT 1 FROM redactions r WHERE r.event_id = event_txn_ids.event_id);

UPDATE event_txn_ids SET txn_id = (
    SELECT CAST(length('send|' || e.type) + length(event_txn_ids.room_id) + 1 AS TEXT)
        || ':send|' || event_txn_ids.room_id || '|' || e.type || ':' || event_txn_ids.txn_id
    FROM events e WHERE e.event_id = event_txn_ids.event_id
)
WHERE NOT EXISTS (SELECT 1 FROM redactions r WHERE r.event_id = event_txn_ids.event_id)
  AND EXISTS (SELECT 1 FROM events e WHERE e.event_id = event_txn_ids.event_id);
