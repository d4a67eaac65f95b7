-- Device lists of users of other servers, cached while they share a room with one of our users and
-- kept fresh by `m.device_list_update` and `m.signing_key_update` EDUs. `stream_id` is the origin's
-- stream ID this copy is at: an update whose `prev_id` we never saw sends us back to
-- GET /user/devices/{userId} for the whole list.
CREATE TABLE remote_device_lists (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);

-- key_json is NULL for a device that has not uploaded keys yet.
CREATE TABLE remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- key_type is master or self_signing (a user-signing key never leaves its server).
CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
