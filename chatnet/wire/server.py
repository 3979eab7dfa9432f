"""The server side of the wire: one :class:`ChatServerProtocol` per connection.

The protocol is the twisted.cred *mind*. It turns frames into calls and
results into frames, and knows nothing of chat:

1. **Admission.** A connection counts as *unauthenticated* until it logs in;
   each address may hold only so many of those at once (and all addresses
   together so many), and each has ``login_timeout`` seconds to finish TLS,
   ``session.hello`` and a login. Until then frames are limited to
   :data:`~chatnet.config.PRE_LOGIN_MAX_FRAME` bytes (PROTOCOL.md 1).
2. **Handshake.** The first request must be ``session.hello`` with protocol 1,
   else ``protocol_version`` and close (PROTOCOL.md 3.1).
3. **State gate.** Until ``auth.login``/``auth.resume`` succeed, only the ops
   the registry marks ``before_login`` pass; the rest get ``unauthenticated``.
4. **Dispatch.** Each op is looked up in :data:`chatnet.wire.ops.OPS`; only
   ops declared as notifications may come without ``id``. A token is taken
   from the connection's rate-limit bucket, the arguments are validated, the
   op's per-user budget (if it has one) is drawn on, and the ``perspective_*``
   method of the avatar's perspective that the registry names is called. A
   :class:`~chatnet.errors.ChatError` becomes an error response; anything else
   is logged and answered ``internal``.

Input is bounded (frame size, requests in flight, rate, budgets; frames are
reassembled in linear time by :class:`~chatnet.wire.framing.FrameDecoder`);
output goes through an :class:`~chatnet.wire.outbox.Outbox` that bounds what
one connection may queue. A malformed or oversized frame gets an ``error``
event and closes that connection only.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import random
import struct
import termios
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.cred.credentials import Anonymous
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatnet import PROTOCOL_VERSION, __version__
from chatnet.config import PRE_LOGIN_MAX_FRAME, ServerConfig
from chatnet.cred.checkers import check_certificate_user
from chatnet.cred.credentials import PeerUsernamePassword, Token
from chatnet.errors import ChatError, ErrorCode, bad_request
from chatnet.interfaces import IChatAvatar, ISessionMind
from chatnet.services import Clock, Services, ms
from chatnet.wire.codec import error_frame, event_frame, result_frame, unpack
from chatnet.wire.framing import FrameDecoder, FrameError
from chatnet.wire.limits import (
    EXPENSIVE_UNIT_BYTES,
    ConnectionGate,
    KeyedBuckets,
    TokenBucket,
    UserBudgets,
)
from chatnet.wire.ops import OPS, Op
from chatnet.wire.outbox import Outbox, WriteCoalescer
from chatnet.wire.tls import peer_certificate_user

if TYPE_CHECKING:
    from chatnet.metrics import ServerMetrics

#: Requests (and notifications still being handled) one connection may have in
#: flight before the server stops reading from it.
MAX_IN_FLIGHT = 64
#: Seconds a closing connection gets to flush before it is aborted.
CLOSE_GRACE = 5.0
#: A read of fewer bytes than this is a *small read*. Each read costs the server
#: a TLS record and a call whatever its size, so a peer cutting its frames into
#: one-byte records could keep a core busy; small reads draw on a per-connection
#: bucket (:data:`SMALL_READS_PER_SECOND`, :data:`SMALL_READ_BURST`) and past it
#: the server stops reading that connection for a while. Bulk data comes in
#: large records and costs nothing.
SMALL_READ_BYTES = 512
SMALL_READS_PER_SECOND = 200.0
SMALL_READ_BURST = 1000.0

#: After a rate-limit pause, reading resumes once this fraction of the
#: connection's burst has refilled (seconds: ``burst * fraction / rate``).
RESUME_FRACTION = 0.1

#: Shortest pause, seconds (floating-point remainders of a wait are not waited).
MIN_PAUSE = 0.005

#: Bytes written but not yet sent (in the kernel's send queue) past which a
#: connection counts as backed up for real-time data: call audio is then dropped
#: for it (PROTOCOL.md 8). About 200 ms on a 320 kbit/s path; at Opus's 32
#: kbit/s, ten times that much audio would fit, so only a link that truly
#: cannot keep up (or a peer that stopped reading) loses packets.
REAL_TIME_BACKLOG = 8 * 1024
#: Feature names announced in ``session.hello`` (informative, PROTOCOL.md 3.1).
FEATURES = ("resume", "presence", "contacts", "typing", "receipts", "reactions", "edit",
            "delete", "reply", "ttl", "search")


def _retry_after(seconds: float) -> dict[str, Any]:
    return {"retry_after_ms": max(1, int(seconds * 1000 + 0.999))}


def _unsent_bytes(transport: Any) -> int:
    """Bytes in the kernel's send queue of the socket under ``transport`` (a TLS
    transport over TCP), or 0 where that cannot be read (no socket, not Linux)."""
    tcp = getattr(transport, "transport", None)
    try:
        fd = tcp.getHandle().fileno()  # type: ignore[union-attr]
        raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class IdleTimer:
    """Closes connections that have sent no complete frame for ``timeout`` seconds
    (PROTOCOL.md 3.7), with one timer for all of them.

    Every connection has the same timeout, so ordering them by their last
    activity orders them by deadline: activity moves a connection to the end,
    and the one timer is set for the first. That costs a connection an entry
    here (~100 bytes) instead of a delayed call of its own (~450), and a frame
    a move to the end instead of rescheduling that call.

    Args:
        clock: ``seconds()`` and ``callLater``.
        timeout: seconds.
    """

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self._last: OrderedDict[ChatServerProtocol, float] = OrderedDict()
        self._call: Any = None

    def touch(self, connection: ChatServerProtocol) -> None:
        """``connection`` was active now (or has just opened)."""
        last = self._last
        last[connection] = self.clock.seconds()
        last.move_to_end(connection)
        if self._call is None:
            self._schedule()

    def forget(self, connection: ChatServerProtocol) -> None:
        """``connection`` has closed; the timer goes when nothing is left to time."""
        self._last.pop(connection, None)
        if not self._last and self._call is not None:
            self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        first = next(iter(self._last.values()))
        self._call = self.clock.callLater(max(0.0, first + self.timeout - self.clock.seconds()),
                                          self._expire)

    def _expire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        last = self._last
        while last:
            connection, at = next(iter(last.items()))
            if at + self.timeout > now:
                break
            del last[connection]
            connection.timeoutConnection()
        if last and self._call is None:
            self._schedule()


@implementer(ISessionMind, IHandshakeListener)
class ChatServerProtocol(Protocol):
    """One client connection: admission, handshake, state gate, dispatch (module docstring).

    Attributes:
        avatar: the avatar from the portal (anonymous after hello, the user's
            after login), or None before hello.
        authenticated_ts: when this session last proved its credentials (login,
            resume or a password change), ms since the epoch; 0 before login.
    """

    log = Logger()
    factory: ChatServerFactory

    # Slots for the connection's own state: an instance dict of ~40 keys (these
    # and Twisted's) is ~2 KiB on every connection, idle or not.
    __slots__ = ("_admitted", "_authenticating", "_backlog_seen", "_bucket", "_closing",
                 "_deadline", "_decoder", "_holding", "_in_flight", "_kill", "_logged_in",
                 "_logout", "_lost", "_notifications", "_outbox", "_reading",
                 "_reading_paused", "_small_reads", "_throttled", "_token", "_written_seen",
                 "authenticated_ts", "avatar", "certificate_user", "client", "peer",
                 "peer_host", "session_id", "since", "user_id", "username")

    def __init__(self) -> None:
        self.avatar: Any = None
        self.session_id = ""
        self.user_id = 0
        self.username = ""
        self.client = ""
        self.peer = ""
        self.peer_host = ""
        self.since = 0
        self.authenticated_ts = 0
        self._decoder = FrameDecoder(PRE_LOGIN_MAX_FRAME)
        self._logout: Any = None
        self._token = ""
        self._logged_in = False
        self._authenticating = False
        self._closing = False
        self._kill: Any = None
        self._deadline: Any = None
        self._admitted = False
        # Request ids being answered (a dict: an empty one is 64 bytes, a set 216).
        #: request id -> when it arrived (seconds), for the latency metric.
        self._in_flight: dict[int, float] = {}
        self._notifications = 0
        self._reading_paused = False
        self._throttled: Any = None
        self._holding = False  # throttled by the rate limit: buffered frames wait too
        self._reading = False
        self._outbox: Outbox | None = None
        # The kernel's send queue as last read, and Outbox.written then (backed_up).
        self._backlog_seen = 0
        self._written_seen = 0
        self._bucket: TokenBucket | None = None
        # Made only when someone waits for the close (ordered shutdown).
        self._lost: Deferred[None] | None = None
        self.certificate_user: str | None = None

    def handshakeCompleted(self) -> None:
        """TLS is up: note whom the client certificate (mutual TLS) names."""
        self.certificate_user = peer_certificate_user(self.transport)

    # -- connection lifecycle --------------------------------------------------------------

    def connectionMade(self) -> None:
        """Admit (or refuse) the connection; set limits, TCP_NODELAY, the outbox, the
        login deadline and the idle timeout."""
        factory = self.factory
        config = factory.config
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer_host = str(getattr(peer, "host", peer))
        self.peer = f"{self.peer_host}:{getattr(peer, 'port', '')}"
        factory.protocols.add(self)
        # ChatServerFactory.buildProtocol admitted this connection (counted it
        # as unauthenticated for its address) before the protocol was made.
        self._admitted = True
        with contextlib.suppress(AttributeError, OSError):
            # Nagle's algorithm alone puts ~35 ms on the latency tail.
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self._outbox = Outbox(self.transport, config.max_output, self._overflow,
                              factory.coalescer)
        # Frames for this connection go straight to the outbox (it drops them once
        # the connection is closing): one call less per recipient in a fan-out.
        self.send_frame = self._outbox.send  # type: ignore[method-assign]
        self.transport.registerProducer(self._outbox, True)  # type: ignore[union-attr]
        self._bucket = TokenBucket(config.rate, config.burst, factory.clock)
        self._small_reads = TokenBucket(SMALL_READS_PER_SECOND, SMALL_READ_BURST, factory.clock)
        # Each connection's deadline is its own (80-120 % of login_timeout), so that
        # connections opened together are not all cut, and reopened, together.
        self._deadline = factory.clock.callLater(config.login_timeout * factory.jitter(),
                                                 self._login_too_slow)
        factory.idle.touch(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """Log out (once), cancel timers, forget the connection."""
        self.connected = False
        self._closing = True
        self.factory.idle.forget(self)
        self._decoder.clear()
        for timer in (self._kill, self._deadline, self._throttled):
            if timer is not None and timer.active():
                timer.cancel()
        self._unadmit()
        if self._outbox is not None:
            self._outbox.stopProducing()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()
        self.factory.protocols.discard(self)
        lost, self._lost = self._lost, None
        if lost is not None:
            lost.callback(None)

    def when_lost(self) -> Deferred[None]:
        """Fires once this connection has closed (at once if it has)."""
        if not self.connected:
            return succeed(None)
        if self._lost is None:
            self._lost = Deferred()
        d: Deferred[None] = Deferred()
        self._lost.addBoth(lambda _: d.callback(None))
        return d

    def _unadmit(self) -> None:
        """Stop counting this connection as unauthenticated."""
        if self._admitted:
            self._admitted = False
            self.factory.gate.release(self.peer_host)

    def timeoutConnection(self) -> None:
        """Idle timeout (PROTOCOL.md 3.7): close without a word."""
        self.log.info("closing idle connection {peer}", peer=self.peer)
        self._close()

    def _login_too_slow(self) -> None:
        """The login deadline passed (PROTOCOL.md 1): ``error {unauthenticated}`` and close."""
        self._deadline = None
        if not self._logged_in and not self._closing:
            self._protocol_error(ErrorCode.UNAUTHENTICATED,
                                 f"log in within {self.factory.config.login_timeout:g} s "
                                 "of connecting")

    def _overflow(self) -> None:
        self.log.warn("{peer} ({user}) is not reading; disconnecting", peer=self.peer,
                      user=self.username or "-")
        self._closing = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _close(self) -> None:
        """Flush what is queued, close, and abort if the peer does not let us.

        Does nothing once the connection is lost (a close scheduled earlier, e.g.
        after a refused hello, may run after the peer has gone)."""
        if self._kill is None and self.connected:
            self._closing = True
            self._decoder.clear()
            self._kill = self.factory.clock.callLater(CLOSE_GRACE, self._abort)
            if self._outbox is not None and not self._outbox.dead:
                self._outbox.close()
            # Read again if reading was paused: TLS closes by exchanging close_notify,
            # which a paused transport never reads (the close would wait for the abort).
            if self._throttled is not None and self._throttled.active():
                self._throttled.cancel()
            self._throttled = None
            if self._reading_paused:
                self._reading_paused = False
                self.transport.resumeProducing()  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _abort(self) -> None:
        """Drop the connection now (the grace for a clean close is over, or shutdown)."""
        if self._kill is not None and self._kill.active():
            self._kill.cancel()  # called directly at shutdown: the timer must not fire later
        self._kill = None
        if self.connected:
            self.transport.abortConnection()  # type: ignore[union-attr]

    # -- ISessionMind ------------------------------------------------------------------------

    def bind(self, avatar: IChatAvatar) -> None:
        """Take the identity of the avatar the realm made for this connection."""
        self.session_id = avatar.session_id  # type: ignore[attr-defined]
        self.user_id = avatar.user_id
        self.username = avatar.username
        self.since = avatar.since  # type: ignore[attr-defined]

    def send_frame(self, frame: bytes) -> None:
        """Write a complete frame through the outbox (never raises)."""
        if self._outbox is not None and not self._closing:
            self._outbox.send(frame)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in this connection's outbox (the peer reads slowly)."""
        return self._outbox.queued if self._outbox is not None else 0

    def when_writable(self) -> Deferred[None]:
        """Fires when this connection's output has drained (see :meth:`Outbox.when_writable`)."""
        if self._outbox is None:
            return succeed(None)
        return self._outbox.when_writable()

    def backed_up(self) -> bool:
        """Whether output waits for this connection: in the outbox (the transport
        pushed back) or more than :data:`REAL_TIME_BACKLOG` bytes unsent in the
        kernel's send queue (Linux ``TIOCOUTQ``; elsewhere only the outbox counts).

        The queue is read again only once it could have passed the limit: it
        grows by no more than what was written since it was last read (plus TLS
        record overhead), so a healthy receiver costs one system call per
        :data:`REAL_TIME_BACKLOG` bytes written instead of one per packet.
        """
        outbox = self._outbox
        if outbox is None or outbox.paused or outbox.queued > 0:
            return True
        written = outbox.written
        if self._backlog_seen + written - self._written_seen <= REAL_TIME_BACKLOG:
            return False
        self._backlog_seen = unsent = _unsent_bytes(self.transport)
        self._written_seen = written
        return unsent > REAL_TIME_BACKLOG

    def end_session(self, reason: str) -> None:
        """Send ``session.ended {reason}`` and close (PROTOCOL.md 3.8)."""
        if self._closing:
            return
        self.send_frame(event_frame("session.ended", {"reason": reason}))
        self._close()

    def reauthenticated(self, ts: int) -> None:
        """This session proved its credentials again at ``ts`` (ms), e.g. by
        changing the password: it is not ended with the other sessions."""
        self.authenticated_ts = ts

    # -- input --------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Buffer the bytes and handle every complete frame (unless reading is paused);
        too many small reads pause reading from the socket (:data:`SMALL_READ_BYTES`)."""
        if self._closing:
            return
        self._decoder.feed(data)
        if len(data) < SMALL_READ_BYTES:
            # Charged into debt: one socket read can hold thousands of tiny TLS
            # records, each delivered here, and the pause must cover all of them.
            wait = self._small_reads.charge(1.0)
            if wait:
                self._throttle(wait)
        self._read_frames()

    def _throttle(self, wait: float, hold: bool = False) -> None:
        """Stop reading from the socket for ``wait`` seconds (or until the limits
        that caused it allow again, whichever is later).

        Args:
            wait: seconds.
            hold: also leave the frames already buffered unread until then (past
                the connection's rate limit: a pipelined flood is then served at
                the rate, each request once, instead of refused at full speed).
        """
        if self._closing:
            return
        self._holding = self._holding or hold
        if self._throttled is None:
            self.transport.pauseProducing()  # type: ignore[union-attr]
            self._throttled = self.factory.clock.callLater(wait, self._unthrottle)

    def _unthrottle(self) -> None:
        assert self._bucket is not None
        # Resume only once a tenth of the burst is back, so a pipelined flood is
        # served in runs with one refusal each, not one refusal per served request.
        wait = max(self._small_reads.charge(0.0),
                   self._bucket.wait_for(self._bucket.burst * RESUME_FRACTION))
        if wait:
            # More small reads, or more refused requests, came after the pause began.
            # (At least MIN_PAUSE: a wait that rounds to nothing must not spin.)
            self._throttled = self.factory.clock.callLater(max(wait, MIN_PAUSE),
                                                           self._unthrottle)
            return
        self._throttled = None
        self._holding = False
        if not self._reading_paused and not self._closing:
            self.transport.resumeProducing()  # type: ignore[union-attr]
            self._read_frames()

    def _read_frames(self) -> None:
        if self._reading:
            return  # a resume from inside a frame's handling: the outer loop goes on
        self._reading = True
        try:
            decoder = self._decoder
            while not self._reading_paused and not self._holding and not self._closing:
                try:
                    payload = decoder.next_frame()
                except FrameError as exc:
                    code = ErrorCode.TOO_LARGE if exc.too_large else ErrorCode.BAD_REQUEST
                    self._protocol_error(code, str(exc))
                    return
                if payload is None:
                    return
                self.frameReceived(payload)
        finally:
            self._reading = False

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if not self._closing:
                if self._throttled is None:
                    self.transport.resumeProducing()  # type: ignore[union-attr]
                self._read_frames()

    def _protocol_error(self, code: ErrorCode, message: str) -> None:
        self.log.info("protocol error from {peer}: {message}", peer=self.peer, message=message)
        self.send_frame(event_frame("error", {"code": code.value, "message": message}))
        self._close()

    def _error_event(self, code: ErrorCode, message: str) -> None:
        self.send_frame(event_frame("error", {"code": code.value, "message": message}))

    def frameReceived(self, payload: bytes) -> None:
        """One frame: decode, gate, validate, dispatch. A complete frame (not any
        byte) counts as activity for the idle timeout."""
        if self._closing:
            return
        self.factory.idle.touch(self)
        try:
            message = unpack(payload)
        except ValueError as exc:
            return self._protocol_error(ErrorCode.BAD_REQUEST, str(exc))
        if not isinstance(message, dict):
            return self._protocol_error(ErrorCode.BAD_REQUEST, "payload must be a msgpack map")
        request_id = message.get("id")
        name = message.get("op")
        op = OPS.get(name) if isinstance(name, str) else None
        valid_id = (isinstance(request_id, int) and not isinstance(request_id, bool)
                    and 1 <= request_id < 2**63)
        # Every frame spends the rate limit, a malformed or unknown one too (its
        # answer costs the server as much); a request refused for lacking an id
        # costs at least one token.
        assert self._bucket is not None
        cost = op.cost if op is not None else 1.0
        if op is not None and request_id is None and not op.notification:
            cost = max(1.0, cost)
        wait = self._bucket.take(cost)
        if wait:
            if valid_id:
                self._answer_error(request_id, ChatError(  # type: ignore[arg-type]
                    ErrorCode.RATE_LIMITED, "too many requests; slow down", _retry_after(wait)))
            # Anything else past the limit is dropped unanswered; either way the
            # server stops reading this connection until the limit allows again,
            # so a peer ignoring retry_after_ms costs it no more than one that obeys.
            self._throttle(wait, hold=True)
            return
        if request_id is not None and not valid_id:
            self._error_event(ErrorCode.BAD_REQUEST, "id must be an integer >= 1")
            return
        if not isinstance(name, str):
            if request_id is not None:
                self._answer_error(request_id, bad_request("op must be a string"))
            return
        if self.avatar is None and name != "session.hello":
            # PROTOCOL.md 3.1: the first request must be session.hello.
            refusal = ChatError(ErrorCode.PROTOCOL_VERSION,
                                "the first request must be session.hello")
            if request_id is not None:
                self._answer_error(request_id, refusal)
            else:
                # Nothing to answer: say why before closing rather than vanish.
                self._error_event(refusal.code, refusal.message)
            self._close()
            return
        if op is None:
            if request_id is not None:
                self._answer_error(request_id, ChatError(ErrorCode.UNKNOWN_OP,
                                                         f"unknown op {name!r}"))
            return
        if request_id is None and not op.notification:
            # PROTOCOL.md 1: only notifications may omit the id.
            self._error_event(ErrorCode.BAD_REQUEST,
                              f"{name} is a request and needs an id; only notifications "
                              "may be sent without one")
            return
        if request_id is not None and request_id in self._in_flight:
            self._answer_error(request_id, bad_request("id is already in flight"))
            return
        try:
            self._check_state(op)
            args = op.validate(message.get("args"))
            if self._logged_in:
                self._spend_budgets(op, args, cost)
            handler = self._handler(op)
            result = handler(**args)
        except ChatError as error:
            if request_id is not None:
                self._answer_error(request_id, error)
            return
        except Exception:
            self.log.failure("op {op} failed", op=name)
            if request_id is not None:
                self._answer_error(request_id, ChatError(ErrorCode.INTERNAL, "internal error"))
            return
        if inspect.iscoroutine(result):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            self._track(request_id, op, result)
        elif request_id is not None:
            self._answer(request_id, result if result is not None else {}, op)

    def _spend_budgets(self, op: Op, args: dict[str, Any], cost: float) -> None:
        """Draw on the user's budgets (shared by all the user's connections): every
        request on ``requests``, and the op's own budget if it has one.

        Raises:
            ChatError: ``rate_limited`` with ``retry_after_ms`` and ``budget``.
        """
        budgets = self.factory.budgets
        for name, units in (("requests", cost),
                            (op.budget, op.budget_units(args) if op.budget else 0.0)):
            if name is None or not units:
                continue
            wait = budgets.take(name, self.user_id, units)
            if wait:
                # Read no more from this connection for a moment (at most a second,
                # well inside the client's ping timeout): refusing a flood one
                # request at a time would cost nearly what serving it does.
                self._throttle(min(wait, 1.0))
                what = "requests" if name == "requests" else f"{name} requests"
                raise ChatError(ErrorCode.RATE_LIMITED, f"too many {what}; slow down",
                                {**_retry_after(wait), "budget": name})

    def _check_state(self, op: Op) -> None:
        if self._logged_in:
            if not op.after_login:
                raise ChatError(ErrorCode.CONFLICT, "already logged in")
        elif not op.before_login:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "log in first")

    def _handler(self, op: Op) -> Any:
        if op.perspective == "mind":
            return getattr(self, "mind_" + op.method)
        perspective = self.avatar.perspective(op.perspective)
        if perspective is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "log in first")
        return getattr(perspective, "perspective_" + op.method)

    def _busy(self) -> int:
        return len(self._in_flight) + self._notifications

    def _track(self, request_id: int | None, op: Op, d: Deferred[Any]) -> None:
        if request_id is None:
            self._notifications += 1
            d.addBoth(self._notification_done, op.name)
        else:
            # Timed only for /metrics: no clock read per request otherwise.
            factory = self.factory
            self._in_flight[request_id] = (factory.clock.seconds()
                                           if factory.metrics is not None else 0.0)
            d.addCallbacks(self._succeeded, self._failed, callbackArgs=(request_id, op),
                           errbackArgs=(request_id, op.name))
        if self._busy() >= MAX_IN_FLIGHT and not self._closing:
            # Stop reading until answers go out: a pipelining client cannot make
            # the server hold an unbounded number of requests.
            self._pause_reading()

    def _done(self) -> None:
        if self._reading_paused and self._busy() < MAX_IN_FLIGHT // 2:
            self._resume_reading()

    def _succeeded(self, result: Any, request_id: int, op: Op) -> None:
        started = self._in_flight.pop(request_id, None)
        metrics = self.factory.metrics
        if metrics is not None and started is not None:
            metrics.request_done(op.name, self.factory.clock.seconds() - started)
        self._answer(request_id, result if result is not None else {}, op)
        self._done()

    def _failed(self, failure: Failure, request_id: int, name: str) -> None:
        self._in_flight.pop(request_id, None)
        if failure.check(ChatError):
            self._answer_error(request_id, failure.value)  # type: ignore[arg-type]
        else:
            self.log.failure("op {op} failed", failure, op=name)
            self._answer_error(request_id, ChatError(ErrorCode.INTERNAL, "internal error"))
        self._done()

    def _notification_done(self, result: Any, name: str) -> None:
        self._notifications -= 1
        if isinstance(result, Failure) and not result.check(ChatError):
            self.log.failure("notification {op} failed", result, op=name)
        self._done()

    def _answer(self, request_id: int, result: dict[str, Any], op: Op) -> None:
        frame = result_frame(request_id, result)
        if op.budget == "expensive" and self._logged_in:
            # Post-paid: the work is done; a big result makes the next ones wait.
            self.factory.budgets.charge("expensive", self.user_id,
                                        len(frame) // EXPENSIVE_UNIT_BYTES)
        if len(frame) - 4 > self.factory.config.max_frame:
            self._answer_error(request_id, ChatError(
                ErrorCode.TOO_LARGE, "the result is over max_frame "
                f"({self.factory.config.max_frame} bytes); ask for less (a smaller limit)"))
            return
        self.send_frame(frame)

    def _answer_error(self, request_id: int, error: ChatError) -> None:
        self.send_frame(error_frame(request_id, error.to_wire()))

    # -- the mind's own ops (PROTOCOL.md 3) ---------------------------------------------------

    async def mind_hello(self, protocol: int, client: str) -> dict[str, Any]:
        """``session.hello`` → ``{protocol, server, max_frame, features, registration}``.

        ``max_frame`` is the limit after login (PROTOCOL.md 1)."""
        if self.avatar is not None:
            raise ChatError(ErrorCode.CONFLICT, "session.hello was already sent")
        if protocol != PROTOCOL_VERSION:
            self.factory.clock.callLater(0, self._close)
            raise ChatError(ErrorCode.PROTOCOL_VERSION,
                            f"this server speaks protocol {PROTOCOL_VERSION}, not {protocol}")
        self.client = client
        _iface, avatar, _logout = await self.factory.portal.login(Anonymous(), self, IChatAvatar)
        self.avatar = avatar
        config = self.factory.config
        return {"protocol": PROTOCOL_VERSION,
                "server": f"{config.server_name} {__version__}",
                "max_frame": config.max_frame, "features": list(FEATURES),
                "registration": config.open_registration,
                "presence_room_limit": config.presence_room_limit}

    def mind_ping(self) -> dict[str, Any]:
        """``session.ping`` → ``{ts}`` (ms since epoch)."""
        return {"ts": ms(self.factory.clock)}

    async def mind_login(self, username: str, password: str) -> dict[str, Any]:
        """``auth.login`` → ``{user_id, username, display_name, session_id, token, roles}``.

        Raises:
            ChatError: ``unauthenticated`` (same message whether the user exists
                or not), ``banned``, ``conflict`` (a login is already under way),
                ``rate_limited`` (too many failed logins for this name or from
                this address), ``unavailable`` (the password checks are saturated).
        """
        if self.factory.config.tls_client_cert_login:
            # Before the password is checked: a certificate holder learns nothing of it.
            check_certificate_user(self.certificate_user, username)
        credentials = PeerUsernamePassword(username.encode("utf-8"), password.encode("utf-8"),
                                           self.peer_host)
        avatar = await self._portal_login(credentials)
        token = await self.factory.services.accounts.issue_token(avatar.user_id)
        return self._logged_in_as(avatar, token)

    async def mind_resume(self, token: str) -> dict[str, Any]:
        """``auth.resume {token}`` → the login result, without a password (PROTOCOL.md 3.5).

        Raises:
            ChatError: ``unauthenticated`` (expired or revoked token), ``banned``.
        """
        avatar = await self._portal_login(Token(token, self.peer_host))
        return self._logged_in_as(avatar, token)

    async def _portal_login(self, credentials: Any) -> Any:
        if self._authenticating:
            raise ChatError(ErrorCode.CONFLICT, "a login is already under way")
        self._authenticating = True
        try:
            _iface, avatar, logout = await self.factory.portal.login(credentials, self,
                                                                     IChatAvatar)
        except UnauthorizedLogin as exc:
            raise ChatError(ErrorCode.UNAUTHENTICATED, str(exc) or "wrong credentials") from None
        finally:
            self._authenticating = False
        if self._closing:
            # The connection dropped while the password was being checked.
            logout()
            raise ChatError(ErrorCode.UNAVAILABLE, "connection closed")
        self.avatar = avatar
        self._logout = logout
        self._logged_in = True
        self.authenticated_ts = ms(self.factory.clock)
        self._decoder.max_length = self.factory.config.max_frame
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._unadmit()
        return avatar

    def _logged_in_as(self, avatar: Any, token: str) -> dict[str, Any]:
        self._token = token
        result: dict[str, Any] = avatar.login_result(token)
        return result

    async def mind_logout(self) -> dict[str, Any]:
        """``auth.logout`` → ``{}``: revokes the token, sends ``session.ended {logout}``
        and closes."""
        await self.factory.services.accounts.revoke_token(self._token)
        self.factory.clock.callLater(0, self.end_session, "logout")
        return {}


class ChatServerFactory(Factory):
    """Builds :class:`ChatServerProtocol` and keeps the set of open connections.

    Args:
        config: the server configuration.
        portal: the cred portal (password, token and anonymous checkers).
        services: the services (for token issue at login).
        clock: time source for timeouts and rate limits.
    """

    protocol = ChatServerProtocol  # type: ignore[assignment]
    log = Logger()

    def __init__(self, config: ServerConfig, portal: Portal, services: Services,
                 clock: Clock) -> None:
        self.config = config
        self.portal = portal
        self.services = services
        self.clock = clock
        self.protocols: set[ChatServerProtocol] = set()
        #: Unauthenticated connections, per address and in all.
        self.gate = ConnectionGate(config.max_unauthenticated_per_address,
                                   config.max_unauthenticated)
        #: New connections per address per second (refused before TLS past it).
        self.connects = KeyedBuckets(float(config.connects_per_address),
                                     2.0 * config.connects_per_address, clock)
        #: Connections refused by the gate since start.
        self.refused = 0
        #: A factor for each connection's login deadline (0.8 to 1.2).
        self.jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2)
        #: Per-user budgets of expensive ops, uploads, downloads (docs/protocol.md).
        self.budgets = UserBudgets(clock, fanout=services.users.fanout)
        # None writes every frame at once (tests that read a StringTransport
        # synchronously use that).
        self.coalescer: WriteCoalescer | None = WriteCoalescer(clock)
        #: Closes connections idle for ``idle_timeout`` seconds.
        self.idle = IdleTimer(clock, config.idle_timeout)
        self.noisy = False
        #: Request latencies for ``/metrics`` (``--metrics-port``), or None.
        self.metrics: ServerMetrics | None = None

    def buildProtocol(self, addr: Any) -> ChatServerProtocol | None:  # type: ignore[override]
        """A protocol for a new connection, or None to refuse it (too many connections
        from that address, or in all, are not logged in yet): the refusal comes
        before any TLS state is made, so a flood of them costs next to nothing."""
        host = str(getattr(addr, "host", addr))
        if self.connects.take(host, 1.0) or not self.gate.admit(host):
            self.refused += 1
            if self.refused % 100 == 1:
                self.log.warn("refusing connections from {peer}: too many new or not yet "
                              "logged in ({refused} refused so far)", peer=host,
                              refused=self.refused)
            return None
        protocol: ChatServerProtocol | None = super().buildProtocol(addr)  # type: ignore[assignment]
        return protocol

    async def end_all_sessions(self, reason: str, grace: float) -> None:
        """Send ``session.ended {reason}`` to every connection, close them, wait up to
        ``grace`` seconds, then abort what is left (ordered shutdown)."""
        protocols = list(self.protocols)
        waits = [p.when_lost() for p in protocols]
        for proto in protocols:
            proto.end_session(reason)
        if not waits:
            return
        everything: Deferred[Any] = DeferredList(waits, consumeErrors=True)
        def abort_stragglers() -> None:
            for proto in list(self.protocols):
                proto._abort()

        timer = self.clock.callLater(grace, abort_stragglers)
        await everything
        if timer.active():
            timer.cancel()


