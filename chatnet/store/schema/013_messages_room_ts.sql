-- History by date (msg.history {around_ts}) looks up a room's first message at
-- or after a time: without this index that read every message of the room.
CREATE INDEX messages_room_ts ON messages (room_id, ts);
