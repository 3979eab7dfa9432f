-- Messages sent but not yet in the FTS5 index (chatnet.store.search): the send
-- transaction adds its msg_id here, and the SearchIndexer moves a batch into
-- the index a few times a second (one FTS5 segment per batch instead of one per
-- send). msg.search reads this queue too, so nothing sent is ever missing.
CREATE TABLE search_queue (msg_id BIGINT PRIMARY KEY);
