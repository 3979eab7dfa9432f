"""kill -9 under sustained sends: the scenario shared by ``tests/core/test_crash.py``
(a few cycles) and ``bench/crash.py`` (20 cycles, with figures).

A real ``twistd chatnet`` subprocess (:class:`~tests.support.process.TwistdServer`)
and real :class:`~chatnet.client.session.ChatSession` clients, each keeping
``window`` ``msg.send`` requests in flight into one room. A cycle waits until
``acks_per_cycle`` more sends have been acknowledged, SIGKILLs the server (no
shutdown at all) and starts it again on the same port and data directory; the
sessions reconnect, resume and re-send what was not acknowledged, with the same
``client_msg_id``. At the end the senders stop, every send still pending is
waited for, and the room's whole history is read back and compared with what
was acknowledged.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread

from chatnet.client.session import ChatSession
from chatnet.errors import ChatError
from tests.support.process import TwistdServer

PASSWORD = "crash test password"


@dataclass
class CrashReport:
    """What a crash run found.

    Attributes:
        cycles: SIGKILL + restart cycles done.
        clients: sending sessions.
        sent: distinct messages (client_msg_ids) sent.
        acknowledged: sends that got ``{msg_id, seq, ts}``.
        found: acknowledged messages present in history with the acknowledged
            ``msg_id`` and ``seq``.
        duplicates: extra copies of a ``client_msg_id`` in history.
        lost: acknowledged messages missing from history.
        mismatched: acknowledged messages in history under another msg_id or seq.
        failed: sends that failed with an error instead of being acknowledged.
        unacknowledged_at_kill: sends in flight at the moments of the kills (all
            re-sent after the restart), summed over cycles.
        history: messages in the room's history.
        seqs_gapless: whether the history's seqs are exactly 1..history.
        integrity: SQLite ``PRAGMA integrity_check`` after the run.
        seconds: wall time of the cycles and the drain.
        restart_seconds: per cycle, SIGKILL to listening again.
    """

    cycles: int = 0
    clients: int = 0
    sent: int = 0
    acknowledged: int = 0
    found: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatched: int = 0
    failed: list[str] = field(default_factory=list)
    unacknowledged_at_kill: int = 0
    history: int = 0
    seqs_gapless: bool = False
    integrity: str = ""
    seconds: float = 0.0
    restart_seconds: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The report as a flat map for printing."""
        return {
            "cycles": self.cycles, "clients": self.clients, "sent": self.sent,
            "acknowledged": self.acknowledged, "found": self.found,
            "duplicates": self.duplicates, "lost": self.lost, "mismatched": self.mismatched,
            "failed": len(self.failed), "unacknowledged_at_kill": self.unacknowledged_at_kill,
            "history": self.history, "seqs_gapless": self.seqs_gapless,
            "integrity": self.integrity, "seconds": round(self.seconds, 1),
            "restart_seconds_mean": round(sum(self.restart_seconds)
                                          / max(1, len(self.restart_seconds)), 2),
        }


class _Sender:
    """One session sending continuously, ``window`` requests in flight."""

    def __init__(self, session: ChatSession, name: str, room_id: int, run: _Run) -> None:
        self.session = session
        self.name = name
        self.room_id = room_id
        self.run = run
        self.count = 0

    async def loop(self) -> None:
        while self.run.sending:
            self.count += 1
            cmid = f"{self.name}-{self.count}"
            self.run.sent.add(cmid)
            try:
                ack = await self.session.send_message(self.room_id, f"{cmid} body",
                                                      client_msg_id=cmid)
            except ChatError as exc:
                self.run.failed.append(f"{cmid}: {exc}")
                continue
            self.run.acked[cmid] = (ack["msg_id"], ack["seq"])
            self.run.acked_now()


