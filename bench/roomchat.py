"""Steady chat in several rooms, measured: the common part of the reliability benchmarks.

``bench/hostile.py``, ``bench/slow_consumers.py`` and ``bench/soak.py`` all need
people chatting in rooms while something else happens, and need to know what
each of them received and how late. This module provides, on top of
``bench/fanout.py``'s server and ``/proc`` helpers:

* :func:`setup_main` — a setup process (not measured): registers users over the
  protocol, logs each in once for a resume token, creates public rooms and has
  their members join (``room.join`` only, so that it works whether or not
  ``room.create {members}`` makes members or invitations).
* :func:`chat_main` — a load-generator process holding some of the clients
  (the chatnet client library over verified TLS, logged in with
  ``auth.resume``, pinging every 30 s like real clients). Message ``k`` is due
  at ``t0 + k / rate``; it goes to room ``rooms[k % R]`` and is sent by a
  member of that room in turn; its body is ``"k send_time_ns padding"``. Each
  client records every ``msg`` it receives: which ``k`` (so a miss or a
  duplicate is exact) and the latency. Optionally some clients stop reading
  at a given time (slow consumers), and one process makes a new login
  (``auth.resume``) every so often, to show that the server still admits
  people.
* :class:`Sampler` — a thread sampling the server's RSS, CPU time and open
  file descriptors from ``/proc``.
* :func:`phase_summary` — latency percentiles, misses and acks per phase.

Phases are windows of the schedule given in seconds after ``t0`` (e.g. quiet,
hostile, after); a message belongs to the phase in which it is *due*.
"""

from __future__ import annotations

import array
import itertools
import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fanout  # the fan-out benchmark's server, /proc and child-process helpers

HOST = fanout.HOST
PASSWORD = fanout.PASSWORD


# -- setup (own process, not measured) -----------------------------------------------------------

async def _setup(reactor: Any, pipe: Any, port: int, ca: str, users: list[str],
                 rooms: list[tuple[str, list[str]]], concurrency: int) -> None:
    from chatnet.client.connection import connect

    started = time.time()
    lanes = [users[i::concurrency] for i in range(concurrency)]
    addresses = (fanout.client_address(n) for n in itertools.count())

    async def register_and_login(names: list[str]) -> dict[str, str]:
        tokens = {}
        for name in names:
            # One connection each: a connection must log in within the server's
            # login deadline (10 s), and logs in once.
            conn = await connect(reactor, HOST, port, ca, source=next(addresses))
            await conn.register(name, PASSWORD)
            tokens[name] = (await conn.login(name, PASSWORD))["token"]
            await conn.close()
        return tokens

    tokens: dict[str, str] = {}
    for part in await fanout._bounded(reactor, concurrency, [lane for lane in lanes if lane],
                                      register_and_login):
        tokens.update(part)
    fanout.log(f"setup: {len(users)} users registered and logged in "
               f"({time.time() - started:.1f} s)")

    room_ids: dict[str, int] = {}

    async def make_room(spec: tuple[str, list[str]]) -> None:
        name, members = spec
        owner = await connect(reactor, HOST, port, ca, source=next(addresses))
        await owner.resume(tokens[members[0]])
        room = await owner.request("room.create", {"name": name, "visibility": "public"})
        room_ids[name] = room["room_id"]
        await owner.close()

    await fanout._bounded(reactor, concurrency, rooms, make_room)

    joins = [(room_ids[name], member) for name, members in rooms for member in members[1:]]
    by_member: dict[str, list[int]] = {}
    for room_id, member in joins:
        by_member.setdefault(member, []).append(room_id)

    async def join(member: str) -> None:
        conn = await connect(reactor, HOST, port, ca, source=next(addresses))
        await conn.resume(tokens[member])
        for room_id in by_member[member]:
            await conn.request("room.join", {"room_id": room_id})
        await conn.close()

    await fanout._bounded(reactor, concurrency, list(by_member), join)
    fanout.log(f"setup: {len(rooms)} rooms, {len(joins)} joins ({time.time() - started:.1f} s)")
    pipe.send({"tokens": tokens, "rooms": room_ids})


def setup_main(pipe: Any, port: int, ca: str, users: list[str],
               rooms: list[tuple[str, list[str]]], concurrency: int = 8) -> None:
    """Process target: register ``users``, create ``rooms`` (name, members; the first
    member creates it), send ``{"tokens": {name: token}, "rooms": {name: room_id}}``."""
    fanout._run_child(_setup, pipe, port, ca, users, rooms, concurrency)


