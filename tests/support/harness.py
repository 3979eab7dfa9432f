"""The server's wire layer without a network: real store, real services, fake clock.

:func:`build_harness` wires a :class:`~chatnet.wire.server.ChatServerFactory`
the way :mod:`chatnet.server` does, but over a SQLite file in a temporary
directory and with a :class:`~twisted.internet.testing.MemoryReactorClock` as
the clock, so idle timeouts and rate limits move only when the test advances
time. :meth:`Harness.connect` attaches a new protocol to a
:class:`FrameTransport`, which decodes what the server writes.

The database and Argon2 still run in the real reactor's thread pool, so ops
that touch them (``auth.login``) are awaited with :meth:`FrameTransport.next`;
or, with ``synchronous=True`` (:func:`build_synchronous_harness`), in the
caller's thread (:mod:`tests.support.synchronous`), so that every such request
is answered before ``dataReceived`` returns.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection

from chatnet.config import ServerConfig
from chatnet.cred.checkers import LoginGuard, PasswordChecker, PasswordHasher, TokenChecker
from chatnet.cred.realm import ChatRealm
from chatnet.fanout import LocalFanout
from chatnet.services import Services
from chatnet.services.accounts import AccountService
from chatnet.services.admin import AdminService
from chatnet.services.calls import CallService
from chatnet.services.feed import FeedService
from chatnet.services.files import FileService
from chatnet.services.messages import MessageService
from chatnet.services.rooms import RoomService
from chatnet.services.users import UserService
from chatnet.store import ChatStore, Database, SqliteEngine
from chatnet.wire.codec import frame
from chatnet.wire.server import ChatServerFactory, ChatServerProtocol
from tests.support.events import TIMEOUT, timeout_after
from tests.support.server import test_config
from tests.support.synchronous import SynchronousHasher, SynchronousReactor, run_now

_PREFIX = struct.Struct("!I")

Frame = dict[str, Any]


class FrameTransport(StringTransportWithDisconnection):
    """A string transport that decodes the frames written to it.

    Attributes:
        frames: every decoded payload the server wrote, in order.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.frames: list[Frame] = []
        self._buffer = b""
        self._waiters: list[tuple[Callable[[Frame], bool], Deferred[Frame]]] = []
        self._read = 0

    def write(self, data: bytes) -> None:
        """Record, decode complete frames, wake waiters."""
        super().write(data)
        self._buffer += data
        while len(self._buffer) >= 4:
            (length,) = _PREFIX.unpack_from(self._buffer)
            if len(self._buffer) < 4 + length:
                break
            payload = msgpack.unpackb(self._buffer[4:4 + length], raw=False,
                                      strict_map_key=False)
            self._buffer = self._buffer[4 + length:]
            self.frames.append(payload)
            for waiter in list(self._waiters):
                where, d = waiter
                if where(payload):
                    self._waiters.remove(waiter)
                    if not d.called:
                        d.callback(payload)

    def new_frames(self) -> list[Frame]:
        """Frames written since the last call."""
        fresh = self.frames[self._read:]
        self._read = len(self.frames)
        return fresh

    def next(self, where: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Deferred[Frame]:
        """The first frame (already written or still to come) satisfying ``where``."""
        for payload in self.frames:
            if where(payload):
                d: Deferred[Frame] = Deferred()
                d.callback(payload)
                return d
        d = Deferred()
        self._waiters.append((where, d))
        return timeout_after(d, timeout, "a frame from the server")

    def answer(self, request_id: int, timeout: float = TIMEOUT) -> Deferred[Frame]:
        """The response to request ``request_id``."""
        return self.next(lambda f: f.get("id") == request_id and "event" not in f, timeout)


@dataclass
class Harness:
    """A server factory over a real store, driven by a fake clock."""

    config: ServerConfig
    clock: MemoryReactorClock
    store: ChatStore
    services: Services
    fanout: LocalFanout
    factory: ChatServerFactory

    def connect(self) -> tuple[ChatServerProtocol, FrameTransport]:
        """A new server protocol on a :class:`FrameTransport` (``connectionMade`` done).

        A connection the factory refuses (``buildProtocol`` gives None) comes back
        as a protocol never connected, on a transport that is closed."""
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = FrameTransport()
        if proto is None:
            transport.connected = False
            return ChatServerProtocol(), transport
        assert isinstance(proto, ChatServerProtocol)
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def close(self) -> None:
        """Close the database pool and stop the hashing threads."""
        self.store.db.close()
        self.services.accounts.hasher.stop()


def send(proto: ChatServerProtocol, payload: dict[str, Any]) -> None:
    """Feed one complete frame to the protocol."""
    proto.dataReceived(frame(payload))


def hello(proto: ChatServerProtocol, transport: FrameTransport, request_id: int = 1) -> Frame:
    """Send ``session.hello`` and return its (synchronous) answer."""
    send(proto, {"id": request_id, "op": "session.hello",
                 "args": {"protocol": 1, "client": "harness"}})
    answers = [f for f in transport.frames if f.get("id") == request_id]
    assert answers, "session.hello was not answered synchronously"
    return answers[-1]


async def build_harness(tmp_path: Path, *, synchronous: bool = False,
                        **overrides: Any) -> Harness:
    """Wire store → services → realm → portal → factory with a fake clock.

    Args:
        tmp_path: directory for the SQLite file.
        synchronous: run the database, disk and Argon2 work in the caller's
            thread (:class:`~tests.support.synchronous.SynchronousReactor`,
            which is then also the clock) instead of the reactor's threads.
        overrides: :class:`ServerConfig` fields to change from the test defaults.
    """
    config = dataclasses.replace(test_config(tmp_path / "data"), **overrides)
    threads: Any
    hasher: PasswordHasher
    if synchronous:
        clock = threads = SynchronousReactor()
        database = Database(SqliteEngine(tmp_path / "harness.db"), threads)
        # The pool starts "when the reactor runs", which a memory reactor never
        # does: give it the synchronous pool and start it now.
        database.pool.threadpool = threads.threadpool
        database.pool.start()
        hasher = SynchronousHasher(threads, config.argon2_time_cost, config.argon2_memory_kib)
    else:
        clock = MemoryReactorClock()
        threads = reactor
        database = Database(SqliteEngine(tmp_path / "harness.db"), reactor)
        hasher = PasswordHasher(reactor, config.argon2_time_cost, config.argon2_memory_kib)
    store = ChatStore(database)
    await store.db.migrate()
    fanout = LocalFanout()
    fanout.load_memberships(await store.all_memberships())
    fanout.load_blocks(await store.all_blocks())
    files = FileService(store, clock, threads, tmp_path / "files")
    users = UserService(store, fanout, clock, files=files)
    accounts = AccountService(store, hasher, clock, config.open_registration,
                              config.token_lifetime, fanout, config.registrations_per_hour,
                              config.tls_client_cert_login)
    services = Services(
        accounts=accounts,
        users=users,
        rooms=RoomService(store, fanout, users, clock, config.max_frame, config.max_rooms,
                          config.max_invites),
        messages=MessageService(store, fanout, clock),
        files=files,
        calls=CallService(store, fanout, clock),
        feed=FeedService(store, fanout, users, clock, config.max_frame),
        admin=AdminService(store, fanout, users, accounts, files, clock),
    )
    realm = ChatRealm(services, fanout, clock, config.single_session,
                      config.tls_client_cert_login, config.max_sessions_per_user)
    portal = Portal(realm, [PasswordChecker(store, hasher, LoginGuard(store, clock)),
                            TokenChecker(store, clock), AllowAnonymousAccess()])
    factory = ChatServerFactory(config, portal, services, clock)
    factory.coalescer = None  # frames appear on the transport as they are sent
    factory.jitter = lambda: 1.0  # login deadlines exactly login_timeout
    return Harness(config, clock, store, services, fanout, factory)


def build_synchronous_harness(tmp_path: Path, **overrides: Any) -> Harness:
    """:func:`build_harness` with ``synchronous=True``, built without a running
    reactor (fuzz targets, Hypothesis tests)."""
    return run_now(build_harness(tmp_path, synchronous=True, **overrides))
