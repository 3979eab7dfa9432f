"""kill -9 benchmark (not a test): SIGKILL the server again and again under sustained
sends and count what the acknowledged sends became.

A real ``twistd chatnet`` subprocess and ``--clients`` real
:class:`~chatnet.client.session.ChatSession` clients, each with ``--window``
``msg.send`` requests in flight into one room. Every ``--acks`` acknowledged
sends the server is SIGKILLed and started again on the same port and data
directory; the sessions reconnect, resume and re-send what was not
acknowledged with the same ``client_msg_id``. After ``--cycles`` kills the
senders stop, the pending sends are waited for, and the room's history is
compared with the acknowledgements (the scenario is ``tests/support/crash.py``,
which ``tests/core/test_crash.py`` runs for 3 cycles). Prints one JSON line;
exits 1 if anything was lost, duplicated or mismatched.

    .venv/bin/python bench/crash.py --cycles 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import task
from twisted.internet.defer import Deferred

from tests.support.crash import crash_run


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    """Parse the options, run the cycles, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="SIGKILL + restart cycles")
    parser.add_argument("--clients", type=int, default=4, help="sending sessions")
    parser.add_argument("--window", type=int, default=4, help="sends in flight per session")
    parser.add_argument("--acks", type=int, default=200,
                        help="acknowledged sends between two kills")
    parser.add_argument("--durability", choices=["process", "power"], default="process")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chatnet-crash-"))
    figures: dict[str, Any] = {}

    async def run(reactor: Any) -> None:
        report = await crash_run(reactor, work / "data", cycles=args.cycles,
                                 clients=args.clients, window=args.window,
                                 acks_per_cycle=args.acks,
                                 extra=("--durability", args.durability))
        figures.update(report.figures())
        figures["failed_examples"] = report.failed[:3]

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures.update(durability=args.durability, window=args.window, acks_per_cycle=args.acks,
                   nproc=os.cpu_count(), cpu=cpu_model(), python=platform.python_version())
    print(json.dumps(figures))
    bad = (figures["lost"] or figures["duplicates"] or figures["mismatched"]
           or figures["failed"] or not figures["seqs_gapless"] or figures["integrity"] != "ok")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
