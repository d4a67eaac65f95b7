-- The first schema, shared by SQLite and PostgreSQL.
--
-- Portability rules used throughout: TEXT for strings and JSON (stored as encoded text), BIGINT for
-- timestamps (milliseconds) and positions, BOOLEAN for flags (SQLite hands them back as bool via
-- a converter), {{AUTO_ID}} for generated ids read back with RETURNING, and NOT NULL DEFAULT ''
-- instead of NULL for optional parts of a unique key, because NULLs never conflict in a unique
-- index and so could not drive an upsert.

-- Stream positions: one row per stream, bumped inside the writing transaction (storage/streams.py).
CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Accounts ---------------------------------------------------------------------------------------

CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    erased BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
    user_type TEXT,
    appservice_id TEXT,
    created_ts BIGINT NOT NULL
);
-- Logins match user ids case-insensitively.
CREATE INDEX users_lower_user_id ON users (lower(user_id));

CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);

-- Extended profile fields (MSC4133 style): any other key, its value as JSON text.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field_name TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (user_id, field_name)
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    last_seen_ts BIGINT,
    created_ts BIGINT NOT NULL,
    hidden BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as hashes only, so a database leak does not leak live credentials.
CREATE TABLE access_tokens (
    id {{AUTO_ID}},
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    valid_until_ms BIGINT,
    refresh_token_id BIGINT,
    puppets_user_id TEXT,
    last_used BIGINT,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);

CREATE TABLE refresh_tokens (
    id {{AUTO_ID}},
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- The token that replaced this one once it was used; NULL while it is the current one.
    next_token_id BIGINT,
    expiry_ts BIGINT,
    ultimate_session_expiry_ts BIGINT,
    has_next_access_token_been_used BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_next_token ON refresh_tokens (next_token_id);

CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expiry_ts BIGINT NOT NULL,
    used_ts BIGINT,
    auth_provider_id TEXT,
    auth_provider_session_id TEXT
);
CREATE INDEX login_tokens_expiry ON login_tokens (expiry_ts);

CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

-- Last sighting of each (user, device, ip, user agent); device_id is '' for device-less tokens.
CREATE TABLE user_ips (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, ip, user_agent)
);
CREATE INDEX user_ips_last_seen ON user_ips (user_id, last_seen);
CREATE INDEX user_ips_ip ON user_ips (ip);

-- Account data, global and per room, each change stamped with the account_data stream position.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    account_data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, account_data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE room_account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    account_data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, account_data_type)
);
CREATE INDEX room_account_data_stream ON room_account_data (user_id, stream_id);

CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Rooms and events -------------------------------------------------------------------------------

CREATE TABLE rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT
);

-- One row per event we hold, including outliers. stream_ordering is unique across all events:
-- positive for events persisted live (the "events" stream), negative for backfilled history and
-- outliers (the "events_backfill" stream, counting down). depth is the topological ordering.
CREATE TABLE events (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    outlier BOOLEAN NOT NULL DEFAULT FALSE,
    rejected_reason TEXT,
    -- The redaction event that redacted this one, once it applies (see redactions).
    redacted_by TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);
CREATE INDEX events_room_type_state_key ON events (room_id, type, state_key);
CREATE INDEX events_sender ON events (sender);

-- The full event JSON is kept apart so that scans over `events` stay narrow.
CREATE TABLE event_json (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    internal_metadata TEXT NOT NULL DEFAULT '{}',
    json TEXT NOT NULL
);

-- prev_events: the DAG's edges.
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);
CREATE INDEX event_auth_auth_id ON event_auth (auth_id);

CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Events we know of (as prev_events) but do not hold: where backfill resumes.
CREATE TABLE event_backward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE redactions (
    event_id TEXT NOT NULL PRIMARY KEY,
    redacts TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    -- Set once the redacted event's stored JSON has been pruned for good.
    have_censored BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- Transaction ids of client event sends, so a retried PUT returns the same event; device_id is ''
-- for senders without a device (application services).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_inserted ON event_txn_ids (inserted_ts);

-- State ------------------------------------------------------------------------------------------

-- The resolved state of each room right now, with membership copied out for member events.
CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_events_event ON current_state_events (event_id);
CREATE INDEX current_state_members ON current_state_events (state_key, membership)
    WHERE type = 'm.room.member';

-- State groups: the state at an event is a group; a group stores only its delta from
-- prev_state_group (state_group_edges), so a message in a large room adds no state rows.
CREATE TABLE state_groups (
    id {{AUTO_ID}},
    room_id TEXT NOT NULL,
    -- The event whose persistence created the group.
    event_id TEXT NOT NULL
);
CREATE INDEX state_groups_room ON state_groups (room_id);

CREATE TABLE state_group_edges (
    state_group BIGINT NOT NULL PRIMARY KEY,
    prev_state_group BIGINT NOT NULL
);
CREATE INDEX state_group_edges_prev ON state_group_edges (prev_state_group);

CREATE TABLE state_groups_state (
    state_group BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
);

CREATE TABLE event_to_state_groups (
    event_id TEXT NOT NULL PRIMARY KEY,
    state_group BIGINT NOT NULL
);
CREATE INDEX event_to_state_groups_group ON event_to_state_groups (state_group);

-- Every membership event, for history ("who was in the room when").
CREATE TABLE room_memberships (
    event_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    display_name TEXT,
    avatar_url TEXT,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX room_memberships_room_user ON room_memberships (room_id, user_id);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);

-- Receipts: the latest receipt per (room, type, user, thread); thread_id is '' when unthreaded.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (stream_id);
CREATE INDEX receipts_user ON receipts (user_id, stream_id);
