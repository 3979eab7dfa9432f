-- Invitations are listed per invitee (room.invites pages by room id) and
-- counted per inviter (each user has a bounded number pending).
CREATE INDEX room_invites_user ON room_invites (user_id, room_id);
CREATE INDEX room_invites_by ON room_invites (invited_by, ts);
