-- Full-text search (chatnet.store.search): a tsvector per message (english
-- configuration: stemming), NULL once deleted or expired, with a GIN index. CJK
-- text arrives already cut into character pairs by the store.
ALTER TABLE messages ADD COLUMN search tsvector;
CREATE INDEX messages_search ON messages USING GIN (search);

-- Messages stored before this version are indexed by the server at its next
-- start (ChatStore.index_backlog), in batches, from the lowest msg_id up.
CREATE TABLE search_backlog (next_msg_id BIGINT NOT NULL);
INSERT INTO search_backlog (next_msg_id) SELECT 0 WHERE EXISTS (SELECT 1 FROM messages);
