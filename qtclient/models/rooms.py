"""The list of the user's rooms and direct conversations (PROTOCOL.md 5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from qtclient.models.base import RowsModel
from qtclient.models.presence import UNKNOWN, normalise
from qtclient.qt import (
    USER_ROLE,
    ItemRole,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class RoomEntry:
    """One row of :class:`RoomListModel` (a snapshot; the model replaces it on change).

    Attributes:
        room_id: the room's id.
        kind: ``group`` or ``direct``.
        name: the room's name (empty for direct rooms).
        topic: the room's topic.
        visibility: ``public`` or ``private``.
        role: the user's role in it: ``owner``, ``moderator`` or ``member``.
        members_count: number of members when last told.
        last_seq: seq of the newest message known.
        read_seq: the user's read position (seq).
        unread: messages after the read position.
        last_ts: time of the newest message known, ms since the epoch (sort key).
        peer: for a direct room, the other member's username ("" until known).
        peer_name: the other member's display name.
        peer_presence: the other member's shown presence (``unknown`` while
            disconnected).
    """

    room_id: int
    kind: str = "group"
    name: str = ""
    topic: str = ""
    visibility: str = "private"
    role: str = "member"
    members_count: int = 0
    last_seq: int = 0
    read_seq: int = 0
    unread: int = 0
    last_ts: int = 0
    peer: str = ""
    peer_name: str = ""
    peer_presence: str = "offline"

    @property
    def is_direct(self) -> bool:
        """Whether this is a two-person direct conversation."""
        return self.kind == "direct"

    @property
    def label(self) -> str:
        """What the room is called in lists: its name, or the other person's name."""
        if self.is_direct:
            return self.peer_name or self.peer or "…"
        return self.name


def _entry_from_map(room: dict[str, Any], old: RoomEntry | None) -> RoomEntry:
    """Merge a room map from the server into what the model knew.

    Sequence numbers only move forward, so the newer of the two positions wins,
    and the unread count is derived from them as the server derives it
    (``unread = last_seq - read_seq``, docs/protocol.md 5): a ``room.list``
    taken before some catch-up messages arrived cannot undo their count.
    """
    base = old or RoomEntry(room_id=int(room["room_id"]))
    last_seq = max(base.last_seq, int(room.get("last_seq", 0) or 0))
    read_seq = max(base.read_seq, int(room.get("read_seq", 0) or 0))
    if old is None and "unread" in room:
        read_seq = max(read_seq, last_seq - int(room["unread"]))
    return replace(
        base, kind=str(room.get("kind", base.kind)), name=str(room.get("name", base.name) or ""),
        topic=str(room.get("topic", base.topic) or ""),
        visibility=str(room.get("visibility", base.visibility)),
        role=str(room.get("role", base.role)),
        members_count=int(room.get("members_count", base.members_count) or 0),
        last_seq=last_seq, read_seq=read_seq, unread=max(0, last_seq - read_seq),
        last_ts=max(base.last_ts, int(room.get("created_ts", 0) or 0)))


