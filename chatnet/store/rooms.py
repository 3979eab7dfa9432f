"""Rooms, members and invitations: named transactions over ``rooms``,
``room_members`` and ``room_invites`` (PROTOCOL.md section 5)."""

from __future__ import annotations

from typing import Any

from chatnet.store.database import Database, IntegrityError, Txn
from chatnet.store.records import ROOM_SELECT, MemberRecord, RoomRecord, room_from_row
from chatnet.store.users import _like_prefix


def _room(t: Txn, room_id: int) -> RoomRecord | None:
    row = t.execute(ROOM_SELECT + " WHERE r.room_id = ? AND r.deleted = 0",
                    (room_id,)).fetchone()
    return room_from_row(row) if row else None


def direct_key(a: int, b: int) -> str:
    """The unique key of the direct room between users ``a`` and ``b``."""
    low, high = sorted((a, b))
    return f"{low}:{high}"


class RoomStore:
    """Data access for rooms and memberships. Mixed into :class:`ChatStore`."""

    db: Database

    async def create_room(self, room_id: int, kind: str, name: str, topic: str, visibility: str,
                          owner_id: int, member_ids: list[int], ts: int) -> RoomRecord:
        """Create a group room with its owner and initial members.

        Args:
            member_ids: other users to add as ``member`` (the owner is added as ``owner``).
            ts: creation time, ms since epoch.

        Returns:
            the new room.
        """
        def txn(t: Txn) -> RoomRecord:
            t.execute("INSERT INTO rooms (room_id, kind, name, topic, visibility, owner_id, "
                      "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (room_id, kind, name, topic, visibility, owner_id, ts))
            t.execute("INSERT INTO room_members (room_id, user_id, role, joined_ts) "
                      "VALUES (?, ?, 'owner', ?)", (room_id, owner_id, ts))
            t.executemany("INSERT INTO room_members (room_id, user_id, role, joined_ts) "
                          "VALUES (?, ?, 'member', ?)",
                          [(room_id, uid, ts) for uid in member_ids if uid != owner_id])
            room = _room(t, room_id)
            assert room is not None
            return room

        return await self.db.run_interaction("create_room", txn)

    async def open_direct(self, room_id: int, user_id: int, other_id: int,
                          ts: int) -> tuple[RoomRecord, bool]:
        """Find or create the direct room of two users.

        Args:
            room_id: the id to use if the room has to be created.

        Returns:
            ``(room, created)``.
        """
        key = direct_key(user_id, other_id)

        def find(t: Txn) -> RoomRecord | None:
            found = t.scalar("SELECT room_id FROM rooms WHERE direct_key = ?", (key,))
            return _room(t, int(found)) if found is not None else None

        def txn(t: Txn) -> tuple[RoomRecord, bool]:
            existing = find(t)
            if existing is not None:
                return existing, False
            t.execute("INSERT INTO rooms (room_id, kind, name, topic, visibility, owner_id, "
                      "created_ts, direct_key) VALUES (?, 'direct', '', '', 'private', ?, ?, ?)",
                      (room_id, user_id, ts, key))
            t.executemany("INSERT INTO room_members (room_id, user_id, role, joined_ts) "
                          "VALUES (?, ?, 'member', ?)",
                          [(room_id, user_id, ts), (room_id, other_id, ts)])
            room = _room(t, room_id)
            assert room is not None
            return room, True

        try:
            return await self.db.run_interaction("open_direct", txn)
        except IntegrityError:
            # Another node created it at the same moment: take theirs.
            room = await self.db.run_interaction("open_direct_retry", find)
            assert room is not None
            return room, False

    async def room(self, room_id: int) -> RoomRecord | None:
        """A room that exists and is not deleted, or None."""
        return await self.db.run_interaction("room", _room, room_id)

    async def directory(self, query: str, limit: int = 200) -> list[RoomRecord]:
        """Public group rooms whose name or topic contains ``query`` (case-insensitive)."""
        pattern = _like_prefix(query.casefold())

        def txn(t: Txn) -> list[RoomRecord]:
            rows = t.execute(
                ROOM_SELECT + " WHERE r.deleted = 0 AND r.visibility = 'public' AND "
                "r.kind = 'group' AND (LOWER(r.name) LIKE ? ESCAPE '\\' OR LOWER(r.topic) "
                "LIKE ? ESCAPE '\\') ORDER BY r.name LIMIT ?", (pattern, pattern, limit)).fetchall()
            return [room_from_row(r) for r in rows]

        return await self.db.run_interaction("directory", txn)

    async def rooms_of(self, user_id: int) -> list[tuple[RoomRecord, str, int]]:
        """The rooms a user is a member of.

        Returns:
            ``[(room, role, read_seq)]`` ordered by room id.
        """
        def txn(t: Txn) -> list[tuple[RoomRecord, str, int]]:
            rows = t.execute(
                ROOM_SELECT.replace(" FROM rooms r ", ", m2.role, m2.read_seq FROM rooms r ")
                + " JOIN room_members m2 ON m2.room_id = r.room_id AND m2.user_id = ? "
                "WHERE r.deleted = 0 ORDER BY r.room_id", (user_id,)).fetchall()
            return [(room_from_row(r[:10]), r[10], int(r[11])) for r in rows]

        return await self.db.run_interaction("rooms_of", txn)

    async def role_of(self, room_id: int, user_id: int) -> str | None:
        """The member's role in the room, or None if not a member."""
        def txn(t: Txn) -> str | None:
            role: str | None = t.scalar(
                "SELECT role FROM room_members WHERE room_id = ? AND user_id = ?",
                (room_id, user_id))
            return role

        return await self.db.run_interaction("role_of", txn)

    async def members(self, room_id: int) -> list[MemberRecord]:
        """Members of a room ordered by username."""
        def txn(t: Txn) -> list[MemberRecord]:
            return [MemberRecord(int(r[0]), r[1], r[2], r[3]) for r in t.execute(
                "SELECT u.user_id, u.username, u.display_name, m.role FROM room_members m "
                "JOIN users u ON u.user_id = m.user_id WHERE m.room_id = ? ORDER BY u.username",
                (room_id,)).fetchall()]

        return await self.db.run_interaction("members", txn)

    async def all_memberships(self) -> list[tuple[int, int]]:
        """Every ``(room_id, user_id)`` membership of live rooms (the fan-out cache)."""
        def txn(t: Txn) -> list[tuple[int, int]]:
            return [(int(r[0]), int(r[1])) for r in t.execute(
                "SELECT m.room_id, m.user_id FROM room_members m JOIN rooms r "
                "ON r.room_id = m.room_id WHERE r.deleted = 0").fetchall()]

        return await self.db.run_interaction("all_memberships", txn)

    async def has_invite(self, room_id: int, user_id: int) -> bool:
        """Whether the user holds an invitation to the room."""
        def txn(t: Txn) -> bool:
            return t.scalar("SELECT 1 FROM room_invites WHERE room_id = ? AND user_id = ?",
                            (room_id, user_id)) is not None

        return await self.db.run_interaction("has_invite", txn)

    async def add_invite(self, room_id: int, user_id: int, invited_by: int, ts: int) -> None:
        """Record an invitation (repeating one refreshes it)."""
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
            t.execute("INSERT INTO room_invites (room_id, user_id, invited_by, ts) "
                      "VALUES (?, ?, ?, ?)", (room_id, user_id, invited_by, ts))

        await self.db.run_interaction("add_invite", txn)

    async def add_member(self, room_id: int, user_id: int, role: str, ts: int) -> bool:
        """Add a member and consume any invitation.

        Returns:
            False if the user was a member already.
        """
        def txn(t: Txn) -> bool:
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
            if t.scalar("SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?",
                        (room_id, user_id)) is not None:
                return False
            # Start the new member's read position at the present: the past is
            # history to scroll, not unread messages.
            last_seq = t.scalar("SELECT last_seq FROM rooms WHERE room_id = ?", (room_id,))
            t.execute("INSERT INTO room_members (room_id, user_id, role, joined_ts, read_seq) "
                      "VALUES (?, ?, ?, ?, ?)", (room_id, user_id, role, ts, last_seq or 0))
            return True

        try:
            return await self.db.run_interaction("add_member", txn)
        except IntegrityError:
            return False

    async def remove_member(self, room_id: int, user_id: int) -> str | None:
        """Remove a member; if the owner leaves, hand the room to the longest-standing
        moderator, or failing that member.

        Returns:
            the username of the new owner if ownership moved, else None.
        """
        def txn(t: Txn) -> str | None:
            role = t.scalar("SELECT role FROM room_members WHERE room_id = ? AND user_id = ?",
                            (room_id, user_id))
            t.execute("DELETE FROM room_members WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
            if role != "owner":
                return None
            heir = t.execute(
                "SELECT m.user_id, u.username FROM room_members m JOIN users u ON "
                "u.user_id = m.user_id WHERE m.room_id = ? ORDER BY CASE m.role WHEN "
                "'moderator' THEN 0 ELSE 1 END, m.joined_ts, m.user_id LIMIT 1",
                (room_id,)).fetchone()
            if heir is None:
                return None
            t.execute("UPDATE room_members SET role = 'owner' WHERE room_id = ? AND user_id = ?",
                      (room_id, heir[0]))
            t.execute("UPDATE rooms SET owner_id = ? WHERE room_id = ?", (heir[0], room_id))
            return str(heir[1])

        return await self.db.run_interaction("remove_member", txn)

    async def set_role(self, room_id: int, user_id: int, role: str, owner_id: int) -> None:
        """Give a member a role; giving ``owner`` moves ownership and makes the old
        owner (``owner_id``) a moderator."""
        def txn(t: Txn) -> None:
            if role == "owner":
                t.execute("UPDATE room_members SET role = 'moderator' WHERE room_id = ? "
                          "AND user_id = ?", (room_id, owner_id))
                t.execute("UPDATE rooms SET owner_id = ? WHERE room_id = ?", (user_id, room_id))
            t.execute("UPDATE room_members SET role = ? WHERE room_id = ? AND user_id = ?",
                      (role, room_id, user_id))

        await self.db.run_interaction("set_role", txn)

    async def update_room(self, room_id: int, changes: dict[str, Any]) -> RoomRecord:
        """Change a room's ``name`` and/or ``topic``; returns the updated room."""
        allowed = [k for k in ("name", "topic") if k in changes]

        def txn(t: Txn) -> RoomRecord:
            if allowed:
                sets = ", ".join(f"{k} = ?" for k in allowed)
                t.execute(f"UPDATE rooms SET {sets} WHERE room_id = ?",
                          [changes[k] for k in allowed] + [room_id])
            room = _room(t, room_id)
            assert room is not None
            return room

        return await self.db.run_interaction("update_room", txn)

    async def delete_room(self, room_id: int) -> None:
        """Mark a room deleted and drop its members, invitations and messages' content."""
        def txn(t: Txn) -> None:
            t.execute("UPDATE rooms SET deleted = 1 WHERE room_id = ?", (room_id,))
            t.execute("DELETE FROM room_members WHERE room_id = ?", (room_id,))
            t.execute("DELETE FROM room_invites WHERE room_id = ?", (room_id,))
            t.execute("UPDATE messages SET deleted = 1, body = '' WHERE room_id = ?", (room_id,))
            t.execute("DELETE FROM message_attachments WHERE room_id = ?", (room_id,))

        await self.db.run_interaction("delete_room", txn)

    async def set_read(self, room_id: int, user_id: int, seq: int) -> int | None:
        """Move a member's read position forward (never back).

        Args:
            seq: the newest seq read; capped at the room's last seq.

        Returns:
            the new read seq if it moved, None if it did not (or not a member).
        """
        def txn(t: Txn) -> int | None:
            last = t.scalar("SELECT last_seq FROM rooms WHERE room_id = ?", (room_id,)) or 0
            target = min(seq, int(last))
            t.execute("UPDATE room_members SET read_seq = ? WHERE room_id = ? AND user_id = ? "
                      "AND read_seq < ?", (target, room_id, user_id, target))
            return target if t.rowcount > 0 else None

        return await self.db.run_interaction("set_read", txn)
