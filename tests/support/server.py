"""A real chatnet server in the test process: TLS on loopback, a real SQLite file."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from chatnet.client.connection import ChatConnection, connect
from chatnet.config import ServerConfig
from chatnet.server import ChatnetService
from tests.support.events import SETTLE

PASSWORD = "correct horse battery"


def test_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    """A server configuration for tests: loopback, free port, cheap Argon2."""
    base = ServerConfig(port=0, interface="127.0.0.1", data_dir=data_dir,
                        open_registration=True, argon2_time_cost=1, argon2_memory_kib=8,
                        shutdown_grace=2.0, credentials_poll=0.1,
                        registrations_per_hour=10_000, connects_per_address=10_000)
    return dataclasses.replace(base, **overrides)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class RunningServer:
    """A started :class:`ChatnetService` and how to reach it."""

    service: ChatnetService
    port: int
    ca: Path

    async def connect(self, hello: bool = True) -> ChatConnection:
        """A new TLS connection that verified the server against the dev CA."""
        return await connect(reactor, "localhost", self.port, self.ca, hello=hello)

    async def user(self, username: str, password: str = PASSWORD,
                   register: bool = True) -> ChatConnection:
        """A connection logged in as ``username`` (registered first if asked)."""
        conn = await self.connect()
        if register:
            await conn.register(username, password)
        await conn.login(username, password)
        return conn

    async def stop(self) -> None:
        """Stop the service (ordered shutdown)."""
        if self.service.running:
            await self.service.stopService()


async def start_server(config: ServerConfig) -> RunningServer:
    """Start a server with ``config`` and wait until it listens."""
    service = ChatnetService(config, reactor)
    service.startService()
    port = await service.ready
    assert service.ca_path is not None or config.tls_cert is not None
    return RunningServer(service, port.getHost().port,
                         service.ca_path or config.data_dir / "tls" / "ca.pem")


@dataclass
class RunningCluster:
    """Two started nodes of one cluster, used like one :class:`RunningServer`:
    each new connection goes to the next node in turn, so consecutive users of a
    test are on different nodes and every interaction between them crosses Redis.

    Attributes:
        nodes: the nodes; ``service``, ``port`` and ``ca`` are the first one's.
    """

    nodes: list[RunningServer]
    _turn: int = 0

    def __post_init__(self) -> None:
        self._seen: dict[tuple[int, str], int] = {}
        for node in self.nodes:
            fanout: Any = node.service.fanout
            fanout.node_handlers["test.settle"] = self._marker_seen(fanout.node)
        SETTLE.append(self.settle)

    def _marker_seen(self, receiver: int) -> Any:
        def seen(origin: int, token: str) -> None:
            self._seen[(receiver, token)] = self._seen.get((receiver, token), 0) + 1
        return seen

    async def settle(self) -> None:
        """Every node publishes a marker; wait until every other node received
        every marker. One channel keeps each publisher's order, so by then
        everything any node published earlier has reached every node."""
        token = secrets.token_hex(4)
        for node in self.nodes:
            node.service.fanout.send_all("test.settle", token)  # type: ignore[attr-defined]
        others = len(self.nodes) - 1
        receivers = [node.service.fanout.node for node in self.nodes]  # type: ignore[attr-defined]
        while any(self._seen.get((r, token), 0) < others for r in receivers):
            await deferLater(reactor, 0.002, lambda: None)
        for r in receivers:
            self._seen.pop((r, token), None)

    @property
    def service(self) -> ChatnetService:
        return self.nodes[0].service

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def ca(self) -> Path:
        return self.nodes[0].ca

    def _next(self) -> RunningServer:
        node = self.nodes[self._turn % len(self.nodes)]
        self._turn += 1
        return node

    async def connect(self, hello: bool = True) -> ChatConnection:
        """A new connection to the next node."""
        return await self._next().connect(hello)

    async def user(self, username: str, password: str = PASSWORD,
                   register: bool = True) -> ChatConnection:
        """A connection logged in as ``username`` on the next node."""
        return await self._next().user(username, password, register)

    async def stop_settling(self) -> None:
        """Let :func:`~tests.support.events.barrier` forget this cluster."""
        if self.settle in SETTLE:
            SETTLE.remove(self.settle)

    async def stop(self) -> None:
        """Stop every node."""
        await self.stop_settling()
        for node in reversed(self.nodes):
            await node.stop()
