-- Simplified sliding sync: each connection's positions, so that a client continues after a restart.
-- One row per position handed out (at most two live per connection: the one the last request used,
-- kept for a retry, and the newest). `token` is the stream token of the response; `state` is the
-- JSON of what the client has of each room (position, membership, configuration, lazy members)
-- and the list counts. Rows older than the connection expiry are pruned.
CREATE TABLE sliding_sync_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    pos TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    token TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, pos)
);
CREATE INDEX sliding_sync_positions_created ON sliding_sync_positions (created_ts);
