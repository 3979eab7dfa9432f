"""The sans-I/O core of the client: framing, request ids, response matching, events.

:class:`ClientCore` does no I/O. Bytes from the network go in through
:meth:`ClientCore.receive_data`; bytes to send come out of
:meth:`ClientCore.data_to_send`. Requests return *txaio* futures, so the same
core serves the Twisted transport (:mod:`chatnet.client.twisted`) and could
serve an asyncio one: call ``txaio.use_twisted()`` or ``txaio.use_asyncio()``
once before creating a core.

Wire format: PROTOCOL.md sections 1 (frames) and 2 (payloads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import txaio

from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.framing import FrameDecoder, FrameError, encode_frame

#: PROTOCOL.md 1: the default maximum frame (the server may announce another in hello).
DEFAULT_MAX_FRAME = 1024 * 1024


class ProtocolError(Exception):
    """The server sent something that is not PROTOCOL.md version 1; the
    connection cannot continue."""


class ConnectionClosed(ChatError):
    """The connection closed before the answer came (code ``unavailable``)."""

    def __init__(self, message: str = "connection closed") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


class TLSVerificationError(ConnectionClosed):
    """The TLS handshake failed (code ``unavailable``): the server's certificate is
    not trusted (unknown CA), has expired, does not match the host name or the
    pin, or the server refused us (e.g. no client certificate). The message says
    what is wrong and what to do, e.g. "the server's certificate has expired (not
    valid after 2026-01-01 00:00 UTC); ..."."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Event:
    """An event from the server: ``{"event": name, "data": data}`` (PROTOCOL.md 2)."""

    name: str
    data: dict[str, Any]


class ClientCore:
    """Client-side protocol state for one connection, without I/O.

    Args:
        max_frame: largest frame accepted from the server, in bytes.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._decoder = FrameDecoder(max_frame)
        self._outbound: list[bytes] = []
        self._next_id = 1
        self._pending: dict[int, tuple[str, Any]] = {}
        self.closed = False

    @property
    def max_frame(self) -> int:
        """The largest frame accepted from the server or sent to it, in bytes."""
        return self._decoder.max_length

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._decoder.max_length = value

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    # -- outgoing -------------------------------------------------------------------------

    def _queue(self, payload: dict[str, Any]) -> None:
        data = msgpack.packb(payload, use_bin_type=True)
        if len(data) > self.max_frame:
            raise ChatError(ErrorCode.TOO_LARGE,
                            f"request of {len(data)} bytes is over max_frame ({self.max_frame})")
        self._outbound.append(encode_frame(data))

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Queue a request (PROTOCOL.md 2) and return a future of its result.

        Args:
            op: the op name, e.g. ``"msg.send"``.
            args: its arguments.

        Returns:
            a txaio future that resolves to the ``result`` map, or is rejected
            with :class:`ChatError` (an error response) or
            :class:`ConnectionClosed` (the connection ended first).

        Raises:
            ChatError: ``too_large`` if the request is over ``max_frame``;
                :class:`ConnectionClosed` if the core is closed.
        """
        if self.closed:
            raise ConnectionClosed()
        request_id = self._next_id
        self._next_id += 1
        self._queue({"id": request_id, "op": op, "args": args or {}})
        future = txaio.create_future()
        self._pending[request_id] = (op, future)
        return future

    def notify(self, op: str, args: dict[str, Any] | None = None) -> None:
        """Queue a notification (no ``id``, never answered), e.g. ``msg.typing``."""
        if not self.closed:
            self._queue({"op": op, "args": args or {}})

    def data_to_send(self) -> bytes:
        """Everything queued for the server since the last call."""
        data = b"".join(self._outbound)
        self._outbound.clear()
        return data

    # -- incoming -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the server.

        Responses resolve or reject their futures (in arrival order) during
        this call; events are returned for the caller to dispatch.

        Returns:
            the events contained in the complete frames received.

        Raises:
            ProtocolError: a frame is over ``max_frame``, empty, or not a
                msgpack map; the caller must close the connection.
        """
        decoder = self._decoder
        decoder.feed(data)
        events: list[Event] = []
        while True:
            try:
                payload = decoder.next_frame()
            except FrameError as exc:
                raise ProtocolError(f"server sent a frame of {exc.length} bytes") from None
            if payload is None:
                break
            event = self._handle(payload)
            if event is not None:
                events.append(event)
        return events

    def _handle(self, payload: bytes) -> Event | None:
        try:
            message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception as exc:
            raise ProtocolError(f"server sent a payload that is not msgpack: {exc}") from exc
        if not isinstance(message, dict):
            raise ProtocolError("server sent a payload that is not a map")
        if "event" in message:
            data = message.get("data")
            return Event(str(message["event"]), data if isinstance(data, dict) else {})
        request_id = message.get("id")
        entry = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if entry is None:
            return None  # an answer to nothing we asked: ignore (PROTOCOL.md 2, be lenient)
        _op, future = entry
        if txaio.is_called(future):
            return None  # the caller gave up (cancelled) before the answer came
        if "error" in message:
            txaio.reject(future, ChatError.from_wire(message["error"]))
        else:
            result = message.get("result")
            txaio.resolve(future, result if isinstance(result, dict) else {})
        return None

    def connection_lost(self, reason: str = "connection closed",
                        error: type[ConnectionClosed] = ConnectionClosed) -> None:
        """Reject every pending request with ``error(reason)`` (a
        :class:`ConnectionClosed` or subclass such as :class:`TLSVerificationError`)."""
        self.closed = True
        pending, self._pending = self._pending, {}
        for _op, future in pending.values():
            if not txaio.is_called(future):
                txaio.reject(future, error(reason))
