"""How a fuzz target reads its input (shared by the targets and fuzz/seeds.py).

Every input is ``mode, size, body``: byte 0 is the target's mode (its own
meaning, plus bit :data:`FRAMED_HERE`), byte 1 the size of the pieces the
stream is fed in (0: all at once), the rest the body. With
:data:`FRAMED_HERE` the body is msgpack payloads separated by
:data:`SEPARATOR` and the target adds the length prefixes, so that
libFuzzer's mutations change payloads without breaking the framing; without
it the body is the raw stream, framing included.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from chatnet.wire.framing import encode_frame

#: Mode bit: the body is separated payloads, framed by the target.
FRAMED_HERE = 0x80
#: Separates payloads in framed mode: the byte 0xc1 never occurs in msgpack.
SEPARATOR = b"\xc1\xc1"
#: Placeholder ids that fuzz/wire_server.py replaces (framed-here mode) by a
#: room and a message that exist.
ROOM_ID = 0x7EADBEEF
MSG_ID = 0x7EADBEE5


def split_input(data: bytes) -> tuple[int, int, bytes] | None:
    """``(mode, piece size, body)``, or None for an input under 2 bytes."""
    if len(data) < 2:
        return None
    return data[0], data[1], data[2:]


def frames_of(body: bytes) -> bytes:
    """The stream for a framed-here body: each non-empty payload, length-prefixed."""
    return b"".join(encode_frame(p) for p in body.split(SEPARATOR) if p)


def pieces_of(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes (0: one piece)."""
    if size == 0:
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def make_input(mode: int, payloads: list[bytes], size: int = 0, framed_here: bool = True,
               ) -> bytes:
    """An input with these payloads: separated (framed here) or length-prefixed."""
    if framed_here:
        return bytes([mode | FRAMED_HERE, size]) + SEPARATOR.join(payloads)
    return bytes([mode & ~FRAMED_HERE, size]) + b"".join(encode_frame(p) for p in payloads)


def run(test_one_input: Callable[[bytes], None]) -> None:
    """A target's entry point: libFuzzer with ``sys.argv``, or, with
    ``--replay PATH...``, each input file (or every file in each directory)
    once, in plain Python, so that ``coverage run`` can measure a corpus
    (libFuzzer exits without Python's clean-up, where coverage saves its data).
    """
    if sys.argv[1:2] == ["--replay"]:
        files = []
        for name in sys.argv[2:]:
            path = Path(name)
            files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for path in files:
            test_one_input(path.read_bytes())
        print(f"replayed {len(files)} inputs")
        return
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
