-- The event pipeline: positions of the background stages that follow the events stream, and
-- the durable per-destination outbound queue (pushers, application services, federation).

-- How far each stage (push evaluation, search indexing, pusher hand-off, ...) has processed the
-- events stream; a stage's writes and its new position commit in one transaction.
CREATE TABLE stream_stage_positions (
    stage_name TEXT NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Items waiting to be delivered, oldest first per destination. txn_id is set when an item is
-- first sent as part of a transaction; a retry sends the same items under the same ID.
CREATE TABLE outbound_queue (
    id {{AUTO_ID}},
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    txn_id TEXT
);
CREATE INDEX outbound_queue_destination ON outbound_queue (kind, destination, id);

-- Delivery state per destination: backoff after failures, and the counter behind transaction IDs.
CREATE TABLE outbound_destinations (
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at_ts BIGINT NOT NULL DEFAULT 0,
    last_success_ts BIGINT,
    last_failure_ts BIGINT,
    last_error TEXT,
    txn_counter BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, destination)
);
