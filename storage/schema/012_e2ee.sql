-- End-to-end encryption plumbing: device keys, one-time and fallback keys, cross-signing keys and
-- their signatures, the device-list stream, the to-device inbox and server-side key backup.
-- Key objects are stored as the JSON the client signed (canonical JSON text), so they can be
-- served back byte-for-byte equivalent and re-verified.

CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- At most one fallback key per algorithm; `used` once it was handed out by /keys/claim.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- key_type is master, self_signing or user_signing; public_key the unpadded base64 ed25519 key.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload: `signer_key_id` (e.g. ed25519:<pubkey>) of
-- `signer_user_id` signed `target_user_id`'s key `target_key_id` (a device ID or a master public key).
CREATE TABLE e2e_cross_signing_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device_lists stream: a row per change of a user's devices or keys (device_id '' for
-- cross-signing changes), and a row per membership change that starts or may end room sharing.
CREATE TABLE device_list_changes (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_list_changes_stream ON device_list_changes (stream_id);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

CREATE TABLE device_list_membership_changes (
    stream_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined BOOLEAN NOT NULL
);
CREATE INDEX device_list_membership_changes_stream ON device_list_membership_changes (stream_id);

-- To-device messages waiting for their device; deleted once a sync acknowledges them.
CREATE TABLE to_device_inbox (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE INDEX to_device_inbox_stream ON to_device_inbox (stream_id);

-- Transaction IDs already used by a sending device, so a retried PUT is not delivered twice.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    added_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
