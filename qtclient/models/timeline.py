"""One room's conversation: messages in seq order, loaded lazily (PROTOCOL.md 6)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from chatnet.client.reactions import Reactions
from qtclient.models.base import RowsModel
from qtclient.qt import (
    USER_ROLE,
    ItemRole,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
)

_Index = QModelIndex | QPersistentModelIndex

#: Delivery states of a row.
SENT, PENDING, FAILED = "sent", "pending", "failed"


@dataclass(slots=True)
class MessageItem:
    """One message of the timeline (the model's own record; views get copies of fields).

    Attributes:
        key: a stable identity for views: ``m<msg_id>`` once stored,
            ``c<client_msg_id>`` while only sent.
        msg_id: the server's id (None while pending).
        seq: the room sequence number (None while pending).
        sender: the sender's username.
        ts: time, ms since the epoch (local send time while pending).
        body: the text.
        client_msg_id: the sender's idempotency key, when known.
        reply_to: msg_id of the message this replies to.
        mentions: usernames mentioned.
        edited_ts: time of the last edit, or None.
        reactions: who reacted with what (names, or only counts when the server
            sent the message summarised), kept current by ``msg.reaction``.
        attachments: the files attached (PROTOCOL.md 7), each
            ``{file_id, name, size, mime}``.
        ttl: seconds the message lives after ``ts`` (burn after reading,
            docs/protocol.md 6), or None for a message that stays.
        state: ``sent``, ``pending`` (waiting for the server) or ``failed``.
        revision: bumped on every change, so cached layouts know they are stale.
        day: the local calendar day of ``ts`` (a date ordinal), for day separators.
    """

    key: str
    msg_id: int | None
    seq: int | None
    sender: str
    ts: int
    body: str
    client_msg_id: str = ""
    reply_to: int | None = None
    mentions: list[str] = field(default_factory=list)
    edited_ts: int | None = None
    reactions: Reactions = field(default_factory=Reactions)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    ttl: int | None = None
    state: str = SENT
    revision: int = 0
    day: int = 0

    def __post_init__(self) -> None:
        # Computed once: the list asks "does this row start a day?" on every layout.
        self.day = _day(self.ts)

    @classmethod
    def from_message(cls, message: dict[str, Any], me: str = "") -> MessageItem:
        """A row from a PROTOCOL.md 6 message map (``me``: the user, whose own
        reactions are marked)."""
        return cls(key=f"m{message['msg_id']}", msg_id=int(message["msg_id"]),
                   seq=int(message["seq"]), sender=str(message.get("sender", "")),
                   ts=int(message.get("ts", 0)), body=str(message.get("body", "")),
                   client_msg_id=str(message.get("client_msg_id") or ""),
                   reply_to=message.get("reply_to"),
                   mentions=list(message.get("mentions") or []),
                   edited_ts=message.get("edited_ts"),
                   reactions=Reactions.from_message(message, me),
                   attachments=_attachments(message.get("attachments")),
                   ttl=int(message["ttl"]) if message.get("ttl") else None)

    @property
    def expires_at(self) -> int | None:
        """When a burn-after-reading message is erased (ms since the epoch), or None."""
        return self.ts + self.ttl * 1000 if self.ttl else None

    @property
    def summary(self) -> str:
        """The text, or the attached files' names for a message without text
        (reply quotes, notifications)."""
        if self.body or not self.attachments:
            return self.body
        return "  ".join(f"📎 {a['name']}" for a in self.attachments)


#: A message whose body starts with this (and has more) is an action, IRC's ``/me``
#: (docs/protocol.md 6, Actions): shown as ``* sender text``.
ACTION_PREFIX = "/me "


def action_of(body: str) -> str | None:
    """The text of an action message (``/me waves`` -> ``waves``), or None for
    any other body (``/me`` alone, ``/meow``, ``/me`` followed by blanks)."""
    if body.startswith(ACTION_PREFIX):
        text = body[len(ACTION_PREFIX):].strip()
        return text or None
    return None


def action_text(body: str, name: str) -> str | None:
    """How an action reads, ``* name waves``, or None if ``body`` is not one."""
    action = action_of(body)
    return f"* {name} {action}" if action is not None else None


def _attachments(value: Any) -> list[dict[str, Any]]:
    """The attachments of a message map, checked and in a fixed shape."""
    out = []
    for a in value or ():
        if isinstance(a, dict) and a.get("file_id"):
            out.append({"file_id": str(a["file_id"]), "name": str(a.get("name") or "file"),
                        "size": int(a.get("size") or 0),
                        "mime": str(a.get("mime") or "application/octet-stream")})
    return out


def _day(ts: int) -> int:
    # Local time: days as the user lives them.
    return datetime.fromtimestamp(ts / 1000).toordinal()


class TimelineModel(RowsModel):
    """The messages of one room, oldest first, with pending sends at the end.

    Only a window of history is loaded: the newest page when the room is first
    opened (:meth:`load_latest`), older pages as the user scrolls up
    (:meth:`prepend_older`). Live ``msg`` events append; catch-up after a
    reconnect merges without duplicates (rows are keyed by ``msg_id``, and a
    pending send is matched to its stored message by ``client_msg_id``).

    A search result or a date opens the window somewhere in the middle
    (:meth:`load_around`, ``msg.history {around_seq | around_ts}``): then
    :attr:`has_newer` is True, newer pages come as the user scrolls down
    (:meth:`append_newer`), and live messages are not appended (they would
    leave a gap; scrolling down, or :meth:`load_latest`, brings them).

    Args:
        room_id: the room.
        me: the user's own username (marks own messages and mentions).
        names: username -> display name, kept up to date by the owner (the
            controller); call :meth:`names_changed` after changing it.

    Attributes:
        has_more: whether older messages exist on the server beyond the first row.
        has_newer: whether newer messages exist on the server beyond the last
            stored row (only after :meth:`load_around`; False at the newest).
        loading: a page is being fetched (the view asks only once).
        loaded: the newest page has been fetched at least once.
        marker_seq: the first unread message when the room was opened (the view
            draws "new messages" above it), or None.
        window: bumped each time the loaded window is replaced (newest page,
            a page around a message); an answer for an older window is ignored.
    """

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the body."""

        Key = USER_ROLE + 1
        MsgId = USER_ROLE + 2
        Seq = USER_ROLE + 3
        Sender = USER_ROLE + 4
        Timestamp = USER_ROLE + 5
        Body = USER_ROLE + 6
        Edited = USER_ROLE + 7
        ReplyTo = USER_ROLE + 8
        ReplyPreview = USER_ROLE + 9
        Reactions = USER_ROLE + 10
        State = USER_ROLE + 11
        IsOwn = USER_ROLE + 12
        DayBreak = USER_ROLE + 13
        NewMarker = USER_ROLE + 14
        Mentioned = USER_ROLE + 15
        LayoutKey = USER_ROLE + 16
        ClientMsgId = USER_ROLE + 17
        SenderName = USER_ROLE + 18
        Attachments = USER_ROLE + 19
        ReactionUsers = USER_ROLE + 20
        #: ``* Name waves`` for an action (``/me waves``), else None.
        Action = USER_ROLE + 21
        #: When a burn-after-reading message is erased (ms), else None.
        ExpiresAt = USER_ROLE + 22
        #: Its ``ttl`` in seconds, else None.
        Ttl = USER_ROLE + 23

    def __init__(self, room_id: int, me: str, names: Mapping[str, str] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.room_id = room_id
        self.me = me
        self.names: Mapping[str, str] = names if names is not None else {}
        self.has_more = True
        self.has_newer = False
        self.loading = False
        self.loaded = False
        self.window = 0
        self.marker_seq: int | None = None
        self._rows: list[MessageItem] = []
        self._seqs: list[int] = []  # seqs of the stored rows (a prefix of _rows), for bisect
        self._by_id: dict[int, MessageItem] = {}
        self._pending: dict[str, MessageItem] = {}

    # -- Qt model interface ------------------------------------------------------------------



    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the row at ``index`` (None if unknown)."""
        item = self.row_item(index)
        if item is None:
            return None
        row = index.row()
        roles = self.Roles
        # The delegate asks LayoutKey for every row on every layout: answer it first.
        if role == roles.LayoutKey:
            return (item.key, item.revision, self.names.get(item.sender), self._day_break(row),
                    item.seq is not None and item.seq == self.marker_seq,
                    item.reply_to is not None and item.reply_to in self._by_id)
        if role == roles.Body or role == ItemRole.DisplayRole.value:
            return item.body
        if role == roles.Sender:
            return item.sender
        if role == roles.SenderName:
            return self.names.get(item.sender) or item.sender
        if role == roles.Timestamp:
            return item.ts
        if role == roles.Key:
            return item.key
        if role == roles.MsgId:
            return item.msg_id
        if role == roles.Seq:
            return item.seq
        if role == roles.Edited:
            return item.edited_ts is not None
        if role == roles.ReplyTo:
            return item.reply_to
        if role == roles.ReplyPreview:
            return self._reply_preview(item)
        if role == roles.Reactions:
            return item.reactions.chips()
        if role == roles.ReactionUsers:
            # emoji -> who, or None when the server sent only counts (summarised).
            return {emoji: None if users is None else [self.names.get(u) or u for u in users]
                    for emoji, users in ((e, item.reactions.users(e))
                                         for e, _n, _m in item.reactions.chips())}
        if role == roles.State:
            return item.state
        if role == roles.IsOwn:
            return item.sender == self.me
        if role == roles.DayBreak:
            return self._day_break(row)
        if role == roles.NewMarker:
            return item.seq is not None and item.seq == self.marker_seq
        if role == roles.Mentioned:
            return item.sender != self.me and (
                self.me in item.mentions or f"@{self.me}" in item.body)
        if role == roles.ClientMsgId:
            return item.client_msg_id
        if role == roles.Attachments:
            return [(a["file_id"], a["name"], a["size"], a["mime"]) for a in item.attachments]
        if role == roles.Action:
            return action_text(item.body, self.names.get(item.sender) or item.sender)
        if role == roles.ExpiresAt:
            return item.expires_at
        if role == roles.Ttl:
            return item.ttl
        return None

    def _day_break(self, row: int) -> bool:
        """Whether the row starts a new day (the first loaded row always does)."""
        return row == 0 or self._rows[row].day != self._rows[row - 1].day

    def _reply_preview(self, item: MessageItem) -> tuple[str, str] | None:
        if item.reply_to is None:
            return None
        quoted = self._by_id.get(item.reply_to)
        if quoted is None:
            return ("", "")  # replies to a message not loaded (or deleted)
        name = self.names.get(quoted.sender) or quoted.sender
        return (name, action_text(quoted.body, name) or quoted.summary)

    # -- reading -------------------------------------------------------------------------------

    @property
    def oldest_seq(self) -> int | None:
        """The seq of the first loaded message, or None if nothing is loaded."""
        return self._seqs[0] if self._seqs else None

    @property
    def newest_seq(self) -> int:
        """The seq of the newest loaded message (0 if none)."""
        return self._seqs[-1] if self._seqs else 0

    @property
    def stored_count(self) -> int:
        """Rows that are stored messages (the rest are pending sends)."""
        return len(self._seqs)

    def item(self, row: int) -> MessageItem:
        """The record at ``row`` (read it, do not change it).

        Raises:
            IndexError: no such row.
        """
        return self._rows[row]

    def row_of_msg(self, msg_id: int) -> int:
        """The row of a stored message, or -1."""
        item = self._by_id.get(msg_id)
        if item is None or item.seq is None:
            return -1
        row = bisect.bisect_left(self._seqs, item.seq)
        return row if row < len(self._seqs) and self._seqs[row] == item.seq else -1

    def row_of_seq(self, seq: int) -> int:
        """The row of the stored message with ``seq``, or -1."""
        row = bisect.bisect_left(self._seqs, seq)
        return row if row < len(self._seqs) and self._seqs[row] == seq else -1

    def burning(self) -> bool:
        """Whether a burn-after-reading message is loaded (its countdown is shown)."""
        return any(item.ttl for item in self._rows)

    def last_own_message(self) -> int | None:
        """The ``msg_id`` of the user's newest stored message with text (what Up
        in an empty composer edits), or None."""
        for row in range(len(self._seqs) - 1, -1, -1):
            item = self._rows[row]
            if item.sender == self.me and item.msg_id is not None and item.body:
                return item.msg_id
        return None

    def bodies(self) -> list[str]:
        """Every row's body, in order (pending included)."""
        return [item.body for item in self._rows]

    # -- domain changes ------------------------------------------------------------------------

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def load_latest(self, messages: list[dict[str, Any]], has_more: bool,
                    read_seq: int) -> None:
        """The newest page, fetched when the room is opened (replaces stored rows).

        Args:
            messages: ``msg.history`` messages, oldest first.
            has_more: whether older ones exist.
            read_seq: the user's read position; the first message after it
                gets the "new messages" marker.
        """
        pending = self._rows[len(self._seqs):]
        items = [MessageItem.from_message(m, self.me) for m in messages]
        items.sort(key=lambda i: i.seq or 0)
        # Live messages that arrived while the page was on its way are newer than it.
        newest = items[-1].seq or 0 if items else 0
        items += [i for i in self._rows[: len(self._seqs)] if (i.seq or 0) > newest]
        # A pending send the server already stored appears once, as stored.
        stored_cids = {i.client_msg_id for i in items if i.client_msg_id}
        pending = [p for p in pending if p.client_msg_id not in stored_cids]
        self.beginResetModel()
        self._rows = items + pending
        self._seqs = [i.seq or 0 for i in items]
        self._by_id = {i.msg_id: i for i in items if i.msg_id is not None}
        self._pending = {p.client_msg_id: p for p in pending}
        self.has_more = has_more
        self.has_newer = False
        self.loaded = True
        self.marker_seq = next((i.seq for i in items
                                if (i.seq or 0) > read_seq and i.sender != self.me), None)
        self.endResetModel()

    def load_around(self, messages: list[dict[str, Any]], has_more_before: bool,
                    has_more_after: bool) -> None:
        """A page around a message or a moment (``msg.history {around_seq |
        around_ts}``): it replaces the stored rows; pending sends stay at the end.

        Args:
            messages: the page, oldest first.
            has_more_before: whether older messages exist beyond it.
            has_more_after: whether newer ones do (the window is not at the newest).
        """
        items = sorted((MessageItem.from_message(m, self.me) for m in messages),
                       key=lambda i: i.seq or 0)
        stored_cids = {i.client_msg_id for i in items if i.client_msg_id}
        pending = [p for p in self._rows[len(self._seqs):]
                   if p.client_msg_id not in stored_cids]
        self.beginResetModel()
        self._rows = items + pending
        self._seqs = [i.seq or 0 for i in items]
        self._by_id = {i.msg_id: i for i in items if i.msg_id is not None}
        self._pending = {p.client_msg_id: p for p in pending}
        self.has_more = has_more_before
        self.has_newer = has_more_after
        self.loaded = True
        self.marker_seq = None
        self.endResetModel()

    def append_newer(self, messages: list[dict[str, Any]], has_more: bool) -> int:
        """A newer page (``msg.history after_seq``) as the user scrolls down from a
        window opened by :meth:`load_around`; put after the last stored row.

        Args:
            messages: the page, oldest first.
            has_more: whether still newer messages exist (False: the window now
                reaches the newest message, and live messages append again).

        Returns:
            how many rows were added.
        """
        newest = self.newest_seq
        items = sorted((MessageItem.from_message(m, self.me) for m in messages
                        if int(m["seq"]) > newest),
                       key=lambda i: i.seq or 0)
        items = [i for i in items if i.msg_id not in self._by_id]
        for item in items:  # one's own sends the server has stored meanwhile
            pending = self._pending.pop(item.client_msg_id, None) if item.client_msg_id else None
            if pending is not None:
                row = self._rows.index(pending)
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        if items:
            first = len(self._seqs)
            self.beginInsertRows(QModelIndex(), first, first + len(items) - 1)
            self._rows[first:first] = items
            self._seqs.extend(i.seq or 0 for i in items)
            for i in items:
                if i.msg_id is not None:
                    self._by_id[i.msg_id] = i
            self.endInsertRows()
            if first > 0:
                self._changed(first)  # replies in the window may find their quote
        # Changed after the rows are in: while it is True the view does not
        # follow the bottom (it would fetch page after page to the newest).
        self.has_newer = has_more
        return len(items)

    def forget_window(self) -> None:
        """Drop the stored rows of a window in the middle of the history (the user
        sends from there: the newest page is fetched again); pending sends stay."""
        pending = self._rows[len(self._seqs):]
        self.beginResetModel()
        self._rows = pending
        self._seqs, self._by_id = [], {}
        self.has_more, self.has_newer = True, False
        self.loaded = False
        self.marker_seq = None
        self.window += 1
        self.endResetModel()

    def prepend_older(self, messages: list[dict[str, Any]], has_more: bool) -> int:
        """An older page (``msg.history before_seq``) for infinite scroll-back.

        Returns:
            how many rows were added at the top.
        """
        self.has_more = has_more
        oldest = self.oldest_seq
        items = sorted((MessageItem.from_message(m, self.me) for m in messages
                        if oldest is None or int(m["seq"]) < oldest),
                       key=lambda i: i.seq or 0)
        items = [i for i in items if i.msg_id not in self._by_id]
        if not items:
            return 0
        self.beginInsertRows(QModelIndex(), 0, len(items) - 1)
        self._rows[0:0] = items
        self._seqs[0:0] = [i.seq or 0 for i in items]
        for i in items:
            if i.msg_id is not None:
                self._by_id[i.msg_id] = i
        self.endInsertRows()
        # The row that was first may no longer start a day, and replies in
        # the loaded window may now find their quoted message.
        self._changed(len(items))
        return len(items)

    def add_message(self, message: dict[str, Any]) -> bool:
        """A ``msg`` event (live or catch-up): insert it once, in seq order.

        A pending send with the same ``client_msg_id`` becomes this message.

        Returns:
            True if the message was new to the model.
        """
        item = MessageItem.from_message(message, self.me)
        if item.msg_id in self._by_id:
            return False
        pending = self._pending.pop(item.client_msg_id, None) if item.client_msg_id else None
        if pending is not None:
            row = self._rows.index(pending)
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
        if (self.loaded and self._seqs and item.seq is not None
                and item.seq < self._seqs[0] and self.has_more):
            return False  # older than the loaded window: scroll-back will fetch it
        if self.has_newer and item.seq is not None and item.seq > self._seqs[-1]:
            return False  # past a window in the middle: scrolling down fetches it
        seq = item.seq or 0
        row = bisect.bisect_left(self._seqs, seq)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, item)
        self._seqs.insert(row, seq)
        if item.msg_id is not None:
            self._by_id[item.msg_id] = item
        self.endInsertRows()
        if row + 1 < len(self._seqs):
            self._changed(row + 1)  # its day separator may have changed
        return True

    def add_pending(self, client_msg_id: str, body: str, ts: int,
                    reply_to: int | None = None,
                    attachments: list[dict[str, Any]] | None = None,
                    ttl: int | None = None) -> None:
        """Show a message the user just sent, before the server has stored it
        (``attachments``: ``{file_id, name, size, mime}`` of files already uploaded;
        ``ttl``: seconds it lives, burn after reading)."""
        item = MessageItem(key=f"c{client_msg_id}", msg_id=None, seq=None, sender=self.me,
                           ts=ts, body=body, client_msg_id=client_msg_id,
                           reply_to=reply_to, attachments=_attachments(attachments),
                           ttl=ttl, state=PENDING)
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(item)
        self._pending[client_msg_id] = item
        self.endInsertRows()

    def mark_failed(self, client_msg_id: str) -> None:
        """The server refused a pending send for good."""
        item = self._pending.get(client_msg_id)
        if item is not None:
            item.state = FAILED
            item.revision += 1
            self._changed(self._rows.index(item))

    def acknowledge(self, client_msg_id: str, msg_id: int, seq: int, ts: int) -> None:
        """``msg.send`` answered: the pending row is stored (its ``msg`` event may
        already have replaced it, or may come later; either way it shows once)."""
        item = self._pending.get(client_msg_id)
        if item is None:
            return
        self.add_message({"msg_id": msg_id, "seq": seq, "ts": ts, "sender": item.sender,
                          "body": item.body, "client_msg_id": client_msg_id,
                          "reply_to": item.reply_to, "room_id": self.room_id,
                          "attachments": item.attachments, "ttl": item.ttl})

    def apply_edit(self, msg_id: int, body: str, edited_ts: int) -> None:
        """``msg.edited``."""
        item = self._by_id.get(msg_id)
        if item is not None:
            item.body, item.edited_ts = body, edited_ts
            item.revision += 1
            self._changed(self.row_of_msg(msg_id))
            self._touch_replies_to(msg_id)

    def apply_update(self, message: dict[str, Any]) -> None:
        """``msg.updated`` (the library's catch-up after a reconnect): the message's
        current body, edited mark and reactions replace what is shown."""
        msg_id = int(message["msg_id"])
        item = self._by_id.get(msg_id)
        if item is None:
            return
        updated = MessageItem.from_message(message, self.me)
        item.body, item.edited_ts = updated.body, updated.edited_ts
        item.reactions = updated.reactions
        item.revision += 1
        self._changed(self.row_of_msg(msg_id))
        self._touch_replies_to(msg_id)

    def remove_message(self, msg_id: int) -> None:
        """``msg.deleted`` / ``msg.expired``: the message is gone."""
        row = self.row_of_msg(msg_id)
        if row < 0:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rows[row]
        del self._seqs[row]
        del self._by_id[msg_id]
        self.endRemoveRows()
        if row < len(self._seqs):
            self._changed(row)
        self._touch_replies_to(msg_id)

    def hide_sender(self, username: str) -> None:
        """``username`` was blocked: their stored messages leave the timeline (the
        server leaves them out of history and events from now on)."""
        for item in [i for i in self._rows[: len(self._seqs)] if i.sender == username]:
            assert item.msg_id is not None
            self.remove_message(item.msg_id)

    def apply_reaction(self, msg_id: int, emoji: str, username: str, on: bool) -> None:
        """``msg.reaction``: ``username`` added (``on``) or removed ``emoji``."""
        item = self._by_id.get(msg_id)
        if item is None:
            return
        if item.reactions.apply(emoji, username, on, self.me):
            item.revision += 1
            self._changed(self.row_of_msg(msg_id))

    def merge_latest(self, messages: list[dict[str, Any]]) -> None:
        """Reconcile with a fresh newest page after a reconnect: edits, reactions
        and deletions made while offline (the library replays only new messages).
        A window in the middle of the history (:attr:`has_newer`) is left as it
        is: the newest page does not touch it."""
        if not messages or self.has_newer:
            return
        fresh = {int(m["msg_id"]): m for m in messages}
        low = min(int(m["seq"]) for m in messages)
        for item in [i for i in self._rows[: len(self._seqs)] if (i.seq or 0) >= low]:
            assert item.msg_id is not None
            message = fresh.get(item.msg_id)
            if message is None:
                self.remove_message(item.msg_id)
                continue
            updated = MessageItem.from_message(message, self.me)
            if (updated.body, updated.edited_ts, updated.reactions) != (
                    item.body, item.edited_ts, item.reactions):
                item.body, item.edited_ts = updated.body, updated.edited_ts
                item.reactions = updated.reactions
                item.revision += 1
                self._changed(self.row_of_msg(item.msg_id))
        for message in messages:
            self.add_message(message)

    def place_marker(self, read_seq: int) -> None:
        """Put "new messages" above the first message from others after ``read_seq``
        (the room is being opened again; None if there is none)."""
        self.clear_marker()
        row = bisect.bisect_right(self._seqs, read_seq)
        while row < len(self._seqs) and self._rows[row].sender == self.me:
            row += 1
        if row < len(self._seqs):
            self.marker_seq = self._seqs[row]
            self._changed(row)

    def names_changed(self) -> None:
        """Display names were learned or changed: every row may show another name."""
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    def clear_marker(self) -> None:
        """Drop the "new messages" marker (the user has moved on)."""
        if self.marker_seq is not None:
            row = self.row_of_seq(self.marker_seq)
            self.marker_seq = None
            if row >= 0:
                self._changed(row)

    def _touch_replies_to(self, msg_id: int) -> None:
        for row, item in enumerate(self._rows):
            if item.reply_to == msg_id:
                item.revision += 1
                self._changed(row)
