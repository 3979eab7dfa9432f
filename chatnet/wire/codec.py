"""msgpack payloads and length-prefixed frames (PROTOCOL.md sections 1 and 2).

Events are encoded once into complete frames (length prefix included) so that
fan-out writes the same bytes to every recipient without re-encoding.
"""

from __future__ import annotations

from typing import Any

import msgpack

from chatnet.wire.framing import encode_frame


def pack(payload: dict[str, Any]) -> bytes:
    """Encode one payload map as msgpack (str as UTF-8 str, bytes as bin)."""
    data: bytes = msgpack.packb(payload, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode one msgpack payload.

    Raises:
        ValueError: not exactly one valid msgpack object, or invalid UTF-8.
    """
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
            TypeError) as exc:
        raise ValueError(f"not a msgpack payload: {exc}") from exc


def frame(payload: dict[str, Any]) -> bytes:
    """Encode a payload as a complete frame: 4-byte big-endian length, then msgpack."""
    return encode_frame(pack(payload))


def event_frame(event: str, data: dict[str, Any]) -> bytes:
    """A complete frame for the event ``{"event": event, "data": data}`` (PROTOCOL.md 2)."""
    return frame({"event": event, "data": data})


def result_frame(request_id: int, result: dict[str, Any]) -> bytes:
    """A complete frame answering request ``request_id`` with ``result``."""
    return frame({"id": request_id, "result": result})


def error_frame(request_id: int, error: dict[str, Any]) -> bytes:
    """A complete frame answering request ``request_id`` with ``error`` (a code/message map)."""
    return frame({"id": request_id, "error": error})
