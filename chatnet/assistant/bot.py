"""The assistant's behaviour in the chat: what it reads, answers and ignores.

:class:`Assistant` listens to a logged-in :class:`~chatnet.client.session.ChatSession`:

* every message of its rooms goes into its :class:`ConversationMemory` (edits
  update it; deletions and expiries remove it), so a question is asked with
  the room's recent conversation;
* it answers a message in a direct room, and a room message that mentions it
  (its name in ``mentions``, or ``@name`` in the body), as a reply in the same
  room (:class:`~chatnet.assistant.reply.StreamedReply`);
* it never answers itself, nor anything seen while catching up after a
  reconnect (those are old; they go into memory only), nor burn-after-reading
  messages (``ttl``), whose text it never sends anywhere: it says so instead;
* each person has a rate (:class:`QuestionRate`); past it they get one short
  "slow down" answer, and silence until they may ask again. That also bounds
  a loop with another bot;
* it accepts invitations to group rooms, so that people can bring it in.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import OrderedDict
from enum import Enum
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.assistant.completions import ChatCompletions, CompletionError
from chatnet.assistant.config import AssistantConfig
from chatnet.assistant.memory import ConversationMemory, Turn
from chatnet.assistant.reply import (
    CHANGES_BURST,
    CHANGES_RATE,
    CUT_NOTE,
    ReplyBroken,
    StreamedReply,
)
from chatnet.client.core import Event
from chatnet.client.session import ChatSession, SessionState
from chatnet.wire.limits import KeyedBuckets, TokenBucket

#: What a person who passed their rate is told (once until they may ask again).
SLOW_DOWN = ("Slow down, please: I answer {burst} questions at once and {rate} a minute "
             "for each person. Ask me again in {wait} s.")
#: The answer to a burn-after-reading question.
TTL_NOTE = ("I do not read burn-after-reading messages: answering would send their "
            "text to the language model service. Ask me without a timer.")
#: The answer when the model said nothing.
EMPTY_ANSWER = "Sorry, the language model gave an empty answer. Please ask again."
#: Own messages remembered as such (their events are not taken for new turns).
_OWN_IDS_KEPT = 1000


class Verdict(Enum):
    """What to do with a question, by the asker's rate (:class:`QuestionRate`)."""

    ANSWER = "answer"
    SLOW_DOWN = "slow_down"
    IGNORE = "ignore"


class QuestionRate:
    """How many questions each person may ask: a token bucket per username.

    Args:
        per_minute: questions per minute, sustained.
        burst: questions at once.
        clock: provides ``seconds()``.

    Memory is bounded: a refilled bucket is forgotten (:class:`KeyedBuckets`),
    and so is a warning once its time has passed.
    """

    def __init__(self, per_minute: float, burst: int, clock: Any) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self.clock = clock
        self._buckets = KeyedBuckets(per_minute / 60.0, float(burst), clock, max_keys=10_000)
        self._warned: dict[str, float] = {}

    def admit(self, username: str) -> tuple[Verdict, float]:
        """Take one question from ``username``'s bucket.

        Returns:
            ``(ANSWER, 0.0)``; or, over the rate, ``(SLOW_DOWN, seconds)`` the
            first time and ``(IGNORE, seconds)`` until those seconds have passed
            (seconds: until the next question would be answered).
        """
        now = self.clock.seconds()
        for name in [n for n, until in self._warned.items() if until <= now]:
            del self._warned[name]
        wait = self._buckets.take(username, 1.0)
        if wait <= 0:
            return Verdict.ANSWER, 0.0
        if username in self._warned:
            return Verdict.IGNORE, wait
        self._warned[username] = now + wait
        return Verdict.SLOW_DOWN, wait

    def slow_down(self, wait: float) -> str:
        """The "slow down" text for a wait of ``wait`` seconds."""
        return SLOW_DOWN.format(burst=self.burst, rate=f"{self.per_minute:g}",
                                wait=max(1, math.ceil(wait)))


def mentions(message: dict[str, Any], name: str) -> bool:
    """Whether a message mentions ``name``: in its ``mentions`` list, or as
    ``@name`` in its body (any case; ``@name.`` at a sentence's end counts,
    ``@name2`` or ``x@name`` do not)."""
    listed = message.get("mentions")
    if isinstance(listed, list) and name in (str(m).casefold() for m in listed):
        return True
    body = message.get("body")
    if not isinstance(body, str):
        return False
    pattern = rf"(?<![\w@.-])@{re.escape(name)}(?!\.?[\w-])"
    return re.search(pattern, body, re.IGNORECASE) is not None


