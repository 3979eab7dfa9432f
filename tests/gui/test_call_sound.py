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

import pytest

REPO = Path(__file__).resolve().parents[2]
RATE = 48_000


def _pitch(pcm: bytes) -> float:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE) if samples else 0.0


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
    raw = ["--format=s16le", f"--rate={RATE}", "--channels=1"]
    player = subprocess.Popen(["pacat", "--playback", "-d", "micsink", *raw, str(tone)],
                              env=env)
    recording = tmp_path / "speaker.raw"
    with recording.open("wb") as out:
        recorder = subprocess.Popen(["parec", "-d", "speaker.monitor", *raw], stdout=out,
                                    env=env)
        try:
            call = subprocess.run(
                [sys.executable, "-m", "tests.gui.sound_path", "4"], cwd=REPO,
                env={**env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True,
                text=True, timeout=120)
        finally:
            recorder.terminate()
            recorder.wait(10)
            player.kill()
            player.wait(10)
    assert call.returncode == 0, call.stderr[-2000:]
    result = json.loads(call.stdout.strip().splitlines()[-1])
    assert result["microphone"] and result["speaker"], result
    assert result["bob_received"] > 50 and result["alice_received"] > 50, result
    assert abs(result["bob_heard_hz"] - 440.0) < 440.0 * 0.03, result
    played = array.array("h")
    data = recording.read_bytes()
    played.frombytes(data[: len(data) // 2 * 2])
    loud = [i for i, v in enumerate(played) if abs(v) > 500]
    assert loud, "nothing came out of the speaker"
    assert abs(_pitch(played[loud[0]:loud[-1]].tobytes()) - 880.0) < 880.0 * 0.03
