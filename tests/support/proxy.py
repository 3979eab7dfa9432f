"""A TCP proxy on loopback that a test can cut and restore: the network between
the server and a real PostgreSQL failing, without stopping the machine's shared
database (Twisted's own ``portforward``)."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.protocols import portforward


class _Server(portforward.ProxyServer):
    """The side chatnet connects to; aborting it closes the other side too."""

    def connectionMade(self) -> None:
        self.factory.owner.connections.add(self)  # type: ignore[attr-defined]
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.owner.connections.discard(self)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``target_port``.

    Attributes:
        port: where clients connect (the same after :meth:`restore`).
        connections: the accepted side of every proxied connection.
    """

    def __init__(self, host: str, target_port: int) -> None:
        self.connections: set[Any] = set()
        self.factory = portforward.ProxyFactory(host, target_port)
        self.factory.protocol = _Server
        self.factory.owner = self  # type: ignore[attr-defined]
        self.factory.noisy = False
        self._port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port: int = self._port.getHost().port
        self._listening = True

    async def cut(self) -> None:
        """Stop accepting and abort every proxied connection."""
        if self._listening:
            await self._port.stopListening()
            self._listening = False
        for conn in list(self.connections):
            conn.transport.abortConnection()

    def restore(self) -> None:
        """Accept again on the same port."""
        if not self._listening:
            self._port = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")
            self._listening = True

    async def close(self) -> None:
        """Stop for good."""
        await self.cut()
