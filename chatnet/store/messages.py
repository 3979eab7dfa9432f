"""Messages and reactions: named transactions over ``messages`` and
``reactions`` (PROTOCOL.md section 6).

Messages come back as the wire's message map (PROTOCOL.md 6) so that history,
search and live delivery share one shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatnet.config import DEFAULT_MAX_FRAME
from chatnet.errors import ChatError, ErrorCode, bad_request, forbidden, not_found
from chatnet.reactions import (
    MAX_EMOJI_PER_MESSAGE,
    MAX_LISTED_REACTIONS,
    MAX_REACTIONS_PER_USER,
)
from chatnet.store.database import Database, IntegrityError, Txn, optional_filters
from chatnet.store.files import ATTACHMENT, file_by_id, may_access
from chatnet.store.search import (
    SearchIndex,
    fts5_match,
    matches,
    parse_query,
    postgres_tsquery,
    snippet,
)
from chatnet.wire.codec import pack

_MESSAGE_COLUMNS = ("m.room_id, m.msg_id, m.seq, u.username, m.ts, m.body, m.client_msg_id, "
                    "m.reply_to, m.mentions, m.ttl, m.edited_ts")
_MESSAGE_FROM = " FROM messages m JOIN users u ON u.user_id = m.sender_id "
#: Two columns selected after ``_MESSAGE_COLUMNS`` for pages: the message's
#: reactions counted up to ``MAX_LISTED_REACTIONS + 1`` (more means "summarise";
#: the count stops there), and its attachments; the extra queries that read
#: reactions and files then skip the (usual) messages that have none.
_HINT_COLUMNS = (f", (SELECT COUNT(*) FROM (SELECT 1 FROM reactions r WHERE r.msg_id = m.msg_id "
                 f"LIMIT {MAX_LISTED_REACTIONS + 1}) c), (SELECT COUNT(*) FROM "
                 "message_attachments a WHERE a.msg_id = m.msg_id)")
#: Leaves out messages whose sender the reader (``?``) blocked (docs/protocol.md 4).
_NOT_BLOCKED = (" AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ? AND "
                "b.blocked_id = m.sender_id) ")
#: Matches a relevance search ranks: the newest ones (module ``search``).
RANK_WINDOW = 1000
#: Rows a member may see: not deleted, not expired at ``?`` (ms).
_VISIBLE = " m.deleted = 0 AND (m.expires_ts IS NULL OR m.expires_ts > ?) "
#: Bytes of a frame a page leaves around its items: the response envelope (``id``,
#: ``result``, ``has_more``, ``next_cursor``, the list header). Pages are built
#: to ``max_frame - PAGE_MARGIN`` bytes of items (docs/protocol.md 6).
PAGE_MARGIN = 512
#: The items' budget of a page under the default ``--max-frame``.
DEFAULT_PAGE_BUDGET = DEFAULT_MAX_FRAME - PAGE_MARGIN
#: Rows read by a page's first query. While the page is under a quarter of its
#: budget (small messages), each next query reads twice as many, up to
#: ``MAX_PAGE_BATCH``; past that, ``PAGE_BATCH`` again. A page that ends early
#: (its budget spent) has read at most one query's rows it does not return.
PAGE_BATCH = 20
#: The most rows one query of a page reads.
MAX_PAGE_BATCH = 80


def message_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """Build the wire message map from a row selected with ``_MESSAGE_COLUMNS``."""
    message: dict[str, Any] = {
        "room_id": int(row[0]), "msg_id": int(row[1]), "seq": int(row[2]), "sender": row[3],
        "ts": int(row[4]), "body": row[5], "client_msg_id": row[6],
    }
    if row[7] is not None:
        message["reply_to"] = int(row[7])
    if row[8]:
        message["mentions"] = json.loads(row[8])
    if row[9] is not None:
        message["ttl"] = int(row[9])
    if row[10] is not None:
        message["edited_ts"] = int(row[10])
    return message


def _attach_reactions(t: Txn, messages: list[dict[str, Any]], viewer_id: int | None,
                      reactions: dict[int, int], mine: dict[int, list[str]]) -> None:
    """Add each message's reactions, listed or summarised (docs/protocol.md 6).

    A message with at most ``MAX_LISTED_REACTIONS`` reactions gets ``reactions:
    {emoji: [username]}`` (names read only for those). One with more, or with
    more distinct emoji than ``MAX_EMOJI_PER_MESSAGE`` (stored before the caps),
    is summarised at once (:func:`_summary`); for those only counts per (message,
    emoji) are read, at most ``MAX_EMOJI_PER_MESSAGE + 1`` emoji each.

    Args:
        reactions: msg_id → its reactions counted up to ``MAX_LISTED_REACTIONS +
            1`` (``_HINT_COLUMNS``); messages without any are not looked up.
        mine: filled with msg_id → the viewer's emoji, for each message given with
            names (for :func:`_summarised`, should it not fit a page with them).
    """
    by_id = {m["msg_id"]: m for m in messages}
    listed = [i for i in by_id if 0 < reactions.get(i, 0) <= MAX_LISTED_REACTIONS]
    crowded = [i for i in by_id if reactions.get(i, 0) > MAX_LISTED_REACTIONS]
    if listed:
        names: dict[int, dict[str, list[str]]] = {}
        own: dict[int, list[str]] = {}
        marks = ",".join("?" * len(listed))
        for msg_id, emoji, user_id, username in t.execute(
                "SELECT r.msg_id, r.emoji, r.user_id, u.username FROM reactions r JOIN users u "
                f"ON u.user_id = r.user_id WHERE r.msg_id IN ({marks}) ORDER BY r.ts, u.username",
                listed).fetchall():
            names.setdefault(int(msg_id), {}).setdefault(emoji, []).append(username)
            if int(user_id) == viewer_id:
                own.setdefault(int(msg_id), []).append(emoji)
        for msg_id, lists in names.items():
            if len(lists) > MAX_EMOJI_PER_MESSAGE:
                # Stored before the caps: too many to list; the most used.
                top = _most_used(lists)
                by_id[msg_id].update(_summary(
                    {e: len(u) for e, u in lists.items() if e in top},
                    [e for e in own.get(msg_id, ()) if e in top]))
            else:
                by_id[msg_id]["reactions"] = lists
                mine[msg_id] = own.get(msg_id, [])
    if crowded:
        counts: dict[int, dict[str, int]] = {i: {} for i in crowded}
        theirs: dict[int, list[str]] = {}
        marks = ",".join("?" * len(crowded))
        for msg_id, emoji, n, by_viewer in t.execute(
                "SELECT msg_id, emoji, n, own FROM (SELECT r.msg_id, r.emoji, COUNT(*) AS n, "
                "SUM(CASE WHEN r.user_id = ? THEN 1 ELSE 0 END) AS own, MIN(r.ts) AS first_ts, "
                "ROW_NUMBER() OVER (PARTITION BY r.msg_id ORDER BY COUNT(*) DESC, MIN(r.ts), "
                f"r.emoji) AS place FROM reactions r WHERE r.msg_id IN ({marks}) "
                "GROUP BY r.msg_id, r.emoji) c WHERE place <= ? ORDER BY msg_id, first_ts, emoji",
                [viewer_id or 0, *crowded, MAX_EMOJI_PER_MESSAGE]).fetchall():
            counts[int(msg_id)][emoji] = int(n)
            if by_viewer:
                theirs.setdefault(int(msg_id), []).append(emoji)
        for msg_id in crowded:
            by_id[msg_id].update(_summary(counts[msg_id], theirs.get(msg_id, [])))


def _most_used(lists: dict[str, list[str]]) -> set[str]:
    """The ``MAX_EMOJI_PER_MESSAGE`` emoji with the most users (ties: first used)."""
    first_use = {emoji: place for place, emoji in enumerate(lists)}
    ranked = sorted(lists, key=lambda emoji: (-len(lists[emoji]), first_use[emoji]))
    return set(ranked[:MAX_EMOJI_PER_MESSAGE])


def _summary(counts: dict[str, int], mine: list[str]) -> dict[str, Any]:
    """The summarised reactions of a message (docs/protocol.md 6)."""
    return {"reaction_counts": counts, "my_reactions": mine, "reactions_summarised": True}


def _summarised(message: dict[str, Any], mine: dict[int, list[str]]) -> dict[str, Any] | None:
    """The message with its listed reactions summarised, or None if it lists none.

    Args:
        mine: msg_id → the reader's emoji, as :func:`_attach_reactions` gave them.
    """
    lists = message.get("reactions")
    if not lists:
        return None
    smaller = {k: v for k, v in message.items() if k != "reactions"}
    smaller.update(_summary({e: len(users) for e, users in lists.items()},
                            mine.get(message["msg_id"], [])))
    return smaller


def _attach_files(t: Txn, messages: list[dict[str, Any]],
                  files: dict[int, int] | None = None) -> None:
    """Add ``attachments`` to the messages (only to those ``files`` counts, if given)."""
    ids = [m["msg_id"] for m in messages if files is None or files.get(m["msg_id"])]
    if not ids:
        return
    by_id = {m["msg_id"]: m for m in messages}
    marks = ",".join("?" * len(ids))
    for msg_id, file_id, name, size, mime in t.execute(
            "SELECT a.msg_id, f.file_id, f.name, f.size, f.mime FROM message_attachments a "
            f"JOIN files f ON f.file_id = a.file_id WHERE a.msg_id IN ({marks}) "
            "ORDER BY a.msg_id, a.position", ids).fetchall():
        by_id[int(msg_id)].setdefault("attachments", []).append(
            {"file_id": file_id, "name": name, "size": int(size), "mime": mime})


def _messages_with_extras(t: Txn, rows: list[tuple[Any, ...]], viewer_id: int | None,
                          mine: dict[int, list[str]]) -> list[dict[str, Any]]:
    """Messages from rows selected with ``_MESSAGE_COLUMNS`` then ``_HINT_COLUMNS``,
    with their reactions and attachments.

    Args:
        mine: filled as :func:`_attach_reactions` does, for :func:`_summarised`.
    """
    messages = [message_from_row(r) for r in rows]
    hint = len(_MESSAGE_COLUMNS.split(","))
    reactions = {m["msg_id"]: int(r[hint]) for m, r in zip(messages, rows, strict=True)}
    files = {m["msg_id"]: int(r[hint + 1]) for m, r in zip(messages, rows, strict=True)}
    _attach_reactions(t, messages, viewer_id, reactions, mine)
    _attach_files(t, messages, files)
    return messages


def _fill_page(fetch: Callable[[tuple[Any, ...] | None, int], list[tuple[Any, ...]]],
               prepare: Callable[[list[tuple[Any, ...]]], list[dict[str, Any]]],
               mine: dict[int, list[str]], limit: int,
               budget: int) -> tuple[list[dict[str, Any]], bool]:
    """Build a page of at most ``limit`` items whose msgpack encodings add up to at
    most ``budget`` bytes, reading rows ``PAGE_BATCH`` at a time.

    Each item is measured as it is added; the page ends before the first one that
    does not fit, so a page always fits its frame and never reads more than one
    batch (``PAGE_BATCH``, growing to ``MAX_PAGE_BATCH`` only while the page is
    under a quarter full) beyond what it returns. An item too large for even an empty page is sent
    in its summarised form (reaction counts instead of names) when it has one.

    Args:
        fetch: ``fetch(last_row, n)`` → the next ``n`` rows in page order after
            ``last_row`` (from the start when None); fewer only when no more exist.
        prepare: rows → items, same order.
        mine: msg_id → the reader's emoji, filled by ``prepare`` (for
            :func:`_summarised`).
        limit: the most items the caller asked for.
        budget: bytes the items may take in all.

    Returns:
        ``(items, has_more)``: ``has_more`` is true when the page stopped at
        ``limit`` or at ``budget`` before the rows ran out.

    Raises:
        ChatError: ``too_large`` when not even one item fits ``budget`` (only if
            ``--max-frame`` was lowered below what was accepted when it was sent).
    """
    items: list[dict[str, Any]] = []
    left = budget
    last: tuple[Any, ...] | None = None
    batch = PAGE_BATCH
    while True:
        want = min(batch, limit - len(items) + 1)  # one more: is there more?
        rows = fetch(last, want)
        take = rows[: limit - len(items)]
        for item in prepare(take):
            size = len(pack(item))
            if size > left and not items:
                summarised = _summarised(item, mine)
                if summarised is not None:
                    item, size = summarised, len(pack(summarised))
            if size > left:
                if items:
                    return items, True
                raise ChatError(ErrorCode.TOO_LARGE,
                                f"message {item.get('msg_id')} is {size} bytes, more than "
                                f"fits in this server's max_frame")
            items.append(item)
            left -= size
        if len(rows) > len(take):
            return items, True
        if len(rows) < want:
            return items, False
        last = rows[-1]
        batch = min(batch * 2, MAX_PAGE_BATCH) if left > budget * 3 // 4 else PAGE_BATCH


def _check_reaction_caps(t: Txn, msg_id: int, user_id: int, emoji: str) -> None:
    """Refuse a new reaction past the caps (the message row is locked by the caller).

    Raises:
        ChatError: ``conflict`` with ``details {limit, per}``.
    """
    mine = t.scalar("SELECT COUNT(*) FROM reactions WHERE msg_id = ? AND user_id = ?",
                    (msg_id, user_id))
    if int(mine) >= MAX_REACTIONS_PER_USER:
        raise ChatError(ErrorCode.CONFLICT,
                        f"you already have {MAX_REACTIONS_PER_USER} different reactions on "
                        "this message; remove one first",
                        {"limit": MAX_REACTIONS_PER_USER, "per": "user"})
    if t.scalar("SELECT 1 FROM reactions WHERE msg_id = ? AND emoji = ? LIMIT 1",
                (msg_id, emoji)) is not None:
        return
    # Only a new emoji can reach the message's cap; the (msg_id, emoji) index
    # makes this count read one index entry per reaction of the message at most.
    distinct = t.scalar("SELECT COUNT(*) FROM (SELECT DISTINCT emoji FROM reactions "
                        "WHERE msg_id = ?) d", (msg_id,))
    if int(distinct) >= MAX_EMOJI_PER_MESSAGE:
        raise ChatError(ErrorCode.CONFLICT,
                        f"this message already has {MAX_EMOJI_PER_MESSAGE} different "
                        "reactions; add one of those instead",
                        {"limit": MAX_EMOJI_PER_MESSAGE, "per": "message"})


@dataclass(frozen=True, slots=True)
class SendResult:
    """What :meth:`MessageStore.send_message` did.

    Attributes:
        message: the stored message map (the first one, for a duplicate).
        duplicate: True if ``client_msg_id`` had been used already by this sender,
            in which case nothing new was stored and nothing must be delivered.
    """

    message: dict[str, Any]
    duplicate: bool


def _history_page(t: Txn, room_id: int, before_seq: int | None, after_seq: int | None,
                  limit: int, now: int, viewer_id: int | None,
                  budget: int) -> tuple[list[dict[str, Any]], bool]:
    """One page of visible history, oldest first (:meth:`MessageStore.history`),
    inside the caller's transaction."""
    forward = after_seq is not None
    order = "ASC" if forward else "DESC"

    def fetch(last: tuple[Any, ...] | None, n: int) -> list[tuple[Any, ...]]:
        where = f"m.room_id = ? AND {_VISIBLE}"
        args: list[Any] = [room_id, now]
        if viewer_id is not None:
            where += _NOT_BLOCKED
            args.append(viewer_id)
        lower, upper = after_seq, before_seq
        if last is not None:
            lower, upper = (last[2], upper) if forward else (lower, last[2])
        if upper is not None:
            where += " AND m.seq < ?"
            args.append(upper)
        if lower is not None:
            where += " AND m.seq > ?"
            args.append(lower)
        return t.execute(f"SELECT {_MESSAGE_COLUMNS}{_HINT_COLUMNS}{_MESSAGE_FROM} "
                         f"WHERE {where} ORDER BY m.seq {order} LIMIT ?",
                         [*args, n]).fetchall()

    mine: dict[int, list[str]] = {}

    def prepare(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return _messages_with_extras(t, rows, viewer_id, mine)

    messages, has_more = _fill_page(fetch, prepare, mine, limit, budget)
    if not forward:
        messages.reverse()
    return messages, has_more


def _keep_for_compliance(t: Txn, entry_id: int, ts: int, action: str, msg_id: int,
                         room_id: int, sender_id: int, body: str, by_id: int | None,
                         **more: Any) -> None:
    """An audit row holding a message's content before it is erased or replaced
    (``--compliance-log``): ``message.deleted``, ``message.edited``,
    ``message.expired``."""
    details = {"room_id": room_id, "msg_id": msg_id, "body": body, **more}
    if by_id is not None:
        details["by_id"] = by_id
    t.execute("INSERT INTO audit_log (entry_id, ts, action, user_id, username, peer, details) "
              "SELECT ?, ?, ?, user_id, username, NULL, ? FROM users WHERE user_id = ?",
              (entry_id, ts, action, json.dumps(details, ensure_ascii=False, sort_keys=True),
               sender_id))


class MessageStore:
    """Data access for messages and reactions. Mixed into :class:`ChatStore`."""

    db: Database
    ids: Any  # ChatStore's IdGenerator (audit rows of the compliance log)

    async def send_message(self, msg_id: int, room_id: int, sender_id: int, sender: str,
                           ts: int, body: str, client_msg_id: str, reply_to: int | None,
                           mentions: list[str] | None, ttl: int | None,
                           attachments: list[str] | None = None) -> SendResult:
        """Store a message with the room's next seq, idempotently on
        ``(sender_id, client_msg_id)`` (PROTOCOL.md 6, ``msg.send``).

        The sender's read position moves to the new message.

        Raises:
            ChatError: ``not_found`` if the room does not exist or the sender is not
                a member; ``bad_request`` if ``reply_to`` is not a message of this room;
                ``conflict`` if ``client_msg_id`` was used for another room;
                ``not_found`` for an attachment the sender may not see.
        """
        mentions_json = json.dumps(mentions) if mentions else None
        expires_ts = ts + ttl * 1000 if ttl else None

        def txn(t: Txn) -> SendResult:
            # The usual case, a new client_msg_id, costs one indexed lookup; the
            # whole first message is read only for a duplicate.
            used_in = t.scalar("SELECT room_id FROM messages WHERE sender_id = ? AND "
                               "client_msg_id = ?", (sender_id, client_msg_id))
            if used_in is not None:
                if int(used_in) != room_id:
                    raise ChatError(ErrorCode.CONFLICT,
                                    "client_msg_id was already used in another room")
                row = t.execute(f"SELECT {_MESSAGE_COLUMNS}{_MESSAGE_FROM} WHERE "
                                "m.sender_id = ? AND m.client_msg_id = ?",
                                (sender_id, client_msg_id)).fetchone()
                assert row is not None
                first = message_from_row(row)
                _attach_files(t, [first])
                return SendResult(first, duplicate=True)
            if reply_to is not None and t.scalar(
                    "SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?",
                    (room_id, sender_id)) is None:
                # Before reply_to is looked at: a stranger must not learn which
                # messages a room has.
                raise not_found("no such room")
            if reply_to is not None and t.scalar(
                    "SELECT 1 FROM messages WHERE msg_id = ? AND room_id = ?",
                    (reply_to, room_id)) is None:
                raise bad_request("reply_to is not a message of this room")
            files = []
            for file_id in dict.fromkeys(attachments or ()):
                record = file_by_id(t, file_id)
                if record is None or not may_access(t, file_id, sender_id):
                    raise not_found(f"no such file {file_id!r}")
                files.append(record)
            seq = t.scalar("UPDATE rooms SET last_seq = last_seq + 1 WHERE room_id = ? "
                           "AND deleted = 0 AND banned = 0 RETURNING last_seq", (room_id,))
            if seq is None:
                if t.scalar("SELECT banned FROM rooms WHERE room_id = ? AND deleted = 0",
                            (room_id,)):
                    raise ChatError(ErrorCode.BANNED, "this room is banned")
                raise not_found("no such room")
            SearchIndex.insert_message(
                t, "msg_id, room_id, seq, sender_id, ts, body, client_msg_id, reply_to, "
                "mentions, ttl, expires_ts",
                (msg_id, room_id, seq, sender_id, ts, body, client_msg_id, reply_to,
                 mentions_json, ttl, expires_ts), msg_id, body)
            # Membership is checked by this update (no row: not a member); raising
            # here rolls back the seq and the insert with the rest of the
            # transaction (or savepoint, in a group).
            t.execute("UPDATE room_members SET read_seq = ? WHERE room_id = ? AND user_id = ?",
                      (seq, room_id, sender_id))
            if t.rowcount != 1:
                raise not_found("no such room")
            t.executemany("INSERT INTO message_attachments (msg_id, room_id, file_id, position) "
                          "VALUES (?, ?, ?, ?)",
                          [(msg_id, room_id, f.file_id, i) for i, f in enumerate(files)])
            message: dict[str, Any] = {
                "room_id": room_id, "msg_id": msg_id, "seq": int(seq), "sender": sender,
                "ts": ts, "body": body, "client_msg_id": client_msg_id,
            }
            if reply_to is not None:
                message["reply_to"] = reply_to
            if mentions:
                message["mentions"] = mentions
            if ttl:
                message["ttl"] = ttl
            if files:
                message["attachments"] = [f.attachment() for f in files]
            return SendResult(message, duplicate=False)

        try:
            result = await self.db.run_grouped("send_message", (("rooms", room_id),), txn)
            self.search_pending = True
            return result
        except IntegrityError:
            # With several pooled connections (PostgreSQL), a concurrent send with the
            # same (sender, client_msg_id) may commit between our check and our insert.
            # Our transaction rolled back (no seq used up); run it again to answer
            # with the message that won, as a duplicate.
            return await self.db.run_interaction("send_message_retry", txn)

    async def message(self, room_id: int, msg_id: int, now: int,
                      viewer_id: int | None = None) -> dict[str, Any] | None:
        """One visible message of a room, with its reactions as a page would carry
        them for ``viewer_id`` (listed, or summarised when there are many), or None."""
        def txn(t: Txn) -> dict[str, Any] | None:
            row = t.execute(f"SELECT {_MESSAGE_COLUMNS}{_HINT_COLUMNS}{_MESSAGE_FROM} WHERE "
                            f"m.msg_id = ? AND m.room_id = ? AND {_VISIBLE}",
                            (msg_id, room_id, now)).fetchone()
            if row is None:
                return None
            [message] = _messages_with_extras(t, [row], viewer_id, {})
            return message

        return await self.db.run_interaction("message", txn)

    async def edit_message(self, room_id: int, msg_id: int, editor_id: int, body: str,
                           edited_ts: int, now: int) -> None:
        """Replace the body of the editor's own visible message.

        Raises:
            ChatError: ``not_found`` (no such visible message), ``forbidden`` (not
                the sender's).
        """
        def txn(t: Txn) -> None:
            row = t.execute(f"SELECT m.sender_id, m.body FROM messages m WHERE m.msg_id = ? "
                            f"AND m.room_id = ? AND {_VISIBLE}", (msg_id, room_id, now)
                            ).fetchone()
            if row is None:
                raise not_found("no such message")
            if int(row[0]) != editor_id:
                raise forbidden("only the sender can edit a message")
            t.execute("UPDATE messages SET body = ?, edited_ts = ?, changed_ts = ? "
                      "WHERE msg_id = ?", (body, edited_ts, edited_ts, msg_id))
            if self.compliance_log:
                _keep_for_compliance(t, self.ids.next_id(), now, "message.edited", msg_id,
                                     room_id, editor_id, str(row[1]), editor_id,
                                     new_body=body)
            SearchIndex.remove(t, msg_id, str(row[1]))
            SearchIndex.add(t, msg_id, body)

        await self.db.run_interaction("edit_message", txn)
        self.search_pending = True

    async def delete_message(self, room_id: int, msg_id: int, user_id: int, moderator: bool,
                             now: int) -> None:
        """Delete a visible message: the sender's own, or any if ``moderator``.

        The body is erased, not kept: deleted means gone.

        Raises:
            ChatError: ``not_found`` or ``forbidden``.
        """
        def txn(t: Txn) -> None:
            row = t.execute(f"SELECT m.sender_id, m.body FROM messages m WHERE m.msg_id = ? "
                            f"AND m.room_id = ? AND {_VISIBLE}", (msg_id, room_id, now)
                            ).fetchone()
            if row is None:
                raise not_found("no such message")
            if int(row[0]) != user_id and not moderator:
                raise forbidden("only the sender or a moderator can delete a message")
            if self.compliance_log:
                _keep_for_compliance(t, self.ids.next_id(), now, "message.deleted", msg_id,
                                     room_id, int(row[0]), str(row[1]), user_id)
            SearchIndex.remove(t, msg_id, str(row[1]))
            t.execute("UPDATE messages SET deleted = 1, body = '', mentions = NULL, "
                      "changed_ts = ? WHERE msg_id = ?", (now, msg_id))
            t.execute("DELETE FROM reactions WHERE msg_id = ?", (msg_id,))
            t.execute("DELETE FROM message_attachments WHERE msg_id = ?", (msg_id,))

        await self.db.run_interaction("delete_message", txn)

    async def react(self, room_id: int, msg_id: int, user_id: int, emoji: str, on: bool,
                    ts: int, now: int) -> bool:
        """Add or remove a reaction, within the caps of :mod:`chatnet.reactions`.

        The message's row is locked first (a no-op ``UPDATE``), so concurrent
        reactions to one message run one after the other on every engine: the
        counts checked below cannot be raced past by another connection.

        Args:
            emoji: one emoji, already in its canonical form
                (:func:`chatnet.reactions.canonical_emoji`).

        Returns:
            whether anything changed (reacting twice changes nothing).

        Raises:
            ChatError: ``not_found`` if the message is not visible in the room;
                ``conflict`` with ``details {limit, per}`` when adding would give
                the user more than ``MAX_REACTIONS_PER_USER`` distinct emoji on the
                message (``per: "user"``) or the message more than
                ``MAX_EMOJI_PER_MESSAGE`` (``per: "message"``). Removing always works.
        """
        def txn(t: Txn) -> bool:
            t.execute(f"UPDATE messages AS m SET changed_ts = m.changed_ts WHERE m.msg_id = ? "
                      f"AND m.room_id = ? AND {_VISIBLE}", (msg_id, room_id, now))
            if t.rowcount != 1:
                raise not_found("no such message")
            exists = t.scalar("SELECT 1 FROM reactions WHERE msg_id = ? AND user_id = ? AND "
                              "emoji = ?", (msg_id, user_id, emoji)) is not None
            if on == exists:
                return False
            if on:
                _check_reaction_caps(t, msg_id, user_id, emoji)
                t.execute("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES "
                          "(?, ?, ?, ?)", (msg_id, user_id, emoji, ts))
            else:
                t.execute("DELETE FROM reactions WHERE msg_id = ? AND user_id = ? AND "
                          "emoji = ?", (msg_id, user_id, emoji))
            t.execute("UPDATE messages SET changed_ts = ? WHERE msg_id = ?", (ts, msg_id))
            return True

        return await self.db.run_grouped("react", (("rooms", room_id),), txn)

    async def history(self, room_id: int, before_seq: int | None, after_seq: int | None,
                      limit: int, now: int, *, viewer_id: int | None = None,
                      budget: int = DEFAULT_PAGE_BUDGET) -> tuple[list[dict[str, Any]], bool]:
        """A page of visible messages, oldest first (PROTOCOL.md 6, ``msg.history``).

        With ``after_seq`` the page starts just after it and goes forward; otherwise
        it ends just before ``before_seq`` (or at the newest message) and goes back.
        The page holds at most ``limit`` messages and at most ``budget`` bytes of
        them (msgpack), so it always fits a frame: it ends early rather than
        growing (:func:`_fill_page`).

        Args:
            viewer_id: who reads, for ``my_reactions`` of summarised messages.
            budget: bytes the encoded messages may take.

        Returns:
            ``(messages, has_more)``: ``has_more`` says whether more messages lie
            beyond the page in the direction of travel.

        Raises:
            ChatError: ``too_large`` if not even one message fits ``budget``.
        """
        return await self.db.run_interaction("history", _history_page, room_id, before_seq,
                                             after_seq, limit, now, viewer_id, budget)

    async def history_around(self, room_id: int, around_seq: int | None,
                             around_ts: int | None, limit: int, now: int, *,
                             viewer_id: int | None = None,
                             budget: int = DEFAULT_PAGE_BUDGET
                             ) -> tuple[list[dict[str, Any]], int | None, bool, bool]:
        """The page of history around a message or a moment, oldest first (extension
        of ``msg.history``, docs/protocol.md 6): the anchor, about half of
        ``limit`` (and of ``budget``) before it and the rest from it on.

        Args:
            around_seq: the anchor is this seq (or the first visible one after it).
            around_ts: the anchor is the first visible message at or after this
                time (ms); past the newest message, the newest.

        Returns:
            ``(messages, anchor_seq, more_before, more_after)``; ``anchor_seq`` is
            None in an empty room.
        """
        def txn(t: Txn) -> tuple[list[dict[str, Any]], int | None, bool, bool]:
            if around_seq is not None:
                found = t.scalar(f"SELECT MIN(m.seq) FROM messages m WHERE m.room_id = ? AND "
                                 f"m.seq >= ? AND {_VISIBLE}", (room_id, around_seq, now))
            else:
                found = t.scalar(f"SELECT MIN(m.seq) FROM messages m WHERE m.room_id = ? AND "
                                 f"m.ts >= ? AND {_VISIBLE}", (room_id, around_ts, now))
            if found is None:
                found = t.scalar(f"SELECT MAX(m.seq) FROM messages m WHERE m.room_id = ? AND "
                                 f"{_VISIBLE}", (room_id, now))
            if found is None:
                return [], None, False, False
            seq = int(found)
            back = max(0, limit // 2)
            earlier, more_before = ([], False) if not back else _history_page(
                t, room_id, seq, None, back, now, viewer_id, budget // 2)
            later, more_after = _history_page(t, room_id, None, seq - 1, max(1, limit - back),
                                              now, viewer_id, budget - budget // 2)
            return earlier + later, seq, more_before, more_after

        # One transaction: the anchor and both halves of one moment of the room.
        return await self.db.run_interaction("history_around", txn)

    async def search(self, user_id: int, query: str, room_id: int | None, sender: str | None,
                     since: int | None, until: int | None, limit: int, now: int, *,
                     sort: str = "relevance", before: tuple[int, int] | None = None,
                     offset: int = 0,
                     budget: int = DEFAULT_PAGE_BUDGET) -> tuple[list[dict[str, Any]], bool]:
        """Visible messages matching ``query`` in rooms the user is a member of
        (PROTOCOL.md 6, ``msg.search``), through the full-text index
        (:mod:`chatnet.store.search`): every word of the query must match, by
        stem; a CJK word of two or more characters as a phrase. Each message
        carries a ``snippet`` ``{text, marks}``. The page fits ``budget`` bytes
        like :meth:`history`'s.

        Args:
            sort: ``relevance`` (the engine's rank, BM25 on SQLite, ``ts_rank`` on
                PostgreSQL, then newest first, among the :data:`RANK_WINDOW` newest
                matches) or ``recent`` (newest first, every match).
            since: only messages at or after this time (ms).
            until: only messages before this time (ms).
            before: with ``recent``: ``(ts, msg_id)`` of the last message of the
                previous page (results continue below that msg_id).
            offset: with ``relevance``: results of the previous pages to skip.
            budget: bytes the encoded messages may take.

        Returns:
            ``(messages, has_more)``.

        Raises:
            ChatError: ``too_large`` if not even one message fits ``budget``.
        """
        terms = parse_query(query)
        if not terms:
            return [], False

        def txn(t: Txn) -> tuple[list[dict[str, Any]], bool]:
            where = (f"{_VISIBLE} AND m.room_id IN (SELECT room_id FROM room_members WHERE "
                     f"user_id = ?){_NOT_BLOCKED}")
            args: list[Any] = [now, user_id, user_id]
            more, more_args = optional_filters((
                ("m.room_id = ?", room_id), ("u.username = ?", sender), ("m.ts >= ?", since),
                ("m.ts < ?", until), ("m.msg_id < ?", before[1] if before else None)))
            where += more
            args += more_args
            if t.engine.name == "sqlite":
                source = (" FROM message_search JOIN messages m ON m.msg_id = "
                          "message_search.rowid JOIN users u ON u.user_id = m.sender_id ")
                where = "message_search MATCH ? AND " + where
                args.insert(0, fts5_match(terms))
                # bm25: lower is better. The index's own rowid order (msg_id: time
                # order) lets it stream the newest matches and stop.
                score, newest = "bm25(message_search)", "message_search.rowid DESC"
            else:
                tsquery, query_args = postgres_tsquery(terms)
                source = f"{_MESSAGE_FROM} CROSS JOIN (SELECT {tsquery} AS q) query "
                args[:0] = query_args
                where = "m.search @@ query.q AND " + where
                # ts_rank is computed in the outer query, for the window only.
                score, newest = "m.search, query.q", "m.msg_id DESC"
            # SQLite: the newest messages may still wait in the indexer's queue;
            # they are matched here directly (a few hundred at most).
            queued: list[int] = []
            if t.engine.name == "sqlite":
                tail_where = where.replace("message_search MATCH ? AND ", "", 1)
                # CROSS JOIN: SQLite then reads the (short) queue first; left to
                # itself it walked all messages in msg_id order to find the few queued.
                for msg_id, body in t.execute(
                        f"SELECT m.msg_id, m.body FROM search_queue q CROSS JOIN messages m "
                        f"CROSS JOIN users u WHERE m.msg_id = q.msg_id AND u.user_id = "
                        f"m.sender_id AND {tail_where} ORDER BY q.msg_id DESC",
                        args[1:]).fetchall():
                    if matches(str(body), terms):
                        queued.append(int(msg_id))
            if sort == "relevance":
                # Relevance among the RANK_WINDOW newest matches: ranking every match
                # of a common word costs time in proportion to the history (a second
                # at a million messages); the newest matches are what chat search
                # is for, and filters or sort=recent reach the older ones.
                if t.engine.name == "sqlite":
                    sql = (f"SELECT msg_id FROM (SELECT m.msg_id AS msg_id, m.ts AS ts, {score} "
                           f"AS score{source} WHERE {where} ORDER BY {newest} LIMIT "
                           f"{RANK_WINDOW}) w ORDER BY score, ts DESC, msg_id DESC "
                           "LIMIT ? OFFSET ?")
                else:
                    sql = (f"SELECT msg_id FROM (SELECT m.msg_id AS msg_id, m.ts AS ts, "
                           f"m.search AS search, query.q AS q{source} WHERE {where} ORDER BY "
                           f"{newest} LIMIT {RANK_WINDOW}) w ORDER BY ts_rank(search, q) DESC, "
                           "ts DESC, msg_id DESC LIMIT ? OFFSET ?")
                # The queued (newest) matches come first, then the ranked ones.
                rows = t.execute(sql, [*args, limit + 1 + offset, 0]).fetchall()
                ids = (queued + [int(r[0]) for r in rows])[offset:offset + limit + 1]
            else:
                rows = t.execute(f"SELECT m.msg_id{source} WHERE {where} ORDER BY {newest} "
                                 "LIMIT ?", [*args, limit + 1]).fetchall()
                # An edited old message waits in the queue too: merge by time.
                ids = sorted(queued + [int(r[0]) for r in rows], reverse=True)[:limit + 1]
            position = 0

            def fetch(_last: tuple[Any, ...] | None, n: int) -> list[tuple[Any, ...]]:
                nonlocal position
                found: list[tuple[Any, ...]] = []
                # A message deleted since the ids were read (PostgreSQL: another
                # connection) is skipped; the next ids take its place.
                while len(found) < n and position < len(ids):
                    chunk = ids[position:position + n - len(found)]
                    position += len(chunk)
                    marks = ",".join("?" * len(chunk))
                    rows = {int(r[1]): r for r in t.execute(
                        f"SELECT {_MESSAGE_COLUMNS}{_HINT_COLUMNS}{_MESSAGE_FROM} WHERE "
                        f"m.msg_id IN ({marks}) AND {_VISIBLE}", [*chunk, now]).fetchall()}
                    found.extend(rows[i] for i in chunk if i in rows)
                return found

            mine: dict[int, list[str]] = {}

            def prepare(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
                messages = _messages_with_extras(t, rows, user_id, mine)
                for message in messages:
                    message["snippet"] = snippet(message["body"], terms)
                return messages

            return _fill_page(fetch, prepare, mine, limit, budget)

        return await self.db.run_interaction("search", txn)

    #: Keep the content of deleted, edited and expired messages in the audit log
    #: (``--compliance-log``), in the transaction that erases it.
    compliance_log = False

    #: Whether the search queue may hold messages (SQLite): set by every send and
    #: edit, so that an idle server runs no indexing transaction at all (and a
    #: storage fault burst is not kept open by one).
    search_pending = True

    async def purge_before(self, cutoff: int, batch: int = 1000) -> tuple[int, list[str]]:
        """Retention (``--retention-days``): delete up to ``batch`` messages older
        than ``cutoff`` (ms) with their reactions, attachments and index entries,
        and — once no such message is left — the attachment files older than the
        cutoff that no message, feed post or profile refers to any more.

        Returns:
            ``(messages deleted, SHA-256s of the files deleted)``: call again while
            messages were deleted; release the blobs of the hashes.
        """
        def txn(t: Txn) -> tuple[int, list[str]]:
            rows = t.execute("SELECT msg_id, body FROM messages WHERE ts < ? ORDER BY ts "
                             "LIMIT ?", (cutoff, batch)).fetchall()
            for msg_id, body in rows:
                SearchIndex.remove(t, int(msg_id), str(body or ""))
            ids = [int(r[0]) for r in rows]
            if ids:
                marks = ",".join("?" * len(ids))
                for table in ("reactions", "message_attachments", "messages"):
                    t.execute(f"DELETE FROM {table} WHERE msg_id IN ({marks})", ids)
                return len(ids), []
            files = t.execute(
                "SELECT f.file_id, f.sha256 FROM files f WHERE f.ts < ? AND f.purpose = ? AND "
                "NOT EXISTS (SELECT 1 FROM message_attachments a WHERE a.file_id = f.file_id) "
                "AND NOT EXISTS (SELECT 1 FROM feed_post_files p WHERE p.file_id = f.file_id) "
                "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_file_id = f.file_id) "
                "LIMIT ?", (cutoff, ATTACHMENT, batch)).fetchall()
            for file_id, _sha in files:
                t.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
            return 0, [str(r[1]) for r in files]

        return await self.db.run_interaction("purge_before", txn)

    async def export_page(self, since: int, until: int, room_id: int | None,
                          sender: str | None, after_msg_id: int,
                          limit: int) -> list[dict[str, Any]]:
        """Messages for a compliance export (``admin.export``): every message with
        ``since <= ts < until`` (ms), deleted and expired ones too (marked), of one
        room or sender if given, by msg_id after ``after_msg_id``, at most
        ``limit``; with room name and attachments.

        Returns:
            ``[{room_id, room, msg_id, seq, sender, ts, body, reply_to?,
            edited_ts?, deleted?, expired?, attachments?}]``.
        """
        def txn(t: Txn) -> list[dict[str, Any]]:
            more, more_args = optional_filters((("m.room_id = ?", room_id),
                                                ("u.username = ?", sender)))
            where = "m.ts >= ? AND m.ts < ? AND m.msg_id > ?" + more
            args: list[Any] = [since, until, after_msg_id, *more_args]
            rows = t.execute(
                "SELECT m.room_id, r.name, r.kind, m.msg_id, m.seq, u.username, m.ts, m.body, "
                "m.reply_to, m.edited_ts, m.deleted FROM messages m JOIN users u ON "
                "u.user_id = m.sender_id JOIN rooms r ON r.room_id = m.room_id WHERE "
                f"{where} ORDER BY m.msg_id LIMIT ?", [*args, limit]).fetchall()
            out: list[dict[str, Any]] = []
            for row in rows:
                entry: dict[str, Any] = {
                    "room_id": int(row[0]), "room": row[1] if row[2] == "group" else "(direct)",
                    "msg_id": int(row[3]), "seq": int(row[4]), "sender": row[5],
                    "ts": int(row[6]), "body": row[7]}
                if row[8] is not None:
                    entry["reply_to"] = int(row[8])
                if row[9] is not None:
                    entry["edited_ts"] = int(row[9])
                if row[10] == 1:
                    entry["deleted"] = True
                elif row[10] == 2:
                    entry["expired"] = True
                out.append(entry)
            if out:
                marks = ",".join("?" * len(out))
                files: dict[int, list[dict[str, Any]]] = {}
                for msg_id, file_id, name, size, mime in t.execute(
                        "SELECT a.msg_id, f.file_id, f.name, f.size, f.mime FROM "
                        "message_attachments a JOIN files f ON f.file_id = a.file_id WHERE "
                        f"a.msg_id IN ({marks}) ORDER BY a.position",
                        [e["msg_id"] for e in out]).fetchall():
                    files.setdefault(int(msg_id), []).append(
                        {"file_id": file_id, "name": name, "size": int(size), "mime": mime})
                for entry in out:
                    if entry["msg_id"] in files:
                        entry["attachments"] = files[entry["msg_id"]]
            return out

        return await self.db.run_interaction("export_page", txn)

    async def index_queued(self, batch: int = 5000) -> int:
        """Move up to ``batch`` queued messages into the search index in one
        transaction (SQLite; :class:`chatnet.services.messages.SearchIndexer`
        calls it a few times a second). Does nothing when nothing was sent or
        edited since the queue was last found empty, or on PostgreSQL.

        Returns:
            how many queue entries were handled.
        """
        if not self.search_pending or self.db.engine.name != "sqlite":
            return 0
        self.search_pending = False  # a send finishing meanwhile sets it again
        try:
            done: int = await self.db.run_interaction("index_queued",
                                                      SearchIndex.index_queued, batch)
        except Exception:
            self.search_pending = True
            raise
        if done == batch:
            self.search_pending = True  # more may wait
        return done

    async def index_backlog(self, batch: int = 2000) -> int:
        """Index the messages stored before the search index existed (schema
        version 9), ``batch`` per transaction, resuming where a previous start
        stopped. Run at start, before anyone can change a message.

        Returns:
            how many messages were indexed now.
        """
        def step(t: Txn) -> tuple[int, bool]:
            start = t.scalar("SELECT next_msg_id FROM search_backlog")
            if start is None:
                return 0, True
            rows = t.execute("SELECT msg_id, body FROM messages WHERE msg_id >= ? AND "
                             "deleted = 0 ORDER BY msg_id LIMIT ?", (start, batch)).fetchall()
            for msg_id, body in rows:
                SearchIndex.add_now(t, int(msg_id), str(body or ""))
            if len(rows) < batch:
                t.execute("DELETE FROM search_backlog")
                return len(rows), True
            t.execute("UPDATE search_backlog SET next_msg_id = ?", (int(rows[-1][0]) + 1,))
            return len(rows), False

        total, done = 0, False
        while not done:
            count, done = await self.db.run_interaction("index_backlog", step)
            total += count
        return total

    async def changes(self, room_id: int, since_ts: int, since_msg_id: int, limit: int,
                      now: int, *, viewer_id: int | None = None,
                      budget: int = DEFAULT_PAGE_BUDGET) -> tuple[list[dict[str, Any]], bool]:
        """Messages of a room changed after ``(since_ts, since_msg_id)`` by an edit,
        a reaction, a deletion or an expiry, in change order (extension
        ``msg.changes``, docs/protocol.md), in a page that fits ``budget`` bytes
        like :meth:`history`'s.

        Args:
            viewer_id: who reads, for ``my_reactions`` of summarised messages.
            budget: bytes the encoded changes may take.

        Returns:
            ``(changes, has_more)``: a change is the current message map plus
            ``changed_ts``, or ``{room_id, msg_id, seq, deleted: True, changed_ts}``
            for a message that is gone.

        Raises:
            ChatError: ``too_large`` if not even one change fits ``budget``.
        """
        def txn(t: Txn) -> tuple[list[dict[str, Any]], bool]:
            def fetch(last: tuple[Any, ...] | None, n: int) -> list[tuple[Any, ...]]:
                after_ts, after_id = (since_ts, since_msg_id) if last is None else (
                    int(last[-1]), int(last[1]))
                blocked = _NOT_BLOCKED if viewer_id is not None else ""
                args = (room_id, after_ts, after_ts, after_id,
                        *((viewer_id,) if viewer_id is not None else ()), n)
                return t.execute(
                    f"SELECT {_MESSAGE_COLUMNS}{_HINT_COLUMNS}, m.deleted, m.expires_ts, "
                    "m.changed_ts"
                    f"{_MESSAGE_FROM} WHERE m.room_id = ? AND (m.changed_ts > ? OR "
                    f"(m.changed_ts = ? AND m.msg_id > ?)){blocked} ORDER BY m.changed_ts, "
                    "m.msg_id LIMIT ?", args).fetchall()

            def gone(row: tuple[Any, ...]) -> bool:
                deleted, expires_ts = row[-3], row[-2]
                return bool(deleted) or (expires_ts is not None and expires_ts <= now)

            mine: dict[int, list[str]] = {}

            def prepare(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
                visible = iter(_messages_with_extras(t, [r[:-3] for r in rows if not gone(r)],
                                                     viewer_id, mine))
                changes: list[dict[str, Any]] = []
                for row in rows:
                    if gone(row):
                        changes.append({"room_id": int(row[0]), "msg_id": int(row[1]),
                                        "seq": int(row[2]), "deleted": True,
                                        "changed_ts": int(row[-1])})
                    else:
                        message = next(visible)
                        message["changed_ts"] = int(row[-1])
                        changes.append(message)
                return changes

            return _fill_page(fetch, prepare, mine, limit, budget)

        return await self.db.run_interaction("changes", txn)

    async def expire_due(self, now: int, batch: int = 500) -> list[tuple[int, int]]:
        """Erase messages whose ``ttl`` has run out (PROTOCOL.md 6, ``ttl``).

        Returns:
            ``[(room_id, msg_id)]`` of the messages erased now.
        """
        def txn(t: Txn) -> list[tuple[int, int]]:
            rows = t.execute("SELECT room_id, msg_id, body, sender_id FROM messages WHERE "
                             "expires_ts <= ? AND deleted = 0 ORDER BY expires_ts LIMIT ?",
                             (now, batch)).fetchall()
            erased = []
            for room_id, msg_id, body, sender_id in rows:
                t.execute("UPDATE messages SET deleted = 2, body = '', mentions = NULL, "
                          "changed_ts = ? WHERE msg_id = ? AND deleted = 0", (now, msg_id))
                if t.rowcount != 1:
                    # Another node of a cluster erased it meanwhile (PostgreSQL
                    # waited for its lock, then found it gone): theirs to announce.
                    continue
                if self.compliance_log:
                    _keep_for_compliance(t, self.ids.next_id(), now, "message.expired",
                                         int(msg_id), int(room_id), int(sender_id),
                                         str(body or ""), None)
                SearchIndex.remove(t, int(msg_id), str(body or ""))
                t.execute("DELETE FROM reactions WHERE msg_id = ?", (msg_id,))
                t.execute("DELETE FROM message_attachments WHERE msg_id = ?", (msg_id,))
                erased.append((int(room_id), int(msg_id)))
            return erased

        return await self.db.run_interaction("expire_due", txn)

    async def next_expiry(self) -> int | None:
        """The earliest ``expires_ts`` (ms) of a message not yet erased, or None."""
        def txn(t: Txn) -> int | None:
            value = t.scalar("SELECT MIN(expires_ts) FROM messages WHERE deleted = 0 AND "
                             "expires_ts IS NOT NULL")
            return int(value) if value is not None else None

        return await self.db.run_interaction("next_expiry", txn)
