-- The team feed (PROTOCOL.md 10): posts seen by their author's contacts, with
-- likes and comments. Deleting a post deletes its files' links, likes and
-- comments (the store does it explicitly; foreign keys back it up).
CREATE TABLE feed_posts (
    post_id BIGINT PRIMARY KEY,
    author_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    ts BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX feed_posts_author ON feed_posts (author_id, ts);
CREATE INDEX feed_posts_ts ON feed_posts (ts, post_id);

CREATE TABLE feed_post_files (
    post_id BIGINT NOT NULL REFERENCES feed_posts (post_id) ON DELETE CASCADE,
    file_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (post_id, file_id)
);
CREATE INDEX feed_post_files_file ON feed_post_files (file_id);

CREATE TABLE feed_likes (
    post_id BIGINT NOT NULL REFERENCES feed_posts (post_id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    ts BIGINT NOT NULL,
    PRIMARY KEY (post_id, user_id)
);

CREATE TABLE feed_comments (
    comment_id BIGINT PRIMARY KEY,
    post_id BIGINT NOT NULL REFERENCES feed_posts (post_id) ON DELETE CASCADE,
    author_id BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    ts BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX feed_comments_post ON feed_comments (post_id, comment_id);
