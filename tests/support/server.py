"""A real chatnet server in the test process: TLS on loopback, a real SQLite file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor

from chatnet.client.connection import ChatConnection, connect
from chatnet.config import ServerConfig
from chatnet.server import ChatnetService

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