def run_setup(port: int, ca: str, users: list[str], rooms: list[tuple[str, list[str]]],
              concurrency: int = 8, timeout: float = 900.0) -> dict[str, Any]:
    """Run :func:`setup_main` in a child process and return what it sent."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=setup_main, name="bench-setup",
                       args=(child, port, ca, users, rooms, concurrency))
    proc.start()
    if not parent.poll(timeout):
        proc.terminate()
        raise SystemExit("setup did not finish in time")
    result: dict[str, Any] = parent.recv()
    proc.join(30)
    return result


# -- the schedule ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """Who sends message ``k``, to which room, when.

    Attributes:
        rate: messages per second in all rooms together.
        rooms: room ids; message ``k`` goes to ``rooms[k % len(rooms)]``.
        senders: room id -> the global client indices that send there, in turn.
        phases: ``(name, start_s, end_s)`` after ``t0``, contiguous.
    """

    rate: float
    rooms: list[int]
    senders: dict[int, list[int]]
    phases: list[tuple[str, float, float]]

    def k_range(self, start_s: float, end_s: float) -> range:
        """The messages due in ``[start_s, end_s)`` after ``t0``."""
        return range(math.ceil(start_s * self.rate), math.ceil(end_s * self.rate))

    @property
    def k_end(self) -> int:
        """One past the last message."""
        return math.ceil(self.phases[-1][2] * self.rate)

    def room_of(self, k: int) -> int:
        """The room message ``k`` goes to."""
        return self.rooms[k % len(self.rooms)]

    def sender_of(self, k: int) -> int:
        """The client index that sends message ``k``."""
        senders = self.senders[self.room_of(k)]
        return senders[(k // len(self.rooms)) % len(senders)]

    def phase_of(self, k: int) -> str:
        """The name of the phase message ``k`` is due in."""
        t = k / self.rate
        for name, start, end in self.phases:
            if start <= t < end:
                return name
        return self.phases[-1][0]


# -- load generator (own processes) ---------------------------------------------------------------

@dataclass(eq=False)
class _Member:
    index: int
    name: str
    room_id: int
    got: bytearray
    conn: Any = None
    stuck: bool = False
    lost_at: float | None = None


@dataclass
class _Recorder:
    """Every delivery of one process: which message, latency, when."""

    ks: array.array[int] = field(default_factory=lambda: array.array("q"))
    latency_ms: array.array[float] = field(default_factory=lambda: array.array("d"))
    at: array.array[float] = field(default_factory=lambda: array.array("d"))
    other: int = 0
    offline: dict[str, float] = field(default_factory=dict)


def _listener(member: _Member, recorder: _Recorder, k_end: int) -> Any:
    got = member.got

    def on_event(event: Any) -> None:
        if event.name == "msg":
            now = time.time_ns()
            try:
                k_text, sent_text, _ = event.data["message"]["body"].split(" ", 2)
                k, sent = int(k_text), int(sent_text)
            except (KeyError, ValueError, AttributeError):
                recorder.other += 1  # not a benchmark message (a flood's, a setup's)
                return
            if 0 <= k < k_end:
                if got[k] < 255:
                    got[k] += 1
                recorder.ks.append(k)
                recorder.latency_ms.append((now - sent) / 1e6)
                recorder.at.append(now / 1e9)
        elif event.name == "presence" and event.data.get("state") == "offline":
            name = event.data.get("username")
            if isinstance(name, str) and name not in recorder.offline:
                recorder.offline[name] = time.time()

    return on_event


async def _chat(reactor: Any, pipe: Any, p: dict[str, Any]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.internet.threads import deferToThread

    from chatnet.client.connection import connect

    schedule: Schedule = p["schedule"]
    k_end = schedule.k_end
    recorder = _Recorder()
    stopping = [False]
    stuck_indices = set(p.get("stuck", ()))

    async def open_client(user: tuple[int, str, str, int]) -> _Member:
        index, name, token, room_id = user
        member = _Member(index, name, room_id, bytearray(k_end), stuck=index in stuck_indices)
        conn = await connect(reactor, HOST, p["port"], p["ca"],
                             source=fanout.client_address(index))
        await conn.resume(token)
        conn.add_listener(_listener(member, recorder, k_end))

        def lost(_: Any) -> None:
            if not stopping[0]:
                member.lost_at = time.time()

        conn.when_lost().addCallback(lost)
        member.conn = conn
        return member

    members: list[_Member] = await fanout._bounded(reactor, p["connect_concurrency"],
                                                   p["users"], open_client)
    by_index = {m.index: m for m in members}
    pipe.send(("ready", len(members)))
    t0: float = await deferToThread(pipe.recv)

    pingers = []
    for n, member in enumerate(members):
        ping = LoopingCall(_ping, member)
        ping.clock = reactor
        pingers.append(ping)
        reactor.callLater(max(0.0, t0 - time.time()) + 30 * n / len(members),
                          fanout._start_loop, ping)

    # Slow consumers: stop reading from the socket (the TLS transport pauses TCP reads).
    stuck_at = p.get("stuck_at")
    if stuck_indices and stuck_at is not None:
        def stop_reading() -> None:
            for member in members:
                if member.stuck and member.conn.transport is not None:
                    member.conn.transport.pauseProducing()
        reactor.callLater(max(0.0, t0 + stuck_at - time.time()), stop_reading)

    probe_results: list[tuple[float, str, float]] = []
    probe_loop = None
    if p.get("probe"):
        probe_users = p["probe"]
        probe_n = [0]

        async def probe_once() -> None:
            _name, token = probe_users[probe_n[0] % len(probe_users)]
            probe_n[0] += 1
            started = time.time()
            outcome = "ok"
            try:
                conn = await connect(reactor, HOST, p["port"], p["ca"],
                                     source=fanout.client_address(probe_n[0]))
                try:
                    await conn.resume(token)
                finally:
                    conn.abort()
            except Exception as exc:  # every way a login can fail is an outcome here
                outcome = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
            probe_results.append((started - t0, outcome, (time.time() - started) * 1000))

        def probe() -> None:
            if time.time() < t0 + schedule.phases[-1][2]:
                Deferred.fromCoroutine(probe_once())

        probe_loop = LoopingCall(probe)
        probe_loop.clock = reactor
        reactor.callLater(max(0.0, t0 - time.time()), _start_every, probe_loop,
                          p.get("probe_interval", 1.0))

    # Sending: message k is due at t0 + k / rate, from its sender if that is ours.
    mine = [k for k in range(k_end) if schedule.sender_of(k) in by_index]
    sent_ns = array.array("q", [0]) * k_end
    ack_ms = array.array("d", [math.nan]) * k_end
    errors: Counter[str] = Counter()
    pad = "x" * p.get("body_bytes", 64)
    pending = [0]
    done: Deferred[None] = Deferred()
    position = [0]

    def acked(_result: Any, k: int) -> None:
        pending[0] -= 1
        ack_ms[k] = (time.time_ns() - sent_ns[k]) / 1e6

    def failed(failure: Any, k: int) -> None:
        pending[0] -= 1
        code = getattr(getattr(failure.value, "code", None), "value", None)
        errors[f"{schedule.phase_of(k)}:{code or type(failure.value).__name__}"] += 1

    def tick() -> None:
        now = time.time()
        while position[0] < len(mine) and t0 + mine[position[0]] / schedule.rate <= now:
            k = mine[position[0]]
            position[0] += 1
            member = by_index[schedule.sender_of(k)]
            ns = time.time_ns()
            sent_ns[k] = ns
            pending[0] += 1
            try:
                d = member.conn.request("msg.send", {"room_id": schedule.room_of(k),
                                                     "body": f"{k} {ns} {pad}",
                                                     "client_msg_id": f"bench-{k}"})
            except Exception as exc:
                pending[0] -= 1
                errors[f"{schedule.phase_of(k)}:{type(exc).__name__}"] += 1
            else:
                d.addCallbacks(acked, failed, callbackArgs=(k,), errbackArgs=(k,))
            now = time.time()
        if position[0] >= len(mine):
            done.callback(None)
        else:
            reactor.callLater(max(0.0, t0 + mine[position[0]] / schedule.rate - time.time()),
                              tick)

    reactor.callLater(max(0.0, t0 - time.time()), tick)
    await done

    # Drain: until every reader has every message of its room, or the drain time is over.
    def complete(member: _Member) -> bool:
        got = member.got
        room_id = member.room_id
        return all(got[k] for k in range(k_end) if schedule.room_of(k) == room_id)

    readers = [m for m in members if not m.stuck]
    drain_until = max(time.time(), t0 + schedule.phases[-1][2]) + p.get("drain", 5.0)
    while time.time() < drain_until:
        if pending[0] == 0 and all(complete(m) for m in readers):
            break
        await deferLater(reactor, 0.1, lambda: None)

    stopping[0] = True
    for ping in pingers:
        if ping.running:
            ping.stop()
    if probe_loop is not None and probe_loop.running:
        probe_loop.stop()

    # Per phase and client: expected, missing, duplicated.
    per_phase: dict[str, dict[str, int]] = {}
    for name, start, end in schedule.phases:
        ks = schedule.k_range(start, end)
        counts = {"expected": 0, "delivered": 0, "missing": 0, "duplicates": 0}
        for member in readers:
            got = member.got
            for k in ks:
                if schedule.room_of(k) == member.room_id:
                    counts["expected"] += 1
                    n = got[k]
                    counts["delivered"] += min(n, 1)
                    counts["missing"] += n == 0
                    counts["duplicates"] += max(0, n - 1)
        per_phase[name] = counts

    report = {
        "pid": os.getpid(), "clients": len(members),
        "per_phase": per_phase, "errors": dict(errors),
        "sent_ks": array.array("q", mine[:position[0]]).tobytes(),
        "ack_ms": ack_ms.tobytes(),
        "ks": recorder.ks.tobytes(), "latency_ms": recorder.latency_ms.tobytes(),
        "at": recorder.at.tobytes(), "other_msgs": recorder.other,
        "offline": recorder.offline,
        "lost": {m.name: m.lost_at for m in members if m.lost_at is not None},
        "stuck_names": [m.name for m in members if m.stuck],
        "probe": probe_results,
    }
    pipe.send(("report", report))
    for member in members:
        member.conn.abort()
    await deferLater(reactor, 0.2, lambda: None)


def _start_every(loop: Any, interval: float) -> None:
    if not loop.running:
        loop.start(interval, now=True).addErrback(lambda _f: None)


def _ping(member: _Member) -> None:
    # Stuck clients ping too: they still write, so the server's idle timeout never
    # applies and only the output limit can drop them.
    conn = member.conn
    if conn is not None and not conn.lost.called:
        conn.request("session.ping").addErrback(lambda _f: None)


def chat_main(pipe: Any, params: dict[str, Any]) -> None:
    """Process target: hold ``params["users"]`` and chat on ``params["schedule"]``.

    ``params``: ``port``, ``ca``, ``users`` [(index, name, token, room_id)],
    ``schedule`` (:class:`Schedule`), ``connect_concurrency``, and optionally
    ``body_bytes``, ``drain`` (s), ``stuck`` (indices that stop reading at
    ``stuck_at`` s after t0), ``probe`` [(name, token)] with ``probe_interval``.
    Sends ``("ready", n)``, waits for ``t0``, sends ``("report", {...})``.
    """
    fanout._run_child(_chat, pipe, params)


class Generators:
    """The load-generator processes of one run.

    Args:
        params: one ``chat_main`` parameter map per process.
    """

    def __init__(self, params: list[dict[str, Any]]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for n, p in enumerate(params):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=chat_main, name=f"bench-chat-{n}", args=(theirs, p))
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def wait_ready(self, timeout: float = 600.0) -> int:
        """Wait until every process has its clients logged in; returns how many."""
        total = 0
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise SystemExit("a load generator did not connect its clients in time")
            tag, count = pipe.recv()
            assert tag == "ready"
            total += count
        return int(total)

    def start(self, t0: float) -> None:
        """Tell every process the schedule's ``t0`` (``time.time()`` seconds)."""
        for pipe in self.pipes:
            pipe.send(t0)

    def reports(self, timeout: float) -> list[dict[str, Any]]:
        """Collect every process's report."""
        out = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise SystemExit("a load generator did not report")
            tag, report = pipe.recv()
            assert tag == "report"
            out.append(report)
        for proc in self.procs:
            proc.join(10)
        return out

    def stop(self) -> None:
        """Terminate what is still running."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()


def split_users(users: list[tuple[int, str, str, int]], procs: int
                ) -> list[list[tuple[int, str, str, int]]]:
    """Deal clients to ``procs`` processes, round robin (rooms are spread over all)."""
    return [users[n::procs] for n in range(procs)]


# -- results --------------------------------------------------------------------------------------

def latency_summary(values: list[float] | array.array[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max of some latencies, in their unit."""
    ordered = sorted(values)
    return {"n": len(ordered), "p50": fanout._percentile(ordered, 50),
            "p90": fanout._percentile(ordered, 90), "p99": fanout._percentile(ordered, 99),
            "p999": fanout._percentile(ordered, 99.9),
            "max": ordered[-1] if ordered else math.nan}


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Put the processes' reports together: arrays joined, counts summed."""
    ks: array.array[int] = array.array("q")
    latency: array.array[float] = array.array("d")
    at: array.array[float] = array.array("d")
    sent: array.array[int] = array.array("q")
    acks: list[array.array[float]] = []
    per_phase: dict[str, Counter[str]] = {}
    errors: Counter[str] = Counter()
    offline: dict[str, float] = {}
    lost: dict[str, float] = {}
    probe: list[tuple[float, str, float]] = []
    stuck: list[str] = []
    for r in reports:
        ks.frombytes(r["ks"])
        latency.frombytes(r["latency_ms"])
        at.frombytes(r["at"])
        sent.frombytes(r["sent_ks"])
        a: array.array[float] = array.array("d")
        a.frombytes(r["ack_ms"])
        acks.append(a)
        for name, counts in r["per_phase"].items():
            per_phase.setdefault(name, Counter()).update(counts)
        errors.update(r["errors"])
        for name, t in r["offline"].items():
            offline[name] = min(t, offline.get(name, t))
        lost.update(r["lost"])
        probe.extend(r["probe"])
        stuck.extend(r["stuck_names"])
    ack_ms = [next((a[k] for a in acks if not math.isnan(a[k])), math.nan)
              for k in range(len(acks[0]))] if acks else []
    return {"ks": ks, "latency_ms": latency, "at": at, "sent": sent, "ack_ms": ack_ms,
            "per_phase": {k: dict(v) for k, v in per_phase.items()}, "errors": dict(errors),
            "offline": offline, "lost": lost, "probe": sorted(probe), "stuck": stuck,
            "other_msgs": sum(r["other_msgs"] for r in reports)}


