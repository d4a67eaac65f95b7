-- Relations between events (m.relates_to), filled after each event is persisted: edits
-- (m.replace), annotations (m.annotation, with their key), references and threads.
CREATE TABLE event_relations (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    relates_to_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    aggregation_key TEXT
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, relation_type);
CREATE INDEX event_relations_room_type ON event_relations (room_id, relation_type);

-- /timestamp_to_event looks events up by their origin_server_ts within a room.
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
