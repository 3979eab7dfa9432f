-- Admin broadcasts (PROTOCOL.md 9, admin.broadcast): kept so that people who
-- were offline see them at their next login.
CREATE TABLE broadcasts (
    broadcast_id BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    body TEXT NOT NULL,
    by_id BIGINT REFERENCES users (user_id) ON DELETE SET NULL
);
CREATE INDEX broadcasts_ts ON broadcasts (ts);
