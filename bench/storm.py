"""Reconnect storm benchmark (not a test): how fast do N sessions come back after a
server restart? DESIGN.md target: 1,000 sessions back within 10 s.

N :class:`~chatnet.client.session.ChatSession` clients (all members of one
room, so every login also means presence events to everyone) run in
``--procs`` load-generator processes. Once all are logged in, the server is
stopped (SIGTERM: they get ``session.ended {shutdown}``) and started again on
the same port and data directory. Each session reconnects by itself with the
library's backoff and jitter and resumes with its token. The benchmark prints
the time from the restarted server listening until the last session is
authenticated again (p50/p90/max over sessions), the server's CPU seconds for
the storm, and its RSS.

    .venv/bin/python bench/storm.py --clients 1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server and setup helpers


async def _sessions(reactor: Any, pipe: Any, port: int, ca: str,
                    tokens: dict[str, str], connect_concurrency: int) -> None:
    from twisted.internet.defer import Deferred

    from chatnet.client.session import ChatSession, SessionState

    sessions: dict[str, ChatSession] = {}
    down: set[str] = set()
    back: dict[str, float] = {}
    all_back: Deferred[None] = Deferred()

    def watch(name: str) -> Any:
        # Down when the connection is lost after the first login; back when it is
        # authenticated again (which may happen before the parent's "go" arrives).
        def on_state(state: SessionState) -> None:
            if state is SessionState.CONNECTING and name in sessions:
                down.add(name)
            elif state is SessionState.AUTHENTICATED and name in down and name not in back:
                back[name] = time.time()
                if len(back) == len(sessions) and not all_back.called:
                    all_back.callback(None)
        return on_state

    async def start(name: str) -> None:
        session = ChatSession(reactor, fanout.HOST, port, name, fanout.PASSWORD,
                              token=tokens[name], ca=ca)
        session.add_state_listener(watch(name))
        await session.start()
        sessions[name] = session

    await fanout._bounded(reactor, connect_concurrency, list(tokens), start)
    pipe.send({"up": len(sessions)})
    # Wait (in a thread, not to block the reactor) for the parent's go.
    from twisted.internet.threads import deferToThread

    await deferToThread(pipe.recv)
    all_back.addTimeout(120, reactor)
    with contextlib.suppress(Exception):  # a timeout: the report says who is missing
        await all_back
    pipe.send({"back": list(back.values()), "missing": len(sessions) - len(back)})
    for session in sessions.values():
        await session.close()


def sessions_main(pipe: Any, port: int, ca: str, tokens: dict[str, str],
                  connect_concurrency: int) -> None:
    fanout._run_child(_sessions, pipe, port, ca, tokens, connect_concurrency)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, storm, measure."""
    data = Path(tempfile.mkdtemp(prefix="chatnet-storm-"))
    port = fanout.free_port()
    ca = str(data / "tls" / "ca.pem")
    names = [f"u{i:05d}" for i in range(args.clients)]
    server = fanout.start_server("chatnet", data, port)
    context = multiprocessing.get_context("spawn")
    try:
        parent, child = context.Pipe()
        setup = context.Process(target=fanout.setup_main,
                                args=(child, port, ca, names, args.setup_concurrency))
        setup.start()
        tokens = parent.recv()["tokens"]
        setup.join()
        pipes, procs = [], []
        for k in range(args.procs):
            mine = {n: tokens[n] for n in names[k::args.procs]}
            parent, child = context.Pipe()
            proc = context.Process(target=sessions_main,
                                   args=(child, port, ca, mine, args.connect_concurrency))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        t_login = time.time()
        up = sum(p.recv()["up"] for p in pipes)
        fanout.log(f"{up} sessions logged in ({time.time() - t_login:.1f} s); restarting server")
        fanout.stop_server(server)
        server = fanout.start_server("chatnet", data, port)
        listening = time.time()
        cpu0 = fanout.cpu_seconds(server.pid)
        for p in pipes:
            p.send("go")
        reports = [p.recv() for p in pipes]
        cpu = fanout.cpu_seconds(server.pid) - cpu0
        for proc in procs:
            proc.join(60)
        delays = sorted(t - listening for r in reports for t in r["back"])
        missing = sum(r["missing"] for r in reports)
        result = {
            "clients": args.clients, "procs": args.procs, "back": len(delays),
            "missing": missing,
            "initial_login_s": round(listening - t_login, 1),
            "back_p50_s": round(fanout._percentile(delays, 50), 2) if delays else None,
            "back_p90_s": round(fanout._percentile(delays, 90), 2) if delays else None,
            "all_back_s": round(delays[-1], 2) if delays else None,
            "server_cpu_s": round(cpu, 2),
            "server_rss_kib": fanout.memory_kib(server.pid),
        }
        return result
    finally:
        fanout.stop_server(server)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--setup-concurrency", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"reconnect storm: {result['clients']} sessions, server restarted")
    print(f"  back       {result['back']} (missing {result['missing']})")
    print(f"  time after the server listens: p50 {result['back_p50_s']} s, "
          f"p90 {result['back_p90_s']} s, all {result['all_back_s']} s")
    print(f"  server CPU {result['server_cpu_s']} s for the storm; "
          f"RSS {result['server_rss_kib']}")


if __name__ == "__main__":
    main()
