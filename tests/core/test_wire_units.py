"""TokenBucket (chatnet/wire/limits.py) and Outbox (chatnet/wire/outbox.py), without a network."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from chatnet.fanout import LocalFanout
from chatnet.interfaces import IFanout
from chatnet.wire.codec import event_frame, frame, unpack
from chatnet.wire.limits import TokenBucket
from chatnet.wire.outbox import Outbox

# -- TokenBucket -------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses():
    """A full bucket allows ``burst`` tokens at once, then refuses without spending."""
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    assert [bucket.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take(1)
    assert wait == 0.5  # one token at 2 tokens/s
    assert bucket.take(1) == 0.5  # a refusal spent nothing


def test_bucket_refills_at_its_rate():
    """Tokens come back at ``rate`` per second of the injected clock."""
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    for _ in range(3):
        bucket.take(1)
    clock.advance(0.5)
    assert bucket.take(1) == 0.0
    assert bucket.take(1) > 0


def test_bucket_never_holds_more_than_burst():
    """A long pause refills the bucket only up to ``burst``."""
    clock = Clock()
    bucket = TokenBucket(rate=10.0, burst=2.0, clock=clock)
    clock.advance(3600)
    assert bucket.take(2) == 0.0
    assert bucket.take(1) == pytest.approx(0.1)


def test_bucket_costs_are_fractional():
    """An op may cost less or more than one token; the wait reflects the shortfall."""
    clock = Clock()
    bucket = TokenBucket(rate=1.0, burst=5.0, clock=clock)
    assert bucket.take(5) == 0.0
    assert bucket.take(0.5) == 0.5
    clock.advance(0.5)
    assert bucket.take(0.5) == 0.0


# -- Outbox ------------------------------------------------------------------------------------


class SmallBufferTransport(StringTransport):
    """Pauses its producer once more than ``limit`` bytes are written and unread,
    as a real transport does when its send buffer passes ``bufferSize``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.limit and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        return data


def frames_in(data: bytes) -> list[object]:
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        out.append(unpack(data[4:4 + length]))
        data = data[4 + length:]
    return out


def make_outbox(transport, max_queued=1000):
    overflows = []
    outbox = Outbox(transport, max_queued, lambda: overflows.append(1))
    transport.registerProducer(outbox, True)
    return outbox, overflows


def test_outbox_writes_at_once_while_not_paused():
    """Frames go straight to the transport while it is not paused."""
    transport = StringTransport()
    outbox, _ = make_outbox(transport)
    outbox.send(frame({"n": 1}))
    outbox.send(frame({"n": 2}))
    assert frames_in(transport.value()) == [{"n": 1}, {"n": 2}]
    assert outbox.queued == 0


def test_outbox_queues_while_paused_and_flushes_in_order_on_resume():
    """While paused, frames wait; resumeProducing writes them in order."""
    transport = StringTransport()
    outbox, overflows = make_outbox(transport)
    outbox.pauseProducing()
    for n in range(3):
        outbox.send(frame({"n": n}))
    assert transport.value() == b""
    assert outbox.queued == 3 * len(frame({"n": 0}))
    outbox.resumeProducing()
    assert frames_in(transport.value()) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert outbox.queued == 0
    assert overflows == []


def test_what_one_paused_outbox_queues_stays_its_own():
    """Outboxes that were never paused share nothing they could write: frames one
    queues while paused never reach another connection, before or after a resume."""
    first, second = StringTransport(), StringTransport()
    paused, _ = make_outbox(first)
    running, _ = make_outbox(second)
    paused.pauseProducing()
    paused.send(frame({"to": "first"}))
    running.send(frame({"to": "second"}))
    assert frames_in(second.value()) == [{"to": "second"}] and not running.queue
    paused.resumeProducing()
    assert frames_in(first.value()) == [{"to": "first"}]
    assert frames_in(second.value()) == [{"to": "second"}]


def test_outbox_keeps_order_when_sending_while_a_queue_waits():
    """After a resume that was cut short, new frames queue behind the old ones."""
    transport = SmallBufferTransport(limit=30)
    outbox, _ = make_outbox(transport)
    outbox.pauseProducing()
    for n in range(6):
        outbox.send(frame({"n": n, "pad": "x" * 10}))
    outbox.resumeProducing()  # the transport pauses again after ~2 frames
    first = frames_in(transport.drain())
    assert outbox.paused and outbox.queue
    outbox.send(frame({"n": 6, "pad": "x" * 10}))
    assert transport.value() == b""  # queued behind the rest, not written ahead
    got = list(first)
    while outbox.queue:
        outbox.resumeProducing()
        got += frames_in(transport.drain())
    assert [f["n"] for f in got] == list(range(7))


def test_outbox_overflow_calls_on_overflow_once_and_drops_everything():
    """Passing ``max_queued`` calls on_overflow exactly once; later frames are dropped."""
    transport = StringTransport()
    one = frame({"pad": "x" * 90})
    outbox, overflows = make_outbox(transport, max_queued=3 * len(one))
    outbox.pauseProducing()
    for _ in range(3):
        outbox.send(one)
    assert overflows == []
    outbox.send(one)
    assert overflows == [1]
    assert outbox.dead and outbox.queued == 0 and not outbox.queue
    for _ in range(10):
        outbox.send(one)
    assert overflows == [1]
    outbox.resumeProducing()
    assert transport.value() == b""


def test_outbox_tracks_its_peak():
    """``peak`` records the largest queue seen, in bytes."""
    transport = StringTransport()
    outbox, _ = make_outbox(transport)
    outbox.pauseProducing()
    outbox.send(b"12345")
    outbox.send(b"678")
    outbox.resumeProducing()
    assert outbox.peak == 8


def test_outbox_stop_producing_drops_the_queue():
    """stopProducing (connection going away) discards what waits and refuses more."""
    transport = StringTransport()
    outbox, overflows = make_outbox(transport)
    outbox.pauseProducing()
    outbox.send(event_frame("msg", {"n": 1}))
    outbox.stopProducing()
    outbox.send(event_frame("msg", {"n": 2}))
    outbox.resumeProducing()
    assert transport.value() == b""
    assert overflows == []


def test_outbox_close_flushes_the_queue_and_unregisters():
    """close() writes what waits, refuses later frames and unregisters from the
    transport (a TLS transport completes its close only once no producer is left)."""
    transport = StringTransport()
    outbox, overflows = make_outbox(transport)
    outbox.pauseProducing()
    outbox.send(frame({"n": 1}))
    outbox.send(frame({"n": 2}))
    outbox.close()
    assert frames_in(transport.value()) == [{"n": 1}, {"n": 2}]
    assert transport.producer is None
    outbox.send(frame({"n": 3}))
    assert frames_in(transport.value()) == [{"n": 1}, {"n": 2}]
    assert overflows == []


def test_local_fanout_provides_its_interface():
    """LocalFanout implements IFanout (verified, not just declared)."""
    assert verifyObject(IFanout, LocalFanout())
