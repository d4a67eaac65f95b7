-- Rooms a user has left and forgotten (POST /rooms/{roomId}/forget); a later join clears it.
CREATE TABLE room_forgotten (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
