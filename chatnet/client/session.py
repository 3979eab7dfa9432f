"""A self-healing chat session: reconnect, resume, re-send, catch up (PROTOCOL.md 3, 6).

:class:`ChatSession` keeps one logged-in connection to a server for as long
as it runs. Its states (observe them with :meth:`ChatSession.add_state_listener`)::

    disconnected -> connecting -> handshaking -> authenticated -> closing -> disconnected
                        ^                              |
                        +------ network loss ----------+

* **Reconnect** through Twisted's ``ClientService`` with exponential backoff
  plus random jitter, so that a server restart does not bring every client
  back in the same second.
* **Resume** with ``auth.resume {token}`` (no password hashing on the server);
  if the token is no longer valid and the password is still known, log in.
* **Re-send** every ``msg.send`` not yet acknowledged, with the same
  ``client_msg_id``: the server stores it once and answers with the first result.
* **Catch up**: ``room.list`` (every page) and ``room.invites``, then
  ``msg.history {after_seq}`` for each room that moved while the connection
  was down; the messages are delivered to listeners as ``msg`` events marked
  ``catch_up: True``, in order, without duplicates (events that arrive during
  catch-up are held back until it ends).
* **Rooms and invitations** stay current in :attr:`ChatSession.rooms` and
  :attr:`ChatSession.invites` from the session's own requests and the
  server's events (``room.invited``, ``room.declined``, ``room.member``...).
* After ``session.ended`` with reason ``replaced``, ``banned`` or ``logout``
  it stops and does **not** reconnect by itself; after ``shutdown`` it does.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.client.connection import (
    DEFAULT_CLIENT,
    HELLO_TIMEOUT,
    ChatConnection,
    ChatConnectionFactory,
    Patient,
    all_pages,
    client_endpoint,
)
from chatnet.client.core import ConnectionClosed, Event
from chatnet.errors import ChatError, ErrorCode

#: Milliseconds subtracted from the last sync time when asking for changes: the
#: server stamps a change when its transaction runs, a little before the event.
_CHANGES_MARGIN_MS = 5000
#: Ops whose result is a room the session may not have known before.
_ROOM_ENTRY_OPS = frozenset({"room.create", "room.join", "dm.open"})
#: ``session.ended`` reasons after which the session must not reconnect by itself.
FINAL_REASONS = frozenset({"replaced", "banned", "logout"})

#: Seqs of one room remembered as not yet arrived (see ``ChatSession._missing``).
MAX_MISSING = 1000


class SessionState(StrEnum):
    """States of a :class:`ChatSession` (STYLE.md habit 17)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    AUTHENTICATED = "authenticated"
    CLOSING = "closing"


@dataclass
class _PendingSend:
    args: dict[str, Any]
    result: Deferred[dict[str, Any]] = field(default_factory=Deferred)
    generation: int = -1
    #: Refusals with ``unavailable`` in a row (the server's storage is failing).
    unavailable: int = 0


#: Longest wait between re-sends of a message the server refused with
#: ``unavailable``, seconds (the wait doubles from 0.5 s).
_UNAVAILABLE_RETRY_CEILING = 30.0