class Assistant:
    """Answers questions in the chat with a language model (module docstring).

    Args:
        session: a :class:`ChatSession` for the assistant's account (started or
            not; the assistant acts once it is authenticated).
        completions: the endpoint.
        config: the settings (context bounds, rate, concurrency, prompt).
        clock: the reactor (``seconds``, ``callLater``).

    Attributes:
        memory: what it remembers of each room.
        rate: the per-person question rate.
        edits: the shared edits budget (mirror of the server's ``changes`` budget).
        answered: questions answered (successfully or with an apology) so far.
    """

    log = Logger()

    def __init__(self, session: ChatSession, completions: ChatCompletions,
                 config: AssistantConfig, clock: Any) -> None:
        self.session = session
        self.completions = completions
        self.config = config
        self.clock = clock
        self.memory = ConversationMemory(config.context_messages, config.context_chars)
        self.rate = QuestionRate(config.questions_per_minute, config.questions_burst, clock)
        self.edits = TokenBucket(CHANGES_RATE, CHANGES_BURST, clock)
        self.slots = DeferredSemaphore(config.max_concurrent)
        self.answered = 0
        self._own_ids: OrderedDict[str, None] = OrderedDict()
        self._answers: set[Deferred[None]] = set()
        self._started = False

    @property
    def name(self) -> str:
        """The assistant's username."""
        return self.session.username

    def start(self) -> None:
        """Listen to the session (before or after it logs in)."""
        if self._started:
            return
        self._started = True
        self.session.add_listener(self._on_event)
        self.session.add_state_listener(self._on_state)
        if self.session.connected:
            self._accept_invitations()

    async def stop(self) -> None:
        """Stop listening and abandon the answers being written."""
        if self._started:
            self.session.remove_listener(self._on_event)
            self._started = False
        answers = list(self._answers)
        for answer in answers:
            answer.cancel()
        for answer in answers:
            await answer  # _answer_done made its result None

    # -- events ------------------------------------------------------------------------------

    def _on_state(self, state: SessionState) -> None:
        if state is SessionState.AUTHENTICATED and self._started:
            self._accept_invitations()

    def _on_event(self, event: Event) -> None:
        name, data = event.name, event.data
        if name == "msg":
            message = data.get("message")
            if isinstance(message, dict):
                self._on_message(message, bool(data.get("catch_up")))
        elif name in ("msg.edited", "msg.updated"):
            message = data.get("message", data)
            if isinstance(message.get("room_id"), int) and isinstance(message.get("msg_id"), int) \
                    and isinstance(message.get("body"), str):
                self.memory.update(message["room_id"], message["msg_id"], message["body"])
        elif name in ("msg.deleted", "msg.expired"):
            if isinstance(data.get("room_id"), int) and isinstance(data.get("msg_id"), int):
                self.memory.forget(data["room_id"], data["msg_id"])
        elif name == "room.deleted" or (
                name == "room.member" and data.get("username") == self.name
                and data.get("change") in ("left", "kicked")):
            if isinstance(data.get("room_id"), int):
                self.memory.forget_room(data["room_id"])
        elif name == "room.invited":
            room = data.get("room")
            if isinstance(room, dict) and room.get("kind") == "group" and \
                    isinstance(room.get("room_id"), int):
                self._join(room["room_id"])

    def _accept_invitations(self) -> None:
        for room_id in list(self.session.invites):
            self._join(room_id)

    def _join(self, room_id: int) -> None:
        def joined(_result: Any) -> None:
            self.log.info("joined room {room} (invited)", room=room_id)

        def refused(failure: Any) -> None:
            self.log.warn("could not join room {room}: {error}", room=room_id,
                          error=failure.getErrorMessage())

        self.session.call("room.join", {"room_id": room_id}).addCallbacks(joined, refused)

    def _on_message(self, message: dict[str, Any], catch_up: bool) -> None:
        room_id, msg_id, seq = message.get("room_id"), message.get("msg_id"), message.get("seq")
        sender, body = message.get("sender"), message.get("body")
        if not (isinstance(room_id, int) and isinstance(msg_id, int) and isinstance(seq, int)
                and isinstance(sender, str) and isinstance(body, str)):
            return
        if sender == self.name:
            # Never a question. Remember it only if it is not one being written
            # here (those are remembered by their reply) nor a note.
            known = any(t.msg_id == msg_id for t in self.memory.turns(room_id))
            if message.get("client_msg_id") not in self._own_ids and not known:
                self.memory.remember(room_id, Turn(seq, msg_id, sender, body, own=True))
            return
        addressed = self._addressed(message)
        if message.get("ttl"):
            if addressed and not catch_up and self._admitted(room_id, msg_id, sender):
                self._note(room_id, msg_id, TTL_NOTE)
            return
        self.memory.remember(room_id, Turn(seq, msg_id, sender, body))
        if catch_up or not addressed or not body.strip():
            return
        if self._admitted(room_id, msg_id, sender):
            self._ask(room_id, msg_id, seq, sender)

    def _addressed(self, message: dict[str, Any]) -> bool:
        """A direct message, or a room message that mentions the assistant."""
        room = self.session.rooms.get(message["room_id"]) or {}
        return room.get("kind") == "direct" or mentions(message, self.name)

    def _admitted(self, room_id: int, msg_id: int, sender: str) -> bool:
        verdict, wait = self.rate.admit(sender)
        if verdict is Verdict.SLOW_DOWN:
            self.log.info("{user} is over the question rate; told to wait {wait:.0f} s",
                          user=sender, wait=wait)
            self._note(room_id, msg_id, self.rate.slow_down(wait))
        return verdict is Verdict.ANSWER

    # -- answering -------------------------------------------------------------------------------

    def _new_id(self) -> str:
        client_msg_id = f"assistant-{uuid.uuid4().hex}"
        self._own_ids[client_msg_id] = None
        while len(self._own_ids) > _OWN_IDS_KEPT:
            self._own_ids.popitem(last=False)
        return client_msg_id

    def _note(self, room_id: int, msg_id: int, text: str) -> None:
        """A one-message reply that is not remembered as a turn."""
        def failed(failure: Any) -> None:
            self.log.warn("could not answer in room {room}: {error}", room=room_id,
                          error=failure.getErrorMessage())

        self.session.send_message(room_id, text, reply_to=msg_id,
                                  client_msg_id=self._new_id()).addErrback(failed)

    def _ask(self, room_id: int, msg_id: int, seq: int, sender: str) -> None:
        # The prompt is the room as the question found it.
        prompt = self.memory.prompt(room_id, self.config.system_prompt, seq)
        reply = StreamedReply(self.session, self.clock, self.memory, room_id, msg_id,
                              budget=self.edits, interval=self.config.edit_interval,
                              new_id=self._new_id)
        answer = Deferred.fromCoroutine(self._answer(reply, prompt, sender))
        self._answers.add(answer)
        answer.addBoth(self._answer_done, answer)

    def _answer_done(self, result: Any, answer: Deferred[None]) -> None:
        self._answers.discard(answer)
        if isinstance(result, Failure) and not result.check(CancelledError):
            self.log.failure("answering a question failed", result)

    async def _answer(self, reply: StreamedReply, prompt: list[dict[str, str]],
                      sender: str) -> None:
        """Wait for a free slot, ask the model, stream its answer into ``reply``."""
        started = self.clock.seconds()
        request: Deferred[Any] | None = None
        try:
            await self.slots.acquire()
            try:
                if reply.broken:
                    await reply.done
                request = Deferred.fromCoroutine(self.completions.complete(prompt, reply.add))
                reply.on_broken(request.cancel)
                try:
                    completion = await request
                except CompletionError as exc:
                    if not self._started or reply.broken:
                        # Stopping, or nobody will see it: the request was cancelled.
                        raise CancelledError() from None
                    self.log.warn("the language model failed for {user}: {error}",
                                  user=sender, error=str(exc))
                    reply.fail(exc.apology)
                else:
                    if completion.text.strip():
                        reply.finish(CUT_NOTE if completion.cut else "")
                    else:
                        reply.fail(EMPTY_ANSWER)
                await reply.done
            finally:
                self.slots.release()
        except ReplyBroken:
            return
        except CancelledError:
            if request is not None:
                request.cancel()
            reply.done.cancel()
            reply.done.addErrback(lambda _f: None)
            if reply.broken:
                return
            raise
        self.answered += 1
        self.log.info("answered {user} in room {room}: {chars} characters in {seconds:.1f} s",
                      user=sender, room=reply.room_id, chars=len(reply.text),
                      seconds=self.clock.seconds() - started)

