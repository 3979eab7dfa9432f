"""A call's audio in the desktop client: microphone → Opus → call, and each
participant's packets → jitter buffer → Opus → mixer → speaker, every 20 ms
(PROTOCOL.md 8; QtMultimedia's ``QAudioSource`` / ``QAudioSink``).

Without a microphone (no sound server, no device: servers, CI) the call still
runs and :attr:`CallAudio.microphone` is False, which the call bar says; the
same for the speaker.
"""

from __future__ import annotations

import array
import math
from typing import Any

from chatnet.client.calls import WAIT, VoiceCall
from qtclient.qt import QApplication, QObject, QTimer, multimedia

#: Samples per second, and per 20 ms frame (one packet).
RATE = 48_000
FRAME_SAMPLES = 960
FRAME_BYTES = FRAME_SAMPLES * 2


def mix(frames: list[bytes]) -> bytes:
    """Sum 16-bit mono PCM frames sample by sample, clipped to the 16-bit range.

    Args:
        frames: frames of equal length (bytes of s16le); none gives silence.

    Returns:
        one frame of :data:`FRAME_BYTES` bytes (shorter inputs are padded with silence).
    """
    total = [0] * FRAME_SAMPLES
    for frame in frames:
        samples = array.array("h")
        samples.frombytes(frame[:FRAME_BYTES] + bytes(max(0, FRAME_BYTES - len(frame))))
        for i, value in enumerate(samples):
            total[i] += value
    return array.array("h", (max(-32768, min(32767, v)) for v in total)).tobytes()


def devices(kind: str) -> list[tuple[str, str]]:
    """The sound devices of a kind (``"input"`` or ``"output"``) as
    ``[(device id in hex, description)]``; empty without QtMultimedia or devices."""
    qm = multimedia()
    if qm is None:
        return []
    found = qm.QMediaDevices.audioInputs() if kind == "input" else qm.QMediaDevices.audioOutputs()
    return [(bytes(d.id()).hex(), d.description()) for d in found]


def _device(qm: Any, kind: str, chosen: str) -> Any:
    """The device with id ``chosen`` (hex) if it is there, else the default."""
    found = qm.QMediaDevices.audioInputs() if kind == "input" else qm.QMediaDevices.audioOutputs()
    for device in found:
        if chosen and bytes(device.id()).hex() == chosen:
            return device
    return (qm.QMediaDevices.defaultAudioInput() if kind == "input"
            else qm.QMediaDevices.defaultAudioOutput())


