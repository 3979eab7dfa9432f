"""Fan-out benchmark: N TLS clients in one room, S senders, R messages/s in total.

This is a benchmark, not a test (DESIGN.md "Targets"). It

1. starts the server under test as its own subprocess: ``twistd -n --pidfile=
   chatnet ...`` on a fresh data directory (rate limits set out of the way), or
   the bare Twisted fan-out server ``bench/bare_fanout_server.py`` (the floor);
2. sets up, in a helper process, over the protocol (not measured): registers N
   users, logs each in once (``auth.login``) to get a resume token, and makes
   one public room with all N as members (``room.create``, then ``room.join``
   by each: ``members`` of ``room.create`` are only invited);
3. starts ``--procs`` load-generator processes, each with its own Twisted
   reactor and N/procs of the clients, connected with the chatnet client
   library (TLS verified against the server's CA) and logged in with
   ``auth.resume``; clients ping every 30 s as real clients do;
4. runs ``--warmup`` seconds, then the measured window of ``--duration``
   seconds, then lets deliveries drain. Message k is due at ``t0 + k/R`` and is
   sent by sender ``k mod S`` (senders are spread over the processes), so the
   total pace is even; its body carries ``k`` and ``time.time_ns()`` at send.
   Every client records the latency of every ``msg`` event it receives;
5. reads the CPU time (utime + stime from ``/proc/<pid>/stat``) of the server
   and of each generator at the start and at the end of the window, and the
   server's resident memory at the end.

Every member, the sender included, must receive every message. A message
belongs to the window when it is *due* in the window; expected deliveries are
``messages due in the window x N``; lost deliveries are those that did not
arrive by the end of the drain. Deliveries per server CPU-second divides the
deliveries of window messages by the server's CPU time in the window (edge
effects are of the order of the latency over the window length).

Load generators (``--generator``): ``python`` (the default) is what step 3
describes. ``node`` runs each generator as ``node bench/loadgen/loadgen.mjs``
instead (:class:`NodeGenerator`): the same clients, pace, bodies, statistics and
report, for less CPU per received frame (TLS decrypted into one shared buffer,
``msg`` frames walked to the body's digits rather than decoded; always "light"),
so that on a small machine the server under test, not the generators, gets the
cores (the 2-core machine of ``docs/benchmarks.md``: Python generators take
about half of it). The parent talks to it in JSON lines over its stdin/stdout,
and its own pid is the one whose CPU the figures report. It needs Node.js 18 or
later and its npm dependencies (``npm ci --prefix bench/loadgen``, which is run
when ``bench/loadgen/node_modules`` is missing); ``LOADGEN_NODE_ARGS`` adds node
options (e.g. ``--cpu-prof --cpu-prof-dir=/tmp/prof``). Send and receive times
are wall-clock nanoseconds (``time.time_ns()``; in node, the monotonic
``performance.now()`` plus ``performance.timeOrigin``, within about 10 us of
Python's clock), so latency is comparable across generator processes.

Ramp mode (``--ramp R1,R2,...``): for each server of ``--ramp-servers`` in
turn (the bare server first: the ceiling to compare with, in the same run),
run at each rate in order, each on a fresh server, until p99 reaches
``--ramp-p99`` ms or a delivery is lost or a send refused; the most messages/s
held is the last rate before that. Printed: one line per rate and the held
rates side by side.

Example (from the repository root, with the project's virtualenv)::

    .venv/bin/python bench/fanout.py --clients 100 --senders 10 --rate 200 --duration 20
    .venv/bin/python bench/fanout.py --clients 1000 --rate 20 --server bare --json out.json
    npm ci --prefix bench/loadgen   # once, for --generator node
    .venv/bin/python bench/fanout.py --clients 1000 --rate 20 --generator node
    .venv/bin/python bench/fanout.py --clients 100 --senders 100 --duration 10 \
        --ramp 500,1000,1500,2000,3000,4000,5000,6500,8000,10000,13000
"""

from __future__ import annotations

import argparse
import array
import base64
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PASSWORD = "bench password 1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- /proc --------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (all cores, anything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def wait_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server under test ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: The ``twistd chatnet`` options of the fan-out benchmark: registration open for the
#: setup, rate limits and the login deadline out of the way (what is measured is the
#: fan-out, not the limits; the setup registers many users per anonymous connection).
BENCH_OPTIONS = ("--open-registration", "--rate-limit", "1000000", "--rate-burst", "1000000",
                 "--registrations-per-hour", "10000000", "--login-timeout", "3600",
                 "--connects-per-address", "10000000")


def client_address(n: int) -> str:
    """The ``n``-th loopback address normal clients connect from (127.1.0.1 and up):
    like many people on many machines, so that per-address limits see each alone."""
    return f"127.1.{n // 250 % 250}.{n % 250 + 1}"


