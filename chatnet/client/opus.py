"""Opus for voice calls through PyAV (PROTOCOL.md 8: 48 kHz mono, 20 ms packets).

PyAV's wheel bundles libopus (``pip install 'chatnet[voice]'``). PCM is signed
16-bit little-endian mono at 48 kHz: one 20 ms frame is :data:`FRAME_SAMPLES`
samples, :data:`FRAME_BYTES` bytes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

#: Samples per second.
SAMPLE_RATE = 48_000
#: Samples in one 20 ms frame (one ``call.audio`` packet).
FRAME_SAMPLES = 960
#: Bytes of one frame of 16-bit mono PCM.
FRAME_BYTES = FRAME_SAMPLES * 2
#: Encoder bit rate, bits per second (PROTOCOL.md 8 leaves 24-32 kbit/s).
BIT_RATE = 32_000


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # an optional dependency: say how to get it
        raise RuntimeError("voice needs PyAV: pip install 'chatnet[voice]'") from exc
    return av


class OpusEncoder:
    """Encodes 20 ms frames of PCM into Opus packets, one packet per frame.

    Raises:
        RuntimeError: PyAV is not installed.
    """

    def __init__(self, bit_rate: int = BIT_RATE) -> None:
        av = _av()
        self._av = av
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = SAMPLE_RATE
        encoder.layout = "mono"
        encoder.format = "s16"
        encoder.bit_rate = bit_rate
        encoder.time_base = Fraction(1, SAMPLE_RATE)
        # libopus option names; PyAV ignores unknown ones silently, so these are
        # checked by the tests through their effect (one packet per frame).
        encoder.options = {"application": "voip", "frame_duration": "20", "vbr": "on"}
        encoder.open()
        self._encoder = encoder
        self._pts = 0

    def encode(self, pcm: bytes) -> list[bytes]:
        """Encode one frame.

        Args:
            pcm: :data:`FRAME_BYTES` bytes of s16le mono at 48 kHz.

        Returns:
            the Opus packets ready (normally exactly one).

        Raises:
            ValueError: ``pcm`` is not one frame.
        """
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes of PCM, not {len(pcm)}")
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return [bytes(packet) for packet in self._encoder.encode(frame)]


class OpusDecoder:
    """Decodes Opus packets into PCM; conceals a lost packet.

    Raises:
        RuntimeError: PyAV is not installed.
    """

    def __init__(self) -> None:
        av = _av()
        self._av = av
        decoder = av.CodecContext.create("libopus", "r")
        decoder.sample_rate = SAMPLE_RATE
        decoder.layout = "mono"
        self._decoder = decoder
        # The decoder's output format is not guaranteed: convert to s16 mono.
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def decode(self, packet: bytes | None) -> bytes:
        """PCM (s16le mono 48 kHz) for one packet; for a lost one (None), the
        decoder's concealment of it, or a frame of silence where it has none.

        Raises:
            av.error.InvalidDataError: the packet is not Opus.
        """
        if packet is None:
            return self._conceal()
        out = bytearray()
        for frame in self._decoder.decode(self._av.Packet(packet)):
            for converted in self._resampler.resample(frame):
                out += bytes(converted.planes[0])[: converted.samples * 2]
        return bytes(out)

    def _conceal(self) -> bytes:
        # libopus conceals a loss when it gets an empty packet; FFmpeg's wrapper
        # may not pass one through, so fall back to silence of one frame.
        try:
            pcm = self.decode(b"")
        except Exception:
            pcm = b""
        return pcm or bytes(FRAME_BYTES)
