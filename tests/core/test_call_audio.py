"""Voice through the client library (chatnet/client/calls.py, chatnet/client/opus.py):
a sine tone encoded with Opus on one side arrives, decoded, at the others with the
right pitch, in order, nothing lost, and the sender does not hear itself. Real
server over TLS; the jitter buffer's reordering and bounds as units.
"""

from __future__ import annotations

import array
import itertools
import math
from typing import Any

import pytest
import pytest_twisted

from chatnet.client.calls import CONCEAL, PLAY, WAIT, Calls, JitterBuffer
from tests.support.chat import room_with_members
from tests.support.events import EventLog, barrier, within

av = pytest.importorskip("av", reason="PyAV (chatnet[voice]) is needed for Opus")

from chatnet.client.opus import FRAME_SAMPLES, SAMPLE_RATE, OpusDecoder, OpusEncoder  # noqa: E402

#: Packets each speaker sends: 1 s of audio.
PACKETS = 50


def tone(freq: float, index: int) -> bytes:
    """Frame ``index`` (20 ms) of a sine at ``freq`` Hz, s16le mono 48 kHz."""
    start = index * FRAME_SAMPLES
    return array.array("h", (int(8000 * math.sin(2 * math.pi * freq * (start + i) / SAMPLE_RATE))
                             for i in range(FRAME_SAMPLES))).tobytes()


def pitch(pcm: bytes) -> float:
    """The dominant frequency of s16 PCM, Hz, from its zero crossings."""
    samples = array.array("h")
    samples.frombytes(pcm)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / SAMPLE_RATE)


async def talk(call: Any, freq: float) -> None:
    """Send PACKETS frames of a ``freq`` Hz tone through Opus."""
    encoder = OpusEncoder()
    for index in range(PACKETS):
        for packet in encoder.encode(tone(freq, index)):
            call.send(packet)


def heard(call: Any, username: str) -> tuple[bytes, dict[str, int]]:
    """Play out everything buffered from ``username``; the PCM and what the buffer saw."""
    decoder = OpusDecoder()
    pcm = bytearray()
    buffer = call.buffers[username]
    while len(buffer):
        state, packet = call.pull(username)
        if state != WAIT:
            pcm += decoder.decode(packet)
    return bytes(pcm), {"played": buffer.played, "lost": buffer.lost, "late": buffer.late,
                        "skipped": buffer.skipped}


async def in_a_call(server: Any, *names: str) -> list[tuple[Any, Calls, Any]]:
    """Logged-in users in one room; the first calls, the others accept.

    Returns:
        [(connection, Calls, VoiceCall)] in the order of ``names``.
    """
    conns = [await server.user(name) for name in names]
    for conn, name in zip(conns, names, strict=True):
        conn.log = EventLog(conn, name)
    room_id = await room_with_members(conns[0], *conns[1:], name="voice")
    # The tests play out after the fact, not every 20 ms: the jitter buffers
    # must hold a whole second rather than skip ahead.
    calls = [Calls(conn, jitter_limit=2 * PACKETS) for conn in conns]
    first = await calls[0].start(room_id)
    result = [(conns[0], calls[0], first)]
    for conn, mine in zip(conns[1:], calls[1:], strict=True):
        await conn.log.next("call.ring")
        result.append((conn, mine, await mine.accept(first.call_id)))
    for conn, _calls, _call in result:
        await barrier(conn)
    return result


@pytest_twisted.ensureDeferred
async def test_two_people_hear_each_others_tone(make_server):
    """alice sends 440 Hz, bob 880 Hz: each hears the other's pitch, every packet
    in order and none lost; neither hears themselves."""
    server = await make_server()
    (alice, _ac, alice_call), (bob, _bc, bob_call) = await in_a_call(server, "alice", "bob")
    assert alice_call.participants == {"bob"} and bob_call.participants == {"alice"}
    await talk(alice_call, 440.0)
    await talk(bob_call, 880.0)
    for conn in (alice, bob):
        await barrier(conn)
    await barrier(alice)  # bob's packets to alice went out before bob's ping answer
    for call, other, freq in ((bob_call, "alice", 440.0), (alice_call, "bob", 880.0)):
        assert call.received == {other: PACKETS}
        assert call.gaps == {} and call.reordered == {}
        pcm, seen = heard(call, other)
        assert seen == {"played": PACKETS, "lost": 0, "late": 0, "skipped": 0}
        # Skip the codec's start-up (first 100 ms) before measuring the pitch.
        assert abs(pitch(pcm[9600:]) - freq) < freq * 0.02


