-- Rooms an application service publishes in the room directory of one of its third-party
-- networks (PUT /directory/list/appservice/{networkId}/{roomId}); /publicRooms shows them when
-- asked for that network (third_party_instance_id) or for every network (include_all_networks).
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE INDEX appservice_room_list_room ON appservice_room_list (room_id);
