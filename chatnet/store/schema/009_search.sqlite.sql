-- Full-text search (chatnet.store.search): a contentless FTS5 table whose rowid is
-- the message's msg_id, holding only the index. Porter stemming over Unicode
-- words; CJK text arrives already cut into character pairs by the store.
CREATE VIRTUAL TABLE message_search USING fts5(
    text, content = '', tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Messages stored before this version are indexed by the server at its next
-- start (ChatStore.index_backlog), in batches, from the lowest msg_id up.
CREATE TABLE search_backlog (next_msg_id BIGINT NOT NULL);
INSERT INTO search_backlog (next_msg_id) SELECT 0 WHERE EXISTS (SELECT 1 FROM messages);
