-- The audit log: append-only, one row per security-relevant event (logins
-- refused by back-off, password changes and resets, ...). Administration
-- (PROTOCOL.md 9) pages through it; nothing updates or deletes rows here
-- except retention.
CREATE TABLE audit_log (
    entry_id BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    action TEXT NOT NULL,
    user_id BIGINT,
    username TEXT,
    peer TEXT,
    details TEXT
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_action ON audit_log (action, ts);

-- When a user's credentials last changed (password change or reset, ms since
-- the epoch): sessions that logged in before it are ended, on every node.
ALTER TABLE users ADD COLUMN credentials_ts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_credentials_ts ON users (credentials_ts);

CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_ts);
