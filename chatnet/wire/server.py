"""The server side of the wire: one :class:`ChatServerProtocol` per connection.

The protocol is the twisted.cred *mind*. It turns frames into calls and
results into frames, and knows nothing of chat:

1. **Handshake.** The first request must be ``session.hello`` with protocol 1,
   else ``protocol_version`` and close (PROTOCOL.md 3.1).
2. **State gate.** Until ``auth.login``/``auth.resume`` succeed, only the ops
   the registry marks ``before_login`` pass; the rest get ``unauthenticated``.
3. **Dispatch.** Each op is looked up in :data:`chatnet.wire.ops.OPS`, its
   arguments validated, a token taken from the connection's rate-limit
   bucket, and the ``perspective_*`` method of the avatar's perspective that
   the registry names is called. A :class:`~chatnet.errors.ChatError` becomes
   an error response; anything else is logged and answered ``internal``.

Input is bounded (frame size, requests in flight, rate); output goes through
an :class:`Outbox` that bounds what one connection may queue. A malformed or
oversized frame gets an ``error`` event and closes that connection only.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import deque
from typing import Any

from twisted.cred.credentials import Anonymous, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from chatnet import PROTOCOL_VERSION, __version__
from chatnet.config import ServerConfig
from chatnet.cred.checkers import check_certificate_user
from chatnet.cred.credentials import Token
from chatnet.errors import ChatError, ErrorCode, bad_request
from chatnet.interfaces import IChatAvatar, ISessionMind
from chatnet.services import Clock, Services, ms
from chatnet.wire.codec import error_frame, event_frame, result_frame, unpack
from chatnet.wire.ops import OPS, Op
from chatnet.wire.tls import peer_certificate_user

#: Requests one connection may have in flight before the server stops reading from it.
MAX_IN_FLIGHT = 64
#: Seconds a closing connection gets to flush before it is aborted.
CLOSE_GRACE = 5.0
#: Feature names announced in ``session.hello`` (informative, PROTOCOL.md 3.1).
FEATURES = ("resume", "presence", "contacts", "typing", "receipts", "reactions", "edit",
            "delete", "reply", "ttl", "search")


class TokenBucket:
    """A token-bucket rate limiter on an injected clock.

    Args:
        rate: tokens added per second.
        burst: bucket size (the most that can be spent at once).
        clock: provides ``seconds()``.
    """

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock.seconds()

    def take(self, cost: float) -> float:
        """Spend ``cost`` tokens if there are enough.

        Returns:
            0.0 if spent; otherwise the seconds until there would be enough
            (nothing is spent).
        """
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class WriteCoalescer:
    """Gathers every connection's frames of one reactor turn and writes them at the
    start of the next, one TLS write per connection.

    A fan-out to N connections then costs N TLS records and one scheduled call,
    instead of a record per frame and a scheduled flush per connection (what
    Twisted's buffering TLS transport would do). See docs/benchmarks.md.

    Args:
        clock: schedules the flush (``callLater(0, ...)``).
    """

    __slots__ = ("_clock", "_dirty", "_scheduled")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._dirty: list[Outbox] = []
        self._scheduled: Any = None

    def mark(self, outbox: Outbox) -> None:
        """``outbox`` has frames to write at the next flush."""
        self._dirty.append(outbox)
        if self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Write out every marked outbox's pending frames."""
        self._scheduled = None
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()


#: Hand gathered bytes to the socket at once instead of on the next reactor turn.
EAGER_SEND = True


def _send_now(transport: Any) -> None:
    """Try to send what the TCP transport under ``transport`` (TLS) buffered, now.

    Twisted's TCP transport only buffers in ``write`` and sends when the reactor
    next reports the socket writable. For a fan-out that is one epoll round and
    one event dispatch per recipient before the first byte leaves; sending in
    the flush loop instead lowered p99 at 1,000 recipients by about half and
    cost less CPU (docs/benchmarks.md). ``doWrite`` is the transport's own
    IWriteDescriptor method: it sends what the socket takes, keeps the rest for
    the reactor, and resumes or pauses producers as usual. It is not called on
    a connection that is closing (its return value, which the reactor acts on,
    would be lost); an error it returns is met again, and handled, when the
    reactor calls it. Transports without these attributes are left alone.
    """
    tcp = getattr(transport, "transport", None)
    if (tcp is not None and getattr(tcp, "connected", False)
            and not getattr(tcp, "disconnecting", True)
            and (getattr(tcp, "_tempDataLen", 0) or getattr(tcp, "dataBuffer", b""))):
        tcp.doWrite()


#: Bytes an outbox gathers before writing without waiting for the turn's end.
_GATHER_LIMIT = 64 * 1024


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

    def __init__(self, transport: Any, max_queued: int, on_overflow: Any,
                 coalescer: WriteCoalescer | None = None) -> None:
        self.transport = transport
        self.max_queued = max_queued
        self.on_overflow = on_overflow
        self.coalescer = coalescer
        self.paused = False
        self.dead = False
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.peak = 0
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
                self.transport.write(data)
                if EAGER_SEND:
                    _send_now(self.transport)

    def pauseProducing(self) -> None:
        """The transport's buffer is full: queue from now on."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport drained: write what waits, until paused again."""
        self.paused = False
        queue = self.queue
        while queue and not self.paused and not self.dead:
            frame = queue.popleft()
            self.queued -= len(frame)
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


@implementer(ISessionMind, IHandshakeListener)
class ChatServerProtocol(Int32StringReceiver, TimeoutMixin):
    """One client connection: handshake, state gate, dispatch (module docstring).

    Attributes:
        avatar: the avatar from the portal (anonymous after hello, the user's
            after login), or None before hello.
    """

    log = Logger()
    factory: ChatServerFactory

    def __init__(self) -> None:
        self.avatar: Any = None
        self.session_id = ""
        self.user_id = 0
        self.username = ""
        self.client = ""
        self.peer = ""
        self.since = 0
        self._logout: Any = None
        self._token = ""
        self._logged_in = False
        self._authenticating = False
        self._closing = False
        self._kill: Any = None
        self._in_flight: set[int] = set()
        self._reading_paused = False
        self._outbox: Outbox | None = None
        self._bucket: TokenBucket | None = None
        self._lost: Deferred[None] = Deferred()
        self.certificate_user: str | None = None

    def handshakeCompleted(self) -> None:
        """TLS is up: note whom the client certificate (mutual TLS) names."""
        self.certificate_user = peer_certificate_user(self.transport)

    # -- connection lifecycle --------------------------------------------------------------

    def connectionMade(self) -> None:
        """Set limits, TCP_NODELAY, the outbox and the idle timeout."""
        factory = self.factory
        config = factory.config
        self.MAX_LENGTH = config.max_frame
        self.callLater = factory.clock.callLater  # type: ignore[method-assign, assignment]
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
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
        self.setTimeout(config.idle_timeout)
        factory.protocols.add(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """Log out (once), cancel timers, forget the connection."""
        self.connected = False
        self._closing = True
        self.setTimeout(None)
        if self._kill is not None and self._kill.active():
            self._kill.cancel()
        if self._outbox is not None:
            self._outbox.stopProducing()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()
        self.factory.protocols.discard(self)
        lost, self._lost = self._lost, Deferred()
        lost.callback(None)

    def timeoutConnection(self) -> None:
        """Idle timeout (PROTOCOL.md 3.7): close without a word."""
        self.log.info("closing idle connection {peer}", peer=self.peer)
        self._close()

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
            self._kill = self.factory.clock.callLater(CLOSE_GRACE, self._abort)
            if self._outbox is not None and not self._outbox.dead:
                self._outbox.close()
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _abort(self) -> None:
        self._kill = None
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

    def when_writable(self) -> Deferred[None]:
        """Fires when this connection's output has drained (see :meth:`Outbox.when_writable`)."""
        if self._outbox is None:
            return succeed(None)
        return self._outbox.when_writable()

    def end_session(self, reason: str) -> None:
        """Send ``session.ended {reason}`` and close (PROTOCOL.md 3.8)."""
        if self._closing:
            return
        self.send_frame(event_frame("session.ended", {"reason": reason}))
        self._close()

    # -- input --------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Any bytes count as activity for the idle timeout."""
        if self._closing:
            return
        self.resetTimeout()
        super().dataReceived(data)

    def lengthLimitExceeded(self, length: int) -> None:
        """A frame over ``max_frame``: ``error {too_large}`` and close (PROTOCOL.md 1)."""
        if self._closing:
            return
        self._unprocessed = b""
        self._protocol_error(ErrorCode.TOO_LARGE,
                             f"frame of {length} bytes is over the limit of {self.MAX_LENGTH}")

    def _protocol_error(self, code: ErrorCode, message: str) -> None:
        self.log.info("protocol error from {peer}: {message}", peer=self.peer, message=message)
        self.send_frame(event_frame("error", {"code": code.value, "message": message}))
        self._close()

    def stringReceived(self, payload: bytes) -> None:
        """One frame: decode, gate, validate, dispatch."""
        if self._closing:
            return
        if not payload:
            return self._protocol_error(ErrorCode.BAD_REQUEST, "frame length 0 is invalid")
        try:
            message = unpack(payload)
        except ValueError as exc:
            return self._protocol_error(ErrorCode.BAD_REQUEST, str(exc))
        if not isinstance(message, dict):
            return self._protocol_error(ErrorCode.BAD_REQUEST, "payload must be a msgpack map")
        request_id = message.get("id")
        if request_id is not None and (not isinstance(request_id, int)
                                       or isinstance(request_id, bool)
                                       or not 1 <= request_id < 2**63):
            self.send_frame(event_frame("error", {
                "code": ErrorCode.BAD_REQUEST.value, "message": "id must be an integer >= 1"}))
            return
        name = message.get("op")
        if not isinstance(name, str):
            if request_id is not None:
                self._answer_error(request_id, bad_request("op must be a string"))
            return
        if self.avatar is None and name != "session.hello":
            # PROTOCOL.md 3.1: the first request must be session.hello.
            if request_id is not None:
                self._answer_error(request_id, ChatError(
                    ErrorCode.PROTOCOL_VERSION, "the first request must be session.hello"))
            self._close()
            return
        op = OPS.get(name)
        if op is None:
            if request_id is not None:
                self._answer_error(request_id, ChatError(ErrorCode.UNKNOWN_OP,
                                                         f"unknown op {name!r}"))
            return
        if request_id is not None and request_id in self._in_flight:
            self._answer_error(request_id, bad_request("id is already in flight"))
            return
        try:
            self._check_state(op)
            assert self._bucket is not None
            wait = self._bucket.take(op.cost)
            if wait:
                raise ChatError(ErrorCode.RATE_LIMITED, "too many requests; slow down",
                                {"retry_after_ms": max(1, int(wait * 1000 + 0.999))})
            args = op.validate(message.get("args"))
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
            self._track(request_id, name, result)
        elif request_id is not None:
            self._answer(request_id, result if result is not None else {})

    def _check_state(self, op: Op) -> None:
        if self._logged_in:
            if not op.after_login:
                raise ChatError(ErrorCode.CONFLICT, "already logged in")
        elif not op.before_login:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "log in first")

    def _handler(self, op: Op) -> Any:
        if op.perspective == "mind":
            return getattr(self, "mind_" + op.method)
        perspective = self.avatar.perspectives.get(op.perspective)
        if perspective is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "log in first")
        return getattr(perspective, "perspective_" + op.method)

    def _track(self, request_id: int | None, name: str, d: Deferred[Any]) -> None:
        if request_id is None:
            d.addErrback(self._notification_failed, name)
            return
        self._in_flight.add(request_id)
        if len(self._in_flight) >= MAX_IN_FLIGHT and not self._reading_paused:
            # Stop reading until answers go out: a pipelining client cannot make
            # the server hold an unbounded number of requests.
            self._reading_paused = True
            self.pauseProducing()
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(request_id,),
                       errbackArgs=(request_id, name))

    def _done(self, request_id: int) -> None:
        self._in_flight.discard(request_id)
        if self._reading_paused and len(self._in_flight) < MAX_IN_FLIGHT // 2:
            self._reading_paused = False
            if not self._closing:
                self.resumeProducing()

    def _succeeded(self, result: Any, request_id: int) -> None:
        self._done(request_id)
        self._answer(request_id, result if result is not None else {})

    def _failed(self, failure: Failure, request_id: int, name: str) -> None:
        self._done(request_id)
        if failure.check(ChatError):
            self._answer_error(request_id, failure.value)  # type: ignore[arg-type]
        else:
            self.log.failure("op {op} failed", failure, op=name)
            self._answer_error(request_id, ChatError(ErrorCode.INTERNAL, "internal error"))

    def _notification_failed(self, failure: Failure, name: str) -> None:
        if not failure.check(ChatError):
            self.log.failure("notification {op} failed", failure, op=name)

    def _answer(self, request_id: int, result: dict[str, Any]) -> None:
        frame = result_frame(request_id, result)
        if len(frame) - 4 > self.MAX_LENGTH:
            self._answer_error(request_id, ChatError(
                ErrorCode.TOO_LARGE, f"the result is over max_frame ({self.MAX_LENGTH} bytes); "
                "ask for less (a smaller limit)"))
            return
        self.send_frame(frame)

    def _answer_error(self, request_id: int, error: ChatError) -> None:
        self.send_frame(error_frame(request_id, error.to_wire()))

    # -- the mind's own ops (PROTOCOL.md 3) ---------------------------------------------------

    async def mind_hello(self, protocol: int, client: str) -> dict[str, Any]:
        """``session.hello`` → ``{protocol, server, max_frame, features, registration}``."""
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
                "registration": config.open_registration}

    def mind_ping(self) -> dict[str, Any]:
        """``session.ping`` → ``{ts}`` (ms since epoch)."""
        return {"ts": ms(self.factory.clock)}

    async def mind_login(self, username: str, password: str) -> dict[str, Any]:
        """``auth.login`` → ``{user_id, username, display_name, session_id, token, roles}``.

        Raises:
            ChatError: ``unauthenticated`` (same message whether the user exists
                or not), ``banned``, ``conflict`` (a login is already under way).
        """
        if self.factory.config.tls_client_cert_login:
            # Before the password is checked: a certificate holder learns nothing of it.
            check_certificate_user(self.certificate_user, username)
        credentials = UsernamePassword(username.encode("utf-8"), password.encode("utf-8"))
        avatar = await self._portal_login(credentials)
        token = await self.factory.services.accounts.issue_token(avatar.user_id)
        return self._logged_in_as(avatar, token)

    async def mind_resume(self, token: str) -> dict[str, Any]:
        """``auth.resume {token}`` → the login result, without a password (PROTOCOL.md 3.5).

        Raises:
            ChatError: ``unauthenticated`` (expired or revoked token), ``banned``.
        """
        avatar = await self._portal_login(Token(token))
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
        # None writes every frame at once (tests that read a StringTransport
        # synchronously use that).
        self.coalescer: WriteCoalescer | None = WriteCoalescer(clock)
        self.noisy = False

    async def end_all_sessions(self, reason: str, grace: float) -> None:
        """Send ``session.ended {reason}`` to every connection, close them, wait up to
        ``grace`` seconds, then abort what is left (ordered shutdown)."""
        protocols = list(self.protocols)
        waits = [p._lost for p in protocols]
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


