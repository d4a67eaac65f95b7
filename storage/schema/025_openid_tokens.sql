-- OpenID tokens (POST /user/{userId}/openid/request_token): third parties (widgets, integration
-- managers) exchange one for the user's ID at /_matrix/federation/v1/openid/userinfo. Stored as
-- hashes, like access tokens; a token is valid until expires_ts.
CREATE TABLE openid_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expires ON openid_tokens (expires_ts);
CREATE INDEX openid_tokens_user ON openid_tokens (user_id);
