"""The composition root: wires store → services → realm → portal → factory → listener.

Nothing else in chatnet imports the global reactor or builds these objects;
everything below receives what it needs through its constructor.

Construction makes the data directory private (umask 077, directory 0700,
files 0600; see :mod:`chatnet.datadir`) before anything is written to it, and
creates or renews the development certificates (without ``--tls-cert``).
Start-up (``startService``): migrate the database, load the membership map,
start the periodic services (expiry, upload clean-up, the password-change
watch, the token sweep, certificate renewal), start listening over TLS, and
with ``--assistant-url`` make the assistant's account and start the assistant,
which logs in over loopback TLS (:mod:`chatnet.assistant`).
Shutdown (``stopService``) runs in order: stop the assistant, stop accepting, send
``session.ended {shutdown}`` and close every connection (aborting stragglers
after a grace period), stop the periodic services, close the database pool.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application import service
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from chatnet.config import ServerConfig
from chatnet.cred.checkers import LoginGuard, PasswordChecker, PasswordHasher, TokenChecker
from chatnet.cred.realm import ChatRealm
from chatnet.datadir import prepare_data_dir, private_umask
from chatnet.fanout import LocalFanout
from chatnet.services import Services
from chatnet.services.accounts import AccountService, CredentialWatch, TokenSweeper
from chatnet.services.admin import AdminService
from chatnet.services.calls import CallService
from chatnet.services.feed import FeedService
from chatnet.services.files import FileService, UploadJanitor
from chatnet.services.messages import ExpiryService, MessageService, SearchIndexer
from chatnet.services.periodic import HeapTrim
from chatnet.services.retention import RetentionJob
from chatnet.services.rooms import RoomService
from chatnet.services.users import UserService
from chatnet.store import ChatStore, Database, IdGenerator, engine_from_url
from chatnet.wire.certs import ensure_dev_pki
from chatnet.wire.server import ChatServerFactory
from chatnet.wire.tls import (
    DevCertificateRenewal,
    DirectTLSFactory,
    ServerTLS,
    adopted_endpoint,
    listening_endpoint,
    log_dev_pki,
)

if TYPE_CHECKING:
    from chatnet.assistant.service import AssistantService

#: Seconds between heap trims (:class:`HeapTrim`): memory a flood's burst used
#: goes back to the operating system within this long after it ends.
HEAP_TRIM_INTERVAL = 10.0


def build_store(config: ServerConfig, reactor: Any) -> ChatStore:
    """The store for a configuration (SQLite in the data dir unless ``--database``)."""
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = engine_from_url(config.database, config.data_dir, config.durability,
                             config.db_busy_timeout)
    return ChatStore(Database(engine, reactor), IdGenerator(config.node_id))


def build_fanout(config: ServerConfig, store: ChatStore, reactor: Any) -> LocalFanout:
    """This node's fan-out: local, or with ``--redis`` a cluster's (its node
    number is the id generator's, claimed in Redis at start)."""
    if config.redis is None:
        return LocalFanout()
    from chatnet.fanout.cluster import ClusterFanout, RedisBus

    host, port, db = config.redis
    fanout: ClusterFanout

    def received(payload: bytes) -> None:
        fanout.received(payload)

    def resubscribed() -> None:
        fanout.resubscribed()

    bus = RedisBus(host, port, db, config.cluster, received, resubscribed, reactor,
                   config.redis_password)
    fanout = ClusterFanout(store.ids.node, bus, reactor,
                           ids=store.ids if config.node_id is None else None,
                           expiry=config.node_expiry)
    return fanout


class ChatnetService(service.MultiService):
    """The whole chatnet server as one twisted application service.

    Args:
        config: the validated configuration.
        reactor: the reactor (also the clock).

    Attributes:
        port: the listening port once started (``port.getHost().port`` is the
            number actually bound, useful with ``--port 0``).
        ready: fires with the listening port when start-up has finished, or
            fails with the start-up error.
        ca_path: the CA file clients should trust, when the development CA is used.
        tls: the listener's TLS settings (:class:`~chatnet.wire.tls.ServerTLS`).
        cert_renewal: the daily development-certificate check, or None with
            ``--tls-cert``.
        assistant: the assistant's service (PROTOCOL.md 11) once started, or None
            (no ``--assistant-url``); ``assistant.when_ready()`` fires when it
            has logged in.

    Raises:
        ConfigError: the data directory is writable by group or others, or
            belongs to another user (:func:`chatnet.datadir.prepare_data_dir`).
    """

    log = Logger()

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.ready: Deferred[IListeningPort] = Deferred()
        self.ca_path = None
        self.assistant: AssistantService | None = None
        self._binding: Deferred[IListeningPort] | None = None
        # Private before anything is created: the development CA's keys below,
        # the database, blobs.
        private_umask()
        database = config.database
        sqlite_file = [Path(database.removeprefix("sqlite:"))] if database.startswith(
            "sqlite:") else []
        tightened = prepare_data_dir(config.data_dir, sqlite_file)
        if tightened:
            self.log.warn(
                "took group and other access away from {count} path(s) they could read: "
                "{paths}", count=len(tightened),
                paths=", ".join(str(p) for p in tightened[:10])
                + (" …" if len(tightened) > 10 else ""))
        self.cert_renewal: DevCertificateRenewal | None = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls = ServerTLS(config.tls_cert, config.tls_key, config.tls_client_ca)
        else:
            tls_dir = config.data_dir / "tls"
            pki = ensure_dev_pki(
                tls_dir, datetime.datetime.fromtimestamp(reactor.seconds(), datetime.UTC))
            log_dev_pki(self.log, pki)
            self.ca_path = pki.ca_cert
            self.tls = ServerTLS(pki.server_cert, pki.server_key, config.tls_client_ca)
            self.cert_renewal = DevCertificateRenewal(tls_dir, self.tls, reactor)
        self.store = build_store(config, reactor)
        self.fanout = build_fanout(config, self.store, reactor)
        self.hasher = hasher = PasswordHasher(reactor, config.argon2_time_cost,
                                              config.argon2_memory_kib)
        self.files = FileService(self.store, reactor, reactor, config.data_dir / "files",
                                 config.max_file_size, config.user_quota)
        users = UserService(self.store, self.fanout, reactor, files=self.files,
                            max_frame=config.max_frame,
                            presence_room_limit=config.presence_room_limit)
        accounts = AccountService(self.store, hasher, reactor, config.open_registration,
                                  config.token_lifetime, self.fanout,
                                  config.registrations_per_hour,
                                  config.tls_client_cert_login)
        self.chat_services = Services(
            accounts=accounts,
            users=users,
            rooms=RoomService(self.store, self.fanout, users, reactor, config.max_frame,
                              config.max_rooms, config.max_invites),
            messages=MessageService(self.store, self.fanout, reactor, config.max_frame),
            files=self.files,
            calls=CallService(self.store, self.fanout, reactor),
            feed=FeedService(self.store, self.fanout, users, reactor, config.max_frame),
            admin=AdminService(self.store, self.fanout, users, accounts, self.files, reactor),
        )
        self.expiry = ExpiryService(self.store, self.fanout, reactor)
        self.search_indexer = SearchIndexer(self.store, reactor)
        self.store.compliance_log = config.compliance_log
        self.retention = (RetentionJob(self.store, self.files, reactor, config.retention_days)
                          if config.retention_days is not None else None)
        self.janitor = UploadJanitor(self.files, reactor, config.upload_expiry)
        self.credential_watch = CredentialWatch(self.store, self.fanout, reactor,
                                                config.credentials_poll)
        self.token_sweeper = TokenSweeper(self.store, reactor)
        self.heap_trim = HeapTrim(HEAP_TRIM_INTERVAL, reactor)
        realm = ChatRealm(self.chat_services, self.fanout, reactor, config.single_session,
                          config.tls_client_cert_login, config.max_sessions_per_user)
        self.login_guard = LoginGuard(self.store, reactor, self.fanout)
        passwords: Any = PasswordChecker(self.store, hasher, self.login_guard)
        tokens: Any = TokenChecker(self.store, reactor)
        if config.directory is not None:
            from chatnet.cred.directory import DirectoryChecker, DirectoryTokenChecker

            passwords = DirectoryChecker(config.directory, self.store, passwords,
                                         self.login_guard, reactor, reactor)
            tokens = DirectoryTokenChecker(tokens, self.store)
        portal = Portal(realm, [passwords, tokens, AllowAnonymousAccess()])
        self.factory = ChatServerFactory(config, portal, self.chat_services, reactor)
        publish_first = getattr(self.fanout, "flush_outgoing", None)
        if publish_first is not None and self.factory.coalescer is not None:
            # A cluster node publishes a turn's events before it writes to its own
            # connections, so that the other nodes fan out at the same time.
            self.factory.coalescer.first = publish_first
        from chatnet.metrics import HealthCheck, ServerMetrics

        self.health = HealthCheck(self)
        self.metrics: ServerMetrics | None = None
        self.metrics_port: IListeningPort | None = None
        if config.metrics_port is not None:
            self.metrics = self.factory.metrics = ServerMetrics(self)

    def startService(self) -> None:
        """Begin the asynchronous start-up; a failure is logged and stops the reactor.

        The umask is made private again here: twistd applies its own ``--umask``
        between ``makeService`` and ``startService``; a looser one is overridden.
        """
        previous = private_umask()
        if previous & 0o077 != 0o077:
            self.log.info("umask {previous} widened to {now}: chatnet's data stays private",
                          previous=f"{previous:04o}", now=f"{previous | 0o077:04o}")
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.chainDeferred(self.ready)
        self.ready.addErrback(self._start_failed)

    async def _start(self) -> IListeningPort:
        await self.store.db.migrate()
        indexed = await self.store.index_backlog()
        if indexed:
            self.log.info("search index: {count} earlier messages indexed", count=indexed)
        self.log.info("durability: {durability} (an acknowledged message survives {what})",
                      durability=self.config.durability,
                      what="a crash of this process, not a power loss or OS crash"
                      if self.config.durability == "process"
                      else "a crash of this process, a power loss or an OS crash")
        for warning in await self.store.db.durability_warnings(self.config.durability):
            self.log.warn("--durability {durability}: {warning}",
                          durability=self.config.durability, warning=warning)
        # In a cluster, subscribed before the maps are read: no change falls between.
        await self.fanout.start(self._load_maps)
        await self._load_maps()
        for timer in self._timers():
            timer.startService()
        self.port = await (self._binding or Deferred.fromCoroutine(self._bind()))
        self.port.startReading()  # type: ignore[attr-defined]
        host = self.port.getHost()
        self.log.info("chatnet listening on {address} (TLS)",
                      address=f"{getattr(host, 'host', '')}:{getattr(host, 'port', '')}")
        if self.metrics is not None:
            await self._listen_metrics()
        if self.config.assistant is not None:
            await self._start_assistant(getattr(self.port.getHost(), "port", self.config.port))
        return self.port

    def privilegedStartService(self) -> None:
        """Bind the listening socket while still privileged (``twistd --uid/--gid``
        then drops to the service's user), but accept nothing until start-up
        has finished: connections wait in the kernel's backlog meanwhile."""
        super().privilegedStartService()
        self._binding = Deferred.fromCoroutine(self._bind())

    async def _bind(self) -> IListeningPort:
        config = self.config
        if config.listen_fd is not None:
            endpoint = adopted_endpoint(self.reactor, config.listen_fd)
        elif config.listen is not None:
            endpoint = serverFromString(self.reactor, config.listen)
        else:
            endpoint = listening_endpoint(self.reactor, config.port, config.interface)
        port: IListeningPort = await endpoint.listen(
            DirectTLSFactory(self.tls, False, self.factory))
        port.stopReading()  # type: ignore[attr-defined]
        return port

    async def _listen_metrics(self) -> None:
        """Serve ``/healthz`` and ``/metrics`` on ``--metrics-port`` (plain HTTP)."""
        from chatnet.metrics import metrics_site

        assert self.metrics is not None and self.config.metrics_port is not None
        endpoint = listening_endpoint(self.reactor, self.config.metrics_port,
                                      self.config.metrics_interface)
        self.metrics_port = await endpoint.listen(metrics_site(self.metrics, self.health))
        host = self.metrics_port.getHost()
        self.log.info("health and metrics on http://{address}/healthz and /metrics",
                      address=f"{getattr(host, 'host', '')}:{getattr(host, 'port', '')}")

    async def _load_maps(self) -> None:
        """(Re)load the membership and block maps from the database."""
        self.fanout.load_memberships(await self.store.all_memberships())
        self.fanout.load_blocks(await self.store.all_blocks())

    async def _start_assistant(self, port: int) -> None:
        """Make (or re-key) the assistant's account, then start the bot on loopback."""
        from chatnet.assistant.service import start_inside_server

        assert self.config.assistant is not None
        self.assistant = await start_inside_server(
            self.config.assistant, self.reactor, self.store, self.hasher,
            self.config.interface, port, self.tls.cert_path)

    def _timers(self) -> tuple[service.Service, ...]:
        """The periodic services, started after migration and stopped after the
        sessions. Each process watches its own sessions and memory; the jobs on
        the shared data run where ``--no-jobs`` is not given."""
        timers: tuple[service.Service, ...] = (self.credential_watch, self.heap_trim)
        if self.config.jobs:
            timers += (self.expiry, self.janitor, self.token_sweeper, self.search_indexer)
            if self.retention is not None:
                timers += (self.retention,)
        if self.cert_renewal is not None:
            timers += (self.cert_renewal,)
        return timers

    def _start_failed(self, failure: Any) -> None:
        self.log.failure("chatnet could not start", failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop in order: assistant, listener, sessions, expiry, database."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        service.Service.stopService(self)
        if self.assistant is not None and self.assistant.running:
            await self.assistant.stopService()
        if self.port is not None:
            stopped = self.port.stopListening()
            if stopped is not None:
                await stopped
            self.port = None
        await self.factory.end_all_sessions("shutdown", self.config.shutdown_grace)
        for timer in self._timers():
            if timer.running:
                await timer.stopService()
        await self.fanout.stop()
        if self.metrics_port is not None:
            stopped = self.metrics_port.stopListening()
            self.metrics_port = None
            if stopped is not None:
                await stopped
        self.store.db.close()
        self.hasher.stop()
        self.log.info("chatnet stopped")
