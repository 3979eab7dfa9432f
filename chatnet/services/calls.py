"""Voice calls: ring, accept, reject, hang up, and the audio relay (PROTOCOL.md section 8).

A call lives in this service's memory while it rings and runs; when it ends a
:class:`~chatnet.store.CallRecord` is written. Rules kept here:

* only members of a room may start a call in it or answer one; a room has at
  most one call at a time, and a session takes part in at most one call (so
  what one user can hold is bounded by their sessions); starting calls also
  draws on the per-user ``calls`` budget (ringing a room is not free);
* ``call.start`` rings every session of every other member (``call.ring``); the
  first ``call.accept`` stops the ring timer, later members may still join a
  group call; after :data:`RING_TIMEOUT` without an answer the call ends with
  ``no_answer``; when every callee has rejected it ends with ``rejected``;
* a participant who hangs up or whose connection ends leaves (``call.left``);
  an answered call ends when fewer than two participants remain, an unanswered
  one when its caller leaves;
* ``call.audio`` is relayed as it came (the server never decodes audio) to the
  other participants, encoded once; a packet is dropped, never queued, for a
  receiver whose connection has output waiting (real time: late audio is
  useless), and audio from anyone who is not a participant is dropped. Both
  are counted (:attr:`CallService.dropped`).

In a cluster (:mod:`chatnet.fanout.cluster`) a call lives on the node where it
was started, which its id names (:func:`~chatnet.store.node_of_id`). A session
on another node that accepts, rejects, hangs up, attaches or sends audio has its
request forwarded there through Redis and the answer brought back (within
:data:`FORWARD_TIMEOUT` seconds, else ``unavailable``); on the call's node such
a session is a :class:`RemoteMind`, and audio for it goes to its own node, which
drops it if that session's output is waiting, as for a local one. Events go to
the users concerned on every node, as any event does.

Cluster-wide rules: a room's one call is claimed in Redis
(:meth:`~chatnet.fanout.cluster.ClusterFanout.claim`, ``call:{room_id}``) before
it rings, so two ``call.start`` through two nodes at once get one call and one
``conflict``. A call's node tells the others which users each of its calls
concerns (``call.held`` / ``call.over``); when a node dies
(:attr:`~chatnet.fanout.cluster.ClusterFanout.node_gone`) every other node sends
``call.ended {reason: failed}`` to its own sessions of the users concerned by
the calls the dead node held, and the nodes holding calls treat the dead node's
sessions as ended (``call.left``, and the call ends if fewer than two remain).
What a node cut off from Redis for a while missed, or published in vain, is
mended when it is back (:attr:`~chatnet.fanout.cluster.ClusterFanout.node_back`):
each node holding calls sends it the list of those calls (``call.calls``: a call
ended meanwhile ends for its users there, ``call.ended {reason: failed}``), and
asks the node of each remote participant whether that session is still
connected (``call.check``; the answer ``call.gone`` names those that ended
meanwhile, which then leave their calls).

Events (to every session of the users concerned): ``call.ring {call_id,
room_id, from}``, ``call.accepted {call_id, username}``, ``call.rejected
{call_id, username}``, ``call.left {call_id, username}``, ``call.ended
{call_id, reason}`` (reason ``hangup``, ``no_answer``, ``rejected``, or
:data:`NODE_FAILED`), and ``call.audio {call_id, from, seq, data}`` to the
other participants.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatnet.errors import ChatError, ErrorCode, not_found
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.store import CallRecord, ChatStore, node_of_id
from chatnet.store.faults import log_background_failure
from chatnet.wire.codec import event_frame

#: Seconds a call rings before it ends with ``no_answer`` (PROTOCOL.md 8).
RING_TIMEOUT = 45.0
#: Seconds the node holding a call has to answer a request forwarded to it.
FORWARD_TIMEOUT = 5.0
#: ``call.ended`` reason (*extension*, docs/protocol.md 8) when the node holding
#: the call died: nobody hung up, the call is simply gone.
NODE_FAILED = "failed"


@dataclass(eq=False)
class RemoteMind:
    """On the node holding a call, a participant's session on another node.

    Attributes:
        node: the session's node.
        session_id: its id there.
        user_id: its user.
        username: its user's name.
    """

    fanout: Any
    node: int
    session_id: str
    user_id: int
    username: str

    def send_frame(self, frame: bytes) -> None:
        """Send a real-time frame (audio) to the session's node."""
        self.fanout.send_session(self.node, self.user_id, self.session_id, frame)

    def backed_up(self) -> bool:
        """Unknown here: the session's own node drops what it cannot take."""
        return False


