-- Every table-backed stream the sync engines read has a row from the start (position 0, as an
-- absent row reads): /sync and sliding sync read all rows in one query and ask separately only
-- for streams without one, which on a server where, say, no receipt was ever sent cost three
-- extra queries per response.
INSERT INTO stream_positions (stream_name, position) VALUES ('account_data', 0) ON CONFLICT (stream_name) DO NOTHING;
INSERT INTO stream_positions (stream_name, position) VALUES ('receipts', 0) ON CONFLICT (stream_name) DO NOTHING;
INSERT INTO stream_positions (stream_name, position) VALUES ('to_device', 0) ON CONFLICT (stream_name) DO NOTHING;
INSERT INTO stream_positions (stream_name, position) VALUES ('device_lists', 0) ON CONFLICT (stream_name) DO NOTHING;
INSERT INTO stream_positions (stream_name, position) VALUES ('presence', 0) ON CONFLICT (stream_name) DO NOTHING;
INSERT INTO stream_positions (stream_name, position) VALUES ('push_rules', 0) ON CONFLICT (stream_name) DO NOTHING;
