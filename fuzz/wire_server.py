"""libFuzzer target (atheris): a client's byte stream into the server protocol.

Each input is one connection's stream, fed to a real
:class:`~chatnet.wire.server.ChatServerProtocol` over a real SQLite store
(``WireProbe`` of ``tests/support/wire_checks.py``, threads run in the caller),
and checked against the dispatcher's rules: nothing escapes ``dataReceived``,
nothing is logged as an error, no ``internal`` answer, every request with a
valid id is answered exactly once or the connection is closed after an
``error`` event. A broken rule raises, which libFuzzer reports as a crash.

Input (``fuzz/inputs.py``): ``mode % 3`` picks the connection's state (fresh,
after hello, logged in as alice). In framed-here mode the msgpack of
``ROOM_ID`` and ``MSG_ID`` in a payload is replaced by a room and a
message that exist, so that requests can get past ``not_found``.

Run: see fuzz/README.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["chatnet"]):
    from chatnet.wire.framing import encode_frame
    from fuzz.inputs import FRAMED_HERE, MSG_ID, ROOM_ID, SEPARATOR, pieces_of, run, split_input
    from tests.support.wire_checks import STATES, WireProbe

_probe: WireProbe | None = None
_substitutions: list[tuple[bytes, bytes]] = []


def probe() -> WireProbe:
    """The server, built on first use (after libFuzzer parsed its flags).

    Its SQLite file and uploads go to a new directory under
    ``$CHATNET_FUZZ_DIR`` (default: the system's temporary directory);
    libFuzzer exits without running Python's clean-up, so delete it after a run.
    """
    global _probe
    if _probe is None:
        parent = os.environ.get("CHATNET_FUZZ_DIR") or None
        directory = Path(tempfile.mkdtemp(prefix="chatnet-fuzz-server-", dir=parent))
        _probe = WireProbe.build(directory)
        _substitutions.extend([
            (msgpack.packb(ROOM_ID), msgpack.packb(_probe.known["room_id"][0])),
            (msgpack.packb(MSG_ID), msgpack.packb(_probe.known["msg_id"][0])),
        ])
    return _probe


def TestOneInput(data: bytes) -> None:
    """One connection; raises if a rule was broken."""
    parts = split_input(data)
    if parts is None:
        return
    mode, size, body = parts
    server = probe()
    if mode & FRAMED_HERE:
        frames = []
        for payload in body.split(SEPARATOR):
            for placeholder, real in _substitutions:
                payload = payload.replace(placeholder, real)
            if payload:
                frames.append(encode_frame(payload))
        body = b"".join(frames)
    server.exchange(STATES[mode % 3], pieces_of(body, size))


if __name__ == "__main__":
    run(TestOneInput)  # libFuzzer's flags and corpus directories, or --replay FILES
