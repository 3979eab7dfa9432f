"""Int32 framing without I/O, for both ends of the wire (PROTOCOL.md section 1).

A frame is a 4-byte unsigned big-endian length N, then N bytes of payload;
N = 0 is invalid and N over the receiver's limit is refused as soon as the
length arrives, before any of the payload is kept.

:class:`FrameDecoder` reassembles frames from whatever pieces the transport
hands over. Its work is linear in the bytes received however they are cut:
Twisted's ``IntNStringReceiver`` joins its whole buffer again on every read,
so a 1 MiB frame dribbled in 1-byte TLS records cost it about 10^12 byte
copies (seconds of CPU); here every byte is copied a small constant number
of times, which :attr:`FrameDecoder.copied` counts so that tests can check it.
"""

from __future__ import annotations

import struct

_PREFIX = struct.Struct("!I")
#: Bytes of the length prefix.
PREFIX_SIZE = _PREFIX.size


class FrameError(ValueError):
    """The peer sent a frame that breaks PROTOCOL.md section 1.

    Attributes:
        length: the announced payload length, in bytes.
        too_large: True when the length is over the limit (``too_large``);
            False for an empty frame (``bad_request``).
    """

    def __init__(self, message: str, length: int, too_large: bool) -> None:
        super().__init__(message)
        self.length = length
        self.too_large = too_large


def encode_frame(payload: bytes) -> bytes:
    """One complete frame: the 4-byte big-endian length of ``payload``, then ``payload``."""
    return _PREFIX.pack(len(payload)) + payload


class FrameDecoder:
    """Reassembles length-prefixed frames from a byte stream (sans-I/O).

    Feed bytes with :meth:`feed`; take complete payloads with :meth:`next_frame`
    one at a time (a reader that pauses simply stops asking, and the bytes wait
    here). The buffer is compacted only once the consumed part is at least as
    large as what is left, so compaction copies no more than was consumed.

    Args:
        max_length: the largest payload accepted, in bytes; may be changed at
            any time (a server raises it after login).

    Attributes:
        copied: bytes copied so far (received into the buffer, moved by
            compaction, and copied out as payloads): a measure of work done.
    """

    __slots__ = ("_buffer", "_position", "copied", "max_length")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._position = 0
        self.copied = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a frame."""
        return len(self._buffer) - self._position

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        buffer = self._buffer
        position = self._position
        if position:
            remaining = len(buffer) - position
            if remaining == 0:
                buffer.clear()
                self._position = 0
            elif position >= remaining:
                del buffer[:position]
                self.copied += remaining
                self._position = 0
        buffer += data
        self.copied += len(data)

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive.

        Raises:
            FrameError: the next frame's length is 0 or over ``max_length``;
                the stream cannot continue (nothing of it is consumed).
        """
        buffer = self._buffer
        position = self._position
        if len(buffer) - position < PREFIX_SIZE:
            return None
        (length,) = _PREFIX.unpack_from(buffer, position)
        if length == 0:
            raise FrameError("frame length 0 is invalid", 0, too_large=False)
        if length > self.max_length:
            raise FrameError(f"frame of {length} bytes is over the limit of {self.max_length}",
                             length, too_large=True)
        end = position + PREFIX_SIZE + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[position + PREFIX_SIZE:end])
        self.copied += length
        if end == len(buffer):
            # All consumed: free the storage now rather than at the next feed, so
            # an idle connection holds no buffer.
            buffer.clear()
            self._position = 0
        else:
            self._position = end
        return payload

    def clear(self) -> None:
        """Drop everything buffered (a connection that is closing)."""
        self._buffer = bytearray()
        self._position = 0
