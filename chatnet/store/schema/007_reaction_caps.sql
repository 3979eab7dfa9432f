-- Reactions are capped per user and per message (docs/protocol.md 6): the cap
-- on distinct emoji per message and the per-emoji counts of a history page read
-- reactions by (msg_id, emoji), which the primary key (msg_id, user_id, emoji)
-- does not order.
CREATE INDEX reactions_emoji ON reactions (msg_id, emoji);
