"""Search results (``msg.search``, docs/protocol.md 6): one list per account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from qtclient.models.base import RowsModel
from qtclient.qt import (
    USER_ROLE,
    ItemRole,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    pyqtSignal,
)

_Index = QModelIndex | QPersistentModelIndex

#: ``msg.search`` orders (its ``sort`` argument).
RELEVANCE, RECENT = "relevance", "recent"


def utf16_marks(text: str, marks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``marks`` (``[start, end)`` in Unicode code points, as the server counts
    them) as offsets in ``text``'s UTF-16 code units, as Qt strings count them:
    a character outside the Basic Multilingual Plane (most emoji) is two units.

    Marks out of range or empty are dropped; the rest are clipped to the text.
    """
    ends = [0]
    for char in text:
        ends.append(ends[-1] + (2 if ord(char) > 0xFFFF else 1))
    out = []
    for start, end in marks:
        start, end = max(0, start), min(len(text), end)
        if start < end:
            out.append((ends[start], ends[end]))
    return out


@dataclass(slots=True)
class SearchResult:
    """One message found (a ``msg.search`` message map, reduced to what is shown).

    Attributes:
        msg_id, room_id, seq: where it is.
        sender: the sender's username.
        ts: when it was sent, ms since the epoch.
        text: the snippet: up to 160 characters around the first match.
        marks: ``[start, end)`` of every match in ``text``, in code points.
    """

    msg_id: int
    room_id: int
    seq: int
    sender: str
    ts: int
    text: str
    marks: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> SearchResult:
        """A row from a ``msg.search`` message (its ``snippet``, else its body)."""
        snippet = message.get("snippet") or {}
        text = str(snippet.get("text", message.get("body", "")))
        marks = [(int(pair[0]), int(pair[1])) for pair in snippet.get("marks") or ()
                 if len(pair) == 2]
        return cls(msg_id=int(message["msg_id"]), room_id=int(message["room_id"]),
                   seq=int(message["seq"]), sender=str(message.get("sender", "")),
                   ts=int(message.get("ts", 0)), text=text, marks=marks)


class SearchResultsModel(RowsModel):
    """The results of the current search of one account, best (or newest) first.

    A new search (:meth:`begin`) empties it; each answer is added with
    :meth:`add_page`, which ignores answers to an earlier search (the user
    typed on meanwhile). ``next_cursor`` asks for the next page.

    Args:
        room_label: room id -> how the room is named in a result ("# general",
            a person's name for a direct room).
        names: username -> display name.

    Attributes:
        query: the words searched for ("" before any search).
        room_id: the room searched, or None for all the account's rooms.
        order: :data:`RELEVANCE` or :data:`RECENT` (``msg.search``'s ``sort``).
        generation: bumped by every :meth:`begin`; an answer carries the
            generation it was asked for.
        has_more: whether the server has more results (``next_cursor``).
        next_cursor: the cursor for the next page, if any.
        loading: a page is on its way.
        done: the first page has arrived (so an empty list means "nothing found").
        error: why the last request failed ("" if it did not).

    Signals:
        state_changed(): ``loading``, ``done``, ``has_more`` or ``error`` changed.
    """

    state_changed = pyqtSignal()

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the snippet's text."""

        MsgId = USER_ROLE + 1
        RoomId = USER_ROLE + 2
        Seq = USER_ROLE + 3
        Sender = USER_ROLE + 4
        SenderName = USER_ROLE + 5
        Timestamp = USER_ROLE + 6
        Snippet = USER_ROLE + 7
        Marks = USER_ROLE + 8
        RoomLabel = USER_ROLE + 9

    def __init__(self, room_label: Callable[[int], str],
                 names: dict[str, str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.room_label = room_label
        self.names: dict[str, str] = names if names is not None else {}
        self._rows: list[SearchResult] = []
        self._ids: set[int] = set()
        self.query = ""
        self.room_id: int | None = None
        self.order = RELEVANCE
        self.generation = 0
        self.has_more = False
        self.next_cursor: str | None = None
        self.loading = False
        self.done = False
        self.error = ""

    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the result at ``index`` (None if unknown)."""
        item: SearchResult | None = self.row_item(index)
        if item is None:
            return None
        roles = self.Roles
        if role in (roles.Snippet, ItemRole.DisplayRole.value):
            return item.text
        if role == roles.Marks:
            return list(item.marks)
        if role == roles.MsgId:
            return item.msg_id
        if role == roles.RoomId:
            return item.room_id
        if role == roles.Seq:
            return item.seq
        if role == roles.Sender:
            return item.sender
        if role == roles.SenderName:
            return self.names.get(item.sender) or item.sender
        if role == roles.Timestamp:
            return item.ts
        if role == roles.RoomLabel:
            return self.room_label(item.room_id)
        return None

    def result(self, row: int) -> SearchResult:
        """The result at ``row``.

        Raises:
            IndexError: no such row.
        """
        return self._rows[row]

    def begin(self, query: str, room_id: int | None, order: str) -> int:
        """A new search: forget the results, remember what is asked.

        Returns:
            the search's generation, to pass to :meth:`add_page`.
        """
        self.beginResetModel()
        self._rows = []
        self._ids = set()
        self.query, self.room_id, self.order = query, room_id, order
        self.generation += 1
        self.has_more, self.next_cursor = False, None
        self.loading, self.done, self.error = bool(query), False, ""
        self.endResetModel()
        self.state_changed.emit()
        return self.generation

    def add_page(self, generation: int, page: dict[str, Any]) -> bool:
        """A ``msg.search`` answer: append its messages (each result once).

        Returns:
            False if it answers an earlier search (and was ignored).
        """
        if generation != self.generation:
            return False
        fresh = [SearchResult.from_message(m) for m in page.get("messages") or ()]
        fresh = [r for r in fresh if r.msg_id not in self._ids]
        self.loading, self.done = False, True
        cursor = page.get("next_cursor")
        self.has_more = bool(page.get("has_more")) and isinstance(cursor, str)
        self.next_cursor = cursor if self.has_more else None
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            self._ids.update(r.msg_id for r in fresh)
            self.endInsertRows()
        self.state_changed.emit()
        return True

    def fail(self, generation: int, error: str) -> None:
        """The request of search ``generation`` failed (``error``: translated)."""
        if generation == self.generation:
            self.loading, self.error = False, error
            self.state_changed.emit()

    def clear(self) -> None:
        """No search (the panel was closed, or the account signed out)."""
        self.begin("", None, self.order)

    def names_changed(self) -> None:
        """Display names or room names changed: every row may read differently."""
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))
