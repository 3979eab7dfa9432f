-- chatnet schema, version 1. Written in the SQL subset shared by SQLite and
-- PostgreSQL: ids are application-generated 64-bit integers (no autoincrement),
-- times are BIGINT milliseconds since the Unix epoch, flags are INTEGER 0/1.
-- Append-only: change the schema with a new NNN_name.sql file, never by editing this one.

CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    status_text TEXT NOT NULL DEFAULT '',
    avatar_file_id TEXT,
    created_ts BIGINT NOT NULL,
    last_seen BIGINT,
    banned INTEGER NOT NULL DEFAULT 0,
    ban_reason TEXT,
    banned_until BIGINT
);

CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

CREATE TABLE rooms (
    room_id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    topic TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL,
    owner_id BIGINT NOT NULL REFERENCES users (user_id),
    created_ts BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    direct_key TEXT UNIQUE,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rooms_visibility ON rooms (visibility, deleted);

CREATE TABLE room_members (
    room_id BIGINT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    joined_ts BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE TABLE room_invites (
    room_id BIGINT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    invited_by BIGINT NOT NULL REFERENCES users (user_id),
    ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE messages (
    msg_id BIGINT PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    sender_id BIGINT NOT NULL REFERENCES users (user_id),
    ts BIGINT NOT NULL,
    body TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    reply_to BIGINT,
    mentions TEXT,
    ttl INTEGER,
    expires_ts BIGINT,
    edited_ts BIGINT,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (room_id, seq),
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_expiry ON messages (expires_ts);

CREATE TABLE reactions (
    msg_id BIGINT NOT NULL REFERENCES messages (msg_id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    emoji TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (msg_id, user_id, emoji)
);

CREATE TABLE contacts (
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    message TEXT,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE INDEX contacts_contact ON contacts (contact_id);