def start_server(kind: str, data_dir: Path, port: int, tls_writes: str = "buffered",
                 options: tuple[str, ...] | list[str] = BENCH_OPTIONS,
                 cprofile: str | None = None,
                 log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the server as a subprocess; return once it accepts TCP connections.

    ``options`` are the ``twistd chatnet`` options after port, interface and data
    directory (chatnet only); the reliability benchmarks pass their own to keep
    the server's default limits. ``cprofile``: a path for twistd's own profiler
    (cProfile of the reactor thread for the server's whole life, stats saved at
    exit; chatnet only). ``log_path``: where its output goes (default
    ``data_dir/server.log``; two servers sharing a data directory need two).
    """
    log_path = log_path or data_dir / "server.log"
    if kind == "chatnet":
        twistd = Path(sys.executable).parent / "twistd"
        if not twistd.exists():
            found = shutil.which("twistd")
            if found is None:
                raise SystemExit("twistd not found next to the Python interpreter nor on PATH")
            twistd = Path(found)
        profiling = ([f"--profile={cprofile}", "--profiler=cprofile", "--savestats"]
                     if cprofile else [])
        cmd = [str(twistd), "-n", "--pidfile=", *profiling, "chatnet", "--port", str(port),
               "--interface", HOST, "--data-dir", str(data_dir), *options]
    else:
        cmd = [sys.executable, str(REPO / "bench" / "bare_fanout_server.py"),
               "--port", str(port), "--interface", HOST, "--data-dir", str(data_dir),
               "--tls-writes", tls_writes]
    log("server: " + " ".join(cmd))
    server_log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, cwd=data_dir)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log_path}:\n"
                             + log_path.read_text(errors="replace")[-3000:])
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not listen within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    """Sample the server with py-spy for the window (collapsed stacks in ``--profile``)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(py_spy if py_spy.exists() else "py-spy"), "record", "-p", str(pid),
           "-d", str(max(1, int(args.duration))), "-r", "100", "--nonblocking", "-f", "raw",
           "-o", args.profile]
    if args.native:
        cmd.append("--native")
    log("profiling: " + " ".join(cmd))
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- child processes: common ---------------------------------------------------------------------

def _run_child(coroutine_fn: Any, *args: Any) -> None:
    """Run ``coroutine_fn(reactor, *args)`` under a fresh reactor in this process."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(coroutine_fn(reactor, *args)))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


async def _bounded(reactor: Any, concurrency: int, items: list[Any], fn: Any) -> list[Any]:
    """``[await fn(item) for item in items]`` with at most ``concurrency`` at once."""
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(concurrency)
    return list(await gatherResults(
        [semaphore.run(lambda item=item: Deferred.fromCoroutine(fn(item))) for item in items],
        consumeErrors=True))


# -- setup (own process, not measured) -----------------------------------------------------------

async def _setup(reactor: Any, pipe: Any, port: int, ca: str, usernames: list[str],
                 concurrency: int, rooms: int = 1) -> None:
    from chatnet.client.connection import connect

    started = time.time()

    # 1. Register everyone, pipelined over a few anonymous connections.
    lanes = [usernames[i::concurrency] for i in range(concurrency)]

    async def register_lane(names: list[str]) -> None:
        conn = await connect(reactor, HOST, port, ca)
        for name in names:
            await conn.register(name, PASSWORD)
        await conn.close()

    await _bounded(reactor, concurrency, [lane for lane in lanes if lane], register_lane)
    log(f"setup: registered {len(usernames)} users in {time.time() - started:.1f} s")

    # 2. User r makes room r (creating rooms has a per-user budget); user i is
    # in room i % rooms.
    tokens: dict[str, str] = {}
    room_ids: list[int] = []

    async def make_room(r: int) -> int:
        owner = await connect(reactor, HOST, port, ca)
        tokens[usernames[r]] = (await owner.login(usernames[r], PASSWORD))["token"]
        room = await owner.request("room.create", {"name": f"bench{r}", "visibility": "public"})
        await owner.close()
        return int(room["room_id"])

    room_ids = await _bounded(reactor, concurrency, list(range(rooms)), make_room)

    # 3. Everyone else logs in once (for a resume token) and joins.
    async def login(i: int) -> None:
        conn = await connect(reactor, HOST, port, ca)
        tokens[usernames[i]] = (await conn.login(usernames[i], PASSWORD))["token"]
        await conn.request("room.join", {"room_id": room_ids[i % rooms]})
        await conn.close()

    await _bounded(reactor, concurrency, list(range(rooms, len(usernames))), login)
    log(f"setup: {rooms} room(s) with {len(usernames)} members in all, tokens issued, "
        f"{time.time() - started:.1f} s")
    pipe.send({"room_ids": room_ids, "tokens": tokens})


def setup_main(pipe: Any, port: int, ca: str, usernames: list[str], concurrency: int,
               rooms: int = 1) -> None:
    _run_child(_setup, pipe, port, ca, usernames, concurrency, rooms)


# -- load generator (own processes) --------------------------------------------------------------

class Receiver:
    """The ``msg`` listener of one client."""

    __slots__ = ("got", "k_end", "k_start", "latencies", "other")

    def __init__(self, k_start: int, k_end: int, latencies: array.array[float]) -> None:
        self.k_start = k_start
        self.k_end = k_end
        self.latencies = latencies
        self.got = 0       # deliveries of window messages
        self.other = 0     # deliveries of warm-up messages

    def __call__(self, event: Any) -> None:
        if event.name == "msg":
            self.body(event.data["message"]["body"])

    def body(self, body: str) -> None:
        """One delivered message's body (``"k send_ns padding"``)."""
        now = time.time_ns()
        k_text, sent_text, _ = body.split(" ", 2)
        k = int(k_text)
        if self.k_start <= k < self.k_end:
            self.got += 1
            self.latencies.append((now - int(sent_text)) / 1e6)
        else:
            self.other += 1


