"""The Twisted transport of the client library: one TLS connection to a server.

:class:`ChatConnection` is a Twisted protocol around :class:`ClientCore`:
requests return Deferreds, events go to listeners. :func:`connect` opens a
verified TLS connection (PROTOCOL.md 1). For a connection that survives
network loss, logs in again and catches up, use
:class:`chatnet.client.session.ChatSession`, which is built on this.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import txaio

txaio.use_twisted()

from OpenSSL import SSL  # noqa: E402
from service_identity import VerificationError  # noqa: E402
from twisted.internet import endpoints  # noqa: E402
from twisted.internet.defer import Deferred, succeed  # noqa: E402
from twisted.internet.interfaces import IHandshakeListener  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.logger import Logger  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402
from zope.interface import implementer  # noqa: E402

from chatnet import PROTOCOL_VERSION, __version__  # noqa: E402
from chatnet.client.core import (  # noqa: E402
    ClientCore,
    ConnectionClosed,
    Event,
    ProtocolError,
    TLSVerificationError,
)
from chatnet.errors import ChatError, ErrorCode  # noqa: E402
from chatnet.wire.tls import CertificateRejected, client_tls_options  # noqa: E402

EventListener = Callable[[Event], None]
#: The client name sent in ``session.hello`` unless another is given.
DEFAULT_CLIENT = f"chatnet-lib/{__version__} python/{platform.python_version()}"
#: Seconds a server has to finish TLS and answer ``session.hello`` once the TCP
#: connection is up. Something else listening on the port (a web or Redis
#: server) may accept the connection and never answer.
HELLO_TIMEOUT = 15.0
#: A request function: ``request(op, args)`` → Deferred of the result map.
Requester = Callable[[str, "dict[str, Any] | None"], Awaitable["dict[str, Any]"]]


#: The longest a :func:`patient` request waits out ``rate_limited`` answers in all,
#: seconds, before it gives the error to its caller.
PATIENCE = 300.0


class Patient:
    """A request function that waits out ``rate_limited`` answers and asks again.

    A client catching up after a reconnect (every room's history and changes)
    may run past the server's per-connection rate limit or per-user budgets;
    those answer ``rate_limited`` with ``details.retry_after_ms``, and the
    right thing is to wait that long and go on, not to fail and reconnect.

    Args:
        clock: provides ``callLater`` (the reactor).
        request: sends one request (``ChatConnection.request``).
        patience: seconds of waiting allowed in all before the error is raised.
    """

    def __init__(self, clock: Any, request: Requester, patience: float = PATIENCE) -> None:
        self.clock = clock
        self.request = request
        self.patience = patience
        #: Seconds waited so far.
        self.waited = 0.0

    async def __call__(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """``request(op, args)``, again after each ``rate_limited`` answer.

        Raises:
            ChatError: any other error; ``rate_limited`` once ``patience`` is spent.
        """
        while True:
            try:
                return await self.request(op, args)
            except ChatError as exc:
                if exc.code is not ErrorCode.RATE_LIMITED or self.waited >= self.patience:
                    raise
                retry_after = (exc.details or {}).get("retry_after_ms")
                delay = retry_after / 1000.0 if isinstance(retry_after, int) else 1.0
                delay = min(60.0, max(0.01, delay))
                self.waited += delay
                await deferLater(self.clock, delay, lambda: None)


async def all_pages(request: Requester, op: str, key: str,
                    args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paged list op (docs/protocol.md 2, Paging): ask for pages
    with each answer's ``next_cursor`` until there is none.

    Args:
        request: sends one request (``ChatConnection.request``, ``ChatSession.call``).
        op: the op, e.g. ``"room.list"``.
        key: the list's key in the result, e.g. ``"rooms"``.
        args: the op's other arguments (``limit`` included, if wanted).

    Returns:
        the items of all pages, in order.

    Raises:
        ChatError: the server's error for any page; :class:`ProtocolError` if
            the server hands back a cursor it already gave (it would never end).
    """
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        page = await request(op, {**(args or {}), **({"cursor": cursor} if cursor else {})})
        items.extend(page.get(key) or [])
        cursor = page.get("next_cursor")
        if not isinstance(cursor, str) or not cursor:
            return items
        if cursor in seen:
            raise ProtocolError(f"{op} handed out the same cursor twice")
        seen.add(cursor)


@implementer(IHandshakeListener)
class ChatConnection(Protocol):
    """One connection to a chatnet server.

    Attributes:
        core: the sans-I/O protocol state.
        handshake: fires when the TLS handshake completes.
        lost: fires (with None) when the connection has closed; use
            :meth:`when_lost` to wait without touching its result.
        hello_result: the ``session.hello`` result once :meth:`hello` succeeded.
        login_result: the ``auth.login``/``auth.resume`` result once logged in.
    """

    log = Logger()

    def __init__(self) -> None:
        self.core = ClientCore()
        self.handshake: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self._lost_waiters: list[Deferred[None]] = []
        self.listeners: list[EventListener] = []
        self.hello_result: dict[str, Any] | None = None
        self.login_result: dict[str, Any] | None = None
        self.close_reason = ""

    # -- Twisted protocol -------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Disable Nagle's algorithm: chat frames are small and latency matters."""
        with contextlib.suppress(AttributeError, OSError):
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]

    def handshakeCompleted(self) -> None:
        """TLS is up (the server certificate and hostname were verified)."""
        if not self.handshake.called:
            self.handshake.callback(None)

    def dataReceived(self, data: bytes) -> None:
        """Feed the core; dispatch the events it finds."""
        try:
            events = self.core.receive_data(data)
        except ProtocolError as exc:
            self.log.error("protocol error from server: {error}", error=str(exc))
            self.close_reason = str(exc)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        for event in events:
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:
                    self.log.failure("event listener failed on {event}", event=event.name)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """Fire :attr:`lost`, then fail what is pending.

        In that order: whoever watches the connection (a session) learns that it
        is gone before the failed requests' callbacks run, so they do not retry
        on the dead connection.
        """
        if not self.close_reason:
            self.close_reason = reason.getErrorMessage()
        error: type[ConnectionClosed] = ConnectionClosed
        # Lost by a TLS error before the handshake finished (our verdict on the
        # server), or before the server said hello (in TLS 1.3 the server refuses a
        # missing or unknown client certificate only after our side is done).
        if (not self.handshake.called and reason.check(SSL.Error, VerificationError,
                                                       CertificateRejected)) or (
                self.hello_result is None and reason.check(SSL.Error)):
            error = TLSVerificationError
            self.close_reason = _ssl_reason(reason.value or SSL.Error())
        self.core.closed = True
        if not self.handshake.called:
            self.handshake.errback(reason)
            self.handshake.addErrback(lambda _f: None)
        self.lost.callback(None)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self.core.connection_lost(self.close_reason, error)

    def when_lost(self) -> Deferred[None]:
        """A new Deferred that fires (with None) once the connection has closed."""
        if self.lost.called:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    # -- requests ----------------------------------------------------------------------------

    def _flush(self) -> None:
        data = self.core.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def request(self, op: str, args: dict[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """Send a request (PROTOCOL.md 2).

        Returns:
            a Deferred firing with the result map, or failing with
            :class:`~chatnet.errors.ChatError` (error response or
            :class:`~chatnet.client.core.ConnectionClosed`).
        """
        d: Deferred[dict[str, Any]] = self.core.request(op, args)
        self._flush()
        return d

    async def request_all(self, op: str, key: str,
                          args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list op, e.g. ``request_all("room.list", "rooms")``
        (see :func:`all_pages`)."""
        return await all_pages(self.request, op, key, args)

    def notify(self, op: str, args: dict[str, Any] | None = None) -> None:
        """Send a notification (never answered), e.g. ``msg.typing``."""
        self.core.notify(op, args)
        self._flush()

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every event from the server."""
        self.listeners.append(listener)

    async def hello(self, client: str = DEFAULT_CLIENT, clock: Any = None,
                    timeout: float = HELLO_TIMEOUT) -> dict[str, Any]:
        """``session.hello`` (PROTOCOL.md 3.1); adopts the server's ``max_frame``.

        Args:
            client: the client's name and version, for the server's logs.
            clock: a reactor (``IReactorTime``) to time the answer with; None
                waits as long as the connection lasts.
            timeout: seconds for TLS and the answer together, with ``clock``.

        Raises:
            ChatError: ``protocol_version`` if the server speaks another version;
                ``unavailable`` if nothing answered within ``timeout`` (the
                connection is then aborted).
        """
        d = self.request("session.hello", {"protocol": PROTOCOL_VERSION, "client": client})
        if clock is not None:
            d.addTimeout(timeout, clock, onTimeoutCancel=self._hello_timed_out(timeout))
        result = await d
        max_frame = result.get("max_frame")
        if isinstance(max_frame, int) and max_frame > 0:
            self.core.max_frame = max_frame
        self.hello_result = result
        return result

    def _hello_timed_out(self, timeout: float) -> Callable[[Any, float], Any]:
        def timed_out(_result: Any, _timeout: float) -> Any:
            peer: Any = self.transport.getPeer() if self.transport is not None else None
            where = (f"{peer.host}:{peer.port}" if hasattr(peer, "host") and hasattr(peer, "port")
                     else "the server")
            self.close_reason = f"no answer to session.hello within {timeout:g} s"
            if self.transport is not None:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            raise ChatError(ErrorCode.UNAVAILABLE,
                            f"no chatnet server answered at {where} within {timeout:g} s "
                            "(TLS and session.hello); is it the right host and port?")
        return timed_out

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """``auth.login`` (PROTOCOL.md 3.4) → ``{user_id, username, display_name,
        session_id, token, roles}``.

        Raises:
            ChatError: ``unauthenticated``, ``banned``.
        """
        result = await self.request("auth.login", {"username": username, "password": password})
        self.login_result = result
        return result

    async def resume(self, token: str) -> dict[str, Any]:
        """``auth.resume`` (PROTOCOL.md 3.5): log in again with a token.

        Raises:
            ChatError: ``unauthenticated`` (expired or revoked), ``banned``.
        """
        result = await self.request("auth.resume", {"token": token})
        self.login_result = result
        return result

    async def register(self, username: str, password: str,
                       display_name: str | None = None) -> dict[str, Any]:
        """``auth.register`` (PROTOCOL.md 3.3) → ``{user_id, username}``.

        Raises:
            ChatError: ``conflict`` (name taken), ``forbidden`` (registration
                closed), ``bad_request``.
        """
        args: dict[str, Any] = {"username": username, "password": password}
        if display_name:
            args["display_name"] = display_name
        return await self.request("auth.register", args)

    def abort(self) -> None:
        """Drop the connection at once, without a TLS goodbye (dead peers)."""
        if self.transport is not None and not self.lost.called:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> Deferred[None]:
        """Close the connection; the Deferred fires once it is closed."""
        done = self.when_lost()
        if not self.lost.called:
            self.transport.loseConnection()  # type: ignore[union-attr]
        return done


def _ssl_reason(error: BaseException) -> str:
    """Why the TLS handshake failed, as one readable phrase: our own verdict on the
    server's certificate, service_identity's mismatch, or OpenSSL's errors (with a
    hint for the alerts a server sends when it wants a client certificate)."""
    if isinstance(error, CertificateRejected):
        return str(error)
    if isinstance(error, VerificationError):
        names = [getattr(getattr(e, "mismatched_id", None), "hostname", None) or
                 getattr(getattr(e, "mismatched_id", None), "ip", None) for e in error.errors]
        shown = ", ".join(n.decode() if isinstance(n, bytes) else str(n) for n in names if n)
        return f"the server's certificate is not valid for {shown or 'this host'}"
    details = error.args[0] if error.args else []
    text = str(error) or error.__class__.__name__
    if isinstance(details, list):
        texts = [str(item[-1]) for item in details if isinstance(item, tuple) and item]
        if texts:
            text = "; ".join(texts)
    hint = ""
    if "certificate required" in text or "handshake failure" in text:
        hint = (" (a server with --tls-client-ca wants a client certificate from its CA: "
                "client_cert= / --cert)")
    elif "unknown ca" in text or "bad certificate" in text:
        hint = " (the server does not accept this client certificate)"
    return f"the TLS handshake with the server failed: {text}{hint}"


class ChatConnectionFactory(Factory):
    """Makes :class:`ChatConnection` protocols (used by ``ClientService`` too)."""

    protocol = ChatConnection
    noisy = False


def client_endpoint(reactor: Any, host: str, port: int, ca: str | Path | None = None,
                    client_cert: str | Path | None = None,
                    client_key: str | Path | None = None,
                    timeout: float = 10.0, pin: str | None = None,
                    source: str | None = None, server_name: str | None = None) -> Any:
    """A TLS client endpoint that verifies the server (PROTOCOL.md 1).

    Args:
        host: server hostname or IP address; the certificate must match it.
        port: server port (5443 by default on servers).
        ca: PEM CA file to trust (the server's ``<data-dir>/tls/ca.pem`` for the
            development CA); None trusts the system store (or only ``pin``).
        client_cert: PEM client certificate, for servers with ``--tls-client-ca``.
        client_key: its PEM key.
        timeout: TCP connect timeout, in seconds.
        pin: SHA-256 fingerprint (hex, colons optional, any case) that the
            server's certificate or its CA's must have, e.g. the CA fingerprint
            the server logs at start (it survives certificate renewals). With
            ``ca``, in addition to the usual checks; without, the pinned
            certificate is the only trust anchor (see
            :class:`chatnet.wire.tls.ClientTLS`).
        source: local IP address to connect from (a machine with several), or
            None for the system's choice.
        server_name: the name the server's certificate must have when it is not
            ``host`` (a server reached over loopback whose certificate names its
            public name); None: ``host``.

    Raises:
        ValueError: ``pin`` is not a SHA-256 fingerprint, or a file is unreadable.
    """
    bind = (source, 0) if source is not None else None
    return endpoints.wrapClientTLS(
        client_tls_options(server_name or host, ca, client_cert, client_key, pin),
        endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout, bindAddress=bind))


async def connect(reactor: Any, host: str, port: int, ca: str | Path | None = None,
                  client_cert: str | Path | None = None,
                  client_key: str | Path | None = None,
                  hello: bool = True, client: str = DEFAULT_CLIENT,
                  pin: str | None = None, source: str | None = None,
                  timeout: float = HELLO_TIMEOUT) -> ChatConnection:
    """Open a verified TLS connection and (by default) say hello.

    Arguments as :func:`client_endpoint`; ``timeout`` is in seconds, for the TCP
    connection and then again for TLS and ``session.hello``.

    Returns:
        the connected :class:`ChatConnection`.

    Raises:
        ValueError: ``pin`` is not a SHA-256 fingerprint.
        twisted.internet.error.ConnectError: the server cannot be reached.
        TLSVerificationError: the server's certificate is not trusted, has
            expired, does not match ``host`` or ``pin`` (a ``ChatError`` with
            code ``unavailable`` whose message says which).
        ChatError: ``protocol_version``; ``unavailable`` when nothing answered
            the hello within ``timeout``.
    """
    endpoint = client_endpoint(reactor, host, port, ca, client_cert, client_key, pin=pin,
                               source=source, timeout=timeout)
    # Not endpoints.connectProtocol: it makes a factory class per call, which
    # zope.interface's adapter cache keeps for good, and the connection with it.
    connection: ChatConnection = await endpoint.connect(ChatConnectionFactory())
    if hello:
        try:
            await connection.hello(client, clock=reactor, timeout=timeout)
        except TLSVerificationError:
            raise
        except ConnectionClosed:
            raise ConnectionClosed(f"connection to {host}:{port} failed: "
                                   f"{connection.close_reason}") from None
    return connection
