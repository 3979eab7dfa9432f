"""FrameDecoder (chatnet/wire/framing.py): reassembly and the work it does.

The work test counts bytes copied rather than timing anything: Twisted's
``Int32StringReceiver`` copies its whole buffer on every read, which makes a
frame dribbled in one-byte pieces cost the square of its size.
"""

from __future__ import annotations

import pytest
from twisted.protocols.basic import Int32StringReceiver

from chatnet.wire.framing import FrameDecoder, FrameError, encode_frame


def frames(decoder: FrameDecoder) -> list[bytes]:
    found = []
    while (payload := decoder.next_frame()) is not None:
        found.append(payload)
    return found


def test_frames_cut_anywhere_come_out_whole_and_in_order():
    """Three frames fed in pieces of every size from 1 to 9 bytes come out intact."""
    payloads = [b"a", b"hello world" * 5, bytes(range(256))]
    stream = b"".join(encode_frame(p) for p in payloads)
    for size in range(1, 10):
        decoder = FrameDecoder(1024)
        got: list[bytes] = []
        for start in range(0, len(stream), size):
            decoder.feed(stream[start:start + size])
            got += frames(decoder)
        assert got == payloads, size
        assert decoder.buffered == 0


def test_a_length_over_the_limit_is_refused_before_the_payload_arrives():
    """The length prefix alone is enough to refuse a frame over max_length."""
    decoder = FrameDecoder(100)
    decoder.feed((101).to_bytes(4, "big"))
    with pytest.raises(FrameError) as caught:
        decoder.next_frame()
    assert caught.value.too_large and caught.value.length == 101


def test_an_empty_frame_is_an_error():
    """Length 0 is invalid (PROTOCOL.md 1)."""
    decoder = FrameDecoder(100)
    decoder.feed(b"\x00\x00\x00\x00")
    with pytest.raises(FrameError) as caught:
        decoder.next_frame()
    assert not caught.value.too_large


def test_the_limit_can_be_raised_between_frames():
    """A server raises max_length after login; the next frame may then be larger."""
    decoder = FrameDecoder(10)
    decoder.feed(encode_frame(b"0123456789") + encode_frame(b"x" * 50))
    assert decoder.next_frame() == b"0123456789"
    with pytest.raises(FrameError):
        decoder.next_frame()
    decoder.max_length = 100
    assert decoder.next_frame() == b"x" * 50


def test_a_paused_reader_leaves_frames_buffered():
    """Frames not asked for stay in the decoder, in order, however many bytes follow."""
    decoder = FrameDecoder(1000)
    decoder.feed(encode_frame(b"one") + encode_frame(b"two"))
    assert decoder.next_frame() == b"one"
    decoder.feed(encode_frame(b"three"))
    assert frames(decoder) == [b"two", b"three"]


def test_a_frame_dribbled_byte_by_byte_costs_linear_work():
    """A 256 KiB frame fed one byte at a time is copied a small constant number of
    times (at most 3 times its size), not once per byte received."""
    size = 256 * 1024
    stream = encode_frame(b"z" * size) + encode_frame(b"next")
    decoder = FrameDecoder(1024 * 1024)
    got = []
    for i in range(len(stream)):
        decoder.feed(stream[i:i + 1])
        got += frames(decoder)
    assert [len(p) for p in got] == [size, 4]
    assert decoder.copied <= 3 * len(stream)


def test_twisteds_receiver_would_do_quadratic_work():
    """The reason for FrameDecoder: Int32StringReceiver rebuilds its buffer on every
    read, so the bytes it handles grow with the square of a dribbled frame's size.
    (Counted through the size of the buffer it holds at each read.)"""

    class Counting(Int32StringReceiver):
        MAX_LENGTH = 1024 * 1024
        handled = 0

        def dataReceived(self, data: bytes) -> None:
            self.handled += len(self._unprocessed) + len(data)
            super().dataReceived(data)

        def stringReceived(self, string: bytes) -> None:
            pass

    receiver = Counting()
    stream = encode_frame(b"z" * 16 * 1024)
    for i in range(len(stream)):
        receiver.dataReceived(stream[i:i + 1])
    assert receiver.handled > 100 * len(stream)
