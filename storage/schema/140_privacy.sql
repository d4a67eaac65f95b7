-- What the privacy application service needs from the homeserver: the consent policy members
-- must accept, each member's acceptance, and e-mail validation sessions for adding an address.

-- The privacy policy version members must accept before they may send (one row, id = 1).
CREATE TABLE consent_policy (
    id INTEGER NOT NULL PRIMARY KEY,
    version TEXT NOT NULL,
    url TEXT NOT NULL,
    set_ts BIGINT NOT NULL
);

-- The latest policy version each user accepted, and when.
CREATE TABLE user_consent (
    user_id TEXT NOT NULL PRIMARY KEY,
    version TEXT NOT NULL,
    ts BIGINT NOT NULL
);

-- E-mail validation sessions (`/account/3pid/email/requestToken`): the address, the secret the
-- client chose, the token mailed to it, and when the link in the mail was followed.
CREATE TABLE threepid_validation_sessions (
    sid TEXT NOT NULL PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    token TEXT NOT NULL,
    send_attempt BIGINT NOT NULL,
    next_link TEXT,
    created_ts BIGINT NOT NULL,
    validated_ts BIGINT
);
CREATE INDEX threepid_validation_sessions_secret ON threepid_validation_sessions (client_secret, medium, address);