@pytest_twisted.ensureDeferred
async def test_three_people_each_hear_both_others(make_server):
    """In a group call every participant receives the other two, nobody themselves."""
    server = await make_server()
    members = await in_a_call(server, "alice", "bob", "carol")
    freqs = {"alice": 330.0, "bob": 550.0, "carol": 770.0}
    for conn, _calls, call in members:
        await talk(call, freqs[conn.login_result["username"]])
    for _round in range(2):
        for conn, _calls, _call in members:
            await barrier(conn)
    for conn, _calls, call in members:
        me = conn.login_result["username"]
        others = {name for name in freqs if name != me}
        assert set(call.received) == others
        assert call.gaps == {} and call.reordered == {}
        for name in others:
            pcm, seen = heard(call, name)
            assert seen["played"] == PACKETS and seen["lost"] == 0
            assert abs(pitch(pcm[9600:]) - freqs[name]) < freqs[name] * 0.02


@pytest_twisted.ensureDeferred
async def test_the_call_object_follows_the_call_to_its_end(make_server):
    """bob hangs up: alice's call is ended with reason hangup and she is free to call
    again; Calls keeps no ring once the call ended."""
    server = await make_server()
    (alice, alice_calls, alice_call), (_bob, bob_calls, bob_call) = \
        await in_a_call(server, "alice", "bob")
    assert alice_call.state == "active"
    await within(bob_call.hangup(), "hang up")
    await alice.log.next("call.ended")
    assert alice_call.state == "ended" and alice_call.reason == "hangup"
    assert alice_calls.current is None and bob_calls.ringing == {}
    assert (await within(alice_calls.start(alice_call.room_id), "call again")).call_id


@pytest_twisted.ensureDeferred
async def test_audio_over_a_second_connection(make_server):
    """alice's VoiceCall attaches a second connection: her tone reaches bob intact
    and bob's comes to her through it; her first connection carries no audio."""
    server = await make_server()
    (alice, _ac, alice_call), (bob, _bc, bob_call) = await in_a_call(server, "alice", "bob")
    media = await server.user("alice", register=False)
    await within(alice_call.attach(media), "attach")
    first_connection_audio: list[Any] = []
    alice.add_listener(lambda e: e.name == "call.audio" and first_connection_audio.append(e))
    await talk(alice_call, 440.0)
    await talk(bob_call, 880.0)
    for conn in (media, bob, alice, media):
        await barrier(conn)
    assert bob_call.received == {"alice": PACKETS} and alice_call.received == {"bob": PACKETS}
    assert first_connection_audio == []
    pcm, seen = heard(bob_call, "alice")
    assert seen["lost"] == 0 and abs(pitch(pcm[9600:]) - 440.0) < 440.0 * 0.02


# -- the jitter buffer -------------------------------------------------------------------------

def test_jitter_buffer_reorders_waits_and_conceals():
    """It waits for `depth` packets, plays them in seq order whatever the arrival
    order, conceals a missing one, drops one that comes after its turn, and waits
    again when it runs dry."""
    buffer = JitterBuffer(depth=3)
    buffer.push(1, b"b")
    buffer.push(0, b"a")
    assert buffer.pull() == (WAIT, None)
    buffer.push(3, b"d")
    assert [buffer.pull() for _ in range(3)] == [(PLAY, b"a"), (PLAY, b"b"), (CONCEAL, None)]
    buffer.push(2, b"late")
    assert buffer.pull() == (PLAY, b"d")
    assert buffer.pull() == (WAIT, None)
    assert (buffer.played, buffer.lost, buffer.late) == (3, 1, 1)


def test_jitter_buffer_bounds_its_delay():
    """Past `limit` packets buffered it skips the oldest: what plays next is at most
    `depth` packets behind the newest."""
    buffer = JitterBuffer(depth=3, limit=8)
    for seq in range(20):
        buffer.push(seq, bytes([seq]))
    assert len(buffer) <= 8
    state, packet = buffer.pull()
    assert state == PLAY and packet is not None and packet[0] >= 20 - 3 - 8
    assert buffer.skipped > 0
