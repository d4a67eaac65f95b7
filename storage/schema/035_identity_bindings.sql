-- Which identity server each of a user's 3PIDs was bound through (via /account/3pid/bind), so an
-- unbind that names no identity server knows where to go.
CREATE TABLE user_threepid_id_server (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
