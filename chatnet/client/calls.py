"""Voice calls in the client library (PROTOCOL.md 8): ring, accept, reject, hang up,
audio out with sequence numbers, and audio in through a jitter buffer per
participant.

:class:`Calls` listens to one :class:`~chatnet.client.connection.ChatConnection`
(or :class:`~chatnet.client.session.ChatSession`) and keeps the calls it hears
of: those ringing it, and the one it takes part in (a :class:`VoiceCall`).
Audio is opaque here (Opus packets, :mod:`chatnet.client.opus` encodes and
decodes them); a player takes one packet per participant every 20 ms from
:meth:`VoiceCall.pull`, which reorders by ``seq``, waits at most
:data:`JITTER_DEPTH` packets, and says when a packet is lost so that the
decoder conceals it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatnet.client.core import Event

#: Packets a jitter buffer holds before it starts playing: 3 x 20 ms = 60 ms.
JITTER_DEPTH = 3
#: Packets past which the oldest are skipped, so delay stays bounded (160 ms).
JITTER_LIMIT = 8
#: Largest sequence number; ``seq`` wraps to 0 after it (PROTOCOL.md 8).
SEQ_LIMIT = 2**32

PLAY, CONCEAL, WAIT = "play", "conceal", "wait"


class JitterBuffer:
    """One remote participant's packets, reordered by ``seq`` and handed out one per
    20 ms tick with a bounded delay.

    Args:
        depth: packets buffered before playing starts (and again after it runs dry).
        limit: packets past which the oldest are skipped.

    Attributes:
        played: packets handed out.
        lost: packets missing when their turn came (concealed).
        late: packets that came after their turn (dropped).
        skipped: packets skipped to keep the delay bounded.
    """

    def __init__(self, depth: int = JITTER_DEPTH, limit: int = JITTER_LIMIT) -> None:
        self.depth = depth
        self.limit = limit
        self._packets: dict[int, bytes] = {}
        self._next: int | None = None
        self.played = self.lost = self.late = self.skipped = 0

    def __len__(self) -> int:
        return len(self._packets)

    def push(self, seq: int, data: bytes) -> None:
        """Add a packet as it arrives (in any order)."""
        if self._next is not None and seq < self._next:
            self.late += 1
            return
        self._packets[seq] = data
        if len(self._packets) > self.limit:
            # Too far behind: skip ahead so the delay stays bounded.
            newest = max(self._packets)
            start = newest - self.depth + 1
            for old in [s for s in self._packets if s < start]:
                del self._packets[old]
                self.skipped += 1
            self._next = start

    def pull(self) -> tuple[str, bytes | None]:
        """The packet for this 20 ms tick.

        Returns:
            ``("play", packet)``; ``("conceal", None)`` for a lost packet (decode
            ``None``: concealment); ``("wait", None)`` while buffering (play silence).
        """
        if self._next is None:
            if len(self._packets) < self.depth:
                return WAIT, None
            self._next = min(self._packets)
        data = self._packets.pop(self._next, None)
        if data is None and not self._packets:
            self._next = None  # ran dry: buffer again rather than conceal forever
            return WAIT, None
        self._next += 1
        if data is None:
            self.lost += 1
            return CONCEAL, None
        self.played += 1
        return PLAY, data


@dataclass
class VoiceCall:
    """A call this connection takes part in.

    Attributes:
        call_id: the call's id.
        room_id: its room.
        state: ``ringing`` (started, nobody answered), ``active`` or ``ended``.
        reason: why it ended (``hangup``, ``no_answer``, ``rejected``, ``failed``:
            its server stopped), once ended.
        participants: usernames of the others now in the call.
        buffers: username -> :class:`JitterBuffer` of their audio.
        received: packets received, by username.
        gaps: packets missing from each username's sequence as it arrived (lost
            on the way: the server drops audio for a receiver that falls behind).
        reordered: packets that arrived after a later one, by username.
    """

    calls: Calls
    call_id: int
    room_id: int
    state: str = "ringing"
    reason: str | None = None
    participants: set[str] = field(default_factory=set)
    buffers: dict[str, JitterBuffer] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    reordered: dict[str, int] = field(default_factory=dict)
    _seq: int = 0
    _last: dict[str, int] = field(default_factory=dict)
    _media: Any = None

    def send(self, packet: bytes) -> int:
        """Send one Opus packet (20 ms) to the others. Returns its ``seq``."""
        seq = self._seq
        self._seq = (seq + 1) % SEQ_LIMIT
        media = self._media
        notify = self.calls.notify
        if media is not None and not media.lost.called:
            notify = media.notify
        notify("call.audio", {"call_id": self.call_id, "seq": seq, "data": packet})
        return seq

    async def attach(self, connection: Any) -> None:
        """Carry this call's audio on ``connection``: another logged-in
        ``ChatConnection`` of the same user (``call.attach``, docs/protocol.md 8),
        so that audio does not wait behind file transfers on the main one. When
        it closes, audio goes back to the main connection.

        Raises:
            ChatError: as the server answers (``not_found``, ``conflict``).
        """
        await connection.request("call.attach", {"call_id": self.call_id})
        self._media = connection
        connection.add_listener(self._media_event)

    def _media_event(self, event: Event) -> None:
        data = event.data
        if event.name == "call.audio" and data.get("call_id") == self.call_id:
            self._audio(data["from"], int(data["seq"]), data["data"])

    def pull(self, username: str) -> tuple[str, bytes | None]:
        """The next packet of ``username`` for this tick (see :meth:`JitterBuffer.pull`)."""
        buffer = self.buffers.get(username)
        return buffer.pull() if buffer is not None else (WAIT, None)

    async def hangup(self) -> None:
        """Leave the call (``call.hangup``)."""
        if self.state != "ended":
            await self.calls.request("call.hangup", {"call_id": self.call_id})

    def _audio(self, username: str, seq: int, data: bytes) -> None:
        buffer = self.buffers.get(username)
        if buffer is None:
            buffer = self.buffers[username] = JitterBuffer(limit=self.calls.jitter_limit)
        buffer.push(seq, data)
        self.received[username] = self.received.get(username, 0) + 1
        last = self._last.get(username)
        if last is not None:
            if seq > last + 1:
                self.gaps[username] = self.gaps.get(username, 0) + seq - last - 1
            elif seq <= last:
                self.reordered[username] = self.reordered.get(username, 0) + 1
        if last is None or seq > last:
            self._last[username] = seq


class Calls:
    """The voice calls of one connection or session.

    Args:
        peer: a logged-in ``ChatConnection`` or ``ChatSession``.
        jitter_limit: packets a participant's jitter buffer holds before it
            skips the oldest (:data:`JITTER_LIMIT`; more for a player that does
            not pull in real time).

    Attributes:
        ringing: call_id -> ``call.ring`` data of calls ringing this user.
        current: the call this connection is in, if any.
        listeners: called with each call event (``call.*`` but ``call.audio``).
    """

    def __init__(self, peer: Any, jitter_limit: int = JITTER_LIMIT) -> None:
        self.peer = peer
        self.jitter_limit = jitter_limit
        self.request: Callable[..., Any] = getattr(peer, "call", None) or peer.request
        self.notify: Callable[..., Any] = peer.notify
        self.ringing: dict[int, dict[str, Any]] = {}
        self.current: VoiceCall | None = None
        self.listeners: list[Callable[[Event], None]] = []
        peer.add_listener(self._event)

    async def start(self, room_id: int) -> VoiceCall:
        """Call a room (``call.start``): its other members are rung.

        Raises:
            ChatError: as the server answers (``not_found``, ``conflict``, ``rate_limited``).
        """
        result = await self.request("call.start", {"room_id": room_id})
        self.current = VoiceCall(self, int(result["call_id"]), room_id)
        return self.current

    async def accept(self, call_id: int) -> VoiceCall:
        """Answer a ringing call (``call.accept``).

        Raises:
            ChatError: ``not_found`` (it ended meanwhile), ``conflict``.
        """
        ring = self.ringing.get(call_id, {})
        result = await self.request("call.accept", {"call_id": call_id})
        self.ringing.pop(call_id, None)
        call = VoiceCall(self, call_id, int(ring.get("room_id", 0)), state="active")
        call.participants.update(result.get("participants", ()))
        self.current = call
        return call

    async def reject(self, call_id: int) -> None:
        """Decline a ringing call (``call.reject``)."""
        self.ringing.pop(call_id, None)
        await self.request("call.reject", {"call_id": call_id})

    def _event(self, event: Event) -> None:
        name, data = event.name, event.data
        if not name.startswith("call."):
            return
        # The current call, if the event is about it.
        call = self.current
        if call is not None and data.get("call_id") != call.call_id:
            call = None
        if name == "call.audio":
            if call is not None:
                call._audio(data["from"], int(data["seq"]), data["data"])
            return
        if name == "call.ring":
            self.ringing[int(data["call_id"])] = data
        elif name == "call.ended":
            self.ringing.pop(int(data["call_id"]), None)
            if call is not None:
                call.state, call.reason = "ended", data["reason"]
                self.current = None
        elif call is not None and name == "call.accepted":
            call.state = "active"
            call.participants.add(data["username"])
        elif call is not None and name == "call.left":
            call.participants.discard(data["username"])
        for listener in list(self.listeners):
            listener(event)