class _Run:
    def __init__(self) -> None:
        self.sending = True
        self.sent: set[str] = set()
        self.acked: dict[str, tuple[int, int]] = {}
        self.failed: list[str] = []
        self._waiting: tuple[int, Deferred[None]] | None = None

    def acked_now(self) -> None:
        if self._waiting is not None and len(self.acked) >= self._waiting[0]:
            d = self._waiting[1]
            self._waiting = None
            d.callback(None)

    def when_acked(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiting = (count, d)
        self.acked_now()
        return d


async def read_history(session: ChatSession, room_id: int) -> list[dict[str, Any]]:
    """The room's whole history, oldest first, page by page."""
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await session.call("msg.history", {"room_id": room_id, "after_seq": after,
                                                  "limit": 200})
        messages.extend(page["messages"])
        if not page["messages"] or not page.get("has_more"):
            return messages
        after = page["messages"][-1]["seq"]


async def crash_run(reactor: Any, data_dir: Path, *, cycles: int, clients: int = 4,
                    window: int = 4, acks_per_cycle: int = 100,
                    extra: tuple[str, ...] = ()) -> CrashReport:
    """Run the scenario (see the module docstring) and report.

    Args:
        reactor: the running reactor.
        data_dir: the server's data directory (created).
        cycles: SIGKILL + restart cycles.
        clients: sending sessions (users), all in one room.
        window: sends each session keeps in flight.
        acks_per_cycle: acknowledged sends between two kills.
        extra: more ``twistd chatnet`` options.

    Returns:
        the figures; the caller asserts on them.
    """
    server = TwistdServer(data_dir, "--open-registration", "--rate-limit", "100000",
                          "--rate-burst", "100000", *extra)
    report = CrashReport(clients=clients)
    run = _Run()
    sessions: list[ChatSession] = []
    await deferToThread(server.start)
    try:
        for n in range(clients):
            session = ChatSession(reactor, "localhost", server.port, f"sender{n}", PASSWORD,
                                  ca=server.ca, retry_initial=0.05, retry_max=0.5,
                                  retry_jitter=0.1)
            await session.start(register=True)
            sessions.append(session)
        room = await sessions[0].call("room.create", {"name": "crash", "visibility": "public"})
        room_id = room["room_id"]
        for session in sessions[1:]:
            await session.call("room.join", {"room_id": room_id})
        senders = [_Sender(s, f"sender{n}", room_id, run) for n, s in enumerate(sessions)]
        started = time.monotonic()
        loops = [Deferred.fromCoroutine(sender.loop())
                 for sender in senders for _ in range(window)]
        for _ in range(cycles):
            await run.when_acked(len(run.acked) + acks_per_cycle)
            report.unacknowledged_at_kill += sum(s.unacknowledged for s in sessions)
            killed = time.monotonic()
            server.kill()
            await deferToThread(server.start)
            report.restart_seconds.append(time.monotonic() - killed)
            report.cycles += 1
        # One more stretch of sends on the last server, then let every pending
        # send come back acknowledged (or failed) before counting.
        await run.when_acked(len(run.acked) + acks_per_cycle)
        run.sending = False
        await gatherResults(loops)
        report.seconds = time.monotonic() - started
        for session in sessions:
            await session.when_connected()
        history = await read_history(sessions[0], room_id)
    finally:
        run.sending = False
        for session in sessions:
            await session.close()
        await deferToThread(server.stop)
    counts = Counter(m["client_msg_id"] for m in history)
    by_cmid = {m["client_msg_id"]: m for m in history}
    report.sent = len(run.sent)
    report.acknowledged = len(run.acked)
    report.failed = run.failed
    report.history = len(history)
    report.duplicates = sum(c - 1 for c in counts.values())
    for cmid, (msg_id, seq) in run.acked.items():
        message = by_cmid.get(cmid)
        if message is None:
            report.lost += 1
        elif (message["msg_id"], message["seq"]) != (msg_id, seq):
            report.mismatched += 1
        else:
            report.found += 1
    report.seqs_gapless = [m["seq"] for m in history] == list(range(1, len(history) + 1))
    with contextlib.closing(sqlite3.connect(data_dir / "chatnet.db")) as conn:
        report.integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    return report