def level(frame: bytes) -> float:
    """Peak level of a PCM frame, 0.0 (silence) to 1.0 (full scale)."""
    samples = array.array("h")
    samples.frombytes(frame[: len(frame) // 2 * 2])
    return max((abs(v) for v in samples), default=0) / 32768


class CallAudio(QObject):
    """Carries one call's audio between the sound devices and the call.

    Args:
        call: the call (its ``send`` and ``pull``).
        microphone: device id (hex, :func:`devices`) to record from; '' (or one
            no longer there) for the system's default.
        speaker: device id to play to; '' for the default.

    Attributes:
        microphone: whether a microphone is open.
        speaker: whether a speaker is open.
        muted: when True, nothing is sent.
        levels: username -> peak level of their last frame (who is speaking).
    """

    def __init__(self, call: VoiceCall, parent: QObject | None = None,
                 microphone: str = "", speaker: str = "") -> None:
        super().__init__(parent)
        from chatnet.client.opus import OpusDecoder, OpusEncoder

        self.call = call
        self.muted = False
        self.levels: dict[str, float] = {}
        self._encoder = OpusEncoder()
        self._decoders: dict[str, Any] = {}
        self._decoder_type = OpusDecoder
        self._captured = bytearray()
        self._source = self._sink = self._mic_io = self._speaker_io = None
        qm = multimedia()
        if qm is not None:
            fmt = qm.QAudioFormat()
            fmt.setSampleRate(RATE)
            fmt.setChannelCount(1)
            fmt.setSampleFormat(qm.QAudioFormat.SampleFormat.Int16)
            mic = _device(qm, "input", microphone)
            if not mic.isNull():
                self._source = qm.QAudioSource(mic, fmt, self)
                self._mic_io = self._source.start()
            out = _device(qm, "output", speaker)
            if not out.isNull():
                self._sink = qm.QAudioSink(out, fmt, self)
                self._speaker_io = self._sink.start()
        self.microphone = self._mic_io is not None
        self.speaker = self._speaker_io is not None
        self._timer = QTimer(self)
        self._timer.setInterval(20)
        self._timer.timeout.connect(self.tick)
        self._timer.start()

    def tick(self) -> None:
        """One 20 ms step: send what the microphone gave, play what came in."""
        if self._mic_io is not None:
            self._captured += bytes(self._mic_io.readAll())
            while len(self._captured) >= FRAME_BYTES:
                frame = bytes(self._captured[:FRAME_BYTES])
                del self._captured[:FRAME_BYTES]
                if not self.muted:
                    for encoded in self._encoder.encode(frame):
                        self.call.send(encoded)
        frames = []
        for username in list(self.call.buffers):
            state, packet = self.call.pull(username)
            if state == WAIT:
                self.levels[username] = 0.0
                continue
            decoder = self._decoders.get(username)
            if decoder is None:
                decoder = self._decoders[username] = self._decoder_type()
            try:
                pcm = decoder.decode(packet)
            except Exception:  # not Opus (a broken or hostile peer): play silence
                pcm = bytes(FRAME_BYTES)
            self.levels[username] = level(pcm)
            frames.append(pcm)
        if frames and self._speaker_io is not None and self._sink is not None \
                and self._sink.bytesFree() >= FRAME_BYTES:
            self._speaker_io.write(mix(frames))

    def stop(self) -> None:
        """Close the devices and stop the timer."""
        self._timer.stop()
        for device in (self._source, self._sink):
            if device is not None:
                device.stop()
        self._mic_io = self._speaker_io = None


#: The ring: both tones together for RING_ON seconds, then RING_OFF of silence.
RING_TONES = (440.0, 480.0)
RING_ON = 1.0
RING_OFF = 2.0


def ring_cycle() -> bytes:
    """One cycle of the ring tone, s16le mono at :data:`RATE`: :data:`RING_TONES`
    (Hz) together for :data:`RING_ON` seconds, faded in and out over 10 ms so
    that it does not click, then :data:`RING_OFF` seconds of silence."""
    on = int(RATE * RING_ON)
    fade = RATE // 100
    low, high = (2 * math.pi * f / RATE for f in RING_TONES)
    tone = array.array("h", (
        int(6000 * (math.sin(low * i) + math.sin(high * i)) * min(1.0, i / fade, (on - i) / fade))
        for i in range(on)))
    return tone.tobytes() + bytes(2 * int(RATE * RING_OFF))


class Ringer(QObject):
    """Rings on the speaker until stopped (an incoming call); with no sound device,
    the system's beep once per cycle instead.

    Args:
        speaker: device id (hex, :func:`devices`); '' for the system's default.

    Attributes:
        playing: whether it is ringing.
        speaker: whether a sound device carries the ring (else the beep does).
    """

    _cycle: bytes | None = None  # built once per process, on the first ring

    def __init__(self, speaker: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.playing = False
        self.speaker = False
        self._chosen = speaker
        self._sink: Any = None
        self._io: Any = None
        self._position = 0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._feed)

    def start(self) -> None:
        """Begin ringing (nothing if it already rings)."""
        if self.playing:
            return
        self.playing = True
        qm = multimedia()
        device = _device(qm, "output", self._chosen) if qm is not None else None
        if device is not None and not device.isNull():
            fmt = qm.QAudioFormat()
            fmt.setSampleRate(RATE)
            fmt.setChannelCount(1)
            fmt.setSampleFormat(qm.QAudioFormat.SampleFormat.Int16)
            self._sink = qm.QAudioSink(device, fmt, self)
            self._io = self._sink.start()
        self.speaker = self._io is not None
        if Ringer._cycle is None:
            Ringer._cycle = ring_cycle()
        self._position = 0
        if self.speaker:
            self._timer.start(50)  # the sink holds more than that: no gaps
            self._feed()
        else:
            self._timer.start(int((RING_ON + RING_OFF) * 1000))
            QApplication.beep()

    def _feed(self) -> None:
        if self._io is None or self._sink is None:
            QApplication.beep()
            return
        cycle = Ringer._cycle or b""
        free = self._sink.bytesFree() // 2 * 2
        while free > 0:
            chunk = cycle[self._position:self._position + free]
            self._io.write(chunk)
            free -= len(chunk)
            self._position = (self._position + len(chunk)) % len(cycle)

    def stop(self) -> None:
        """Stop ringing (nothing if it does not ring)."""
        if not self.playing:
            return
        self.playing = False
        self._timer.stop()
        if self._sink is not None:
            self._sink.stop()
        self._sink = self._io = None
