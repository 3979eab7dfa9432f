"""Messages, reactions, receipts, typing and expiry (PROTOCOL.md section 6).

``msg.send`` answers only after the message is committed, then the ``msg``
event is encoded once and written to every session of every member, the
sender's own included. Sends are idempotent on ``(sender, client_msg_id)``:
a repeat returns the first result and delivers nothing.

Messages with a ``ttl`` are erased at ``ts + ttl`` by :class:`ExpiryService`,
which sends ``msg.expired {room_id, msg_id}``; until then they are hidden
from nobody, afterwards from everybody.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import Logger

from chatnet.config import DEFAULT_MAX_FRAME
from chatnet.errors import ChatError, ErrorCode, bad_request, not_found
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.periodic import PeriodicJob
from chatnet.store import ChatStore
from chatnet.store.messages import PAGE_MARGIN
from chatnet.wire.codec import event_frame, pack

_MODERATORS = frozenset({"owner", "moderator"})
#: Bytes a message map adds around body and mentions in an event or a page (ids,
#: names, times, keys, a ``client_msg_id`` of 64 four-byte characters).
_EVENT_OVERHEAD = 768
#: Bytes one attachment's metadata may take (name ≤ 255 and mime ≤ 127 characters).
_ATTACHMENT_OVERHEAD = 2048
#: Bytes summarised reactions may add to a message (20 emoji with counts, the
#: reader's own, the flag): what a page needs beyond the message itself.
_SUMMARY_OVERHEAD = 2048
#: The most mentions and attachments a message can have (chatnet.wire.ops).
_MAX_MENTIONS, _MAX_ATTACHMENTS = 100, 20
#: A ``msg.search`` cursor: ``<ts>.<msg_id>`` of the previous page's last message
#: (opaque to clients, docs/protocol.md 6).
_SEARCH_CURSOR = re.compile(r"(\d{1,19})\.(\d{1,19})")
#: Cursor of a search by relevance: how many results the pages before held.
_RANK_CURSOR = re.compile(r"r(\d{1,9})")


class MessageService:
    """Sending, editing, deleting, reacting, history, receipts, typing, search.

    Args:
        store: the chat store.
        fanout: delivery and the membership map.
        clock: time source.
        max_event: the largest frame clients accept (``--max-frame``), bytes: a
            message whose event would not fit is refused with ``too_large``, and
            pages of messages are built to fit it (``max_event - PAGE_MARGIN``
            bytes of messages).
    """

    log = Logger()

    def __init__(self, store: ChatStore, fanout: LocalFanout, clock: Clock,
                 max_event: int = DEFAULT_MAX_FRAME) -> None:
        self.store = store
        self.fanout = fanout
        self.clock = clock
        self.max_event = max_event
        self.page_budget = max_event - PAGE_MARGIN

    def fits(self, body: str, mentions: list[str] | None, attachments: int) -> bool:
        """Whether a message surely fits both its event and, summarised, a page alone.

        The estimate is generous: the encoded body and mentions, plus room for the
        other fields, each attachment's metadata and summarised reactions.

        Args:
            attachments: how many files the message attaches.
        """
        size = len(pack({"body": body, "mentions": mentions or []}))
        size += _EVENT_OVERHEAD + _ATTACHMENT_OVERHEAD * attachments + _SUMMARY_OVERHEAD
        return size <= min(self.max_event, self.page_budget)

    def too_large(self) -> ChatError:
        """The ``too_large`` error for a message that would not fit (:meth:`fits`)."""
        return ChatError(ErrorCode.TOO_LARGE,
                         f"the message would not fit in this server's max_frame "
                         f"({self.max_event} bytes) with room for its reactions; make it "
                         "shorter")

    def check_fits(self, body: str, mentions: list[str] | None,
                   attachments: list[str] | None) -> None:
        """Refuse a message that :meth:`fits` does not accept.

        Raises:
            ChatError: ``too_large``.
        """
        if not self.fits(body, mentions, len(attachments or ())):
            raise self.too_large()

    def perspective(self, actor: Actor) -> MessagePerspective:
        """The messages perspective of one session."""
        return MessagePerspective(self, actor)

    async def require_role(self, room_id: int, user_id: int) -> str:
        """The user's role in the room.

        Raises:
            ChatError: ``not_found`` if the room does not exist or the user is not a member.
        """
        role = await self.store.role_of(room_id, user_id)
        if role is None:
            raise not_found("no such room")
        return role


class MessagePerspective:
    """``msg.*`` for one session."""

    __slots__ = ("actor", "service")

    def __init__(self, service: MessageService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    async def perspective_send(self, room_id: int, body: str, client_msg_id: str,
                               reply_to: int | None, mentions: list[str] | None,
                               ttl: int | None,
                               attachments: list[str] | None) -> dict[str, Any]:
        """``msg.send`` → ``{msg_id, seq, ts}`` once committed; members get ``msg {message}``.

        Raises:
            ChatError: ``not_found`` (no such room, not a member, or an attachment
                the sender may not see), ``bad_request`` (empty body without
                attachments, bad ``reply_to``), ``conflict`` (``client_msg_id`` used
                in another room), ``too_large`` (the event would not fit in max_frame).
        """
        if not body.strip() and not attachments:
            raise bad_request("body must not be empty")
        service = self.service
        service.check_fits(body, mentions, attachments)
        store = service.store
        result = await store.send_message(
            store.ids.next_id(), room_id, self.actor.user_id, self.actor.username,
            ms(service.clock), body, client_msg_id, reply_to,
            list(dict.fromkeys(mentions)) if mentions else None, ttl, attachments)
        message = result.message
        if not result.duplicate:
            service.fanout.deliver_message(room_id, event_frame("msg", {"message": message}),
                                           self.actor.user_id)
            if service.fanout.monitoring():
                service.fanout.deliver_monitors(event_frame("monitor.msg",
                                                            {"message": message}))
        return {"msg_id": message["msg_id"], "seq": message["seq"], "ts": message["ts"]}

    async def perspective_edit(self, room_id: int, msg_id: int, body: str) -> dict[str, Any]:
        """``msg.edit`` → ``{}``; members get ``msg.edited {room_id, msg_id, body, edited_ts}``.

        Raises:
            ChatError: ``not_found``, ``forbidden`` (not the sender).
        """
        service = self.service
        await service.require_role(room_id, self.actor.user_id)
        if not body.strip():
            raise bad_request("body must not be empty")
        now = ms(service.clock)
        if not service.fits(body, ["x" * 32] * _MAX_MENTIONS, _MAX_ATTACHMENTS):
            # Near the limit (a small --max-frame): measure with what the message has.
            current = await service.store.message(room_id, msg_id, now)
            if current is not None and not service.fits(
                    body, current.get("mentions"), len(current.get("attachments", ()))):
                raise service.too_large()
        await service.store.edit_message(room_id, msg_id, self.actor.user_id, body, now, now)
        service.fanout.deliver_room(room_id, event_frame(
            "msg.edited", {"room_id": room_id, "msg_id": msg_id, "body": body, "edited_ts": now}))
        return {}

    async def perspective_delete(self, room_id: int, msg_id: int) -> dict[str, Any]:
        """``msg.delete`` → ``{}`` (own messages; owners and moderators: any);
        members get ``msg.deleted {room_id, msg_id}``.

        Raises:
            ChatError: ``not_found``, ``forbidden``.
        """
        service = self.service
        role = await service.require_role(room_id, self.actor.user_id)
        await service.store.delete_message(room_id, msg_id, self.actor.user_id,
                                           role in _MODERATORS, ms(service.clock))
        service.fanout.deliver_room(room_id, event_frame(
            "msg.deleted", {"room_id": room_id, "msg_id": msg_id}))
        return {}

    async def perspective_react(self, room_id: int, msg_id: int, emoji: str,
                                on: bool) -> dict[str, Any]:
        """``msg.react`` → ``{}``; if it changed anything, members get
        ``msg.reaction {room_id, msg_id, emoji, username, on}``.

        Args:
            emoji: one emoji in its canonical form (checked by the op registry with
                :func:`chatnet.reactions.canonical_emoji`).

        Raises:
            ChatError: ``not_found``; ``conflict`` with ``details {limit, per}`` past
                the caps of :mod:`chatnet.reactions`.
        """
        service = self.service
        await service.require_role(room_id, self.actor.user_id)
        now = ms(service.clock)
        if await service.store.react(room_id, msg_id, self.actor.user_id, emoji, on, now, now):
            service.fanout.deliver_room(room_id, event_frame(
                "msg.reaction", {"room_id": room_id, "msg_id": msg_id, "emoji": emoji,
                                 "username": self.actor.username, "on": on}))
        return {}

    async def perspective_history(self, room_id: int, before_seq: int | None,
                                  after_seq: int | None, limit: int,
                                  around_seq: int | None = None,
                                  around_ts: int | None = None) -> dict[str, Any]:
        """``msg.history`` → ``{messages: [message], has_more}``, oldest first; with
        ``around_seq`` or ``around_ts`` (extension: a search result, a date) →
        ``{messages, anchor_seq, has_more_before, has_more_after, has_more}``, the
        page around that message or moment.

        The page fits the frame by construction: it ends early (``has_more``) when
        the next message would not fit, and a message with many reactions carries
        them summarised (docs/protocol.md 6).

        Raises:
            ChatError: ``not_found`` if not a member; ``bad_request`` for more than
                one of ``before_seq``, ``after_seq``, ``around_seq``, ``around_ts``.
        """
        service = self.service
        given = [name for name, value in (("before_seq", before_seq), ("after_seq", after_seq),
                                          ("around_seq", around_seq), ("around_ts", around_ts))
                 if value is not None]
        if len(given) > 1:
            raise bad_request(f"give at most one of {', '.join(given)}")
        await service.require_role(room_id, self.actor.user_id)
        if around_seq is not None or around_ts is not None:
            page, anchor, before, after = await service.store.history_around(
                room_id, around_seq, around_ts, limit, ms(service.clock),
                viewer_id=self.actor.user_id, budget=service.page_budget)
            result: dict[str, Any] = {"messages": page, "has_more_before": before,
                                      "has_more_after": after, "has_more": before or after}
            if anchor is not None:
                result["anchor_seq"] = anchor
            return result
        messages, has_more = await service.store.history(
            room_id, before_seq, after_seq, limit, ms(service.clock),
            viewer_id=self.actor.user_id, budget=service.page_budget)
        return {"messages": messages, "has_more": has_more}

    async def perspective_read(self, room_id: int, seq: int) -> dict[str, Any]:
        """``msg.read`` → ``{}``; if the read position moved, members get
        ``msg.receipt {room_id, username, seq}``.

        Raises:
            ChatError: ``not_found`` if not a member.
        """
        service = self.service
        await service.require_role(room_id, self.actor.user_id)
        moved = await service.store.set_read(room_id, self.actor.user_id, seq)
        if moved is not None:
            service.fanout.deliver_room(room_id, event_frame(
                "msg.receipt", {"room_id": room_id, "username": self.actor.username,
                                "seq": moved}))
        return {}

    async def perspective_changes(self, room_id: int, since_ts: int, since_msg_id: int,
                                  limit: int) -> dict[str, Any]:
        """``msg.changes`` (extension, docs/protocol.md) → ``{changes, has_more}``:
        messages edited, reacted to, deleted or expired after ``since_ts`` (ms;
        ties broken by ``since_msg_id``), in that order, for a client that was away.
        Pages fit the frame as ``msg.history``'s do.

        Raises:
            ChatError: ``not_found`` if not a member.
        """
        service = self.service
        await service.require_role(room_id, self.actor.user_id)
        changes, has_more = await service.store.changes(
            room_id, since_ts, since_msg_id, limit, ms(service.clock),
            viewer_id=self.actor.user_id, budget=service.page_budget)
        return {"changes": changes, "has_more": has_more}

    def perspective_typing(self, room_id: int, typing: bool) -> None:
        """``msg.typing`` (notification): other sessions of the room's members get
        ``typing {room_id, username, typing}``. Ignored for non-members."""
        service = self.service
        if self.actor.user_id in service.fanout.members(room_id):
            service.fanout.deliver_room(room_id, event_frame(
                "typing", {"room_id": room_id, "username": self.actor.username,
                           "typing": typing}), exclude=self.actor.mind)

    async def perspective_search(self, query: str, room_id: int | None, sender: str | None,
                                 since: int | None, until: int | None, limit: int,
                                 cursor: str | None, sort: str) -> dict[str, Any]:
        """``msg.search`` → ``{messages: [message + snippet], has_more, next_cursor?}``:
        messages of the user's rooms matching every word of ``query`` through the
        full-text index, by relevance then recency (``sort: relevance``, the
        default) or newest first (``recent``); each carries ``snippet {text,
        marks}``. The page fits the frame as ``msg.history``'s does;
        ``next_cursor`` (given when ``has_more``) continues it.

        Raises:
            ChatError: ``not_found`` if ``room_id`` is given and not the user's;
                ``bad_request`` for a ``cursor`` this server did not give (or gave
                for the other ``sort``).
        """
        service = self.service
        before, offset = None, 0
        if cursor is not None:
            match = (_SEARCH_CURSOR if sort == "recent" else _RANK_CURSOR).fullmatch(cursor)
            if match is None:
                raise bad_request(f"cursor is not one this server gave for sort {sort!r}")
            if sort == "recent":
                before = (int(match.group(1)), int(match.group(2)))
            else:
                offset = int(match.group(1))
        if room_id is not None:
            await service.require_role(room_id, self.actor.user_id)
        messages, has_more = await service.store.search(
            self.actor.user_id, query, room_id, sender, since, until, limit, ms(service.clock),
            sort=sort, before=before, offset=offset, budget=service.page_budget)
        result: dict[str, Any] = {"messages": messages, "has_more": has_more}
        if has_more and messages:
            last = messages[-1]
            result["next_cursor"] = (f"{last['ts']}.{last['msg_id']}" if sort == "recent"
                                     else f"r{offset + len(messages)}")
        return result


class SearchIndexer(PeriodicJob):
    """Moves the messages SQLite queued for the search index into it, a batch a few
    times a second (:mod:`chatnet.store.search`): one index segment per batch
    instead of one per send. Nothing to do on PostgreSQL.

    Args:
        store: the chat store.
        clock: drives the loop.
        interval: seconds between batches.
    """

    failure_message = "indexing queued messages for search failed"

    def __init__(self, store: ChatStore, clock: Clock, interval: float = 0.25) -> None:
        super().__init__(interval, clock)
        self.store = store

    async def run_once(self) -> int:
        """Index one batch; returns how many queued messages it handled."""
        return await self.store.index_queued()


class ExpiryService(PeriodicJob):
    """Erases messages whose ``ttl`` ran out, once a second, and announces it.

    A :class:`~chatnet.services.periodic.PeriodicJob`: ``stopService`` waits for
    a check in progress.

    Args:
        store: the chat store.
        fanout: delivery of ``msg.expired``.
        clock: time source (drives the loop).
        interval: seconds between checks.
    """

    log = Logger()
    failure_message = "message expiry failed"

    def __init__(self, store: ChatStore, fanout: LocalFanout, clock: Clock,
                 interval: float = 1.0) -> None:
        super().__init__(interval, clock)
        self.store = store
        self.fanout = fanout

    async def run_once(self) -> int:
        """Erase every message due now (:meth:`expire_now`)."""
        return await self.expire_now()

    async def expire_now(self) -> int:
        """Erase every message due now; returns how many."""
        total = 0
        while True:
            due = await self.store.expire_due(ms(self.time_source))
            for room_id, msg_id in due:
                self.fanout.deliver_room(room_id, event_frame(
                    "msg.expired", {"room_id": room_id, "msg_id": msg_id}))
            total += len(due)
            if len(due) < 500:
                return total
