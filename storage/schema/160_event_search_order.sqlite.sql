-- /search orders by recency and pages below a stream position; the index now carries the event's
-- stream position (as the FTS5 rowid, so matches come out in stream order and `rowid < ?` seeks)
-- and its timestamp. FTS5 tables cannot gain columns, so the index is rebuilt from the old one,
-- taking both from `events`. An event has one indexed text (one key per event type); should an
-- old index hold two rows of one event, the first is kept.
CREATE VIRTUAL TABLE event_search_v2 USING fts5(
    value,
    event_id UNINDEXED,
    room_id UNINDEXED,
    key UNINDEXED,
    origin_server_ts UNINDEXED,
    tokenize = 'porter unicode61'
);
INSERT INTO event_search_v2 (rowid, value, event_id, room_id, key, origin_server_ts)
    SELECT stream_ordering, value, event_id, room_id, key, origin_server_ts FROM (
        SELECT e.stream_ordering, s.value, s.event_id, s.room_id, s.key, e.origin_server_ts, MIN(s.rowid)
        FROM event_search s JOIN events e ON e.event_id = s.event_id
        GROUP BY s.event_id
    );
DROP TABLE event_search;
ALTER TABLE event_search_v2 RENAME TO event_search;
