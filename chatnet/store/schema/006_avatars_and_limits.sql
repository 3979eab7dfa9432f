-- Avatars and per-user limits (hardening): what each file and upload is for,
-- and indexes for the bounded lists and audit rows.

-- 'attachment' reaches people through messages; 'avatar' is a re-encoded
-- profile picture made by the server, readable by every logged-in user.
ALTER TABLE files ADD COLUMN purpose TEXT NOT NULL DEFAULT 'attachment';
ALTER TABLE uploads ADD COLUMN purpose TEXT NOT NULL DEFAULT 'attachment';

-- Until now any visible file could be a profile picture, which made it public.
-- No existing attachment may stay public: only avatar files remain avatars.
UPDATE users SET avatar_file_id = NULL
WHERE avatar_file_id IS NOT NULL
  AND avatar_file_id NOT IN (SELECT file_id FROM files WHERE purpose = 'avatar');

-- A download is audited once per (user, file) per period: find the last one.
CREATE INDEX file_events_user_file ON file_events (user_id, file_id, ts);

-- Pending contact requests are counted and listed by requester and by target.
CREATE INDEX contacts_state ON contacts (user_id, state, ts);
CREATE INDEX contacts_incoming ON contacts (contact_id, state, ts);
