-- /search orders by recency and pages below a stream position. With only event_id/room_id/key/vector
-- here, every match had to be joined with `events` before it could be ordered or limited, and the
-- planner scanned `events` whole even for a word found in two messages. The index now keeps the
-- event's stream position and timestamp itself (filled in from `events` for rows already indexed),
-- so a query picks its page from this table alone and joins only that page.
ALTER TABLE event_search ADD COLUMN stream_ordering BIGINT;
ALTER TABLE event_search ADD COLUMN origin_server_ts BIGINT;
UPDATE event_search SET stream_ordering = e.stream_ordering, origin_server_ts = e.origin_server_ts
    FROM events e WHERE e.event_id = event_search.event_id;
-- A row whose event is gone could never be returned (the query always joined `events`).
DELETE FROM event_search WHERE stream_ordering IS NULL;
ALTER TABLE event_search ALTER COLUMN stream_ordering SET NOT NULL;
ALTER TABLE event_search ALTER COLUMN origin_server_ts SET NOT NULL;
-- Replaces event_search_room (its prefix): a room's matches in stream order.
CREATE INDEX event_search_room_stream ON event_search (room_id, stream_ordering);
DROP INDEX event_search_room;
