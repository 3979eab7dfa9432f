"""Idle connections benchmark (not a test): server memory per logged-in TLS session.

DESIGN.md target: one node holds 10,000 idle TLS connections at <= 32 KiB of
resident memory each (the bare Twisted server: 28 KiB).

Users and resume tokens are written straight into a fresh SQLite database
before the server starts (one Argon2 hash shared by all: hashing is not what
is measured here). ``--procs`` client processes then open ``--clients`` TLS
connections that say hello and ``auth.resume``, and stay idle. The server's
RSS before and after gives the memory per connection.

    .venv/bin/python bench/idle.py --clients 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server helpers


def prepare_database(data: Path, count: int) -> dict[str, str]:
    """Create the schema, ``count`` users and a resume token each; return tokens."""
    import argon2

    from chatnet.store.database import migrations

    data.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data / "chatnet.db")
    db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    for version, name, sql in migrations():
        db.executescript(sql)
        db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, name))
    password_hash = argon2.PasswordHasher().hash(fanout.PASSWORD)
    now = int(time.time() * 1000)
    tokens = {}
    for i in range(count):
        name = f"idle{i:05d}"
        token = f"bench-token-{i:05d}-{now}"
        tokens[name] = token
        db.execute("INSERT INTO users (user_id, username, display_name, password_hash, "
                   "created_ts) VALUES (?, ?, ?, ?, ?)", (i + 1, name, name, password_hash, now))
        db.execute("INSERT INTO auth_tokens VALUES (?, ?, ?, ?)",
                   (hashlib.sha256(token.encode()).hexdigest(), i + 1, now,
                    now + 86_400_000))
    db.commit()
    db.close()
    return tokens


async def _clients(reactor: Any, pipe: Any, port: int, ca: str, tokens: list[str],
                   concurrency: int, logged_in: bool) -> None:
    from twisted.internet.threads import deferToThread

    from chatnet.client.connection import connect

    connections = []

    async def one(token: str) -> None:
        conn = await connect(reactor, fanout.HOST, port, ca)
        if logged_in:
            await conn.resume(token)
        connections.append(conn)

    await fanout._bounded(reactor, concurrency, tokens, one)
    pipe.send({"up": len(connections)})
    await deferToThread(pipe.recv)
    for conn in connections:
        conn.abort()


def clients_main(pipe: Any, port: int, ca: str, tokens: list[str], concurrency: int,
                 logged_in: bool) -> None:
    fanout._run_child(_clients, pipe, port, ca, tokens, concurrency, logged_in)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, connect, measure."""
    data = Path(tempfile.mkdtemp(prefix="chatnet-idle-"))
    port = fanout.free_port()
    tokens = prepare_database(data, args.clients) if args.server == "chatnet" else {
        f"u{i}": "" for i in range(args.clients)}
    server = fanout.start_server(args.server, data, port)
    if args.server == "chatnet":
        ca = str(data / "tls" / "ca.pem")
    else:
        ca = str(data / "ca.pem") if (data / "ca.pem").exists() else str(data / "tls" / "ca.pem")
    context = multiprocessing.get_context("spawn")
    try:
        time.sleep(1.0)  # let the server finish its start-up allocations
        before = fanout.memory_kib(server.pid)["VmRSS"]
        pipes, procs = [], []
        values = list(tokens.values())
        for k in range(args.procs):
            parent, child = context.Pipe()
            proc = context.Process(target=clients_main, args=(
                child, port, ca, values[k::args.procs], args.concurrency,
                args.server == "chatnet"))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        started = time.time()
        up = sum(p.recv()["up"] for p in pipes)
        elapsed = time.time() - started
        time.sleep(2.0)  # let deferred work settle (presence, logging)
        after = fanout.memory_kib(server.pid)
        for p in pipes:
            p.send("done")
        for proc in procs:
            proc.join(60)
        return {"server": args.server, "connections": up, "connect_s": round(elapsed, 1),
                "rss_before_kib": before, "rss_after_kib": after["VmRSS"],
                "kib_per_connection": round((after["VmRSS"] - before) / max(up, 1), 1)}
    finally:
        fanout.stop_server(server)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--server", choices=["chatnet", "bare"], default="chatnet")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['server']}: {result['connections']} idle TLS connections "
          f"(connected in {result['connect_s']} s)")
    print(f"  server RSS {result['rss_before_kib'] / 1024:.0f} MiB -> "
          f"{result['rss_after_kib'] / 1024:.0f} MiB: "
          f"{result['kib_per_connection']} KiB per connection")


if __name__ == "__main__":
    main()
