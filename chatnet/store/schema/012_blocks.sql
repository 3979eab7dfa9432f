-- Blocks (docs/protocol.md 4, "Blocking"): user_id blocked blocked_id. A blocked
-- user's contact requests, invitations and direct messages do not reach the
-- blocker, and their messages are left out of the blocker's history and search.
CREATE TABLE blocks (
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);
