-- Media repository. File bytes live on disk, content-addressed by SHA-256 (identical uploads
-- share one file); these tables map media IDs to that content plus what was said about it.

-- Media uploaded here, including IDs reserved by /create whose content has not arrived yet
-- (content_hash NULL, unused_expires_ts set) and images fetched for URL previews (user_id NULL).
CREATE TABLE local_media (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT,
    content_type TEXT,
    upload_name TEXT,
    content_hash TEXT,
    media_length BIGINT,
    created_ts BIGINT NOT NULL,
    uploaded_ts BIGINT,
    unused_expires_ts BIGINT,
    quarantined_by TEXT,
    url_cache TEXT,
    last_access_ts BIGINT
);
CREATE INDEX local_media_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_hash ON local_media (content_hash);
CREATE INDEX local_media_unused ON local_media (unused_expires_ts);

-- Copies of other servers' media; cached_ts decides both "purge older than" and the freeze.
CREATE TABLE remote_media_cache (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    content_hash TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    cached_ts BIGINT NOT NULL,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX remote_media_hash ON remote_media_cache (content_hash);
CREATE INDEX remote_media_cached ON remote_media_cache (cached_ts);

-- URL preview responses (OpenGraph JSON), reused until expires_ts.
CREATE TABLE url_previews (
    url TEXT NOT NULL PRIMARY KEY,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    og_json TEXT NOT NULL
);
CREATE INDEX url_previews_expiry ON url_previews (expires_ts);