@dataclass
class RemoteActor:
    """The :class:`~chatnet.services.Actor` of a forwarded call request."""

    user_id: int
    username: str
    mind: RemoteMind
    roles: tuple[str, ...] = ()


@dataclass(eq=False)
class Call:
    """One call, ringing or running.

    Attributes:
        call_id: its id.
        room_id: the room it is in.
        caller: user id of whoever started it.
        started_ts: when it started ringing, ms.
        callees: user ids rung (the room's other members at the start).
        participants: session -> username of everyone in the call now.
        answered_ts: when the first callee accepted (ms), None until then.
        rejected: callees who rejected.
        taken_part: user ids who were ever in the call, in order (caller first).
        ring_timer: the pending ``no_answer`` (an ``IDelayedCall``), None once answered.
        media: participant session -> the session that carries its audio instead
            (``call.attach``: a second connection of the same user, so that audio
            does not wait behind file transfers on the first).
    """

    call_id: int
    room_id: int
    caller: int
    started_ts: int
    callees: frozenset[int]
    participants: dict[Any, str] = field(default_factory=dict)
    answered_ts: int | None = None
    rejected: set[int] = field(default_factory=set)
    taken_part: list[int] = field(default_factory=list)
    ring_timer: Any = None
    media: dict[Any, Any] = field(default_factory=dict)

    def concerned(self) -> set[int]:
        """Users whose sessions hear about the call: the caller and the callees."""
        return {self.caller, *self.callees}

    def join(self, session: Any, user_id: int, username: str) -> None:
        """Add a session to the call."""
        self.participants[session] = username
        if user_id not in self.taken_part:
            self.taken_part.append(user_id)