def expected_in_room(room: int, rooms: int, senders: int, k_start: int, k_end: int) -> int:
    """Messages of the window sent to room index ``room``: message k goes out from
    sender ``k % senders``, who is in room ``(k % senders) % rooms``."""
    return sum(1 for k in range(k_start, k_end) if k % senders % rooms == room)


def _receive_lightly(conn: Any, receiver: Receiver) -> None:
    """From now on, ``msg`` events on ``conn`` go straight to ``receiver`` (one
    msgpack decode, no event objects or listeners: the client library's cost per
    event would make the generators, not the server, the limit at high rates);
    every other frame still goes through the library (answers, pings)."""
    from chatnet.wire.codec import unpack
    from chatnet.wire.framing import FrameDecoder, encode_frame

    decoder = FrameDecoder(64 * 1024 * 1024)
    library = conn.dataReceived

    def data_received(data: bytes) -> None:
        decoder.feed(data)
        others = []
        while (payload := decoder.next_frame()) is not None:
            message = unpack(payload)
            if message.get("event") == "msg":
                receiver.body(message["data"]["message"]["body"])
            else:
                others.append(encode_frame(payload))
        if others:
            library(b"".join(others))

    conn.dataReceived = data_received


async def _generate(reactor: Any, pipe: Any, p: dict[str, Any]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.internet.threads import deferToThread

    from chatnet.client.connection import connect

    room_ids, rate, senders = p["room_ids"], p["rate"], p["senders"]
    k_start, k_end = p["k_start"], p["k_end"]
    latencies: array.array[float] = array.array("d")
    ack_latencies: array.array[float] = array.array("d")
    lost_connections = [0]
    stopping = False

    def connection_lost(_: Any) -> None:
        if not stopping:
            lost_connections[0] += 1

    async def open_client(user: tuple[int, str, str]) -> tuple[int, Any, Receiver]:
        index, _name, token = user
        conn = await connect(reactor, HOST, p["port"], p["ca"])
        await conn.resume(token)
        receiver = Receiver(k_start, k_end, latencies)
        if p["light"]:
            _receive_lightly(conn, receiver)
        else:
            conn.add_listener(receiver)
        conn.when_lost().addCallback(connection_lost)
        return index, conn, receiver

    clients = await _bounded(reactor, p["connect_concurrency"], p["users"], open_client)
    sender_conns = {index: conn for index, conn, _ in clients if index < senders}
    pipe.send(("ready", len(clients)))

    t0 = await deferToThread(pipe.recv)

    # Clients ping every 30 s (PROTOCOL.md 3.7), at spread-out phases.
    pingers = []
    for n, (_index, conn, _receiver) in enumerate(clients):
        ping = LoopingCall(conn.request, "session.ping")
        ping.clock = reactor
        pingers.append(ping)
        reactor.callLater(30 * n / len(clients), _start_loop, ping)

    # Message k is due at t0 + k / rate and goes out from sender k % senders.
    mine = sorted(i for i in sender_conns)  # the sender indices this process owns
    pad = "x" * p["body_bytes"]
    # client_msg_id is idempotent per sender: runs on the same server need their own ids.
    prefix = p.get("client_msg_prefix", "bench")
    sent = [0, 0, 0]  # sent in window, acks, errors
    lags: list[float] = []
    done = Deferred()

    def due_ks() -> Any:
        cycle = 0
        while True:
            base = cycle * senders
            for index in mine:
                k = base + index
                if k >= k_end:
                    return
                yield k
            cycle += 1

    ks = due_ks()
    next_k = [next(ks, None)]

    def acked(_result: Any, started: int, counted: bool) -> None:
        if counted:
            sent[1] += 1
            ack_latencies.append((time.time_ns() - started) / 1e6)

    def failed(failure: Any, counted: bool) -> None:
        if counted:
            sent[2] += 1

    def tick() -> None:
        now = time.time()
        while next_k[0] is not None and t0 + next_k[0] / rate <= now:
            k = next_k[0]
            counted = k_start <= k < k_end
            conn = sender_conns[k % senders]
            ns = time.time_ns()
            if counted:
                sent[0] += 1
                lags.append(ns / 1e9 - (t0 + k / rate))
            try:
                d = conn.request("msg.send", {"room_id": room_ids[k % senders % len(room_ids)],
                                              "body": f"{k} {ns} {pad}",
                                              "client_msg_id": f"{prefix}-{k}"})
            except Exception:  # the connection is closed: the send is lost
                failed(None, counted)
            else:
                d.addCallbacks(acked, failed, callbackArgs=(ns, counted),
                               errbackArgs=(counted,))
            next_k[0] = next(ks, None)
            now = time.time()
        if next_k[0] is None:
            done.callback(None)
        else:
            reactor.callLater(max(0.0, t0 + next_k[0] / rate - time.time()), tick)

    if mine:
        reactor.callLater(max(0.0, t0 - time.time()), tick)
    else:
        done.callback(None)
    await done
    # Drain: wait until every client has every window message, or the drain time is over.
    expected = {index: expected_in_room(index % len(room_ids), len(room_ids), senders,
                                        k_start, k_end) for index, _, _ in clients}
    t_end = t0 + k_end / rate
    drain_until = max(time.time(), t_end) + p["drain"]
    while time.time() < drain_until:
        if (all(r.got >= expected[i] for i, _, r in clients)
                and sent[1] + sent[2] >= sent[0]):
            break
        await deferLater(reactor, 0.05, lambda: None)

    stopping = True
    for ping in pingers:
        if ping.running:
            ping.stop()
    got = [(r.got, expected[i]) for i, _, r in clients]
    report = {
        "pid": os.getpid(), "clients": len(clients), "senders": len(mine),
        "sent": sent[0], "acked": sent[1], "send_errors": sent[2],
        "delivered": sum(g for g, _e in got),
        "missing": sum(max(0, e - g) for g, e in got),
        "surplus": sum(max(0, g - e) for g, e in got),
        "warmup_deliveries": sum(r.other for _, _, r in clients),
        "clients_complete": sum(1 for g, e in got if g >= e),
        "lost_connections": lost_connections[0],
        "send_lag_max_ms": max(lags) * 1000 if lags else 0.0,
        "send_lag_p99_ms": _percentile(sorted(lags), 99) * 1000 if lags else 0.0,
        "latencies": latencies.tobytes(), "ack_latencies": ack_latencies.tobytes(),
    }
    pipe.send(("report", report))
    for _, conn, _ in clients:
        if conn.transport is not None and not conn.lost.called:
            conn.transport.abortConnection()
    await deferLater(reactor, 0.2, lambda: None)


def _start_loop(loop: Any) -> None:
    if not loop.running:
        loop.start(30, now=False).addErrback(lambda _f: None)


def generator_main(pipe: Any, params: dict[str, Any]) -> None:
    _run_child(_generate, pipe, params)


# -- the Node.js load generator (--generator node) ------------------------------------------------

LOADGEN_DIR = REPO / "bench" / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen.mjs"


def ensure_node_loadgen() -> str:
    """The path of ``node``, once ``bench/loadgen``'s npm dependencies are installed
    (``npm ci --prefix bench/loadgen``, run here if they are missing)."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("--generator node needs Node.js (18 or later) on PATH")
    if not (LOADGEN_DIR / "node_modules" / "@msgpack" / "msgpack").is_dir():
        npm = shutil.which("npm")
        command = ["npm", "ci", "--prefix", str(LOADGEN_DIR)]
        if npm is None:
            raise SystemExit("--generator node: install its dependencies first with "
                             f"`{' '.join(command)}` (npm not found on PATH)")
        log("installing the node load generator's dependencies: " + " ".join(command))
        done = subprocess.run([npm, *command[1:]], stdout=sys.stderr, check=False)
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed; run it by hand and try again")
    return node


class NodeGenerator:
    """A load generator run as ``node bench/loadgen/loadgen.mjs``, seen by run() and
    cluster.py's measure() as both the generator process and its pipe.

    As a process: ``pid`` is the node process's own (its CPU is what the tables
    report as generator CPU), ``join``, ``is_alive``, ``terminate``. As a pipe: it
    relays JSON lines, so ``recv()`` gives ``("ready", n)`` and then
    ``("report", report)`` with the latencies as ``array('d')`` bytes like the
    Python generator's, and ``send(t0)`` passes the start time on. A node process
    that exits early makes ``recv()`` raise EOFError, like a pipe whose other end
    closed.
    """

    _EOF = object()

    def __init__(self, params: dict[str, Any], name: str) -> None:
        import queue
        import threading

        node = ensure_node_loadgen()
        self.name = name
        self._lines: queue.Queue[Any] = queue.Queue()
        self._next: Any = None
        # e.g. LOADGEN_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" (not NODE_OPTIONS material)
        extra = os.environ.get("LOADGEN_NODE_ARGS", "").split()
        self._proc = subprocess.Popen([node, *extra, str(LOADGEN)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, cwd=LOADGEN_DIR)
        self.pid = self._proc.pid
        assert self._proc.stdin is not None
        # Ids are 64-bit, over what a JSON number holds exactly in JavaScript: as strings.
        params = {**params, "room_ids": [str(r) for r in params["room_ids"]]}
        self._proc.stdin.write(json.dumps(params).encode() + b"\n")
        self._proc.stdin.flush()
        threading.Thread(target=self._read, name=f"{name}-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(self._EOF)

    # -- the pipe side

    def poll(self, timeout: float | None = 0.0) -> bool:
        import queue

        if self._next is None:
            try:
                self._next = self._lines.get(timeout=timeout)
            except queue.Empty:
                return False
        return True

    def recv(self) -> tuple[str, Any]:
        message = self._next if self._next is not None else self._lines.get()
        self._next = None
        if message is self._EOF:
            self._lines.put(self._EOF)
            raise EOFError(f"the node load generator {self.name} exited "
                           f"({self._proc.poll()}); see its messages above")
        if "ready" in message:
            return "ready", message["ready"]
        report = message["report"]
        for key in ("latencies", "ack_latencies"):
            report[key] = base64.b64decode(report[key])
        return "report", report

    def send(self, t0: float) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"t0": t0}).encode() + b"\n")
        self._proc.stdin.flush()

    # -- the process side

    def join(self, timeout: float | None = None) -> None:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def terminate(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)


def start_generator(ctx: Any, name: str, params: dict[str, Any],
                    generator: str = "python") -> tuple[Any, Any]:
    """Start one load generator with ``params``; return ``(process, pipe)``.

    ``generator`` is ``python`` (``generator_main`` in a ``ctx`` process, a
    multiprocessing pipe) or ``node`` (:class:`NodeGenerator`, both in one object).
    The pipe gives ``("ready", n)``, takes ``t0`` and gives ``("report", report)``;
    the process's ``pid`` is the one whose CPU is measured.
    """
    if generator == "node":
        proc = NodeGenerator(params, name)
        return proc, proc
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=generator_main, name=name, args=(theirs, params))
    process.start()
    return process, mine


# -- statistics ----------------------------------------------------------------------------------

def _percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _summary(values: array.array[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": _percentile(ordered, 50), "p90": _percentile(ordered, 90),
            "p99": _percentile(ordered, 99), "p999": _percentile(ordered, 99.9),
            "max": ordered[-1] if ordered else math.nan}


# -- the run -------------------------------------------------------------------------------------

def wait_for_quiet(limit: float, max_busy: float) -> float:
    """Wait (up to ``limit`` s) until the machine uses less than ``max_busy`` cores over 3 s.

    Returns:
        the cores in use over the last 3 s sampled.
    """
    deadline = time.time() + limit
    while True:
        before = machine_busy_seconds()
        time.sleep(3)
        busy = (machine_busy_seconds() - before) / 3
        if busy < max_busy or time.time() >= deadline:
            return busy
        log(f"machine busy ({busy:.2f} cores used by others); waiting for quiet")


def collect_reports(pipes: list[Any], generators: list[Any],
                    timeout: float) -> list[dict[str, Any]]:
    """Each generator's ``("report", dict)``, in order, then wait for the
    generators to exit. Raises SystemExit when one does not report within
    ``timeout`` seconds."""
    reports = []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise SystemExit("a load generator did not report")
        tag, report = pipe.recv()
        assert tag == "report"
        reports.append(report)
    for proc in generators:
        proc.join(10)
    return reports


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    version = code_version()
    if args.wait_quiet:
        busy = wait_for_quiet(args.wait_quiet, args.quiet_cores)
        log(f"machine at {busy:.2f} cores busy before the run")
    data_dir = Path(tempfile.mkdtemp(prefix=f"chatnet-bench-{args.server}-"))
    port = free_port()
    server = start_server(args.server, data_dir, port, args.bare_tls_writes,
                          cprofile=args.cprofile)
    ca = str(data_dir / "tls" / "ca.pem")
    generators: list[Any] = []
    try:
        log(f"server pid {server.pid} listening on {HOST}:{port}; data in {data_dir}")
        usernames = [f"bench{i:05d}" for i in range(args.clients)]

        parent_end, child_end = ctx.Pipe()
        setup = ctx.Process(target=setup_main, name="bench-setup",
                            args=(child_end, port, ca, usernames, args.setup_concurrency,
                                  args.rooms))
        setup.start()
        if not parent_end.poll(args.setup_timeout):
            raise SystemExit("setup did not finish in time")
        prepared = parent_end.recv()
        setup.join()
        room_ids, tokens = prepared["room_ids"], prepared["tokens"]

        k_start = math.ceil(args.warmup * args.rate)
        k_end = math.ceil((args.warmup + args.duration) * args.rate)
        pipes = []
        for n in range(args.procs):
            users = [(i, name, tokens[name]) for i, name in enumerate(usernames)
                     if i % args.procs == n]
            params = {"port": port, "ca": ca, "room_ids": room_ids, "rate": args.rate,
                      "senders": args.senders, "k_start": k_start, "k_end": k_end,
                      "users": users, "body_bytes": args.body_bytes, "drain": args.drain,
                      "connect_concurrency": args.connect_concurrency,
                      "light": args.receivers == "light"}
            proc, pipe = start_generator(ctx, f"bench-gen-{n}", params, args.generator)
            generators.append(proc)
            pipes.append(pipe)
        connect_started = time.time()
        for pipe in pipes:
            if not pipe.poll(args.setup_timeout):
                raise SystemExit("a load generator did not connect its clients in time")
            tag, _count = pipe.recv()
            assert tag == "ready"
        log(f"{args.clients} clients connected and logged in "
            f"({time.time() - connect_started:.1f} s); settling {args.settle} s")
        time.sleep(args.settle)
        if args.wait_quiet:
            busy = wait_for_quiet(args.wait_quiet, args.quiet_cores)
            log(f"machine at {busy:.2f} cores busy before the warm-up")

        t0 = time.time() + 0.5
        for pipe in pipes:
            pipe.send(t0)
        t_start = t0 + k_start / args.rate
        t_end = t0 + k_end / args.rate
        log(f"warm-up {args.warmup} s, then measuring {args.duration} s")
        wait_until(t_start)
        profiler = start_profiler(args, server.pid) if args.profile else None
        server_cpu0 = cpu_seconds(server.pid)
        gen_cpu0 = [cpu_seconds(g.pid) for g in generators]
        machine0 = machine_busy_seconds()
        wall0 = time.time()
        wait_until(t_end)
        server_cpu1 = cpu_seconds(server.pid)
        gen_cpu1 = [cpu_seconds(g.pid) for g in generators]
        machine1 = machine_busy_seconds()
        wall1 = time.time()
        server_memory = memory_kib(server.pid)
        log("window over; draining")
        if profiler is not None:
            profiler.wait(60)

        reports = collect_reports(pipes, generators, args.drain + 60)
    finally:
        for proc in generators:
            if proc.is_alive():
                proc.terminate()
        stop_server(server)
        if args.keep_data:
            log(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    latencies: array.array[float] = array.array("d")
    acks: array.array[float] = array.array("d")
    for report in reports:
        latencies.frombytes(report.pop("latencies"))
        acks.frombytes(report.pop("ack_latencies"))
    window = wall1 - wall0
    messages = k_end - k_start
    rooms = args.rooms
    expected = sum(expected_in_room(i % rooms, rooms, args.senders, k_start, k_end)
                   for i in range(args.clients))
    delivered = sum(r["delivered"] for r in reports)
    server_cpu = server_cpu1 - server_cpu0
    return {
        "server": args.server if args.server == "chatnet" or args.bare_tls_writes == "buffered"
        else f"bare/{args.bare_tls_writes}",
        "clients": args.clients, "senders": args.senders, "rate": args.rate,
        "duration": args.duration, "warmup": args.warmup, "procs": args.procs,
        "body_bytes": args.body_bytes, "receivers": args.receivers, "rooms": args.rooms,
        "generator": args.generator,
        "window_s": round(window, 3),
        "messages": messages,
        "messages_sent": sum(r["sent"] for r in reports),
        "acked": sum(r["acked"] for r in reports),
        "send_errors": sum(r["send_errors"] for r in reports),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost_deliveries": sum(r["missing"] for r in reports),
        "surplus_deliveries": sum(r["surplus"] for r in reports),
        "lost_connections": sum(r["lost_connections"] for r in reports),
        "deliveries_per_s": round(delivered / args.duration, 1),
        "latency_ms": {k: round(v, 3) for k, v in _summary(latencies).items()},
        "ack_latency_ms": {k: round(v, 3) for k, v in _summary(acks).items()},
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_pct": round(100 * server_cpu / window, 1),
        "deliveries_per_server_cpu_s": round(delivered / server_cpu, 1) if server_cpu else None,
        "server_rss_kib": server_memory.get("VmRSS"),
        "server_peak_rss_kib": server_memory.get("VmHWM"),
        "generator_cpu_s": [round(b - a, 3) for a, b in zip(gen_cpu0, gen_cpu1, strict=True)],
        "machine_busy_s": round(machine1 - machine0, 2),
        "other_cpu_s": round(machine1 - machine0 - server_cpu
                             - sum(b - a for a, b in zip(gen_cpu0, gen_cpu1, strict=True)), 2),
        "generator_send_lag_max_ms": round(max(r["send_lag_max_ms"] for r in reports), 3),
        "code": version,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }


def code_version() -> str:
    """The commit the server code comes from, and whether chatnet/ has local changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "chatnet"], cwd=REPO,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+local-changes" if dirty else "")


