"""What chatnet's list models share: a flat list of rows and a ``Roles`` enum."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

from qtclient.qt import QAbstractListModel, QByteArray, QModelIndex, QPersistentModelIndex

Index = QModelIndex | QPersistentModelIndex


class RowsModel(QAbstractListModel):
    """A ``QAbstractListModel`` over ``self._rows`` (children of the root only).

    Subclasses set ``Roles`` (an ``IntEnum`` of their item roles), keep their
    items in ``self._rows`` and implement ``data`` with :meth:`row_item`.
    """

    Roles: ClassVar[type[IntEnum]]
    _rows: list[Any]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        """Number of rows (a flat list: children of the root only)."""
        return 0 if parent.isValid() else len(self._rows)

    def roleNames(self) -> dict[int, QByteArray]:
        """Role names, for debugging tools and QML."""
        return {role.value: QByteArray(role.name.encode()) for role in self.Roles}

    def row_item(self, index: Index) -> Any | None:
        """The item at ``index``, or None for an invalid or stale index."""
        row = index.row()
        if not index.isValid() or not 0 <= row < len(self._rows):
            return None
        return self._rows[row]
