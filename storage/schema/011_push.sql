-- Push: what each event's evaluation decided for each local member, the unread counts derived
-- from it, and the users' pushers.

-- One row per (user, event) whose push rules said "notify". `thread_id` is the thread root's
-- event ID, or 'main' for the main timeline (the receipts table's name for it).
-- GET /notifications pages through a user's rows by stream_ordering.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    actions TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, thread_id, stream_ordering);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_ordering);
CREATE INDEX event_push_actions_event ON event_push_actions (event_id);

-- Unread counts per (user, room, thread): incremented as events are evaluated, recomputed from
-- event_push_actions when a read receipt moves or a counted event is redacted. /sync reads these.
CREATE TABLE event_push_counts (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    notification_count BIGINT NOT NULL,
    highlight_count BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- HTTP pushers (POST /pushers/set). `data` is the JSON the client gave, including `url`.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    device_id TEXT,
    pushkey_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