def render(r: dict[str, Any]) -> str:
    lat, ack = r["latency_ms"], r["ack_latency_ms"]
    gen = ", ".join(f"{c:.2f}" for c in r["generator_cpu_s"])
    per_cpu = r["deliveries_per_server_cpu_s"]
    return "\n".join([
        f"fan-out benchmark: server={r['server']}  clients={r['clients']}  "
        f"senders={r['senders']}  rate={r['rate']} msg/s  window={r['duration']} s "
        f"(warm-up {r['warmup']} s)  generator procs={r['procs']} "
        f"({r.get('generator', 'python')})  code {r['code']}",
        f"  messages in window      {r['messages']} (sent {r['messages_sent']}, "
        f"acked {r['acked']}, errors {r['send_errors']})",
        f"  deliveries              {r['deliveries']} of {r['expected_deliveries']} expected",
        f"  deliveries/s            {r['deliveries_per_s']:,.0f}",
        f"  lost deliveries         {r['lost_deliveries']}  (surplus {r['surplus_deliveries']}, "
        f"connections lost {r['lost_connections']})",
        f"  latency ms              p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  "
        f"p99 {lat['p99']:.2f}  p99.9 {lat['p999']:.2f}  max {lat['max']:.2f}",
        f"  send->ack ms            p50 {ack['p50']:.2f}  p99 {ack['p99']:.2f}  "
        f"max {ack['max']:.2f}",
        f"  server CPU              {r['server_cpu_s']:.2f} s ({r['server_cpu_pct']:.0f} % "
        f"of one core)",
        f"  deliveries/server CPU-s {per_cpu:,.0f}" if per_cpu else
        "  deliveries/server CPU-s n/a",
        f"  server RSS              {r['server_rss_kib'] / 1024:.1f} MiB "
        f"(peak {r['server_peak_rss_kib'] / 1024:.1f} MiB)" if r["server_rss_kib"] else
        "  server RSS              n/a (the server had exited)",
        f"  generator CPU s/proc    {gen}  (send lag max {r['generator_send_lag_max_ms']:.1f} ms)",
        f"  machine CPU busy        {r['machine_busy_s']:.1f} s of {r['machine']['nproc']} x "
        f"{r['window_s']:.0f} s; other processes {r['other_cpu_s']:.1f} s",
    ])