def phase_summary(merged: dict[str, Any], schedule: Schedule) -> dict[str, dict[str, Any]]:
    """Per phase: latency percentiles (ms), deliveries, misses, sends and acks."""
    by_phase: dict[str, list[float]] = {name: [] for name, _, _ in schedule.phases}
    bounds = [(name, schedule.k_range(start, end)) for name, start, end in schedule.phases]

    def phase(k: int) -> str:
        for name, ks in bounds:
            if k in ks:
                return name
        return bounds[-1][0]

    for k, lat in zip(merged["ks"], merged["latency_ms"], strict=True):
        by_phase[phase(k)].append(lat)
    out: dict[str, dict[str, Any]] = {}
    for name, ks in bounds:
        sent = sum(1 for k in merged["sent"] if k in ks)
        acked = [merged["ack_ms"][k] for k in ks if not math.isnan(merged["ack_ms"][k])]
        errors = {key.split(":", 1)[1]: n for key, n in merged["errors"].items()
                  if key.startswith(name + ":")}
        out[name] = {"latency_ms": latency_summary(by_phase[name]),
                     "ack_ms": latency_summary(acked),
                     "messages": len(ks), "sent": sent, "acked": len(acked),
                     "send_errors": errors, **merged["per_phase"].get(name, {})}
    return out


