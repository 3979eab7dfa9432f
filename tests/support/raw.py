"""Bytes the well-behaved client library would never send, and what came back.

These helpers write straight to the TLS transport of a
:class:`~chatnet.client.connection.ChatConnection` (the connection stays a
real, verified TLS connection; only the payload is hand-made), and record the
raw bytes the server sends, to check that nothing leaks (e.g. a traceback).
Plain-TCP helpers talk to the TLS port without TLS at all.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from chatnet.client.connection import ChatConnection

_PREFIX = struct.Struct("!I")


def framed(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length prefix."""
    return _PREFIX.pack(len(payload)) + payload


def packed(obj: Any) -> bytes:
    """Any msgpack value (map or not) as a complete frame."""
    return framed(msgpack.packb(obj, use_bin_type=True))


def send_raw(conn: ChatConnection, data: bytes) -> None:
    """Write ``data`` as is on the connection's TLS transport."""
    assert conn.transport is not None
    conn.transport.write(data)


class RawTap:
    """Records every byte the server sends on a connection (after TLS decryption).

    Args:
        conn: the connection to tap; its normal processing continues.
    """

    def __init__(self, conn: ChatConnection) -> None:
        self.data = bytearray()
        original = conn.dataReceived

        def tap(data: bytes) -> None:
            self.data += data
            original(data)

        conn.dataReceived = tap  # type: ignore[method-assign]


class PlainClient(Protocol):
    """A plain TCP client (no TLS) that records what it gets and when it is closed."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.reason: Failure | None = None
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.reason = reason
        self.lost.callback(None)


async def plain_connect(port: int) -> PlainClient:
    """Open a plain TCP connection to 127.0.0.1:``port``."""
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = PlainClient()
    await endpoints.connectProtocol(endpoint, client)
    return client
