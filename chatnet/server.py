"""The composition root: wires store → services → realm → portal → factory → listener.

Nothing else in chatnet imports the global reactor or builds these objects;
everything below receives what it needs through its constructor.

Start-up (``startService``): migrate the database, load the membership map,
start listening over TLS. Shutdown (``stopService``) runs in order: stop
accepting, send ``session.ended {shutdown}`` and close every connection
(aborting stragglers after a grace period), stop the expiry loop, close the
database pool.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from chatnet.config import ServerConfig
from chatnet.cred.checkers import PasswordChecker, PasswordHasher, TokenChecker
from chatnet.cred.realm import ChatRealm
from chatnet.fanout import LocalFanout
from chatnet.services import Services
from chatnet.services.accounts import AccountService
from chatnet.services.files import FileService, UploadJanitor
from chatnet.services.messages import ExpiryService, MessageService
from chatnet.services.rooms import RoomService
from chatnet.services.users import UserService
from chatnet.store import ChatStore, Database, IdGenerator, engine_from_url
from chatnet.wire.certs import ensure_dev_pki
from chatnet.wire.server import ChatServerFactory
from chatnet.wire.tls import DirectTLSFactory, listening_endpoint, server_tls_options


def build_store(config: ServerConfig, reactor: Any) -> ChatStore:
    """The store for a configuration (SQLite in the data dir unless ``--database``)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_from_url(config.database, config.data_dir)
    return ChatStore(Database(engine, reactor), IdGenerator(config.node_id))


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
    """

    log = Logger()

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.ready: Deferred[IListeningPort] = Deferred()
        self.ca_path = None
        if config.tls_cert is not None and config.tls_key is not None:
            cert, key = config.tls_cert, config.tls_key
        else:
            pki = ensure_dev_pki(config.data_dir / "tls")
            cert, key, self.ca_path = pki.server_cert, pki.server_key, pki.ca_cert
            self.log.info(
                "{what} development CA: clients should trust {ca} "
                "(SHA-256 fingerprint {fingerprint})",
                what="created" if pki.created else "using", ca=str(pki.ca_cert.resolve()),
                fingerprint=pki.ca_fingerprint)
        self.tls_options = server_tls_options(cert, key, config.tls_client_ca)
        self.store = build_store(config, reactor)
        self.fanout = LocalFanout()
        self.hasher = hasher = PasswordHasher(reactor, config.argon2_time_cost,
                                              config.argon2_memory_kib)
        users = UserService(self.store, self.fanout, reactor)
        self.files = FileService(self.store, reactor, reactor, config.data_dir / "files",
                                 config.max_file_size, config.user_quota)
        self.chat_services = Services(
            accounts=AccountService(self.store, hasher, reactor, config.open_registration,
                                    config.token_lifetime),
            users=users,
            rooms=RoomService(self.store, self.fanout, users, reactor, config.max_frame,
                              config.max_rooms, config.max_invites),
            messages=MessageService(self.store, self.fanout, reactor, config.max_frame),
            files=self.files,
        )
        self.expiry = ExpiryService(self.store, self.fanout, reactor)
        self.janitor = UploadJanitor(self.files, reactor, config.upload_expiry)
        realm = ChatRealm(self.chat_services, self.fanout, reactor, config.single_session)
        portal = Portal(realm, [PasswordChecker(self.store, hasher),
                                TokenChecker(self.store, reactor), AllowAnonymousAccess()])
        self.factory = ChatServerFactory(config, portal, self.chat_services, reactor)

    def startService(self) -> None:
        """Begin the asynchronous start-up; a failure is logged and stops the reactor."""
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.chainDeferred(self.ready)
        self.ready.addErrback(self._start_failed)

    async def _start(self) -> IListeningPort:
        await self.store.db.migrate()
        self.fanout.load_memberships(await self.store.all_memberships())
        self.expiry.startService()
        self.janitor.startService()
        endpoint = listening_endpoint(self.reactor, self.config.port, self.config.interface)
        self.port = await endpoint.listen(DirectTLSFactory(self.tls_options, False, self.factory))
        self.log.info("chatnet listening on {interface}:{port} (TLS)",
                      interface=self.config.interface,
                      port=getattr(self.port.getHost(), "port", self.config.port))
        return self.port

    def _start_failed(self, failure: Any) -> None:
        self.log.failure("chatnet could not start", failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop in order: listener, sessions, expiry, database."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        service.Service.stopService(self)
        if self.port is not None:
            stopped = self.port.stopListening()
            if stopped is not None:
                await stopped
            self.port = None
        await self.factory.end_all_sessions("shutdown", self.config.shutdown_grace)
        for timer in (self.expiry, self.janitor):
            if timer.running:
                await timer.stopService()
        self.store.db.close()
        self.hasher.stop()
        self.log.info("chatnet stopped")