# -- the server from /proc ------------------------------------------------------------------------

def open_fds(pid: int) -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler(threading.Thread):
    """Samples a process's RSS (KiB), CPU time (s) and open fds every ``interval`` s.

    Attributes:
        samples: ``(time.time(), rss_kib, cpu_s, fds)`` tuples, oldest first.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(name="server-sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, float, int]] = []
        self._stop_event = threading.Event()

    def sample(self) -> tuple[float, int, float, int] | None:
        """Take one sample now (None once the process is gone)."""
        try:
            s = (time.time(), fanout.memory_kib(self.pid)["VmRSS"],
                 fanout.cpu_seconds(self.pid), open_fds(self.pid))
        except (OSError, KeyError):
            return None
        self.samples.append(s)
        return s

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._stop_event.wait(self.interval):
            if self.sample() is None:
                return

    def stop(self) -> None:
        """Stop sampling."""
        self._stop_event.set()

    def between(self, start: float, end: float) -> list[tuple[float, int, float, int]]:
        """The samples taken in ``[start, end]``."""
        return [s for s in list(self.samples) if start <= s[0] <= end]

    def peak_rss(self, start: float, end: float) -> int:
        """The largest RSS sampled in ``[start, end]``, KiB (0 if none)."""
        return max((s[1] for s in self.between(start, end)), default=0)
