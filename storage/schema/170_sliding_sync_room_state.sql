-- Simplified sliding sync connection state, per room instead of one JSON document per position.
-- The positions of 150 (`sliding_sync_positions`) are dropped: a client holding one gets
-- M_UNKNOWN_POS and starts a new connection (docs/decisions.md "Sliding sync: per-room
-- connection state").
DROP TABLE sliding_sync_positions;

-- One row per position handed out (at most two live per connection: the one the last request
-- used, kept for a retry, and the newest). `gen` orders a connection's positions (it grows with
-- every response); `token` is the response's stream token, `counts` the JSON of its list counts.
CREATE TABLE sliding_sync_connection_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    pos TEXT NOT NULL,
    gen BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    token TEXT NOT NULL,
    counts TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, pos)
);
CREATE INDEX sliding_sync_connection_positions_created ON sliding_sync_connection_positions (created_ts);

-- What the client has of a room, written at the `gen` of the position where it changed. The
-- state at a position of generation G is, per room, the row with the largest gen <= G; a row
-- with a NULL membership says the room is not in that state. A `live` row is a room in view at
-- its position and had up to it: its `upto` and `seen` (stored as 0 and NULL) are those of the
-- position that reads it, so a room that stays in view without news is not written again.
CREATE TABLE sliding_sync_connection_rooms (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    gen BIGINT NOT NULL,
    upto BIGINT NOT NULL,
    membership TEXT,
    config TEXT NOT NULL,
    members TEXT NOT NULL,
    seen TEXT,
    live BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, room_id, gen)
);
