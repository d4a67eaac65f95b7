-- Room aliases on this server (#alias:server -> room), with who created each.
CREATE TABLE room_aliases (
    room_alias TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
