"""Invitations to group rooms waiting for the user's answer (docs/protocol.md 5).

Someone who puts the user in ``room.create {members}`` or uses ``room.invite``
only *invites* them; the user joins (``room.join``) or declines
(``room.decline``). This model lists those invitations, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from qtclient.models.base import RowsModel
from qtclient.qt import USER_ROLE, ItemRole, QModelIndex, QObject, QPersistentModelIndex

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class Invite:
    """One invitation row.

    Attributes:
        room_id: the room's id.
        name: the room's name.
        topic: the room's topic.
        members_count: members when the invitation was made or listed.
        by: the inviter's username.
        ts: when it was made, ms since the epoch (0 if unknown: sorts last).
    """

    room_id: int
    name: str = ""
    topic: str = ""
    members_count: int = 0
    by: str = ""
    ts: int = 0

    @classmethod
    def from_wire(cls, invite: dict[str, Any]) -> Invite:
        """From ``room.invites``' ``{room, by, ts}`` or ``room.invited``'s ``{room, by}``."""
        room = invite.get("room") or {}
        return cls(room_id=int(room["room_id"]), name=str(room.get("name") or ""),
                   topic=str(room.get("topic") or ""),
                   members_count=int(room.get("members_count") or 0),
                   by=str(invite.get("by") or ""), ts=int(invite.get("ts") or 0))


class InviteListModel(RowsModel):
    """Pending invitations (the invitations list); changed only by domain methods."""

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the room's name."""

        RoomId = USER_ROLE + 1
        Name = USER_ROLE + 2
        Topic = USER_ROLE + 3
        By = USER_ROLE + 4
        MembersCount = USER_ROLE + 5

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Invite] = []

    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the invitation at ``index`` (None if unknown)."""
        invite = self.row_item(index)
        if invite is None:
            return None
        if role in (ItemRole.DisplayRole.value, self.Roles.Name):
            return invite.name
        if role == ItemRole.ToolTipRole.value:
            return invite.topic or invite.name
        values = {self.Roles.RoomId: invite.room_id, self.Roles.Topic: invite.topic,
                  self.Roles.By: invite.by, self.Roles.MembersCount: invite.members_count}
        return values.get(role)  # type: ignore[call-overload]

    # -- reading -------------------------------------------------------------------------------

    def invite(self, room_id: int) -> Invite | None:
        """The invitation to ``room_id``, or None."""
        row = self._row(room_id)
        return self._rows[row] if row >= 0 else None

    def room_ids(self) -> list[int]:
        """The rooms invited to, in row order."""
        return [invite.room_id for invite in self._rows]

    def _row(self, room_id: int) -> int:
        for row, invite in enumerate(self._rows):
            if invite.room_id == room_id:
                return row
        return -1

    # -- domain changes ------------------------------------------------------------------------

    def reset_invites(self, invites: list[dict[str, Any]]) -> None:
        """Show the session's invitations (``room.invites`` items), newest first."""
        rows = [Invite.from_wire(i) for i in invites]
        rows.sort(key=lambda invite: -invite.ts)
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def add_invite(self, invite: dict[str, Any]) -> None:
        """``room.invited`` for a group room: a new invitation on top (a repeated
        one moves up)."""
        self.remove_invite(int((invite.get("room") or {})["room_id"]))
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, Invite.from_wire(invite))
        self.endInsertRows()

    def remove_invite(self, room_id: int) -> None:
        """Accepted, declined, expired or its room deleted: take it off the list."""
        row = self._row(room_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