class CallService:
    """The calls of this node.

    Args:
        store: the chat store (ids, call records).
        fanout: sessions and room memberships.
        clock: time source (ring timeouts).

    Attributes:
        dropped: packets not relayed, by why: ``not_participant`` (audio from a
            session that is not in that call), ``backed_up`` (a receiver whose
            output was waiting).
        relayed: packets relayed, counted once per receiver.
    """

    log = Logger()

    def __init__(self, store: ChatStore, fanout: LocalFanout, clock: Clock) -> None:
        self.store = store
        self.fanout = fanout
        self.clock = clock
        self.calls: dict[int, Call] = {}
        self._by_room: dict[int, Call] = {}
        self._by_session: dict[Any, Call] = {}
        #: media session -> (call, the participant session it carries audio for).
        self._by_media: dict[Any, tuple[Call, Any]] = {}
        self.dropped: Counter[str] = Counter()
        self.relayed = 0
        #: (node, session id) -> the one RemoteMind of a session on another node.
        self._remote_minds: dict[tuple[int, str], RemoteMind] = {}
        #: forwarded request number -> (the node asked, its answer), on the
        #: requesting node.
        self._waiting: dict[int, tuple[int, Deferred[Any]]] = {}
        self._next_request = 0
        #: this node's sessions in a call held by another node -> that call's id.
        self._remote_calls: dict[Any, int] = {}
        #: calls held by other nodes -> the users each concerns (``call.held``),
        #: so that this node can end them for its sessions if their node dies.
        self._elsewhere: dict[int, frozenset[int]] = {}
        #: rooms whose Redis claim is in flight -> the call id being claimed, and
        #: the sessions starting those calls (no second start meanwhile).
        self._claiming: dict[int, int] = {}
        self._starting: set[Any] = set()
        #: in a cluster, the fan-out's claim/release (one call per room cluster-wide).
        self.clustered = callable(getattr(fanout, "claim", None))
        handlers = getattr(fanout, "node_handlers", None)
        if handlers is not None:
            handlers["call"] = self._forwarded
            handlers["call.answer"] = self._answered
            handlers["call.held"] = self._held_elsewhere
            handlers["call.over"] = self._over_elsewhere
            handlers["call.calls"] = self._calls_of
            handlers["call.check"] = self._check_sessions
            handlers["call.gone"] = self._sessions_gone
        node_gone = getattr(fanout, "node_gone", None)
        if node_gone is not None:
            node_gone.append(self._node_gone)
        node_back = getattr(fanout, "node_back", None)
        if node_back is not None:
            node_back.append(self._node_back)

    def perspective(self, actor: Actor) -> CallPerspective:
        """The calls perspective of one session."""
        return CallPerspective(self, actor)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, actor: Actor, room_id: int) -> Call:
        """Start ringing the room's other members, checking this node's calls only:
        the whole check on one node; in a cluster :meth:`start_in_cluster`.

        Raises:
            ChatError: ``not_found`` (not a member), ``conflict`` (nobody else in
                the room, a call already in it — ``details.call_id`` — or this
                session already in a call).
        """
        callees = self._check_start(actor, room_id)
        return self._open(actor, room_id, callees, self.store.ids.next_id())

    async def start_in_cluster(self, actor: Actor, room_id: int) -> Call:
        """:meth:`start`, with the room's call claimed in Redis first so that the
        room has one call in the whole cluster.

        Returns:
            the call, ringing.

        Raises:
            ChatError: as :meth:`start` (``conflict`` with ``details.call_id`` also
                when another node holds the room's call); ``unavailable`` when
                Redis failed to answer the claim.
        """
        callees = self._check_start(actor, room_id)
        call_id = self.store.ids.next_id()
        name = f"call:{room_id}"
        self._claiming[room_id] = call_id
        self._starting.add(actor.mind)
        try:
            holder = await cast(Any, self.fanout).claim(name, str(call_id))
        except Exception as exc:
            self.log.warn("claiming room {room}'s call in Redis failed: {why}",
                          room=room_id, why=exc)
            raise ChatError(ErrorCode.UNAVAILABLE,
                            "the servers could not agree on this room's call; try again"
                            ) from exc
        finally:
            del self._claiming[room_id]
            # session_ended takes a session that ended meanwhile out of _starting.
            ended = actor.mind not in self._starting
            self._starting.discard(actor.mind)
        if holder is not None:
            raise ChatError(ErrorCode.CONFLICT, "a call is already going on in this room",
                            {"call_id": int(holder)})
        try:
            if ended:
                raise ChatError(ErrorCode.UNAVAILABLE, "the session ended")
            # Members may have come or gone, or the session joined a call, meanwhile.
            callees = self._check_start(actor, room_id)
        except ChatError:
            cast(Any, self.fanout).release(name)
            raise
        return self._open(actor, room_id, callees, call_id)

    def _check_start(self, actor: Actor, room_id: int) -> frozenset[int]:
        """The callees of a call ``actor`` may start in the room now (:meth:`start`)."""
        members = self.fanout.members(room_id)
        if actor.user_id not in members:
            raise not_found("no such room")
        if actor.mind in self._by_session or actor.mind in self._starting:
            raise ChatError(ErrorCode.CONFLICT, "this session is already in a call")
        current = self._by_room.get(room_id)
        claiming = self._claiming.get(room_id)
        if current is not None or claiming is not None:
            raise ChatError(ErrorCode.CONFLICT, "a call is already going on in this room",
                            {"call_id": current.call_id if current else claiming})
        callees = frozenset(members - {actor.user_id})
        if not callees:
            raise ChatError(ErrorCode.CONFLICT, "nobody else is in this room to call")
        return callees

    def _open(self, actor: Actor, room_id: int, callees: frozenset[int], call_id: int) -> Call:
        call = Call(call_id, room_id, actor.user_id, ms(self.clock), callees)
        call.join(actor.mind, actor.user_id, actor.username)
        self.calls[call.call_id] = call
        self._by_room[room_id] = call
        self._by_session[actor.mind] = call
        call.ring_timer = self.clock.callLater(RING_TIMEOUT, self._no_answer, call)
        self.fanout.deliver_users(callees, event_frame("call.ring", {
            "call_id": call.call_id, "room_id": room_id, "from": actor.username}))
        if self.clustered:
            self.fanout.send_all("call.held", call.call_id, sorted(call.concerned()))
        return call

    def _call_for(self, actor: Actor, call_id: int) -> Call:
        call = self.calls.get(call_id)
        if call is None or actor.user_id not in call.concerned():
            raise not_found("no such call")
        return call

    def accept(self, actor: Actor, call_id: int) -> list[str]:
        """Join a call one was rung for (or rejoin it).

        Returns:
            the usernames of the others in the call (each once).

        Raises:
            ChatError: ``not_found`` (no such call for this user), ``conflict``
                (this session is in another call).
        """
        call = self._call_for(actor, call_id)
        if actor.mind in call.participants:
            return self._others(call, actor.mind)
        if actor.mind in self._by_session:
            raise ChatError(ErrorCode.CONFLICT, "this session is already in a call")
        call.rejected.discard(actor.user_id)
        call.join(actor.mind, actor.user_id, actor.username)
        self._by_session[actor.mind] = call
        if call.answered_ts is None:
            call.answered_ts = ms(self.clock)
            self._cancel_ring(call)
        self.fanout.deliver_users(call.concerned(), event_frame("call.accepted", {
            "call_id": call_id, "username": actor.username}), exclude=actor.mind)
        return self._others(call, actor.mind)

    @staticmethod
    def _others(call: Call, session: Any) -> list[str]:
        return sorted({name for s, name in call.participants.items() if s is not session})

    def reject(self, actor: Actor, call_id: int) -> None:
        """Decline a call one was rung for; the call ends (``rejected``) once every
        callee has declined and nobody has answered.

        Raises:
            ChatError: ``not_found`` (no such call, or the caller), ``conflict``
                (this session is in the call: hang up instead).
        """
        call = self._call_for(actor, call_id)
        if actor.user_id == call.caller:
            raise not_found("no such call to reject; hang up instead")
        if actor.mind in call.participants:
            raise ChatError(ErrorCode.CONFLICT, "you are in this call; hang up instead")
        call.rejected.add(actor.user_id)
        self.fanout.deliver_users(call.concerned(), event_frame("call.rejected", {
            "call_id": call_id, "username": actor.username}), exclude=actor.mind)
        if call.answered_ts is None and call.rejected >= call.callees:
            self._end(call, "rejected")

    def hangup(self, actor: Actor, call_id: int) -> None:
        """Leave a call this session is in.

        Raises:
            ChatError: ``not_found`` (this session is not in that call).
        """
        call = self.calls.get(call_id)
        if call is None or actor.mind not in call.participants:
            raise not_found("no such call")
        self._leave(call, actor.mind)

    def attach(self, actor: Actor, call_id: int) -> None:
        """Make this session carry the audio of another session of the same user
        that is in the call (*extension*, docs/protocol.md 8): audio it sends is
        relayed as that participant's, and audio for that participant comes here.

        Raises:
            ChatError: ``not_found`` (no such call, or none of the user's other
                sessions is in it), ``conflict`` (this session is itself in a call
                or already carries audio).
        """
        call = self.calls.get(call_id)
        owner = None if call is None else next(
            (s for s in call.participants if s is not actor.mind
             and getattr(s, "user_id", None) == actor.user_id), None)
        if call is None or owner is None:
            raise not_found("no such call for another session of yours")
        if actor.mind in self._by_session or actor.mind in self._by_media:
            raise ChatError(ErrorCode.CONFLICT, "this session is already in a call")
        previous = call.media.get(owner)
        if previous is not None:
            self._by_media.pop(previous, None)
        call.media[owner] = actor.mind
        self._by_media[actor.mind] = (call, owner)

    def _detach(self, call: Call, owner: Any) -> None:
        media = call.media.pop(owner, None)
        if media is not None:
            self._by_media.pop(media, None)

    def session_ended(self, session: Any) -> None:
        """A session's connection ended: it leaves its call, if any (a session that
        carried audio only stops doing so)."""
        call = self._by_session.get(session)
        if call is not None:
            self._leave(call, session)
        carried = self._by_media.get(session)
        if carried is not None:
            self._detach(*carried)
        self._starting.discard(session)
        remote = self._remote_calls.pop(session, None)
        if remote is not None:
            self.forward(session, remote, "ended")
        if isinstance(session, RemoteMind) and session not in self._by_session:
            self._remote_minds.pop((session.node, session.session_id), None)

    def _leave(self, call: Call, session: Any) -> None:
        username = call.participants.pop(session)
        del self._by_session[session]
        self._detach(call, session)
        self.fanout.deliver_users(call.concerned(), event_frame("call.left", {
            "call_id": call.call_id, "username": username}))
        if call.answered_ts is None or len(call.participants) < 2:
            self._end(call, "hangup")

    def _no_answer(self, call: Call) -> None:
        call.ring_timer = None
        if call.call_id in self.calls and call.answered_ts is None:
            self._end(call, "no_answer")

    def _cancel_ring(self, call: Call) -> None:
        if call.ring_timer is not None and call.ring_timer.active():
            call.ring_timer.cancel()
        call.ring_timer = None

    def _end(self, call: Call, reason: str) -> None:
        self._cancel_ring(call)
        del self.calls[call.call_id]
        del self._by_room[call.room_id]
        if self.clustered:
            # Released before call.ended is published, on the same Redis
            # connection: whoever hears the call ended finds the room free.
            cast(Any, self.fanout).release(f"call:{call.room_id}")
            self.fanout.send_all("call.over", call.call_id)
        for session in call.participants:
            del self._by_session[session]
            if isinstance(session, RemoteMind):
                self._remote_minds.pop((session.node, session.session_id), None)
        for media in call.media.values():
            self._by_media.pop(media, None)
            if isinstance(media, RemoteMind):
                self._remote_minds.pop((media.node, media.session_id), None)
        call.media.clear()
        call.participants.clear()
        self.fanout.deliver_users(call.concerned(), event_frame("call.ended", {
            "call_id": call.call_id, "reason": reason}))
        record = CallRecord(call.call_id, call.room_id, call.caller, call.started_ts,
                            call.answered_ts, ms(self.clock), reason, tuple(call.taken_part))
        d = Deferred.fromCoroutine(self.store.record_call(record))
        d.addErrback(log_background_failure(self.log, "storing a call record failed"))

    # -- calls held by another node ------------------------------------------------------

    def home_of(self, call_id: int) -> int | None:
        """The node holding ``call_id`` when it is another one."""
        return self.fanout.home_of(call_id)

    def forward(self, session: Any, call_id: int, op: str,
                *args: Any, answer: bool = False) -> Deferred[Any] | None:
        """Send one session's ``op`` on a call held by another node there.

        Returns:
            with ``answer``, a Deferred of the op's result there (failing with the
            ChatError it raised there, or ``unavailable`` when no answer came
            within :data:`FORWARD_TIMEOUT` seconds); else None.
        """
        home = self.fanout.home_of(call_id)
        assert home is not None
        request = 0
        d: Deferred[Any] | None = None
        if answer:
            self._next_request += 1
            request = self._next_request
            d = Deferred()
            self._waiting[request] = (home, d)
            d.addTimeout(FORWARD_TIMEOUT, cast(Any, self.clock), lambda *_: self._no_answer_from(
                request, home))
        sent = self.fanout.send_node(home, "call", request, op, call_id, session.session_id,
                                     session.user_id, session.username, list(args))
        if not sent and d is not None:
            self._waiting.pop(request, None)
            d.errback(ChatError(ErrorCode.UNAVAILABLE, "the server holding this call "
                                f"(node {home}) cannot be reached"))
        return d

    def _no_answer_from(self, request: int, home: int) -> None:
        self._waiting.pop(request, None)
        raise ChatError(ErrorCode.UNAVAILABLE,
                        f"the server holding this call (node {home}) did not answer")

    def _forwarded(self, origin: int, request: int, op: str, call_id: int,
                   session_id: str, user_id: int, username: str, args: list[Any]) -> None:
        """On the node holding the call: run a request forwarded from ``origin``."""
        key = (origin, session_id)
        mind = self._remote_minds.get(key)
        if op == "ended":
            if mind is not None:
                self.session_ended(mind)
            return
        if mind is None:
            mind = self._remote_minds[key] = RemoteMind(self.fanout, origin, session_id,
                                                        user_id, username)
        actor = RemoteActor(user_id, username, mind)
        try:
            if op == "audio":
                self.audio(actor, call_id, *args)
                return
            result: Any = {"accept": self.accept, "reject": self.reject,
                           "hangup": self.hangup, "attach": self.attach}[op](actor, call_id)
            answer = [True, result]
        except ChatError as error:
            answer = [False, error.to_wire()]
        finally:
            if mind not in self._by_session and mind not in self._by_media:
                self._remote_minds.pop(key, None)
        if request:
            self.fanout.send_node(origin, "call.answer", request, *answer)

    def _answered(self, origin: int, request: int, ok: bool, result: Any) -> None:
        """On the requesting node: the answer to a forwarded request."""
        waiting = self._waiting.pop(request, None)
        if waiting is None:
            return  # it timed out, or its node died
        d = waiting[1]
        if ok:
            d.callback(result)
        else:
            d.errback(ChatError.from_wire(result))

    def _held_elsewhere(self, origin: int, call_id: int, concerned: list[int]) -> None:
        """Another node started a call concerning ``concerned`` (user ids)."""
        self._elsewhere[call_id] = frozenset(concerned)

    def _over_elsewhere(self, origin: int, call_id: int) -> None:
        """A call held by another node ended."""
        self._elsewhere.pop(call_id, None)

    def _node_gone(self, node: int) -> None:
        """``node`` died (its keys expired in Redis): end, for this node's sessions,
        the calls it held (``call.ended {reason: failed}`` to the users concerned
        here); its sessions leave this node's calls as if their connections had
        ended; requests waiting for its answer fail ``unavailable`` now."""
        self._gone_elsewhere({c for c in (*self._elsewhere, *self._remote_calls.values())
                              if node_of_id(c) == node})
        for (origin, _), mind in list(self._remote_minds.items()):
            if origin == node:
                self.session_ended(mind)
        for request, (home, d) in list(self._waiting.items()):
            if home == node:
                del self._waiting[request]
                d.errback(ChatError(ErrorCode.UNAVAILABLE, "the server holding this "
                                    f"call (node {node}) stopped"))

    def _gone_elsewhere(self, call_ids: set[int]) -> None:
        """Calls held by other nodes that are gone without a word (their node
        died, or their end was lost): ``call.ended {reason: failed}`` to this
        node's sessions of the users concerned, and forget them."""
        ended: dict[int, set[int]] = {}
        for call_id in call_ids:
            if call_id in self._elsewhere:
                ended[call_id] = set(self._elsewhere.pop(call_id))
        for session, call_id in list(self._remote_calls.items()):
            if call_id in call_ids:
                del self._remote_calls[session]
                ended.setdefault(call_id, set()).add(session.user_id)
        for call_id, users in ended.items():
            self.fanout.deliver_users_here(users, event_frame("call.ended", {
                "call_id": call_id, "reason": NODE_FAILED}))

    def _node_back(self, node: int | None) -> None:
        """Events between this node and ``node`` (None: every other node, this
        one was cut off) may have been lost: tell it which calls this node holds,
        and ask it which of its sessions in them are still connected."""
        held = [[call.call_id, sorted(call.concerned())] for call in self.calls.values()]
        if node is None:
            self.fanout.send_all("call.calls", held)
        else:
            self.fanout.send_node(node, "call.calls", held)
        asked: dict[int, list[str]] = {}
        for origin, session_id in self._remote_minds:
            if node is None or origin == node:
                asked.setdefault(origin, []).append(session_id)
        for origin, session_ids in asked.items():
            self.fanout.send_node(origin, "call.check", session_ids)

    def _calls_of(self, origin: int, held: list[Any]) -> None:
        """Every call ``origin`` holds now, with the users each concerns: calls of
        it this node still counts that are not listed ended meanwhile."""
        listed = {int(call_id): frozenset(map(int, users)) for call_id, users in held}
        self._elsewhere.update(listed)
        self._gone_elsewhere({c for c in (*self._elsewhere, *self._remote_calls.values())
                              if node_of_id(c) == origin and c not in listed})

    def _check_sessions(self, origin: int, session_ids: list[str]) -> None:
        """``origin`` holds calls with these sessions of this node: answer with
        those that are no longer connected (``call.gone``)."""
        here = {session.session_id for session in self.fanout.all_sessions()}
        gone = [session_id for session_id in session_ids if session_id not in here]
        if gone:
            self.fanout.send_node(origin, "call.gone", gone)

    def _sessions_gone(self, origin: int, session_ids: list[str]) -> None:
        """These sessions of ``origin`` ended while their end could not reach
        this node: they leave this node's calls."""
        for session_id in session_ids:
            mind = self._remote_minds.get((origin, str(session_id)))
            if mind is not None:
                self.session_ended(mind)

    # -- audio -----------------------------------------------------------------------------

    def audio(self, actor: Actor, call_id: int, seq: int, data: bytes) -> None:
        """Relay one packet to the call's other participants (module docstring)."""
        call = self.calls.get(call_id)
        sender = actor.mind
        if call is not None and sender not in call.participants:
            carried = self._by_media.get(sender)
            sender = carried[1] if carried is not None and carried[0] is call else None
        if call is None or sender is None:
            self.dropped["not_participant"] += 1
            return
        frame = event_frame("call.audio", {"call_id": call_id, "from": actor.username,
                                           "seq": seq, "data": data})
        for participant in call.participants:
            if participant is sender:
                continue
            session = call.media.get(participant, participant)
            if session.backed_up():
                self.dropped["backed_up"] += 1
                continue
            session.send_frame(frame)
            self.relayed += 1


