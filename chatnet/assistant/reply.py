"""One answer as it is written: a placeholder, paced edits, the final text.

:class:`StreamedReply` owns the messages of one answer. It sends a short
placeholder at once (a reply to the question), then edits it as pieces of the
answer arrive. Edits are paced two ways: at least ``interval`` seconds apart
for one answer, and never faster than the server's per-user ``changes`` budget
allows for all answers together (docs/protocol.md, Per-user budgets: 1 edit a
second, 10 at once), which the assistant mirrors in one shared
:class:`~chatnet.wire.limits.TokenBucket`. Pieces that arrive between two edits
are simply shown by the next one, so a fast model costs no more edits than a
slow one. An answer longer than a message body (:data:`MAX_BODY`) continues in
further messages (each a reply to the question too), at most :data:`MAX_PARTS`;
what would go beyond is not asked for and a note says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from chatnet.assistant.memory import ConversationMemory, Turn
from chatnet.client.core import ConnectionClosed
from chatnet.client.session import ChatSession
from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.limits import TokenBucket

#: The server's body limit, in characters (docs/protocol.md 6).
MAX_BODY = 16_000
#: Characters of each message filled by the answer: the rest of :data:`MAX_BODY`
#: leaves room for a note at the end.
PART_SIZE = MAX_BODY - 400
#: Messages one answer may take; the model's answer is not read beyond them.
MAX_PARTS = 4
#: Characters of an answer read at most.
MAX_ANSWER = PART_SIZE * MAX_PARTS
#: What the first message says until the first piece of the answer arrives.
PLACEHOLDER = "…"
#: The note after an answer that reached :data:`MAX_ANSWER`.
CUT_NOTE = "[The answer was cut here: it is too long for this chat.]"
#: Seconds between two ``msg.typing`` while waiting for the first piece.
TYPING_INTERVAL = 4.0
#: The server's per-user ``changes`` budget (docs/protocol.md, Per-user budgets).
CHANGES_RATE = 1.0
CHANGES_BURST = 10.0
#: Times a refused edit or send is tried again before the answer is given up.
_ATTEMPTS = 20
#: Characters the server refuses in a body (control characters other than tab,
#: newline and carriage return).
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def split_answer(text: str, size: int = PART_SIZE) -> list[str]:
    """Cut an answer into message bodies of at most ``size`` characters, after the
    last line break (else space) of each, so that no word is cut in two when
    that can be helped.

    The cut of a part depends only on the text up to it, so as an answer grows
    its earlier parts never change once they are full.

    Returns:
        at least one part (``[""]`` for an empty text).
    """
    return [text[start:end] for start, end in _spans(text, size)]


def _spans(text: str, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each part of :func:`split_answer` in ``text``."""
    spans: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > size:
        window = text[start:start + size]
        cut = window.rfind("\n")
        if cut < size // 2:
            cut = window.rfind(" ")
        if cut < size // 2:
            cut = size
        spans.append((start, start + cut))
        start += cut
        while start < len(text) and text[start] in " \n":
            start += 1
    spans.append((start, len(text)))
    return spans


def clean(text: str) -> str:
    """``text`` without the characters the server refuses in a body."""
    return _REFUSED.sub("", text)


@dataclass
class _Part:
    """One message of the answer."""

    client_msg_id: str
    msg_id: int | None = None
    seq: int | None = None
    shown: str | None = None


class ReplyBroken(Exception):
    """The answer's messages cannot be written (the question or a part was
    deleted, the assistant left the room, the session ended)."""


