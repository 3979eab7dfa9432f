-- When a message last changed after it was sent (edit, reaction, deletion,
-- expiry), so that a client coming back can ask what changed while it was away.
ALTER TABLE messages ADD COLUMN changed_ts BIGINT;
CREATE INDEX messages_changes ON messages (room_id, changed_ts);
