-- Content reports from users (rooms, events, users), for moderators and the admin API.
CREATE TABLE content_reports (
    id {{AUTO_ID}},
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    score INTEGER,
    received_ts BIGINT NOT NULL
);
CREATE INDEX content_reports_received ON content_reports (received_ts);
CREATE INDEX content_reports_reporter ON content_reports (reporter);