class ChatSession:
    """One user's session with a server, kept alive across network loss.

    Args:
        reactor: the reactor (also the clock).
        host: server hostname or IP address (the certificate must match it).
        port: server port.
        username: the account name.
        password: the password; needed for the first login unless ``token`` is
            given, and kept in memory to log in again if the token is revoked.
        token: a resume token from an earlier login.
        ca: PEM CA file to trust; None uses the system store.
        client_cert: PEM client certificate (servers with mutual TLS).
        client_key: its PEM key.
        client_name: sent in ``session.hello``.
        retry_initial: first reconnect delay, in seconds.
        retry_max: longest reconnect delay before jitter, in seconds.
        retry_jitter: up to this many random seconds are added to each delay.
        ping_interval: seconds between ``session.ping`` (PROTOCOL.md 3.7: 30).
        ping_timeout: seconds without an answer to a ping before the connection
            is considered dead and dropped.
        pin: SHA-256 fingerprint that the server's certificate or its CA's must
            have (see :func:`chatnet.client.connection.client_endpoint`).
        connect_timeout: seconds for the TCP connection, and again for TLS and
            ``session.hello`` (something that is not a chatnet server may accept
            the connection and never answer).
        server_name: the name the server's certificate must have when it is not
            ``host`` (e.g. a bot connecting over loopback to its own server);
            None: ``host``.

    Raises:
        ValueError: no password and no token, or ``pin`` is not a SHA-256
            fingerprint.

    Attributes:
        state: the current :class:`SessionState`.
        login_result: the last ``auth.login``/``auth.resume`` result.
        rooms: room id -> room map (PROTOCOL.md 5): the last ``room.list``, plus
            rooms entered since through :meth:`call` (create, join, ``dm.open``),
            direct rooms others opened, and invitations accepted on another
            device; kept current by ``room.updated``/``room.deleted`` and own
            leaves/kicks.
        invites: room id -> pending invitation ``{room, by, ts?}`` to a group room
            (docs/protocol.md 5): the last ``room.invites``, plus ``room.invited``
            events since; gone when joined (here or on another device), declined,
            or the room is deleted.
        ended_reason: the ``session.ended`` reason that stopped the session, if any.
        hello_result: the server's ``session.hello`` answer (``registration``,
            ``max_frame``, ``features`` …) once connected.
        presence: the presence state chosen with ``presence.set``; it is set again
            after each reconnect (the server forgets it when the last session ends).
    """

    log = Logger()

    def __init__(self, reactor: Any, host: str, port: int, username: str,
                 password: str | None = None, *, token: str | None = None,
                 ca: str | Path | None = None, client_cert: str | Path | None = None,
                 client_key: str | Path | None = None, client_name: str = DEFAULT_CLIENT,
                 retry_initial: float = 0.5, retry_max: float = 15.0,
                 retry_jitter: float = 2.0, ping_interval: float = 30.0,
                 ping_timeout: float = 20.0, pin: str | None = None,
                 connect_timeout: float = HELLO_TIMEOUT,
                 server_name: str | None = None) -> None:
        if password is None and token is None:
            raise ValueError("a password or a token is needed")
        self.reactor = reactor
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.token = token
        self.client_name = client_name
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.state = SessionState.DISCONNECTED
        self.login_result: dict[str, Any] | None = None
        self.rooms: dict[int, dict[str, Any]] = {}
        self.invites: dict[int, dict[str, Any]] = {}
        self.ended_reason: str | None = None
        self.hello_result: dict[str, Any] | None = None
        self.presence: str | None = None
        self._endpoint = client_endpoint(reactor, host, port, ca, client_cert, client_key,
                                         pin=pin, timeout=connect_timeout,
                                         server_name=server_name)
        self._retry = backoffPolicy(retry_initial, retry_max, 2.0,
                                    lambda: random.uniform(0, retry_jitter))
        self._service: ClientService | None = None
        self._connection: ChatConnection | None = None
        self._generation = 0
        self._listeners: list[Callable[[Event], None]] = []
        self._state_listeners: list[Callable[[SessionState], None]] = []
        self._outbox: OrderedDict[str, _PendingSend] = OrderedDict()
        self._known_seq: dict[int, int] = {}
        #: room -> seqs below the newest delivered that have not arrived yet: in a
        #: cluster, messages sent through different nodes at the same moment may
        #: arrive out of seq order (docs/protocol.md 6); a late one is delivered,
        #: not taken for a repeat.
        self._missing: dict[int, set[int]] = {}
        self._held: list[Event] | None = None
        self._ready: Deferred[dict[str, Any]] | None = None
        self._register: tuple[str | None] | None = None
        self._ping: LoopingCall | None = None
        self._first = True
        self._connected_waiters: list[Deferred[None]] = []
        self._synced_ts: int | None = None
        self._known_before: dict[int, int] = {}

    async def open_side_connection(self) -> ChatConnection:
        """A second connection to the same server, logged in as this session's user
        (``auth.resume`` with its token), e.g. to carry a call's audio away from
        file transfers (``VoiceCall.attach``). The caller closes it; it does not
        reconnect.

        Raises:
            ChatError: ``unauthenticated`` (no token yet, or it was revoked);
                ``ConnectionClosed`` if the server cannot be reached.
        """
        if self.token is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "log in first")
        connection: ChatConnection = await self._endpoint.connect(ChatConnectionFactory())
        try:
            await connection.hello(self.client_name, self.reactor, self.connect_timeout)
            await connection.resume(self.token)
        except BaseException:
            connection.abort()
            raise
        return connection

    # -- observing ---------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every server event (and catch-up ``msg`` events)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling a listener added with :meth:`add_listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_state_listener(self, listener: Callable[[SessionState], None]) -> None:
        """Call ``listener(state)`` whenever :attr:`state` changes."""
        self._state_listeners.append(listener)

    @property
    def connected(self) -> bool:
        """Whether a logged-in connection is up and caught up."""
        return (self.state is SessionState.AUTHENTICATED and self._connection is not None
                and not self._connection.core.closed)

    def when_connected(self) -> Deferred[None]:
        """A Deferred that fires once the session is authenticated and caught up
        (at once if it is now). Fails with :class:`ConnectionClosed` if the session
        stops first."""
        d: Deferred[None] = Deferred()
        if self.connected:
            d.callback(None)
        else:
            self._connected_waiters.append(d)
        return d

    @property
    def unacknowledged(self) -> int:
        """``msg.send`` requests waiting for their answer (they survive reconnects)."""
        return len(self._outbox)

    def _set_state(self, state: SessionState) -> None:
        if state is self.state:
            return
        self.state = state
        if state in (SessionState.AUTHENTICATED, SessionState.DISCONNECTED):
            waiters, self._connected_waiters = self._connected_waiters, []
            for waiter in waiters:
                if state is SessionState.AUTHENTICATED:
                    waiter.callback(None)
                else:
                    waiter.errback(ConnectionClosed("the session stopped"))
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                self.log.failure("state listener failed")

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("event listener failed on {event}", event=event.name)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, register: bool = False, display_name: str | None = None
              ) -> Deferred[dict[str, Any]]:
        """Connect and log in (registering first if asked).

        Args:
            register: create the account with ``auth.register`` before the first login.
            display_name: the display name for ``register``.

        Returns:
            a Deferred firing with the login result, or failing with
            :class:`~chatnet.errors.ChatError` (``unauthenticated``, ``banned``,
            ``conflict`` …) or a connection error if the server cannot be
            reached. After a failure the session is stopped.
        """
        if self._service is not None:
            raise RuntimeError("the session is already started")
        self.ended_reason = None
        self._register = (display_name,) if register else None
        self._ready = Deferred()
        self._service = ClientService(self._endpoint, ChatConnectionFactory(), self._retry,
                                      self.reactor, prepareConnection=self._prepare)
        self._set_state(SessionState.CONNECTING)
        self._service.startService()
        first = self._service.whenConnected(failAfterFailures=1)
        first.addErrback(self._first_failed)
        ready = self._ready
        return ready

    def _first_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            # Not from inside ClientService's state machine: it refuses re-entry.
            self.reactor.callLater(0, self._fail_start, failure)

    def _fail_start(self, error: Failure | BaseException) -> None:
        """Stop the session, then fail the Deferred that :meth:`start` returned."""
        ready, self._ready = self._ready, None
        stopped = self._stop_service()
        if ready is not None and not ready.called:
            stopped.addBoth(lambda _r: ready.errback(error))

    def _stop_service(self) -> Deferred[None]:
        service, self._service = self._service, None
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        if service is None:
            self._set_state(SessionState.DISCONNECTED)
            return succeed(None)
        self._set_state(SessionState.CLOSING)
        d: Deferred[None] = service.stopService()
        d.addBoth(lambda _r: self._set_state(SessionState.DISCONNECTED))
        return d

    async def close(self, logout: bool = False) -> None:
        """Stop the session; with ``logout`` also revoke the token on the server
        (``auth.logout``). Unacknowledged sends fail with ``ConnectionClosed``."""
        connection = self._connection
        if logout and connection is not None and self.connected:
            with contextlib.suppress(ChatError):
                await connection.request("auth.logout")
            self.token = None
        await self._stop_service()
        pending, self._outbox = self._outbox, OrderedDict()
        for entry in pending.values():
            if not entry.result.called:
                entry.result.errback(ConnectionClosed("session closed"))

    # -- connecting ---------------------------------------------------------------------------

    async def _prepare(self, connection: Any) -> None:
        """ClientService calls this for each new connection. It never raises: a
        failure aborts the connection (ClientService then retries), or, when it
        is final (credentials, ban), stops the session."""
        proxy, connection = connection, getattr(connection, "_protocol", connection)
        self._set_state(SessionState.HANDSHAKING)
        try:
            await self._handshake(connection)
        except CancelledError:
            # The session was closed during the handshake. ClientService has
            # already forgotten this attempt and must not hear of the connection
            # again (it raises NoTransition on a disconnect it does not expect).
            if hasattr(proxy, "_lostNotification"):
                proxy._lostNotification = lambda _reason: None
            connection.abort()
            raise
        except Exception as exc:
            final = isinstance(exc, ChatError) and exc.code in (
                ErrorCode.UNAUTHENTICATED, ErrorCode.BANNED, ErrorCode.CONFLICT,
                ErrorCode.FORBIDDEN, ErrorCode.BAD_REQUEST, ErrorCode.PROTOCOL_VERSION)
            self.log.info("login to {host}:{port} failed: {error}", host=self.host,
                          port=self.port, error=str(exc))
            # Act once ClientService has taken the connection (it does when this
            # returns): it cannot handle a connection dropped during preparation.
            if final or self._first:
                if self._ready is None and isinstance(exc, ChatError):
                    self.ended_reason = exc.code.value
                self.reactor.callLater(0, self._fail_start, exc)
            else:
                self._set_state(SessionState.CONNECTING)
                self.reactor.callLater(0, connection.abort)

    async def _handshake(self, connection: ChatConnection) -> None:
        self._held = []
        connection.add_listener(self._on_event)
        self.hello_result = await connection.hello(self.client_name, self.reactor,
                                                   self.connect_timeout)
        if self._register is not None:
            (display_name,) = self._register
            assert self.password is not None
            await connection.register(self.username, self.password, display_name)
            self._register = None
        result = None
        if self.token is not None:
            try:
                result = await connection.resume(self.token)
            except ChatError as exc:
                if exc.code is not ErrorCode.UNAUTHENTICATED or self.password is None:
                    raise
                self.token = None
        if result is None:
            if self.password is None:
                raise ChatError(ErrorCode.UNAUTHENTICATED, "the session token expired; "
                                "log in again with the password")
            result = await connection.login(self.username, self.password)
        self.token = result.get("token", self.token)
        self.login_result = result
        self.username = result.get("username", self.username)
        self._connection = connection
        self._generation += 1
        connection.when_lost().addCallback(self._lost, connection)
        for client_msg_id in list(self._outbox):
            self._transmit(client_msg_id)
        if self.presence is not None and self.presence != "online":
            await connection.request("presence.set", {"state": self.presence})
        # The server's clock now: everything changed before it is covered by this
        # catch-up, everything after reaches us live (or by the next catch-up).
        synced = int((await connection.request("session.ping"))["ts"])
        # Catching up may pass the server's rate limit or per-user budgets (a user
        # in many rooms): wait those out rather than fail and start again.
        ask = Patient(self.reactor, connection.request)
        await self._catch_up(ask, baseline=self._first)
        if not self._first and self._synced_ts is not None:
            await self._catch_up_changes(ask, self._synced_ts - _CHANGES_MARGIN_MS)
        self._synced_ts = synced
        held, self._held = self._held or [], None
        for event in held:
            self._dispatch(event)
        # Announce it once ClientService has taken the connection (after this
        # returns): a listener that closes the session at once must find the
        # service in its "connected" state.
        self.reactor.callLater(0, self._authenticated, connection, result)

    def _authenticated(self, connection: ChatConnection, result: dict[str, Any]) -> None:
        if connection is not self._connection or self._service is None:
            return
        first, self._first = self._first, False
        self._start_pings(connection)
        self._set_state(SessionState.AUTHENTICATED)
        for client_msg_id in list(self._outbox):
            self._transmit(client_msg_id)  # those queued since the handshake
        if first and self._ready is not None:
            ready, self._ready = self._ready, None
            ready.callback(result)

    def _lost(self, _: Any, connection: ChatConnection) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        if self._service is not None and self.state is not SessionState.CLOSING:
            self.log.info("connection to {host}:{port} lost; reconnecting", host=self.host,
                          port=self.port)
            self._set_state(SessionState.CONNECTING)

    def _start_pings(self, connection: ChatConnection) -> None:
        def ping() -> None:
            if connection is not self._connection:
                return
            d = connection.request("session.ping")
            d.addTimeout(self.ping_timeout, self.reactor)
            d.addCallback(self._pinged, connection)

            def dead(failure: Failure) -> None:
                if connection is self._connection:
                    self.log.info("server did not answer a ping; reconnecting")
                    connection.abort()

            d.addErrback(dead)

        if self._ping is not None and self._ping.running:
            self._ping.stop()
        self._ping = LoopingCall(ping)
        self._ping.clock = self.reactor
        self._ping.start(self.ping_interval, now=False)

    def _pinged(self, result: dict[str, Any], connection: ChatConnection) -> dict[str, Any]:
        # Events are delivered in order with answers: the ping's time is a point
        # up to which this connection has seen every change.
        if connection is self._connection and isinstance(result.get("ts"), int):
            self._synced_ts = result["ts"]
        return result

    async def _catch_up(self, ask: Patient, baseline: bool) -> None:
        """``room.list`` (every page) and ``room.invites``, then the history each room
        gained since last seen."""
        rooms = await all_pages(ask, "room.list", "rooms")
        self.rooms = {r["room_id"]: r for r in rooms}
        try:
            invites = await all_pages(ask, "room.invites", "invites")
        except ChatError as exc:
            if exc.code is not ErrorCode.UNKNOWN_OP:
                raise
            invites = []  # a server without invitations to list
        self.invites = {int(i["room"]["room_id"]): i for i in invites
                        if isinstance(i.get("room"), dict) and "room_id" in i["room"]}
        for room_id in list(self._known_seq):
            if room_id not in self.rooms:
                del self._known_seq[room_id]
        self._known_before = dict(self._known_seq)
        for room in rooms:
            room_id, last_seq = room["room_id"], room.get("last_seq", 0)
            if baseline:
                self._known_seq[room_id] = last_seq
                continue
            since = self._known_seq.get(room_id, room.get("read_seq", 0))
            # Seqs that never arrived live are fetched too; the rest up to the
            # newest delivered are not delivered again.
            missing = self._missing.pop(room_id, set())
            delivered_up_to = since
            if missing:
                since = min(missing) - 1
            limit = 200
            while since < last_seq:
                try:
                    page = await ask(
                        "msg.history", {"room_id": room_id, "after_seq": since, "limit": limit})
                except ChatError as exc:
                    if exc.code is ErrorCode.TOO_LARGE and limit > 1:
                        limit //= 2
                        continue
                    raise
                for message in page["messages"]:
                    seq = message["seq"]
                    if seq > since:
                        since = seq
                        if seq > delivered_up_to or seq in missing:
                            self._emit(Event("msg", {"message": message,
                                                     "catch_up": True}))
                if not page.get("has_more") or not page["messages"]:
                    break
            self._known_seq[room_id] = max(since, self._known_seq.get(room_id, 0))

    async def _catch_up_changes(self, ask: Patient, since_ts: int) -> None:
        """``msg.changes`` for each room seen before the drop: edits, reactions,
        deletions and expiries of messages already delivered are passed on as
        ``msg.updated {message}`` (the whole current message) and ``msg.deleted``,
        both marked ``catch_up``."""
        for room_id, known in self._known_before.items():
            if room_id not in self.rooms:
                continue
            cursor_ts, cursor_id = since_ts, 0
            while True:
                page = await ask("msg.changes", {
                    "room_id": room_id, "since_ts": cursor_ts, "since_msg_id": cursor_id,
                    "limit": 100})
                for change in page["changes"]:
                    cursor_ts, cursor_id = int(change["changed_ts"]), int(change["msg_id"])
                    if int(change["seq"]) > known:
                        continue  # arrived with the history catch-up, current already
                    if change.get("deleted"):
                        self._emit(Event("msg.deleted", {"room_id": room_id,
                                                         "msg_id": change["msg_id"],
                                                         "catch_up": True}))
                    else:
                        self._emit(Event("msg.updated", {"message": change, "catch_up": True}))
                if not page.get("has_more") or not page["changes"]:
                    break

    # -- events ---------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        self._dispatch(event)

    def _note_missing(self, room_id: int, first: int, end: int) -> None:
        """Seqs ``first`` to ``end - 1`` of a room have not arrived (at most the
        newest :data:`MAX_MISSING` are remembered)."""
        missing = self._missing.setdefault(room_id, set())
        missing.update(range(max(first, end - MAX_MISSING), end))
        if len(missing) > MAX_MISSING:
            self._missing[room_id] = set(sorted(missing)[-MAX_MISSING:])

    def _dispatch(self, event: Event) -> None:
        name, data = event.name, event.data
        if name == "msg":
            message = data.get("message") or {}
            room_id, seq = message.get("room_id"), message.get("seq")
            if isinstance(room_id, int) and isinstance(seq, int):
                known = self._known_seq.get(room_id, 0)
                if seq <= known:
                    missing = self._missing.get(room_id)
                    if not missing or seq not in missing:
                        return  # already delivered (catch-up overlap)
                    missing.discard(seq)
                else:
                    if known and seq > known + 1:
                        self._note_missing(room_id, known + 1, seq)
                    self._known_seq[room_id] = seq
        elif name == "room.invited":
            room = data.get("room") or {}
            if isinstance(room.get("room_id"), int):
                if room.get("kind") == "direct":
                    # Someone opened a direct room with us: we are in it.
                    self._track_room(room)
                else:
                    self.invites[room["room_id"]] = {"room": room, "by": data.get("by")}
        elif name == "room.declined":
            self.invites.pop(data.get("room_id"), None)  # type: ignore[arg-type]
        elif (name == "room.member" and data.get("username") == self.username
              and data.get("change") == "joined"):
            # Joined, maybe on another device: an invitation we held becomes a room.
            invite = self.invites.pop(data.get("room_id"), None)  # type: ignore[arg-type]
            if invite is not None and isinstance(invite.get("room"), dict):
                self._track_room(dict(invite["room"], role="member"))
        elif name == "room.updated":
            room = data.get("room") or {}
            if room.get("room_id") in self.rooms:
                self.rooms[room["room_id"]].update(room)
        elif name == "room.deleted" or (
                name == "room.member" and data.get("username") == self.username
                and data.get("change") in ("left", "kicked")):
            self._known_seq.pop(data.get("room_id"), None)  # type: ignore[arg-type]
            self.rooms.pop(data.get("room_id"), None)  # type: ignore[arg-type]
            if name == "room.deleted":
                self.invites.pop(data.get("room_id"), None)  # type: ignore[arg-type]
        elif name == "session.ended":
            reason = str(data.get("reason", ""))
            if reason in FINAL_REASONS:
                self.ended_reason = reason
                self.log.info("server ended the session ({reason}); not reconnecting",
                              reason=reason)
                self._stop_service()
        self._emit(event)

    # -- requests ---------------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """Send any request on the current connection (PROTOCOL.md 2).

        Returns:
            a Deferred of the result map.

        Raises (through the Deferred):
            ChatError: the server's error, or :class:`ConnectionClosed`
                (``unavailable``) when not connected or the connection drops first.
        """
        connection = self._connection
        if connection is None or not self.connected:
            return Deferred.fromCoroutine(_raise(ConnectionClosed("not connected")))
        d = connection.request(op, args)
        if op in _ROOM_ENTRY_OPS:
            d.addCallback(self._entered_room)
        elif op == "room.decline" and args is not None:
            d.addCallback(self._declined, args.get("room_id"))
        elif op == "presence.set" and args is not None:
            d.addCallback(self._chose_presence, args.get("state"))
        elif op == "auth.change_password" and args is not None:
            d.addCallback(self._changed_password, args.get("new_password"))
        return d

    def _changed_password(self, result: dict[str, Any], password: Any) -> dict[str, Any]:
        """After auth.change_password: every token was revoked; log in again with the
        new password and the fresh token the server returned."""
        if isinstance(password, str):
            self.password = password
        if isinstance(result.get("token"), str):
            self.token = result["token"]
        return result

    def _chose_presence(self, result: dict[str, Any], state: Any) -> dict[str, Any]:
        self.presence = str(state)
        return result

    async def call_all(self, op: str, key: str,
                       args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list op (docs/protocol.md 2), page after page, e.g.
        ``await session.call_all("room.members", "members", {"room_id": 7})``.

        Raises:
            ChatError: as :meth:`call`, for any page.
        """
        return await all_pages(self.call, op, key, args)

    def _entered_room(self, room: dict[str, Any]) -> dict[str, Any]:
        """After room.create/join or dm.open: start tracking the room at its present."""
        if isinstance(room.get("room_id"), int):
            self.invites.pop(room["room_id"], None)
            self._track_room(room)
        return room

    def _track_room(self, room: dict[str, Any]) -> None:
        """A room this user is now in: what is in it now is history, what comes
        later must be caught up if the connection drops."""
        self._known_seq.setdefault(room["room_id"], int(room.get("last_seq", 0)))
        self.rooms.setdefault(room["room_id"], dict(room))

    def _declined(self, result: dict[str, Any], room_id: Any) -> dict[str, Any]:
        self.invites.pop(room_id, None)
        return result

    def notify(self, op: str, args: dict[str, Any] | None = None) -> None:
        """Send a notification if connected (dropped otherwise), e.g. ``msg.typing``."""
        if self._connection is not None and self.connected:
            self._connection.notify(op, args)

    def typing(self, room_id: int, typing: bool) -> None:
        """``msg.typing`` (PROTOCOL.md 6): tell the room this user is (not) typing."""
        self.notify("msg.typing", {"room_id": room_id, "typing": typing})

    def send_message(self, room_id: int, body: str, *, reply_to: int | None = None,
                     mentions: list[str] | None = None, ttl: int | None = None,
                     attachments: list[str] | None = None,
                     client_msg_id: str | None = None) -> Deferred[dict[str, Any]]:
        """``msg.send`` that survives network loss (PROTOCOL.md 6).

        The message waits while disconnected and is re-sent with the same
        ``client_msg_id`` after each reconnect until the server answers.

        Returns:
            a Deferred firing with ``{msg_id, seq, ts}``, or failing with the
            server's :class:`~chatnet.errors.ChatError` (``not_found``,
            ``bad_request`` …), or :class:`ConnectionClosed` if the session is
            closed first.
        """
        args: dict[str, Any] = {"room_id": room_id, "body": body,
                                "client_msg_id": client_msg_id or uuid.uuid4().hex}
        for key, value in (("reply_to", reply_to), ("mentions", mentions), ("ttl", ttl),
                           ("attachments", attachments)):
            if value is not None:
                args[key] = value
        entry = _PendingSend(args)
        self._outbox[args["client_msg_id"]] = entry
        if self.connected:
            self._transmit(args["client_msg_id"])
        return entry.result

    def _transmit(self, client_msg_id: str) -> None:
        entry = self._outbox.get(client_msg_id)
        connection = self._connection
        if entry is None or connection is None or entry.generation == self._generation:
            return
        entry.generation = self._generation
        generation = self._generation

        def acknowledged(result: dict[str, Any]) -> None:
            entry.unavailable = 0
            if self._outbox.get(client_msg_id) is entry:
                del self._outbox[client_msg_id]
            if not entry.result.called:
                entry.result.callback(result)

        def refused(failure: Failure) -> None:
            error = failure.value
            if isinstance(error, ConnectionClosed):
                entry.generation = -1  # keep it: re-sent after the reconnect
                return
            if isinstance(error, ChatError) and error.code is ErrorCode.RATE_LIMITED:
                delay = (error.details or {}).get("retry_after_ms", 1000) / 1000.0
                entry.generation = -1
                self.reactor.callLater(delay, self._retransmit, client_msg_id, generation)
                return
            if isinstance(error, ChatError) and error.code is ErrorCode.UNAVAILABLE:
                # The server could not store it now (disk full, database locked):
                # nothing was stored, so the same send is safe to repeat later.
                entry.unavailable += 1
                delay = min(_UNAVAILABLE_RETRY_CEILING, 0.5 * 2 ** (entry.unavailable - 1))
                suggested = (error.details or {}).get("retry_after_ms")
                if isinstance(suggested, int):
                    delay = max(delay, suggested / 1000.0)
                entry.generation = -1
                self.reactor.callLater(delay, self._retransmit, client_msg_id, generation)
                return
            if self._outbox.get(client_msg_id) is entry:
                del self._outbox[client_msg_id]
            if not entry.result.called:
                entry.result.errback(failure)

        connection.request("msg.send", entry.args).addCallbacks(acknowledged, refused)

    def _retransmit(self, client_msg_id: str, generation: int) -> None:
        if generation == self._generation and self.connected:
            self._transmit(client_msg_id)


async def _raise(error: Exception) -> Any:
    raise error
