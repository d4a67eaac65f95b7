-- Other servers' signing keys, as fetched from them directly or through a notary.

-- One row per (server, key ID): the public key and how long it may be used. A key a server still
-- publishes in `verify_keys` has valid_until_ts (from its response) and no expired_ts; one it moved
-- to `old_verify_keys` has expired_ts, and verifies only what was signed before then.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The newest signed key response of each server (its `/_matrix/key/v2/server` body, with the
-- server's own signatures), kept so the notary endpoint can serve it to others.
CREATE TABLE server_key_responses (
    server_name TEXT NOT NULL PRIMARY KEY,
    key_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
