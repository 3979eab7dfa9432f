"""Plain records the store returns: what a user, a room and a membership are.

They are frozen dataclasses with no behaviour beyond turning themselves into
the maps of PROTOCOL.md, so services can hand them to the wire unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


def now_ms(seconds: float | None = None) -> int:
    """Milliseconds since the Unix epoch (the wire's time unit).

    Args:
        seconds: a time in seconds (e.g. ``clock.seconds()``); now if omitted.
    """
    return int((time.time() if seconds is None else seconds) * 1000)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user account (table ``users``).

    Attributes:
        user_id: 64-bit id.
        username: case-folded login name.
        display_name: shown name.
        password_hash: Argon2id PHC string.
        roles: server roles, e.g. ``("admin",)``.
        status_text: free text next to the name.
        avatar_file_id: file id of the picture, if any.
        created_ts: ms since epoch.
        last_seen: ms since epoch of the last session's end, if any.
        banned: whether the account is banned.
    """

    user_id: int
    username: str
    display_name: str
    password_hash: str
    roles: tuple[str, ...]
    status_text: str
    avatar_file_id: str | None
    created_ts: int
    last_seen: int | None
    banned: bool

    def profile(self, presence: str = "offline") -> dict[str, Any]:
        """The ``profile`` map of PROTOCOL.md section 4.

        Args:
            presence: the state to show (``invisible`` must already be mapped
                to ``offline`` by the caller).
        """
        profile: dict[str, Any] = {
            "user_id": self.user_id, "username": self.username,
            "display_name": self.display_name, "status_text": self.status_text,
            "presence": presence,
        }
        if self.avatar_file_id:
            profile["avatar_file_id"] = self.avatar_file_id
        if self.last_seen is not None:
            profile["last_seen"] = self.last_seen
        return profile


USER_COLUMNS = ("user_id, username, display_name, password_hash, roles, status_text, "
                "avatar_file_id, created_ts, last_seen, banned")


def user_from_row(row: tuple[Any, ...]) -> UserRecord:
    """Build a :class:`UserRecord` from a row selected with :data:`USER_COLUMNS`."""
    return UserRecord(
        user_id=int(row[0]), username=row[1], display_name=row[2], password_hash=row[3],
        roles=tuple(r for r in row[4].split(",") if r), status_text=row[5],
        avatar_file_id=row[6], created_ts=int(row[7]),
        last_seen=int(row[8]) if row[8] is not None else None, banned=bool(row[9]),
    )


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A room (table ``rooms``) with its member count.

    Attributes:
        room_id: 64-bit id.
        kind: ``group`` or ``direct``.
        name: display name (empty for direct rooms).
        topic: free text.
        visibility: ``public`` or ``private``.
        owner: the owner's username.
        owner_id: the owner's user id.
        members_count: current members.
        created_ts: ms since epoch.
        last_seq: the seq of the newest message (0 when empty).
    """

    room_id: int
    kind: str
    name: str
    topic: str
    visibility: str
    owner: str
    owner_id: int
    members_count: int
    created_ts: int
    last_seq: int

    def to_wire(self) -> dict[str, Any]:
        """The ``room`` map of PROTOCOL.md section 5, plus ``last_seq`` (the newest
        message's seq when the map was made; an extra field, see docs/protocol.md)."""
        return {
            "room_id": self.room_id, "kind": self.kind, "name": self.name, "topic": self.topic,
            "visibility": self.visibility, "owner": self.owner,
            "members_count": self.members_count, "created_ts": self.created_ts,
            "last_seq": self.last_seq,
        }


ROOM_SELECT = (
    "SELECT r.room_id, r.kind, r.name, r.topic, r.visibility, u.username, r.owner_id, "
    "(SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.room_id), r.created_ts, "
    "r.last_seq FROM rooms r JOIN users u ON u.user_id = r.owner_id"
)


def room_from_row(row: tuple[Any, ...]) -> RoomRecord:
    """Build a :class:`RoomRecord` from a row selected with :data:`ROOM_SELECT`."""
    return RoomRecord(
        room_id=int(row[0]), kind=row[1], name=row[2], topic=row[3], visibility=row[4],
        owner=row[5], owner_id=int(row[6]), members_count=int(row[7]),
        created_ts=int(row[8]), last_seq=int(row[9]),
    )


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member of a room, as ``room.members`` lists it (without presence)."""

    user_id: int
    username: str
    display_name: str
    role: str
    avatar_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class InviteRecord:
    """A pending invitation (table ``room_invites``), as ``room.invites`` lists it.

    Attributes:
        room: the room invited to.
        by: the inviter's username.
        ts: when the invitation was made (or last repeated), ms since epoch.
    """

    room: RoomRecord
    by: str
    ts: int

    def to_wire(self) -> dict[str, Any]:
        """``{room, by, ts}`` (docs/protocol.md 5, ``room.invites``)."""
        return {"room": self.room.to_wire(), "by": self.by, "ts": self.ts}
