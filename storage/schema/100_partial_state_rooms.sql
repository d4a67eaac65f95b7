-- Rooms joined over federation with partial state (send_join v2 with omit_members: the resident
-- left most m.room.member events out). One row per room until its full state has been fetched
-- (federation/partial_state.py); the row survives a restart, so an interrupted fetch resumes.
CREATE TABLE partial_state_rooms (
    room_id TEXT PRIMARY KEY,
    -- our join, whose state (before it) is the one to fetch in full
    join_event_id TEXT NOT NULL,
    -- the server the join went through, asked first
    joined_via TEXT NOT NULL,
    -- JSON array: servers_in_room from the send_join answer; our events go to these until the
    -- member list is complete
    servers_in_room TEXT NOT NULL,
    joined_ts BIGINT NOT NULL
);

-- When a partial-state room got its full state: the events stream position given to that change,
-- so /sync sends the room's whole state to a client whose token is older.
CREATE TABLE partial_state_rooms_completed (
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, stream_ordering)
);