class RoomListModel(RowsModel):
    """The user's rooms with unread counts and, for direct rooms, the peer's presence.

    Changed only through its domain methods; rows are in arrival order (sort
    with :class:`RoomSortProxy`).
    """

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives :attr:`RoomEntry.label`."""

        RoomId = USER_ROLE + 1
        Kind = USER_ROLE + 2
        Name = USER_ROLE + 3
        Topic = USER_ROLE + 4
        Unread = USER_ROLE + 5
        Presence = USER_ROLE + 6
        Role = USER_ROLE + 7
        LastActivity = USER_ROLE + 8
        IsDirect = USER_ROLE + 9
        Peer = USER_ROLE + 10
        Entry = USER_ROLE + 11

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[RoomEntry] = []

    # -- Qt model interface ------------------------------------------------------------------



    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the room at ``index`` (None if unknown)."""
        entry = self.row_item(index)
        if entry is None:
            return None
        roles = self.Roles
        if role in (ItemRole.DisplayRole, ItemRole.DisplayRole.value):
            return entry.label
        if role in (ItemRole.ToolTipRole, ItemRole.ToolTipRole.value):
            return entry.topic or entry.label
        values = {
            roles.RoomId: entry.room_id, roles.Kind: entry.kind, roles.Name: entry.name,
            roles.Topic: entry.topic, roles.Unread: entry.unread,
            roles.Presence: entry.peer_presence if entry.is_direct else None,
            roles.Role: entry.role, roles.LastActivity: entry.last_ts,
            roles.IsDirect: entry.is_direct, roles.Peer: entry.peer, roles.Entry: entry,
        }
        return values.get(role)  # type: ignore[call-overload]

    # -- reading -------------------------------------------------------------------------------

    def row_of(self, room_id: int) -> int:
        """The row of ``room_id``, or -1."""
        for row, entry in enumerate(self._rows):
            if entry.room_id == room_id:
                return row
        return -1

    def room(self, room_id: int) -> RoomEntry | None:
        """The entry of ``room_id``, or None if the user is not in it."""
        row = self.row_of(room_id)
        return self._rows[row] if row >= 0 else None

    def rooms(self) -> list[RoomEntry]:
        """All entries, in row order."""
        return list(self._rows)

    def total_unread(self) -> int:
        """Unread messages over all rooms."""
        return sum(entry.unread for entry in self._rows)

    def direct_room_with(self, username: str) -> RoomEntry | None:
        """The direct room whose other member is ``username``, if known."""
        for entry in self._rows:
            if entry.is_direct and entry.peer == username:
                return entry
        return None

    # -- domain changes ------------------------------------------------------------------------

    def _replace(self, row: int, entry: RoomEntry) -> None:
        if self._rows[row] != entry:
            self._rows[row] = entry
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def reset_rooms(self, rooms: list[dict[str, Any]]) -> None:
        """Replace the list with ``room.list``'s rooms, keeping what is known of peers."""
        old = {entry.room_id: entry for entry in self._rows}
        new = [_entry_from_map(room, old.get(int(room["room_id"]))) for room in rooms]
        if [e.room_id for e in new] == [e.room_id for e in self._rows]:
            for row, entry in enumerate(new):
                self._replace(row, entry)
            return
        self.beginResetModel()
        self._rows = new
        self.endResetModel()

    def upsert_room(self, room: dict[str, Any]) -> RoomEntry:
        """Add a room the user entered (or update it from a ``room.updated``)."""
        room_id = int(room["room_id"])
        row = self.row_of(room_id)
        if row >= 0:
            self._replace(row, _entry_from_map(room, self._rows[row]))
            return self._rows[row]
        entry = _entry_from_map(room, None)
        if "read_seq" not in room:
            # A room just entered starts read up to its present (docs/protocol.md 5).
            entry = replace(entry, read_seq=entry.last_seq, unread=0)
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(entry)
        self.endInsertRows()
        return entry

    def remove_room(self, room_id: int) -> None:
        """Forget a room the user left, was kicked from, or that was deleted."""
        row = self.row_of(room_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()

    def set_peer(self, room_id: int, username: str, display_name: str, presence: str) -> None:
        """Record who the other member of a direct room is."""
        row = self.row_of(room_id)
        if row >= 0:
            self._replace(row, replace(self._rows[row], peer=username,
                                       peer_name=display_name or username,
                                       peer_presence=normalise(presence)))

    def set_presence(self, username: str, state: str) -> None:
        """``presence`` event: update the dot of direct rooms with ``username``."""
        for row, entry in enumerate(self._rows):
            if entry.is_direct and entry.peer == username:
                self._replace(row, replace(entry, peer_presence=normalise(state)))

    def forget_presence(self) -> None:
        """The connection is lost: no peer's presence is known until it is asked
        again (:meth:`set_peer`) or ``presence`` events arrive."""
        for row, entry in enumerate(self._rows):
            if entry.is_direct:
                self._replace(row, replace(entry, peer_presence=UNKNOWN))

    def set_display_name(self, username: str, display_name: str) -> None:
        """``user.updated``: a peer's new display name."""
        for row, entry in enumerate(self._rows):
            if entry.is_direct and entry.peer == username:
                self._replace(row, replace(entry, peer_name=display_name or username))

    def note_message(self, room_id: int, seq: int, ts: int, unread: bool) -> None:
        """A message arrived; it is unread unless the user is looking at its room.

        Args:
            seq: its seq.
            ts: its time, ms since the epoch (the sort key of the list).
            unread: False when the user sees it arrive (moves the read position).
        """
        row = self.row_of(room_id)
        if row < 0:
            return
        entry = self._rows[row]
        last_seq = max(entry.last_seq, seq)
        read_seq = entry.read_seq if unread else max(entry.read_seq, seq)
        self._replace(row, replace(entry, last_seq=last_seq, read_seq=read_seq,
                                   unread=max(0, last_seq - read_seq),
                                   last_ts=max(entry.last_ts, ts)))

    def mark_read(self, room_id: int, seq: int) -> None:
        """The user has seen everything up to ``seq``."""
        row = self.row_of(room_id)
        if row >= 0:
            entry = self._rows[row]
            read = max(entry.read_seq, seq)
            self._replace(row, replace(entry, read_seq=read,
                                       unread=max(0, entry.last_seq - read)))

    def set_role(self, room_id: int, role: str) -> None:
        """The user's role in a room changed."""
        row = self.row_of(room_id)
        if row >= 0:
            self._replace(row, replace(self._rows[row], role=role))

    def add_members(self, room_id: int, delta: int) -> None:
        """Someone joined (+1) or left (-1)."""
        row = self.row_of(room_id)
        if row >= 0:
            entry = self._rows[row]
            self._replace(row, replace(entry, members_count=max(0, entry.members_count + delta)))


class RoomSortProxy(QSortFilterProxyModel):
    """Rooms with the most recent activity first, filtered by the search text."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(RoomListModel.Roles.LastActivity.value)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)
        self.sort(0, Qt.SortOrder.DescendingOrder)

    def lessThan(self, left: _Index, right: _Index) -> bool:
        """Older activity sorts first (the view shows descending); ties by name."""
        role = RoomListModel.Roles.LastActivity.value
        a, b = left.data(role) or 0, right.data(role) or 0
        if a != b:
            return bool(a < b)
        # Names in reverse, so that the descending view lists them A to Z.
        return str(left.data() or "").lower() > str(right.data() or "").lower()
