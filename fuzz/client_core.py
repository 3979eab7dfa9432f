"""libFuzzer target (atheris): a hostile server's bytes into the client core.

Each input is what a server sends on one connection, fed to a
:class:`~chatnet.client.core.ClientCore` with ``mode % 6`` requests pending
(``client_exchange`` of ``tests/support/wire_checks.py``). The core may
return events, resolve futures with a map, reject them with ``ChatError``, or
raise ``ProtocolError``; anything else raises, which libFuzzer reports as a
crash. Input layout: ``fuzz/inputs.py``.

Run: see fuzz/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["chatnet"]):
    import txaio

    from fuzz.inputs import FRAMED_HERE, frames_of, pieces_of, run, split_input
    from tests.support.wire_checks import client_exchange

txaio.use_twisted()


def TestOneInput(data: bytes) -> None:
    """One connection's worth of server output; raises if a rule was broken."""
    parts = split_input(data)
    if parts is None:
        return
    mode, size, body = parts
    if mode & FRAMED_HERE:
        body = frames_of(body)
    client_exchange(mode % 6, pieces_of(body, size))


if __name__ == "__main__":
    run(TestOneInput)  # libFuzzer's flags and corpus directories, or --replay FILES
