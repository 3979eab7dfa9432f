"""Writes gathered per reactor turn: WriteCoalescer and Outbox together, and the
fan-out's cached targets (LocalFanout)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport

from chatnet.fanout import LocalFanout
from chatnet.wire.outbox import Outbox, WriteCoalescer


def test_frames_of_one_turn_go_out_in_one_write_per_connection():
    """Three frames to each of two connections: nothing is written until the turn
    ends, then one write per connection with the frames in order."""
    clock = MemoryReactorClock()
    coalescer = WriteCoalescer(clock)
    writes: dict[str, list[bytes]] = {"a": [], "b": []}

    class Recorder(StringTransport):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def write(self, data: bytes) -> None:
            writes[self.name].append(data)

    boxes = {name: Outbox(Recorder(name), 1 << 20, lambda: None, coalescer) for name in writes}
    for i in range(3):
        for box in boxes.values():
            box.send(b"frame%d" % i)
    assert writes == {"a": [], "b": []}
    assert len(clock.getDelayedCalls()) == 1  # one flush for everyone
    clock.advance(0)
    assert writes == {"a": [b"frame0frame1frame2"], "b": [b"frame0frame1frame2"]}
    assert not clock.getDelayedCalls()


def test_a_large_gathering_is_written_without_waiting():
    """Past 64 KiB gathered, the outbox writes at once instead of holding more."""
    clock = MemoryReactorClock()
    transport = StringTransport()
    box = Outbox(transport, 1 << 24, lambda: None, WriteCoalescer(clock))
    box.send(b"x" * 40_000)
    assert transport.value() == b""
    box.send(b"y" * 40_000)
    assert transport.value() == b"x" * 40_000 + b"y" * 40_000
    clock.advance(0)  # the scheduled flush finds nothing left
    assert len(transport.value()) == 80_000


def test_close_writes_what_was_gathered_before_the_queue():
    """A closing outbox writes the gathered frames, then the queued ones, in order."""
    clock = MemoryReactorClock()
    transport = StringTransport()
    box = Outbox(transport, 1 << 20, lambda: None, WriteCoalescer(clock))
    transport.registerProducer(box, True)
    box.send(b"1")
    box.pauseProducing()
    box.send(b"2")
    box.close()
    assert transport.value() == b"12"
    box.send(b"3")
    clock.advance(0)
    assert transport.value() == b"12"


class FakeSession:
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.got: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.got.append(frame)


def test_room_targets_follow_sessions_and_memberships():
    """The cached per-room targets are rebuilt after sessions attach or detach and
    after memberships change, so nobody misses or wrongly gets a delivery."""
    fanout = LocalFanout()
    fanout.load_memberships([(1, 10), (1, 11)])
    a, b, c = FakeSession(10), FakeSession(11), FakeSession(12)
    fanout.attach(a)  # type: ignore[arg-type]
    assert fanout.deliver_room(1, b"m1") == 1
    fanout.attach(b)  # type: ignore[arg-type]
    fanout.attach(c)  # type: ignore[arg-type]
    assert fanout.deliver_room(1, b"m2") == 2
    fanout.member_added(1, 12)
    assert fanout.deliver_room(1, b"m3") == 3
    fanout.detach(a)  # type: ignore[arg-type]
    fanout.member_removed(1, 11)
    assert fanout.deliver_room(1, b"m4") == 1
    fanout.room_removed(1)
    assert fanout.deliver_room(1, b"m5") == 0
    assert a.got == [b"m1", b"m2", b"m3"]
    assert b.got == [b"m2", b"m3"]
    assert c.got == [b"m3", b"m4"]
