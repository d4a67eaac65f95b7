-- Events received over federation.

-- A soft-failed event: authorised by its own auth events and the state before it, but not by the
-- room's current state. It is kept (with `outlier` TRUE, so no client timeline shows it) and its
-- state group stays, so later events may build on it, but it never becomes a forward extremity
-- nor changes current state.
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;

-- Inbound `PUT /_matrix/federation/v1/send/{txnId}` transactions already answered, with the
-- answer, so a retry by the origin (same origin and transaction ID) gets the same answer without
-- the PDUs being processed twice.
CREATE TABLE federation_received_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
