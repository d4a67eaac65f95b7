-- Push rules: the user's own rules, and the user's changes to server-default rules. The default
-- rules themselves live in code (homeserver/push/rules.py), so improving them reaches every user.

-- User-defined rules. Within (user, kind) a higher priority is more important. `conditions` is
-- JSON for override/underride rules, `pattern` is set for content rules; room and sender rules
-- imply theirs from rule_id.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    conditions TEXT,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's changes to server-default rules; NULL keeps the default's value.
CREATE TABLE push_rule_default_changes (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- The `push_rules` stream position of each user's latest change: what /sync compares with its
-- token to deliver `m.push_rules`, and the version that caches of compiled rules check.
CREATE TABLE push_rules_versions (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE INDEX push_rules_versions_stream ON push_rules_versions (stream_id);
