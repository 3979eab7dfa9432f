"""The output side of a server connection: one producer per connection, writes
gathered per reactor turn (DESIGN.md "Slow peers cost only themselves").

:class:`Outbox` is the connection's only ``IPushProducer``: it writes while the
transport takes writes, queues while the transport is paused, and gives up on a
peer that lets more than ``max_queued`` bytes pile up. :class:`WriteCoalescer`
gathers every connection's frames of one reactor turn so that a fan-out costs
one TLS write per recipient.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from chatnet.services import Clock


class WriteCoalescer:
    """Gathers every connection's frames of one reactor turn and writes them at the
    start of the next, one TLS write per connection.

    A fan-out to N connections then costs N TLS records and one scheduled call,
    instead of a record per frame and a scheduled flush per connection (what
    Twisted's buffering TLS transport would do). See docs/benchmarks.md.

    Args:
        clock: schedules the flush (``callLater(0, ...)``).
    """

    __slots__ = ("_clock", "_dirty", "_scheduled", "first")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._dirty: list[Outbox] = []
        self._scheduled: Any = None
        #: Called at the start of every flush, before any connection is written
        #: (a cluster node publishes the turn's events to the other nodes there,
        #: so that they fan out at the same time as this node, not after it).
        self.first: Callable[[], None] | None = None

    def mark(self, outbox: Outbox) -> None:
        """``outbox`` has frames to write at the next flush."""
        self._dirty.append(outbox)
        if self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write out every marked outbox's pending frames."""
        self._scheduled = None
        if self.first is not None:
            self.first()
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()


#: Hand gathered bytes to the socket at once instead of on the next reactor turn.
EAGER_SEND = True


def send_now(transport: Any) -> None:
    """Send what the TCP transport under ``transport`` (TLS) buffered, now.

    Twisted's TCP transport only buffers in ``write`` and sends when the reactor
    next reports the socket writable. For a fan-out that is one epoll round and
    one event dispatch per recipient before the first byte leaves; sending in
    the flush loop instead lowered p99 at 1,000 recipients by about half and
    cost less CPU (docs/benchmarks.md).

    Only public API is used: the TCP transport is a
    :class:`twisted.internet.abstract.FileDescriptor`, whose ``doWrite`` is its
    :class:`~twisted.internet.interfaces.IWriteDescriptor` method, the one the
    reactor itself calls when the socket is writable: it sends what the socket
    takes, keeps the rest for the reactor, resumes or pauses producers as usual,
    and with nothing buffered only stops watching for writability. ``connected``
    and ``disconnecting`` are the transport's documented state. It is not called
    on a connection that is closing (its return value, which the reactor acts
    on, would be lost); an error it returns is met again, and handled, when the
    reactor calls it. Any other transport (a test's ``StringTransport``) is left
    alone. tests/core/test_outbox_send_now.py checks
    that a flush reaches the peer without a reactor turn.
    """
    push_now(getattr(transport, "transport", None))


def push_now(tcp: Any) -> None:
    """What :func:`send_now` does, for a transport that is itself the TCP
    connection (no TLS layer above it: the cluster's Redis connection)."""
    if isinstance(tcp, FileDescriptor) and tcp.connected and not tcp.disconnecting:
        tcp.doWrite()


#: Bytes an outbox gathers before writing without waiting for the turn's end.
_GATHER_LIMIT = 64 * 1024

#: The queue of every outbox that has never been paused: frames only queue while
#: paused, and :meth:`Outbox.pauseProducing` gives the outbox a queue of its own
#: first, so this one stays empty. (A deque is ~600 bytes; most connections are
#: never paused, and an idle connection should cost little.)
_NEVER_PAUSED: deque[bytes] = deque()


@implementer(IPushProducer)
class Outbox:
    """The one producer of a connection: every frame to the peer goes through it.

    While the transport takes writes, frames are written (with a
    :class:`WriteCoalescer`: gathered and written once per reactor turn). When
    the transport pauses us, frames queue here; once more than ``max_queued``
    bytes wait, the peer is not reading fast enough and the connection is
    aborted (``on_overflow`` is called first).

    Args:
        transport: the connection's transport.
        max_queued: bytes that may wait in the queue.
        on_overflow: called once when the bound is passed.
        coalescer: gathers writes per reactor turn; None writes each frame at once.
    """

    __slots__ = ("_gathered", "_gathered_bytes", "_writable", "coalescer", "dead",
                 "max_queued", "on_overflow", "paused", "peak", "queue", "queued",
                 "transport", "written")

    def __init__(self, transport: Any, max_queued: int, on_overflow: Any,
                 coalescer: WriteCoalescer | None = None) -> None:
        self.transport = transport
        self.max_queued = max_queued
        self.on_overflow = on_overflow
        self.coalescer = coalescer
        self.paused = False
        self.dead = False
        self.queue: deque[bytes] = _NEVER_PAUSED
        self.queued = 0
        self.peak = 0
        #: Bytes handed to the transport so far (what may be in the kernel's queue).
        self.written = 0
        self._writable: list[Deferred[None]] = []
        self._gathered: list[bytes] = []
        self._gathered_bytes = 0

    def when_writable(self) -> Deferred[None]:
        """A Deferred that fires once nothing waits here and the transport takes
        writes (at once if so now). Bulk senders (downloads) await it before
        producing the next frame, so they never fill the queue."""
        d: Deferred[None] = Deferred()
        if self.dead or (not self.paused and not self.queue):
            d.callback(None)
        else:
            self._writable.append(d)
        return d

    def _wake_writers(self) -> None:
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            waiter.callback(None)

    def send(self, frame: bytes) -> None:
        """Write (or gather) or queue one complete frame; never raises."""
        if self.dead:
            return
        if not self.paused and not self.queue:
            if self.coalescer is None:
                self.written += len(frame)
                self.transport.write(frame)
                return
            gathered = self._gathered
            if not gathered:
                self.coalescer.mark(self)
            gathered.append(frame)
            self._gathered_bytes += len(frame)
            if self._gathered_bytes >= _GATHER_LIMIT:
                self.flush()
            return
        self.queue.append(frame)
        self.queued += len(frame)
        if self.queued > self.peak:
            self.peak = self.queued
        if self.queued > self.max_queued:
            self.dead = True
            self.queue.clear()
            self.queued = 0
            self._gathered.clear()
            self._wake_writers()
            self.on_overflow()

    def flush(self) -> None:
        """Write what was gathered this turn (one write, hence one TLS record)."""
        gathered = self._gathered
        if gathered:
            data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
            gathered.clear()
            self._gathered_bytes = 0
            if not self.dead:
                self.written += len(data)
                self.transport.write(data)
                if EAGER_SEND:
                    send_now(self.transport)

    def pauseProducing(self) -> None:
        """The transport's buffer is full: queue from now on."""
        if self.queue is _NEVER_PAUSED:
            self.queue = deque()
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport drained: write what waits, until paused again."""
        self.paused = False
        queue = self.queue
        while queue and not self.paused and not self.dead:
            frame = queue.popleft()
            self.queued -= len(frame)
            self.written += len(frame)
            self.transport.write(frame)
        if not queue and not self.paused and self._writable:
            self._wake_writers()

    def close(self) -> None:
        """The connection is closing: write what waits (at most ``max_queued`` bytes)
        and stop being the transport's producer.

        A TLS transport holds back its close (close_notify, then the TCP close)
        for as long as a producer is registered, so a connection that keeps its
        producer is only ever closed by the abort timer.
        """
        self.flush()
        queue = self.queue
        while queue and not self.dead:
            frame = queue.popleft()
            self.queued -= len(frame)
            self.transport.write(frame)
        self.queue.clear()
        self.queued = 0
        self.dead = True
        self._wake_writers()
        self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        """The connection is going away: drop everything."""
        self.dead = True
        self.queue.clear()
        self.queued = 0
        self._gathered.clear()
        self._wake_writers()


