"""``twistd chatnet --workers 2`` as a real process tree on PostgreSQL + Redis.

The parent binds the port (one ``SO_REUSEPORT`` socket per worker) and
supervises two worker processes that deliver each other's events through Redis.
Clients connect to the one port and land on either worker; a worker killed
with SIGKILL is started again, its clients reconnect and find everything that
was acknowledged, once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from chatnet.client.connection import ChatConnection, connect
from tests.support.chat import create_room, say
from tests.support.databases import postgres_url
from tests.support.events import EventLog, barrier, within
from tests.support.process import TwistdServer, command
from tests.support.process import admin as admin_cli
from tests.support.redis_server import free_port
from tests.support.server import PASSWORD, RunningServer

_WORKER_PID = re.compile(r"worker (\d) started \(pid (\d+)\)")


class Cluster(RunningServer):
    """A running ``--workers 2`` server, reached like :class:`RunningServer` (its
    service lives in other processes: ``service`` is None)."""

    def __init__(self, process: TwistdServer) -> None:
        super().__init__(cast(Any, None), process.port, process.ca)
        self.process = process

    def worker_pids(self) -> dict[int, int]:
        """index -> pid of the latest start of each worker (from the parent's log)."""
        return {int(i): int(pid) for i, pid in _WORKER_PID.findall(self.process.text())}

    async def wait_for_log(self, pattern: str, count: int, timeout: float = 30.0) -> None:
        """Until ``pattern`` appears ``count`` times in the log (the reactor runs)."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.process.text())) < count:
            assert time.monotonic() < deadline, (
                f"{pattern!r} not seen {count} times:\n{self.process.text()}")
            await deferLater(reactor, 0.05, lambda: None)


async def start_workers(tmp_path: Path, postgres: str, redis: dict[str, Any]) -> Cluster:
    host, port, _db = redis["redis"]
    process = TwistdServer(tmp_path / "data", "--workers", "2", "--redis",
                           f"redis://{host}:{port}", "--cluster", redis["cluster"],
                           "--node-expiry", "3", "--open-registration",
                           "--database", postgres_url(postgres))
    process.start()
    cluster = Cluster(process)
    try:
        await cluster.wait_for_log(r"chatnet listening on", 2)
    except BaseException:
        process.stop()  # the supervisor and its workers, not left behind
        raise
    return cluster


@pytest_twisted.ensureDeferred
async def test_two_workers_share_the_port_and_survive_a_worker_killed(
        postgres, redis, tmp_path):
    """16 users on one port spread over both workers (admin.sessions names two
    nodes); a message reaches every member whichever worker they are on; worker 1
    killed with SIGKILL is started again by the parent, the other worker tells its
    clients the dead worker's users went offline, those clients reconnect and
    history holds every acknowledged message exactly once; SIGTERM to the parent
    stops the workers in order, then itself."""
    cluster = await start_workers(tmp_path, postgres, redis)
    try:
        await (await cluster.user("root")).close()
        made = admin_cli(tmp_path / "data", "--database", postgres_url(postgres),
                         "set-role", "root", "admin")
        assert made.returncode == 0, made.stderr
        admin = await cluster.user("root", register=False)
        users = [await cluster.user(f"user{n}") for n in range(16)]
        room = await create_room(admin, *users)
        rid = room["room_id"]
        sessions = (await admin.request("admin.sessions", {"limit": 100}))["sessions"]
        nodes = {s["node"] for s in sessions}
        assert len(nodes) == 2, f"all 17 sessions landed on one worker: {sessions}"
        logs = [EventLog(u, f"user{n}") for n, u in enumerate(users)]
        acked = [await say(admin, rid, "to everyone")]
        for log in logs:
            await log.next("msg", where=lambda d: d["message"]["body"] == "to everyone")

        pids = cluster.worker_pids()
        os.kill(pids[1], signal.SIGKILL)
        await cluster.wait_for_log(r"worker 1 started", 2)
        await cluster.wait_for_log(r"chatnet listening on", 3)
        # The other worker tells its clients that the dead worker's users went
        # offline, once the dead worker's keys expire in Redis (--node-expiry 3).
        dead = [n for n, u in enumerate(users) if u.lost.called]
        survivor = next(n for n in range(len(users)) if n not in dead)
        if dead:
            await logs[survivor].next("presence", username=f"user{dead[0]}", state="offline",
                                      timeout=10)
        # Everyone whose connection died logs in again; all send once more.
        alive = []
        for name, conn in [("root", admin)] + [(f"user{n}", u) for n, u in enumerate(users)]:
            try:
                await within(conn.request("session.ping"), "ping")
                alive.append(conn)
            except Exception:
                alive.append(await cluster.user(name, register=False))
        assert len([c for c, old in zip(alive, [admin, *users], strict=True)
                    if c is not old]) > 0, "nobody was on the killed worker"
        admin = alive[0]
        sends = [Deferred.fromCoroutine(say(c, rid, f"after the kill {n}"))
                 for n, c in enumerate(alive)]
        acked += await within(gatherResults(sends), "17 sends")
        history = await admin.request("msg.history", {"room_id": rid, "after_seq": 0,
                                                      "limit": 200})
        ids = [m["msg_id"] for m in history["messages"]]
        assert sorted(ids) == sorted(a["msg_id"] for a in acked), "lost or doubled"
        seqs = [m["seq"] for m in history["messages"]]
        assert seqs == list(range(1, len(acked) + 1))
        for conn in alive:
            await barrier(conn)
    finally:
        status = cluster.process.stop()
    # twistd ends itself with the signal that stopped it, after an orderly shutdown.
    assert status == -signal.SIGTERM
    assert "Server Shut Down." in cluster.process.text()
    assert "chatnet stopped" in cluster.process.text()


@pytest_twisted.ensureDeferred
async def test_socket_activation_through_a_listen_endpoint(tmp_path):
    """``--listen systemd:domain=INET:index=0`` under systemd-socket-activate (the
    socket systemd would pass): the server accepts TLS on the inherited socket,
    and a client registers and sends a message."""
    port = free_port()
    data = tmp_path / "data"
    log = tmp_path / "twistd.log"
    process = subprocess.Popen(
        ["systemd-socket-activate", "--listen", f"127.0.0.1:{port}", "--fdname=chatnet",
         command("twistd"), "--nodaemon", "--pidfile=", f"--logfile={log}", "chatnet",
         "--data-dir", str(data), "--open-registration",
         "--listen", "systemd:domain=INET:index=0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # systemd-socket-activate starts twistd at the first connection, which
        # waits in the backlog until the server has started.
        conn = await within(Deferred.fromCoroutine(_connect_when_ready(port, data)),
                            "a connection", timeout=60)
        await conn.register("alice", PASSWORD)
        await conn.login("alice", PASSWORD)
        room = await conn.request("room.create", {"name": "activated", "visibility": "public"})
        await say(conn, room["room_id"], "hello through an inherited socket")
        assert f"chatnet listening on 127.0.0.1:{port}" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


async def _connect_when_ready(port: int, data: Path) -> ChatConnection:
    """Open a TCP connection (which makes systemd-socket-activate start the
    server), wait for the CA the server writes, then connect over TLS."""
    import socket

    deadline = time.monotonic() + 10
    while True:  # until systemd-socket-activate listens
        try:
            first = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "systemd-socket-activate never listened"
            await deferLater(reactor, 0.05, lambda: None)
    try:
        while not (data / "tls" / "ca.pem").exists():
            await deferLater(reactor, 0.05, lambda: None)
    finally:
        first.close()
    return await connect(reactor, "localhost", port, data / "tls" / "ca.pem")