class CallPerspective:
    """``call.*`` for one session (PROTOCOL.md 8)."""

    __slots__ = ("actor", "service")

    def __init__(self, service: CallService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    def perspective_start(self, room_id: int) -> Any:
        """``call.start`` → ``{call_id}``; the room's other members get ``call.ring``.
        In a cluster the answer waits for the room's claim in Redis.

        Raises:
            ChatError: as :meth:`CallService.start` (in a cluster
                :meth:`CallService.start_in_cluster`).
        """
        if self.service.clustered:
            return self._start_in_cluster(room_id)
        return {"call_id": self.service.start(self.actor, room_id).call_id}

    async def _start_in_cluster(self, room_id: int) -> dict[str, Any]:
        call = await self.service.start_in_cluster(self.actor, room_id)
        return {"call_id": call.call_id}

    def perspective_accept(self, call_id: int) -> Any:
        """``call.accept`` → ``{participants}`` (*extension*: the usernames of the
        others already in the call); the others get ``call.accepted``.

        Raises:
            ChatError: as :meth:`CallService.accept`.
        """
        service = self.service
        if service.home_of(call_id) is not None:
            return self._forward("accept", call_id, joined=True)
        return {"participants": service.accept(self.actor, call_id)}

    async def _forward(self, op: str, call_id: int, joined: bool | None = None) -> Any:
        """``op`` on a call another node holds; ``joined`` says whether this session
        is in that call afterwards (None: unchanged)."""
        service = self.service
        d = service.forward(self.actor.mind, call_id, op, answer=True)
        assert d is not None
        result = await d
        if joined:
            service._remote_calls[self.actor.mind] = call_id
        elif joined is False:
            service._remote_calls.pop(self.actor.mind, None)
        return {"participants": result} if op == "accept" else {}

    def perspective_reject(self, call_id: int) -> Any:
        """``call.reject`` → ``{}``; the others get ``call.rejected``.

        Raises:
            ChatError: as :meth:`CallService.reject`.
        """
        if self.service.home_of(call_id) is not None:
            return self._forward("reject", call_id)
        self.service.reject(self.actor, call_id)
        return {}

    def perspective_hangup(self, call_id: int) -> Any:
        """``call.hangup`` → ``{}``; the others get ``call.left`` (and ``call.ended``).

        Raises:
            ChatError: as :meth:`CallService.hangup`.
        """
        if self.service.home_of(call_id) is not None:
            return self._forward("hangup", call_id, joined=False)
        self.service.hangup(self.actor, call_id)
        return {}

    def perspective_attach(self, call_id: int) -> Any:
        """``call.attach`` (*extension*) → ``{}``: this session carries the audio of
        the user's session in the call.

        Raises:
            ChatError: as :meth:`CallService.attach`.
        """
        if self.service.home_of(call_id) is not None:
            return self._forward("attach", call_id, joined=True)
        self.service.attach(self.actor, call_id)
        return {}

    def perspective_audio(self, call_id: int, seq: int, data: bytes) -> None:
        """``call.audio`` (notification): relayed to the other participants."""
        service = self.service
        if service.home_of(call_id) is not None:
            service.forward(self.actor.mind, call_id, "audio", seq, data)
            return
        service.audio(self.actor, call_id, seq, data)
