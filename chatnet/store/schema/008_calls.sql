-- Voice calls (PROTOCOL.md 8): one row per call, written when it ends, for
-- the room's call history and the audit. Audio never reaches the database.
CREATE TABLE calls (
    call_id BIGINT PRIMARY KEY,
    room_id BIGINT NOT NULL,
    started_by BIGINT NOT NULL,
    started_ts BIGINT NOT NULL,
    answered_ts BIGINT,
    ended_ts BIGINT NOT NULL,
    reason TEXT NOT NULL,
    participants TEXT NOT NULL
);
CREATE INDEX calls_room ON calls (room_id, started_ts);
