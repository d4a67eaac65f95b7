-- Presence, and the full-text index that server-side search (/search) reads.

-- The latest presence of each local user; stream_id is the "presence" stream position of its
-- last change, so /sync can ask for the changes between two tokens.
CREATE TABLE presence_state (
    user_id TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_user_sync_ts BIGINT NOT NULL,
    -- Set by an explicit PUT of "unavailable": syncing does not turn the user online again.
    explicit_unavailable BOOLEAN NOT NULL DEFAULT FALSE,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_state_stream ON presence_state (stream_id);

-- One row per indexed text of an event (content.body, content.name or content.topic).
CREATE TABLE event_search (
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    vector TSVECTOR NOT NULL,
    PRIMARY KEY (event_id, key)
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id);