class StreamedReply:
    """The messages of one answer to one question (module docstring).

    Args:
        session: the assistant's logged-in session.
        clock: provides ``seconds()`` and ``callLater()`` (the reactor).
        memory: where the answer is remembered once complete.
        room_id: the question's room.
        question_id: the question's ``msg_id`` (every part replies to it).
        budget: the edits budget shared by all answers (:data:`CHANGES_RATE`).
        interval: least seconds between two edits of this answer.
        new_id: makes a ``client_msg_id`` for each message (the assistant
            keeps them, to know its own messages when they come back as events).

    Attributes:
        done: fires when the last edit has been made, or fails with
            :class:`ReplyBroken` (``broken`` is then True).
    """

    log = Logger()

    def __init__(self, session: ChatSession, clock: Any, memory: ConversationMemory,
                 room_id: int, question_id: int, *, budget: TokenBucket, interval: float,
                 new_id: Callable[[], str]) -> None:
        self.session = session
        self.clock = clock
        self.memory = memory
        self.room_id = room_id
        self.question_id = question_id
        self.budget = budget
        self.interval = interval
        self.new_id = new_id
        self.text = ""
        self.note = ""
        self.broken = False
        self.parts: list[_Part] = []
        self._finishing = False
        self._success = False
        self._next_edit = 0.0
        self._wake: Deferred[None] | None = None
        self._typing: LoopingCall | None = None
        self._on_broken: list[Callable[[], None]] = []
        self.done: Deferred[None] = Deferred.fromCoroutine(self._pump())

    # -- what the answer says ------------------------------------------------------------

    def start_typing(self) -> None:
        """``msg.typing`` now and every :data:`TYPING_INTERVAL` s until the first piece."""
        if self._typing is None and not self.text and not self._finishing:
            self._typing = LoopingCall(self.session.typing, self.room_id, True)
            self._typing.clock = self.clock
            self._typing.start(TYPING_INTERVAL, now=True)

    def _stop_typing(self) -> None:
        if self._typing is not None:
            if self._typing.running:
                self._typing.stop()
            self._typing = None
            self.session.typing(self.room_id, False)

    def add(self, piece: str) -> bool:
        """A piece of the answer arrived: it will be shown by the next edit.

        Returns:
            whether more is wanted: False once the answer fills :data:`MAX_PARTS`
            messages (the text beyond them is dropped; finish with :data:`CUT_NOTE`).
        """
        piece = clean(piece)
        if self._finishing:
            return False
        if not piece:
            return True
        self._stop_typing()
        self.text += piece
        spans = _spans(self.text.lstrip(), PART_SIZE)
        if len(spans) > MAX_PARTS:
            skipped = len(self.text) - len(self.text.lstrip())
            self.text = self.text[:skipped + spans[MAX_PARTS - 1][1]]
            self._poke()
            return False
        self._poke()
        return True

    def finish(self, note: str = "") -> None:
        """The answer is complete; ``note`` (e.g. :data:`CUT_NOTE`) goes after it.
        :attr:`done` fires once it is all shown."""
        self._end(note, success=True)

    def fail(self, apology: str) -> None:
        """No (more) answer will come: show ``apology`` (after any text that came)."""
        self._end(apology, success=False)

    def on_broken(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` if the answer's messages cannot be written (to stop
        asking the model for an answer nobody will see)."""
        self._on_broken.append(callback)

    def _end(self, note: str, success: bool) -> None:
        if self._finishing:
            return
        self._stop_typing()
        self._finishing = True
        self._success = success
        self.note = clean(note)
        self._poke()

    def bodies(self) -> list[str]:
        """What each message should say now (the note joins the last one)."""
        parts = split_answer(self.text.lstrip())
        if self.note:
            last = parts[-1].rstrip()
            parts[-1] = f"{last}\n\n{self.note}" if last else self.note
        return [p.rstrip() or PLACEHOLDER for p in parts]

    def final_texts(self) -> list[str]:
        """The answer's text in each message, without notes (what is remembered)."""
        return [p.strip() for p in split_answer(self.text.lstrip())]

    # -- writing it ---------------------------------------------------------------------------

    def _poke(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.called:
            wake.callback(None)

    def _outdated(self) -> int | None:
        """The first message that does not show what it should, or None."""
        bodies = self.bodies()
        for index, body in enumerate(bodies):
            if index >= len(self.parts) or self.parts[index].shown != body:
                return index
        return None

    async def _pump(self) -> None:
        """Write until everything is shown; one request at a time."""
        try:
            while True:
                index = self._outdated()
                if index is None:
                    if self._finishing:
                        self._remember_final()
                        return
                    self._wake = Deferred()
                    await self._wake
                    continue
                if index >= len(self.parts):
                    await self._send_part()
                    continue
                now = self.clock.seconds()
                wait = max(self._next_edit - now, self.budget.wait_for(1))
                if wait > 0:
                    await deferLater(self.clock, wait, lambda: None)
                    continue
                self.budget.take(1)
                await self._edit(index)
        except ReplyBroken as exc:
            self.broken = True
            self._stop_typing()
            self.log.warn("answer in room {room} abandoned: {why}", room=self.room_id,
                          why=str(exc))
            for callback in self._on_broken:
                callback()
            raise
        except CancelledError:
            self._stop_typing()
            raise

    async def _send_part(self) -> None:
        index = len(self.parts)
        part = _Part(self.new_id())
        self.parts.append(part)
        body = self.bodies()[index]
        try:
            ack = await self.session.send_message(self.room_id, body, reply_to=self.question_id,
                                                  client_msg_id=part.client_msg_id)
        except ChatError as exc:
            raise ReplyBroken(f"msg.send refused: {exc}") from None
        part.msg_id, part.seq, part.shown = int(ack["msg_id"]), int(ack["seq"]), body
        self.memory.remember(self.room_id, Turn(part.seq, part.msg_id, self.session.username,
                                                "", own=True, complete=False))
        if index == 0:
            self.start_typing()

    async def _edit(self, index: int) -> None:
        part = self.parts[index]
        assert part.msg_id is not None
        for _attempt in range(_ATTEMPTS):
            body = self.bodies()[index]
            try:
                await self.session.call("msg.edit", {"room_id": self.room_id,
                                                     "msg_id": part.msg_id, "body": body})
            except ChatError as exc:
                if exc.code is ErrorCode.RATE_LIMITED:
                    # Someone else spends this account's budget too (another
                    # session of it): wait as told, and leave the budget empty.
                    retry = (exc.details or {}).get("retry_after_ms", 1000) / 1000.0
                    self.budget.charge(self.budget.burst)
                    await deferLater(self.clock, max(0.05, retry), lambda: None)
                    continue
                if isinstance(exc, ConnectionClosed):
                    try:
                        await self.session.when_connected()
                    except ChatError:
                        raise ReplyBroken("the session ended") from None
                    continue
                raise ReplyBroken(f"msg.edit refused: {exc}") from None
            part.shown = body
            self._next_edit = self.clock.seconds() + self.interval
            return
        raise ReplyBroken("msg.edit refused too many times")

    def _remember_final(self) -> None:
        """Remember the answer's text as the assistant's turn; an apology is not
        remembered (it would only confuse the next prompt)."""
        if not self._success:
            return
        for part, text in zip(self.parts, self.final_texts(), strict=False):
            if part.msg_id is not None:
                self.memory.update(self.room_id, part.msg_id, text, complete=True)
