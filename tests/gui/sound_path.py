"""The desktop client's call audio through a real sound server, as a program of its
own (run by tests/gui/test_call_sound.py, which starts PulseAudio and sets
``PULSE_SERVER``: QtMultimedia connects to the sound server once per process).

A server runs in this process; alice's side of the call is the desktop client's
:class:`qtclient.audio.CallAudio` on the default microphone and speaker, bob's
is the client library. What alice's microphone hears goes to bob, whose packets
are decoded here; bob sends an 880 Hz tone, which alice's speaker plays (the
test records it from the sound server). Prints one JSON line: what bob heard
(its pitch) and how many packets went each way.

    PULSE_SERVER=unix:/path/pulse.sock python -m tests.gui.sound_path SECONDS

With ``ring`` as its first argument it rings instead (the incoming-call
:class:`qtclient.audio.Ringer` on the default speaker) for SECONDS, and prints
whether a sound device carried the ring.

    PULSE_SERVER=unix:/path/pulse.sock python -m tests.gui.sound_path ring SECONDS
"""

from __future__ import annotations

import array
import itertools
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import qtclient.qt  # noqa: F401  (pins the binding before qreactor imports qtpy)
from qtclient.qt import QApplication

RATE = 48_000


def tone(freq: float, index: int) -> bytes:
    """Frame ``index`` (20 ms) of a ``freq`` Hz sine, s16le mono 48 kHz."""
    return array.array("h", (int(12000 * math.sin(2 * math.pi * freq * (index * 960 + i) / RATE))
                             for i in range(960))).tobytes()


def pitch(pcm: bytes) -> float:
    """Dominant frequency of s16 mono PCM from its zero crossings, Hz."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE) if samples else 0.0


async def run(reactor: Any, seconds: float) -> dict[str, Any]:
    """The call; what each side got."""
    from twisted.internet.task import LoopingCall, deferLater

    from chatnet.client.calls import Calls
    from chatnet.client.opus import OpusDecoder, OpusEncoder
    from qtclient.audio import CallAudio
    from tests.support.chat import room_with_members
    from tests.support.server import start_server, test_config

    server = await start_server(test_config(Path(tempfile.mkdtemp()) / "data"))
    try:
        alice, bob = await server.user("alice"), await server.user("bob")
        room_id = await room_with_members(alice, bob, name="sound")
        alice_calls, bob_calls = Calls(alice, jitter_limit=8), Calls(bob, jitter_limit=100_000)
        alice_call = await alice_calls.start(room_id)
        while alice_call.call_id not in bob_calls.ringing:
            await deferLater(reactor, 0.01, lambda: None)
        bob_call = await bob_calls.accept(alice_call.call_id)
        audio = CallAudio(alice_call)
        encoder, index = OpusEncoder(), itertools.count()

        def bob_speaks() -> None:
            for packet in encoder.encode(tone(880.0, next(index))):
                bob_call.send(packet)

        speaking = LoopingCall(bob_speaks)
        speaking.clock = reactor
        speaking.start(0.02)
        await deferLater(reactor, seconds, lambda: None)
        speaking.stop()
        audio.stop()
        decoder = OpusDecoder()
        heard = bytearray()
        buffer = bob_call.buffers.get("alice")
        while buffer is not None and len(buffer):
            state, packet = buffer.pull()
            if state != "wait":
                heard += decoder.decode(packet)
        return {"microphone": audio.microphone, "speaker": audio.speaker,
                "bob_received": bob_call.received.get("alice", 0),
                "alice_received": alice_call.received.get("bob", 0),
                # The last half of what bob heard: past start-up in every device.
                "bob_heard_hz": round(pitch(bytes(heard[len(heard) // 2:])), 1)}
    finally:
        await server.stop()


def ring(seconds: float) -> None:
    """Ring for ``seconds`` on the default speaker; print the result as JSON."""
    from qtclient.audio import Ringer
    from qtclient.qt import QTimer

    app = QApplication(["sound_path"])
    ringer = Ringer()
    ringer.start()
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    result = {"speaker": ringer.speaker, "playing": ringer.playing}
    ringer.stop()
    print(json.dumps(result))


def main() -> None:
    """Run the call under the Qt reactor; print the result as JSON."""
    if sys.argv[1:2] == ["ring"]:
        ring(float(sys.argv[2]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    app = QApplication(["sound_path"])
    import qreactor

    qreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    result: dict[str, Any] = {}

    def done(value: Any) -> None:
        result.update(value if isinstance(value, dict) else {"error": str(value)})
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: Deferred.fromCoroutine(run(reactor, seconds)).addBoth(done))
    reactor.run()  # type: ignore[attr-defined]
    del app
    print(json.dumps(result))


if __name__ == "__main__":
    main()
