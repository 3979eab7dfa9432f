"""The members of the open room, with roles and presence (PROTOCOL.md 5, ``room.members``)."""

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
)

_Index = QModelIndex | QPersistentModelIndex
#: Listing order: who runs the room first, then who is reachable.
_ROLE_RANK = {"owner": 0, "moderator": 1, "member": 2}
_PRESENCE_RANK = {"online": 0, "busy": 1, "away": 2, "offline": 3, UNKNOWN: 3}


@dataclass(frozen=True, slots=True)
class Member:
    """One member row.

    Attributes:
        username: the account name.
        display_name: the name shown.
        role: ``owner``, ``moderator`` or ``member``.
        presence: the shown presence state (``unknown`` while disconnected).
    """

    username: str
    display_name: str = ""
    role: str = "member"
    presence: str = "offline"

    def sort_key(self) -> tuple[int, int, str]:
        """Owner and moderators first, then by presence, then by name."""
        return (_ROLE_RANK.get(self.role, 3), _PRESENCE_RANK.get(self.presence, 3),
                (self.display_name or self.username).lower())


class MemberListModel(RowsModel):
    """Members of one room (the members panel); changed only by domain methods.

    Attributes:
        room_id: the room whose members are listed, or None when empty.
    """

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the display name."""

        Username = USER_ROLE + 1
        DisplayName = USER_ROLE + 2
        Role = USER_ROLE + 3
        Presence = USER_ROLE + 4

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.room_id: int | None = None
        self._rows: list[Member] = []

    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the member at ``index`` (None if unknown)."""
        member = self.row_item(index)
        if member is None:
            return None
        if role == ItemRole.DisplayRole.value or role == self.Roles.DisplayName:
            return member.display_name or member.username
        if role == ItemRole.ToolTipRole.value:
            # Who it really is: display names can be anything, usernames are unique.
            return f"{member.display_name or member.username} (@{member.username})"
        if role == self.Roles.Username:
            return member.username
        if role == self.Roles.Role:
            return member.role
        if role == self.Roles.Presence:
            return member.presence
        return None

    # -- reading -------------------------------------------------------------------------------

    def member(self, username: str) -> Member | None:
        """The member named ``username``, or None."""
        for member in self._rows:
            if member.username == username:
                return member
        return None

    def usernames(self) -> list[str]:
        """All usernames, in row order."""
        return [member.username for member in self._rows]

    def _row(self, username: str) -> int:
        for row, member in enumerate(self._rows):
            if member.username == username:
                return row
        return -1

    # -- domain changes ------------------------------------------------------------------------

    def reset_members(self, room_id: int | None, members: list[dict[str, Any]]) -> None:
        """Show ``room.members``'s list for ``room_id`` (None: empty the panel)."""
        rows = [Member(username=str(m["username"]), display_name=str(m.get("display_name") or ""),
                       role=str(m.get("role", "member")), presence=normalise(m.get("presence")))
                for m in members]
        rows.sort(key=Member.sort_key)
        self.beginResetModel()
        self.room_id = room_id
        self._rows = rows
        self.endResetModel()

    def _update(self, username: str, **changes: str) -> None:
        row = self._row(username)
        if row >= 0:
            self._rows[row] = replace(self._rows[row], **changes)
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def set_presence(self, username: str, state: str) -> None:
        """``presence`` event."""
        self._update(username, presence=normalise(state))

    def forget_presence(self) -> None:
        """The connection is lost: nobody's presence is known until the members
        are listed again (:meth:`reset_members`) or ``presence`` events arrive."""
        if not self._rows:
            return
        self._rows = [replace(member, presence=UNKNOWN) for member in self._rows]
        self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    def set_role(self, username: str, role: str) -> None:
        """``room.member {change: role}``."""
        self._update(username, role=role)

    def set_display_name(self, username: str, display_name: str) -> None:
        """``user.updated``."""
        self._update(username, display_name=display_name)

    def add_member(self, username: str, role: str = "member", display_name: str = "",
                   presence: str = "offline") -> None:
        """``room.member {change: joined}`` (ignored if already listed)."""
        if self._row(username) >= 0:
            return
        member = Member(username, display_name, role, normalise(presence))
        row = next((r for r, m in enumerate(self._rows) if member.sort_key() < m.sort_key()),
                   len(self._rows))
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, member)
        self.endInsertRows()

    def remove_member(self, username: str) -> None:
        """``room.member {change: left | kicked}``."""
        row = self._row(username)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
