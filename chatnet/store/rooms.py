"""Rooms, members and invitations: named transactions over ``rooms``,
``room_members`` and ``room_invites`` (PROTOCOL.md section 5).

Count limits (rooms per member, pending invitations per inviter) are checked
in the same transaction that would pass them, after taking the user's row
lock (:func:`_lock_users`): PostgreSQL runs transactions side by side, and a
count read without the lock could let two of them both take the last place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatnet.errors import ChatError, ErrorCode
from chatnet.store.database import Database, IntegrityError, Txn
from chatnet.store.records import (
    ROOM_SELECT,
    InviteRecord,
    MemberRecord,
    RoomRecord,
    room_from_row,
)
from chatnet.store.search import SearchIndex
from chatnet.store.users import _like_prefix


class LimitReached(Exception):
    """A per-user count limit would be passed; nothing was changed.

    Attributes:
        what: ``"rooms"`` (memberships of ``user_id``) or ``"invites"``
            (pending invitations sent by ``user_id``).
        user_id: whose limit it is.
        limit: the limit.
    """

    def __init__(self, what: str, user_id: int, limit: int) -> None:
        super().__init__(f"{what} limit {limit} reached for user {user_id}")
        self.what = what
        self.user_id = user_id
        self.limit = limit


def _room(t: Txn, room_id: int) -> RoomRecord | None:
    row = t.execute(ROOM_SELECT + " WHERE r.room_id = ? AND r.deleted = 0",
                    (room_id,)).fetchone()
    return room_from_row(row) if row else None


def _lock_users(t: Txn, user_ids: Iterable[int]) -> None:
    """Take the row locks of users (in id order, so two transactions never wait
    on each other crosswise) until the transaction ends. A no-op update is the
    portable way: PostgreSQL locks the row, SQLite serialises writers anyway."""
    for user_id in sorted(set(user_ids)):
        t.execute("UPDATE users SET banned = banned WHERE user_id = ?", (user_id,))


#: The rooms that count towards a user's ``max_rooms``: every group room they are
#: in, and the direct rooms *they* opened. A direct room someone else opened with
#: them does not count, so that nobody can fill another user's limit (each pair
#: of users has one direct room, so those are bounded by the number of users).
_COUNTED_ROOMS = ("SELECT COUNT(*) FROM room_members m JOIN rooms r ON r.room_id = m.room_id "
                  "WHERE m.user_id = ? AND r.deleted = 0 AND (r.kind = 'group' OR "
                  "r.owner_id = ?)")


def _check_rooms(t: Txn, user_id: int, max_rooms: int | None) -> None:
    """Raise :class:`LimitReached` if the user's counted rooms (:data:`_COUNTED_ROOMS`)
    reached ``max_rooms`` already (call with the user's lock held)."""
    if max_rooms is None:
        return
    count = t.scalar(_COUNTED_ROOMS, (user_id, user_id))
    if int(count or 0) >= max_rooms:
        raise LimitReached("rooms", user_id, max_rooms)


def _check_invites(t: Txn, invited_by: int, adding: int, max_invites: int | None,
                   since: int, excluding: tuple[int, int] | None = None) -> None:
    """Drop the inviter's expired invitations, then raise :class:`LimitReached` if
    ``adding`` more would pass ``max_invites`` (call with the inviter's lock held).

    Args:
        since: invitations made before this time (ms) have expired.
        excluding: a ``(room_id, user_id)`` invitation about to be refreshed,
            which does not count.
    """
    t.execute("DELETE FROM room_invites WHERE invited_by = ? AND ts < ?", (invited_by, since))
    if max_invites is None:
        return
    count = int(t.scalar("SELECT COUNT(*) FROM room_invites WHERE invited_by = ?",
                         (invited_by,)) or 0)
    if excluding is not None and t.scalar(
            "SELECT 1 FROM room_invites WHERE room_id = ? AND user_id = ? AND invited_by = ?",
            (*excluding, invited_by)) is not None:
        count -= 1
    if count + adding > max_invites:
        raise LimitReached("invites", invited_by, max_invites)


def direct_key(a: int, b: int) -> str:
    """The unique key of the direct room between users ``a`` and ``b``."""
    low, high = sorted((a, b))
    return f"{low}:{high}"


class RoomStore:
    """Data access for rooms and memberships. Mixed into :class:`ChatStore`."""

    db: Database

    async def create_room(self, room_id: int, kind: str, name: str, topic: str, visibility: str,
                          owner_id: int, ts: int, *, invitee_ids: Iterable[int] = (),
                          max_rooms: int | None = None, max_invites: int | None = None,
                          invites_since: int = 0) -> RoomRecord:
        """Create a group room with its owner as only member, and invite users to it.

        Args:
            ts: creation time, ms since epoch (also the invitations' time).
            invitee_ids: users invited to the room (the owner is skipped).
            max_rooms: the owner may be in at most this many rooms (None: no limit).
            max_invites: the owner may have at most this many invitations pending,
                these included (None: no limit).
            invites_since: invitations made before this time (ms) have expired.

        Returns:
            the new room.

        Raises:
            LimitReached: ``rooms`` or ``invites`` of the owner; nothing is created.
        """
        invitees = [uid for uid in dict.fromkeys(invitee_ids) if uid != owner_id]

        def txn(t: Txn) -> RoomRecord:
            _lock_users(t, [owner_id])
            _check_rooms(t, owner_id, max_rooms)
            if invitees:
                _check_invites(t, owner_id, len(invitees), max_invites, invites_since)
            t.execute("INSERT INTO rooms (room_id, kind, name, topic, visibility, owner_id, "
                      "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (room_id, kind, name, topic, visibility, owner_id, ts))
            t.execute("INSERT INTO room_members (room_id, user_id, role, joined_ts) "
                      "VALUES (?, ?, 'owner', ?)", (room_id, owner_id, ts))
            t.executemany("INSERT INTO room_invites (room_id, user_id, invited_by, ts) "
                          "VALUES (?, ?, ?, ?)",
                          [(room_id, uid, owner_id, ts) for uid in invitees])
            room = _room(t, room_id)
            assert room is not None
            return room

        return await self.db.run_interaction("create_room", txn)

    async def open_direct(self, room_id: int, user_id: int, other_id: int, ts: int,
                          max_rooms: int | None = None) -> tuple[RoomRecord, bool]:
        """Find or create the direct room of two users.

        Args:
            room_id: the id to use if the room has to be created.
            max_rooms: creating it must not put ``user_id`` (who opens it, and
                whose limit it counts against) in more rooms than this (None: no
                limit); an existing room is always returned.

        Returns:
            ``(room, created)``.

        Raises:
            LimitReached: ``rooms`` of ``user_id``; nothing is created.
        """
        key = direct_key(user_id, other_id)

        def find(t: Txn) -> RoomRecord | None:
            found = t.scalar("SELECT room_id FROM rooms WHERE direct_key = ?", (key,))
            return _room(t, int(found)) if found is not None else None

        def txn(t: Txn) -> tuple[RoomRecord, bool]:
            existing = find(t)
            if existing is not None:
                return existing, False
            _lock_users(t, [user_id, other_id])
            _check_rooms(t, user_id, max_rooms)
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

    async def directory(self, query: str, limit: int = 200,
                        after: tuple[str, int] | None = None) -> list[RoomRecord]:
        """Public group rooms whose name or topic contains ``query`` (case-insensitive).

        Args:
            limit: at most this many.
            after: ``(name, room_id)`` of the last room of the previous page.

        Returns:
            rooms ordered by name, then room id.
        """
        pattern = _like_prefix(query.casefold())
        where = ""
        args: list[Any] = [pattern, pattern]
        if after is not None:
            where = " AND (r.name > ? OR (r.name = ? AND r.room_id > ?))"
            args += [after[0], after[0], after[1]]

        def txn(t: Txn) -> list[RoomRecord]:
            rows = t.execute(
                ROOM_SELECT + " WHERE r.deleted = 0 AND r.visibility = 'public' AND "
                "r.kind = 'group' AND (LOWER(r.name) LIKE ? ESCAPE '\\' OR LOWER(r.topic) "
                "LIKE ? ESCAPE '\\')" + where + " ORDER BY r.name, r.room_id LIMIT ?",
                (*args, limit)).fetchall()
            return [room_from_row(r) for r in rows]

        return await self.db.run_interaction("directory", txn)

    async def rooms_of(self, user_id: int, after: int = 0,
                       limit: int | None = None) -> list[tuple[RoomRecord, str, int]]:
        """The rooms a user is a member of, a page at a time.

        Args:
            after: only rooms with a greater id (the last id of the previous page).
            limit: at most this many (None: all).

        Returns:
            ``[(room, role, read_seq)]`` ordered by room id.
        """
        def txn(t: Txn) -> list[tuple[RoomRecord, str, int]]:
            rows = t.execute(
                ROOM_SELECT.replace(" FROM rooms r ", ", m2.role, m2.read_seq FROM rooms r ")
                + " JOIN room_members m2 ON m2.room_id = r.room_id AND m2.user_id = ? "
                "WHERE r.deleted = 0 AND r.room_id > ? ORDER BY r.room_id"
                + (" LIMIT ?" if limit is not None else ""),
                (user_id, after) + ((limit,) if limit is not None else ())).fetchall()
            return [(room_from_row(r[:10]), r[10], int(r[11])) for r in rows]

        return await self.db.run_interaction("rooms_of", txn)

    async def blocked_unread(self, user_id: int,
                             rooms: list[tuple[int, int]]) -> dict[int, int]:
        """How many of each room's messages after the user's read position come
        from people the user blocked (they never reach the user, so they are not
        unread).

        Args:
            rooms: ``[(room_id, read_seq)]``.

        Returns:
            room id -> that count, for the rooms where it is not 0.
        """
        def txn(t: Txn) -> dict[int, int]:
            if not rooms or t.scalar("SELECT 1 FROM blocks WHERE user_id = ? LIMIT 1",
                                     (user_id,)) is None:
                return {}
            counts = {}
            for room_id, read_seq in rooms:
                # The (room_id, seq) index bounds this to the unread messages.
                count = int(t.scalar(
                    "SELECT COUNT(*) FROM messages WHERE room_id = ? AND seq > ? AND "
                    "sender_id IN (SELECT blocked_id FROM blocks WHERE user_id = ?)",
                    (room_id, read_seq, user_id)) or 0)
                if count:
                    counts[room_id] = count
            return counts

        return await self.db.run_interaction("blocked_unread", txn)

    async def room_count(self, user_id: int) -> int:
        """How many rooms count towards the user's ``max_rooms``: group rooms they
        are in and direct rooms they opened."""
        def txn(t: Txn) -> int:
            return int(t.scalar(_COUNTED_ROOMS, (user_id, user_id)) or 0)

        return await self.db.run_interaction("room_count", txn)

    async def role_of(self, room_id: int, user_id: int) -> str | None:
        """The member's role in the room, or None if not a member."""
        def txn(t: Txn) -> str | None:
            role: str | None = t.scalar(
                "SELECT role FROM room_members WHERE room_id = ? AND user_id = ?",
                (room_id, user_id))
            return role

        return await self.db.run_interaction("role_of", txn)

    async def members(self, room_id: int, after: str = "",
                      limit: int | None = None) -> list[MemberRecord]:
        """Members of a room ordered by username, a page at a time.

        Args:
            after: only usernames after this one (the last of the previous page).
            limit: at most this many (None: all).
        """
        def txn(t: Txn) -> list[MemberRecord]:
            return [MemberRecord(int(r[0]), r[1], r[2], r[3], r[4] or None) for r in t.execute(
                "SELECT u.user_id, u.username, u.display_name, m.role, u.avatar_file_id "
                "FROM room_members m "
                "JOIN users u ON u.user_id = m.user_id WHERE m.room_id = ? AND u.username > ? "
                "ORDER BY u.username" + (" LIMIT ?" if limit is not None else ""),
                (room_id, after) + ((limit,) if limit is not None else ())).fetchall()]

        return await self.db.run_interaction("members", txn)

    async def all_memberships(self) -> list[tuple[int, int]]:
        """Every ``(room_id, user_id)`` membership of live rooms (the fan-out cache)."""
        def txn(t: Txn) -> list[tuple[int, int]]:
            return [(int(r[0]), int(r[1])) for r in t.execute(
                "SELECT m.room_id, m.user_id FROM room_members m JOIN rooms r "
                "ON r.room_id = m.room_id WHERE r.deleted = 0").fetchall()]

        return await self.db.run_interaction("all_memberships", txn)

    async def has_invite(self, room_id: int, user_id: int, since: int = 0) -> bool:
        """Whether the user holds an invitation to the room made at or after ``since`` (ms)."""
        def txn(t: Txn) -> bool:
            return t.scalar("SELECT 1 FROM room_invites WHERE room_id = ? AND user_id = ? "
                            "AND ts >= ?", (room_id, user_id, since)) is not None

        return await self.db.run_interaction("has_invite", txn)

    async def add_invite(self, room_id: int, user_id: int, invited_by: int, ts: int,
                         max_invites: int | None = None, since: int = 0) -> None:
        """Record an invitation (repeating one refreshes its time and inviter).

        Args:
            ts: now, ms since epoch.
            max_invites: ``invited_by`` may have at most this many pending (None: no
                limit); refreshing one of their own does not count twice.
            since: invitations made before this time (ms) have expired; the
                inviter's expired ones are removed.

        Raises:
            LimitReached: ``invites`` of ``invited_by``; nothing is changed.
        """
        def txn(t: Txn) -> None:
            _lock_users(t, [invited_by])
            _check_invites(t, invited_by, 1, max_invites, since, (room_id, user_id))
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
            t.execute("INSERT INTO room_invites (room_id, user_id, invited_by, ts) "
                      "VALUES (?, ?, ?, ?)", (room_id, user_id, invited_by, ts))

        await self.db.run_interaction("add_invite", txn)

    async def remove_invite(self, room_id: int, user_id: int, since: int = 0) -> bool:
        """Withdraw or decline an invitation.

        Returns:
            whether an invitation made at or after ``since`` (ms) was there.
        """
        def txn(t: Txn) -> bool:
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ? AND ts >= ?",
                      (room_id, user_id, since))
            live = t.rowcount > 0
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
            return live

        return await self.db.run_interaction("remove_invite", txn)

    async def invites_of(self, user_id: int, since: int, after: int = 0,
                         limit: int | None = None) -> list[InviteRecord]:
        """The user's pending invitations to live rooms, a page at a time; expired
        ones (made before ``since``, ms) are removed.

        Args:
            after: only rooms with a greater id (the last id of the previous page).
            limit: at most this many (None: all).

        Returns:
            invitations ordered by room id.
        """
        def txn(t: Txn) -> list[InviteRecord]:
            t.execute("DELETE FROM room_invites WHERE user_id = ? AND ts < ?", (user_id, since))
            rows = t.execute(
                ROOM_SELECT.replace(" FROM rooms r ", ", i.ts, b.username FROM rooms r ")
                + " JOIN room_invites i ON i.room_id = r.room_id AND i.user_id = ? "
                "JOIN users b ON b.user_id = i.invited_by "
                "WHERE r.deleted = 0 AND r.room_id > ? ORDER BY r.room_id"
                + (" LIMIT ?" if limit is not None else ""),
                (user_id, after) + ((limit,) if limit is not None else ())).fetchall()
            return [InviteRecord(room_from_row(r[:10]), str(r[11]), int(r[10])) for r in rows]

        return await self.db.run_interaction("invites_of", txn)

    async def add_member(self, room_id: int, user_id: int, role: str, ts: int,
                         max_rooms: int | None = None) -> bool:
        """Add a member and consume any invitation.

        Args:
            max_rooms: the user may be in at most this many rooms (None: no limit).

        Returns:
            False if the user was a member already.

        Raises:
            LimitReached: ``rooms`` of the user; nothing is changed.
        """
        def txn(t: Txn) -> bool:
            _lock_users(t, [user_id])
            if t.scalar("SELECT banned FROM rooms WHERE room_id = ?", (room_id,)):
                raise ChatError(ErrorCode.BANNED, "this room is banned")
            if t.scalar("SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?",
                        (room_id, user_id)) is not None:
                t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                          (room_id, user_id))
                return False
            _check_rooms(t, user_id, max_rooms)
            t.execute("DELETE FROM room_invites WHERE room_id = ? AND user_id = ?",
                      (room_id, user_id))
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

    async def set_room_ban(self, room_id: int, banned: bool, reason: str | None) -> bool:
        """Ban or unban a room (sends and joins refused).

        Returns:
            False if there is no such room.
        """
        def txn(t: Txn) -> bool:
            t.execute("UPDATE rooms SET banned = ?, ban_reason = ? WHERE room_id = ? AND "
                      "deleted = 0", (1 if banned else 0, reason if banned else None, room_id))
            return t.rowcount == 1

        return await self.db.run_interaction("set_room_ban", txn)

    async def rooms_page(self, query: str, after: int, limit: int
                         ) -> list[tuple[RoomRecord, bool]]:
        """Every room (group and direct, public and private, not deleted) whose name
        contains ``query``, by id after ``after``, with whether it is banned
        (``admin.rooms``)."""
        pattern = _like_prefix(query.casefold())

        def txn(t: Txn) -> list[tuple[RoomRecord, bool]]:
            select = ROOM_SELECT.replace(" FROM rooms r", ", r.banned FROM rooms r", 1)
            rows = t.execute(f"{select} WHERE r.deleted = 0 AND LOWER(r.name) LIKE ? "
                             "ESCAPE '\\' AND r.room_id > ? ORDER BY r.room_id LIMIT ?",
                             (pattern, after, limit)).fetchall()
            return [(room_from_row(r[:-1]), bool(r[-1])) for r in rows]

        return await self.db.run_interaction("rooms_page", txn)

    async def delete_room(self, room_id: int) -> None:
        """Mark a room deleted and drop its members, invitations and messages' content."""
        def txn(t: Txn) -> None:
            t.execute("UPDATE rooms SET deleted = 1 WHERE room_id = ?", (room_id,))
            t.execute("DELETE FROM room_members WHERE room_id = ?", (room_id,))
            t.execute("DELETE FROM room_invites WHERE room_id = ?", (room_id,))
            SearchIndex.remove_many(t, t.execute(
                "SELECT msg_id, body FROM messages WHERE room_id = ? AND deleted = 0",
                (room_id,)).fetchall())
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

        return await self.db.run_grouped("set_read", (("rooms", room_id),), txn)
