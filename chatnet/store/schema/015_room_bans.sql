-- Room bans (PROTOCOL.md 9, admin.ban_room): sends and joins are refused with
-- 'banned'; the history stays.
ALTER TABLE rooms ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN ban_reason TEXT;