def ramp(args: argparse.Namespace) -> dict[str, Any]:
    """Ramp mode (module docstring): the runs, and the most messages/s each server held."""
    rates = sorted({float(r) for r in args.ramp.split(",") if r.strip()})
    runs: list[dict[str, Any]] = []
    held: dict[str, float | None] = {}
    for server in args.ramp_servers.split(","):
        held[server] = None
        for rate in rates:
            result = run(argparse.Namespace(**{**vars(args), "server": server, "rate": rate}))
            runs.append(result)
            lat = result["latency_ms"]
            ok = (lat["p99"] < args.ramp_p99 and result["lost_deliveries"] == 0
                  and result["send_errors"] == 0 and result["acked"] >= result["messages"])
            log(f"ramp {server} {rate:,.0f} msg/s: p99 {lat['p99']:.1f} ms, lost "
                f"{result['lost_deliveries']}, errors {result['send_errors']}, server CPU "
                f"{result['server_cpu_pct']:.0f} % -> {'held' if ok else 'not held'}")
            if not ok:
                break
            held[server] = rate
    return {"ramp": True, "rates": rates, "held": held, "runs": runs, "code": code_version()}


def render_ramp(r: dict[str, Any]) -> str:
    """The ramp's runs, one line each, and the held rates."""
    lines = ["  server    rate msg/s   p50 ms   p99 ms   lost  errors  server CPU  "
             "deliveries/CPU-s"]
    for run_ in r["runs"]:
        lat = run_["latency_ms"]
        per_cpu = run_["deliveries_per_server_cpu_s"] or 0
        lines.append(f"  {run_['server']:8}  {run_['rate']:10,.0f}  {lat['p50']:7.2f}  "
                     f"{lat['p99']:7.2f}  {run_['lost_deliveries']:5}  {run_['send_errors']:6}  "
                     f"{run_['server_cpu_pct']:8.0f} %  {per_cpu:14,.0f}")
    held = r["held"]
    lines.append("  most messages/s held: " + ", ".join(
        f"{s} {h:,.0f}" if h else f"{s} none" for s, h in held.items()))
    if held.get("bare") and held.get("chatnet"):
        lines.append(f"  chatnet / bare: {held['chatnet'] / held['bare']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark: N TLS clients in one room, S senders, R msgs/s.")
    parser.add_argument("--clients", type=int, default=100, help="clients in the room (N)")
    parser.add_argument("--senders", type=int, default=10, help="how many of them send (S)")
    parser.add_argument("--rate", type=float, default=200.0, help="total messages/s (R)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="measured window, seconds (D)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of load before the window")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--server", choices=("chatnet", "bare"), default="chatnet")
    parser.add_argument("--bare-tls-writes", choices=("buffered", "direct", "batched"),
                        default="buffered",
                        help="with --server bare: its write strategy (experiments; "
                             "buffered is the baseline)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the server's data directory (and server.log)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also write the figures as JSON to PATH (default: stdout, "
                             "with the readable block on stderr)")
    parser.add_argument("--body-bytes", type=int, default=64,
                        help="padding added to each message body")
    parser.add_argument("--drain", type=float, default=5.0,
                        help="seconds after the window to wait for late deliveries")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between the last login and the warm-up")
    parser.add_argument("--connect-concurrency", type=int, default=20,
                        help="connections each generator opens at once")
    parser.add_argument("--setup-concurrency", type=int, default=8,
                        help="parallel registrations/logins during setup")
    parser.add_argument("--setup-timeout", type=float, default=600.0)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: first wait up to SECONDS until other "
                             "processes use less than --quiet-cores")
    parser.add_argument("--quiet-cores", type=float, default=0.2)
    parser.add_argument("--profile", metavar="PATH",
                        help="sample the server with py-spy during the window and write "
                             "collapsed stacks to PATH (sampling costs the server CPU: do "
                             "not quote the figures of a profiled run)")
    parser.add_argument("--cprofile", metavar="PATH",
                        help="run the chatnet server under twistd's cProfile profiler (the "
                             "reactor thread, deterministic, setup included; pstats file "
                             "written at exit). Inflates small calls: rank, do not time")
    parser.add_argument("--native", action="store_true",
                        help="with --profile, include native (C) frames")
    parser.add_argument("--rooms", type=int, default=1,
                        help="split the clients into this many rooms (client i in room "
                             "i %% rooms; a message goes to its sender's room)")
    parser.add_argument("--receivers", choices=("library", "light"), default="library",
                        help="how clients take msg events: through the client library's "
                             "listeners, or decoded straight from the frames (light: for "
                             "rates the library's per-event cost cannot keep up with)")
    parser.add_argument("--generator", choices=("python", "node"), default="python",
                        help="the load generators: Python processes (Twisted, the chatnet "
                             "client library) or Node.js ones (bench/loadgen, several times "
                             "less CPU per delivery; needs `npm ci --prefix bench/loadgen`, "
                             "run automatically when missing)")
    parser.add_argument("--ramp", metavar="RATES",
                        help="comma-separated msgs/s: raise the rate until p99 >= --ramp-p99 "
                             "or a loss (module docstring)")
    parser.add_argument("--ramp-servers", default="bare,chatnet")
    parser.add_argument("--ramp-p99", type=float, default=100.0, metavar="MS")
    args = parser.parse_args(argv)
    if not 1 <= args.senders <= args.clients:
        parser.error("--senders must be between 1 and --clients")
    if not 1 <= args.rooms <= args.senders:
        parser.error("--rooms must be between 1 and --senders (every room needs a sender)")
    if args.procs < 1 or args.procs > args.clients:
        parser.error("--procs must be between 1 and --clients")
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rate and --duration must be > 0, --warmup >= 0")

    # A SIGTERM (e.g. from a job runner) stops the run like Ctrl-C: the server and the
    # generators are stopped and the data directory removed.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    result = ramp(args) if args.ramp else run(args)
    block = render_ramp(result) if args.ramp else render(result)
    if args.json == "-":
        print(block, file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(block)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
