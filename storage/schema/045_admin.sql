-- The admin API: account states an admin sets, identifiers an admin records, and the durable
-- state of long admin jobs (room deletion, history purges).

-- Locked accounts keep their data but every request answers 401 M_USER_LOCKED; suspended
-- accounts may read but not send (M_USER_SUSPENDED), as the spec's account moderation says.
ALTER TABLE users ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;

-- Third-party identifiers an admin recorded for a user (nothing here validates them).
CREATE TABLE user_threepids (
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    user_id TEXT NOT NULL,
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Identities of a user at external auth providers (SSO); one provider identity maps to one user.
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);

-- Per-user message rate limit overrides; 0 means unlimited.
CREATE TABLE ratelimit_overrides (
    user_id TEXT NOT NULL PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count BIGINT NOT NULL
);

-- Rooms local users may not join, and the admin who blocked each.
CREATE TABLE blocked_rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL
);

-- Long admin jobs (room deletion, history purge): status survives a restart.
CREATE TABLE admin_tasks (
    task_id TEXT NOT NULL PRIMARY KEY,
    action TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX admin_tasks_resource ON admin_tasks (action, resource_id);

-- The server-notices room of each user.
CREATE TABLE server_notice_rooms (
    user_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL
);

-- Media an admin protected from quarantine.
ALTER TABLE local_media ADD COLUMN safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE;

-- The login audit log: each login, and each new IP address or user agent of a device.
CREATE TABLE login_audit (
    id {{AUTO_ID}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX login_audit_user ON login_audit (user_id, ts);
CREATE INDEX login_audit_ts ON login_audit (ts);
