-- User-interactive authentication sessions: kept in the database so that a session survives a
-- restart and is shared by every worker.
CREATE TABLE ui_auth_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    -- What the session was started for: the request's path and method, and the request body the
    -- client sent first (so a later request cannot swap in different parameters).
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    clientdict TEXT NOT NULL,
    -- Stage results and server-side values (e.g. the user a password stage authenticated).
    serverdict TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ui_auth_sessions_created ON ui_auth_sessions (created_ts);

CREATE TABLE ui_auth_session_credentials (
    session_id TEXT NOT NULL,
    stage_type TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (session_id, stage_type)
);
