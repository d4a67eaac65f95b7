-- For the federation destinations admin API (Synapse's failure_ts and last_successful_stream_ordering):
-- when a destination's current run of failures began (NULL while healthy), and the stream ordering
-- of the newest event a destination accepted (set by the federation courier; other kinds leave it NULL).
ALTER TABLE outbound_destinations ADD COLUMN failing_since_ts BIGINT;
ALTER TABLE outbound_destinations ADD COLUMN last_stream_ordering BIGINT;
