-- Files (PROTOCOL.md section 7): content-addressed blobs on disk, metadata here.

CREATE TABLE files (
    file_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    mime TEXT NOT NULL,
    uploader_id BIGINT NOT NULL REFERENCES users (user_id),
    ts BIGINT NOT NULL
);
CREATE INDEX files_uploader ON files (uploader_id);
CREATE INDEX files_sha256 ON files (sha256);

-- Uploads in progress; the bytes received so far live in a temporary file.
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    mime TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE (user_id, sha256)
);

-- Which messages attach which files: members of those rooms may download them.
CREATE TABLE message_attachments (
    msg_id BIGINT NOT NULL REFERENCES messages (msg_id) ON DELETE CASCADE,
    room_id BIGINT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    file_id TEXT NOT NULL REFERENCES files (file_id),
    position INTEGER NOT NULL,
    PRIMARY KEY (msg_id, file_id)
);
CREATE INDEX message_attachments_file ON message_attachments (file_id);

-- Every upload and download, for the audit log.
CREATE TABLE file_events (
    event_id BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    file_id TEXT NOT NULL,
    action TEXT NOT NULL,
    size BIGINT NOT NULL
);
CREATE INDEX file_events_ts ON file_events (ts);
