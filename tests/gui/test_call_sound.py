"""The real audio path of a call: a PulseAudio sound server (user mode, started here)
with two null sinks, ``speaker`` (the default output) and ``micsink``, whose
monitor is remapped into the default input (``loopmic``). A 440 Hz tone played
into ``micsink`` is alice's microphone; what her speaker plays is recorded from
``speaker.monitor``. The call runs in a program of its own
(``tests/gui/sound_path.py``): QtMultimedia connects to a sound server once
per process, and the rest of the GUI suite runs without one.
"""

from __future__ import annotations

import array
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RATE = 48_000


def _pitch(pcm: bytes) -> float:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE) if samples else 0.0


def _power(pcm: bytes, hz: float) -> float:
    """Power of s16 mono PCM at one frequency (the Goertzel algorithm)."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    coefficient = 2 * math.cos(2 * math.pi * hz / RATE)
    before = earlier = 0.0
    for value in samples:
        before, earlier = value + coefficient * before - earlier, before
    return before * before + earlier * earlier - coefficient * before * earlier


#: pacat / parec's sample format: what the calls and the ring use.
RAW = ["--format=s16le", f"--rate={RATE}", "--channels=1"]


def _run_recording_speaker(env: dict[str, str], tmp_path: Path,
                           *args: str) -> tuple[dict[str, Any], array.array[int]]:
    """Run ``python -m tests.gui.sound_path ARGS`` offscreen while recording the
    speaker's monitor; its JSON result line and the samples the speaker played."""
    recording = tmp_path / "speaker.raw"
    with recording.open("wb") as out:
        recorder = subprocess.Popen(["parec", "-d", "speaker.monitor", *RAW], stdout=out,
                                    env=env)
        try:
            run = subprocess.run(
                [sys.executable, "-m", "tests.gui.sound_path", *args], cwd=REPO,
                env={**env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True,
                text=True, timeout=120)
        finally:
            recorder.terminate()
            recorder.wait(10)
    assert run.returncode == 0, run.stderr[-2000:]
    played = array.array("h")
    data = recording.read_bytes()
    played.frombytes(data[: len(data) // 2 * 2])
    return json.loads(run.stdout.strip().splitlines()[-1]), played


@pytest.fixture
def sound_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio daemon for this test; the environment that reaches it."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("no sound server can run here: Debian's pulseaudio and "
                    "pulseaudio-utils are not installed (scripts/test installs them)")
    socket = tmp_path / "pulse.sock"
    env = {**os.environ, "PULSE_SERVER": f"unix:{socket}", "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path)}
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
         "--system=no", "-L", "module-null-sink sink_name=speaker",
         "-L", "module-null-sink sink_name=micsink",
         "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise AssertionError("the sound server did not start")
            time.sleep(0.1)  # a process starting: nothing to wait on but its socket
        for command in (["load-module", "module-remap-source", "master=micsink.monitor",
                         "source_name=loopmic"],
                        ["set-default-source", "loopmic"], ["set-default-sink", "speaker"]):
            subprocess.run(["pactl", *command], env=env, check=True, capture_output=True)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(10)


def test_a_tone_goes_through_microphone_and_speaker(sound_server: dict[str, str],
                                                    tmp_path: Path) -> None:
    """440 Hz into alice's microphone arrives at bob at 440 Hz; bob's 880 Hz comes
    out of alice's speaker at 880 Hz."""
    env = sound_server
    tone = tmp_path / "tone.raw"  # 30 s of 440 Hz: longer than the whole call
    tone.write_bytes(array.array("h", (int(12000 * math.sin(2 * math.pi * 440 * i / RATE))
                                       for i in range(30 * RATE))).tobytes())
    player = subprocess.Popen(["pacat", "--playback", "-d", "micsink", *RAW, str(tone)],
                              env=env)
    try:
        result, played = _run_recording_speaker(env, tmp_path, "4")
    finally:
        player.kill()
        player.wait(10)
    assert result["microphone"] and result["speaker"], result
    assert result["bob_received"] > 50 and result["alice_received"] > 50, result
    assert abs(result["bob_heard_hz"] - 440.0) < 440.0 * 0.03, result
    loud = [i for i, v in enumerate(played) if abs(v) > 500]
    assert loud, "nothing came out of the speaker"
    assert abs(_pitch(played[loud[0]:loud[-1]].tobytes()) - 880.0) < 880.0 * 0.03


def test_an_incoming_call_rings_on_the_speaker(sound_server: dict[str, str],
                                               tmp_path: Path) -> None:
    """The ring comes out of the speaker: 440 Hz and 480 Hz together (both strong,
    nothing between or beside them) for a second, then two seconds of silence,
    and again."""
    from qtclient.audio import RING_OFF, RING_ON

    result, played = _run_recording_speaker(sound_server, tmp_path, "ring", "6")
    assert result == {"speaker": True, "playing": True}
    # Loud or quiet per 100 ms, from the first loud one on.
    step = RATE // 10
    loud = [max(map(abs, played[i:i + step]), default=0) > 2000
            for i in range(0, len(played) - step, step)]
    assert True in loud, "nothing came out of the speaker"
    loud = loud[loud.index(True):]
    runs = [(flag, len(list(group))) for flag, group in itertools.groupby(loud)]
    # A whole ring, a whole pause, and the next ring (each to within 0.2 s).
    assert len(runs) >= 3, runs
    assert runs[0][0] and abs(runs[0][1] / 10 - RING_ON) <= 0.2, runs
    assert not runs[1][0] and abs(runs[1][1] / 10 - RING_OFF) <= 0.2, runs
    assert runs[2][0], runs
    start = next(i for i, v in enumerate(played) if abs(v) > 2000)
    ring = played[start:start + int(RATE * RING_ON * 0.9)].tobytes()  # the first ring
    power = {hz: _power(ring, hz) for hz in (400, 440, 460, 480, 520)}
    assert min(power[440], power[480]) > 20 * max(power[400], power[460], power[520]), power
