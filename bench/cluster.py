"""Scale-out benchmark: one process against 2 workers and two nodes (DESIGN.md "Targets").

This is a benchmark, not a test. It reuses ``bench/fanout.py``'s machinery (the
server start, the load generators, the statistics) and adds what a cluster
needs:

- **Server layouts** (``--configs``): ``1proc`` (one ``twistd chatnet``, SQLite,
  no Redis), ``2w-sqlite`` (``--workers 2 --redis ...``, the SQLite file in the
  data directory shared by the workers), ``2w-pg`` (the same on PostgreSQL) and
  ``2nodes-pg`` (two separate ``twistd chatnet`` processes on two ports, same
  ``--data-dir``, same PostgreSQL database, same Redis cluster; the second with
  ``--no-jobs``). Each cluster gets a unique ``--cluster`` name; each PostgreSQL
  run a fresh schema (``CREATE SCHEMA``, ``search_path`` in the URL), dropped at
  the end.
- **Server CPU** is the sum over every process of the server: each ``twistd``
  parent and all its descendants (the workers), read from ``/proc/<pid>/stat``
  at the start and the end of the window; the table also gives it per process.
  Redis's and PostgreSQL's CPU in the window is reported beside it (it is not
  counted in deliveries per server CPU-second).
- **Clients are spread over the nodes**: load generator ``n`` connects its
  clients to node ``n % nodes``; with 2 workers the kernel spreads connections
  over the workers (``SO_REUSEPORT``). Every client must receive every message
  of its room, whichever process or node the sender is on.
- **Load generators** (``--generator``): fanout.py's, ``python`` by default;
  ``node`` (``bench/loadgen``, install once with ``npm ci --prefix
  bench/loadgen``) costs less CPU per delivery, which leaves more of a small
  machine's cores to the server: what part 2 needs to show that 2 workers hold
  more than one process. Its CPU is reported as the generators' CPU either way.
- **CPU shares** (``--cpu-quota CORES``, root): after the setup, each serving
  process (the one process, each worker, each node; not a supervisor) goes in a
  cgroup of its own limited to CORES (CFS quota, 10 ms period). With 0.5, one
  process gets half a core and 2 workers half a core each: "2 processes
  against 1" on a 2-core machine, with the generators, Redis and PostgreSQL
  on the rest. Without it the generators take what the second worker would
  need (on loopback a receiver costs 60-70 % of what its sender does, most of
  it in the kernel). Time spent throttled is in the JSON (``throttled_s``).
- **One setup per server for several workloads**: the users are registered
  once, with one room per workload layout (e.g. a room of the first 100 users
  and a room of all 1,000); each workload then starts its own generators with
  the first N users (``auth.resume``), measures, and disconnects them.

Parts (``--parts``):

1. 100 clients x 200 msgs/s (10 senders) and 1,000 clients x 20 msgs/s
   (10 senders), on each server layout: deliveries per server CPU-second,
   p50/p99, lost deliveries, CPU per process.
2. Ramp (``fanout.py --ramp``'s rule: p99 < ``--ramp-p99`` ms, nothing lost, no
   send refused, every send acknowledged) with ``--ramp-clients`` (100) clients /
   ``--ramp-senders`` (100) senders in ``--ramp-rooms`` (1) rooms, on each of
   ``--ramp-configs``; the ratio of the most messages/s held to ``1proc``'s.
   The steps run one after the other on the same server (a few seconds of rest
   between them), stopping at the first step not held.
3. Cost against size with 2 workers (``2w-sqlite``): ``--sizes`` clients in one
   room (20,000 deliveries/s: rate 20,000 / N, 10 senders) and in 100 rooms
   (200 msgs/s from 100 senders), a fresh server per size.

Example (from the repository root)::

    .venv/bin/python bench/cluster.py --json bench/out/cluster.json
    .venv/bin/python bench/cluster.py --parts 1 --configs 1proc,2nodes-pg --duration 10
    .venv/bin/python bench/cluster.py --parts 3 --sizes 100,1000,5000,10000
    .venv/bin/python bench/cluster.py --parts 2 --generator node
    sudo .venv/bin/python bench/cluster.py --parts 2 --generator node --procs 1 \
        --cpu-quota 0.5 --ramp-clients 1000 --ramp-senders 10 --ramp 5,10,20,30,40,50

Server logs are kept in ``--out`` (one per node); lines that look like trouble
(tracebacks, errors, workers exiting) are printed at the end.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# The code under test is the repository's chatnet (what the results' "code" names), for
# this process, the load generators and the servers (twistd and its workers inherit
# PYTHONPATH), not whichever copy is installed in the virtualenv.
_REPO = str(Path(__file__).resolve().parent.parent)
sys.path[:0] = [str(Path(__file__).resolve().parent), _REPO]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

import fanout as fo  # noqa: E402 (bench/fanout.py, next to this file)

REDIS_URL = "redis://127.0.0.1:6379"
#: ``--cprofile DIR``: where each node's twistd profile goes (None: no profiling).
CPROFILE_DIR: Path | None = None
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
PSQL = ("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1",
        "-q", "-c")

#: name -> (workers per node, nodes, database, Redis)
CONFIGS: dict[str, tuple[int, int, str, bool]] = {
    "1proc": (1, 1, "sqlite", False),
    "2w-sqlite": (2, 1, "sqlite", True),
    "2w-pg": (2, 1, "pg", True),
    "2nodes-pg": (1, 2, "pg", True),
}

TROUBLE = re.compile(r"traceback|unhandled|critical|error|exception|exited|dropped|"
                     r"starting it again|killed", re.IGNORECASE)


# -- /proc ---------------------------------------------------------------------------------------

def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def backing_pids() -> list[int]:
    """Redis's and PostgreSQL's processes (their CPU is reported beside the server's)."""
    return [pid for pid in _ppids() if _comm(pid).startswith(("redis-server", "postgres"))]


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # the process ended
            out[pid] = fo.cpu_seconds(pid)
    return out


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += fo.memory_kib(pid).get("VmRSS", 0)
    return total


class CpuQuota:
    """Each serving process in its own cgroup, limited to ``cores`` of CPU
    (``--cpu-quota``): the same share for the one process and for each worker,
    so that "2 processes against 1" is measured on a machine where the load
    generators need cores too. cgroup v1 (``/sys/fs/cgroup/cpu``) or v2
    (``/sys/fs/cgroup/cgroup.controllers``); needs root.

    The period is 10 ms (not the default 100 ms), so a process that used up its
    share waits at most a few ms for the next slice, not tens.
    """

    PERIOD_US = 10_000

    def __init__(self, tag: str, cores: float) -> None:
        self.cores = cores
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "cpu" in v2.read_text().split():
            self.root, self.v2 = Path("/sys/fs/cgroup") / tag, True
        elif Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
            self.root, self.v2 = Path("/sys/fs/cgroup/cpu") / tag, False
        else:
            raise SystemExit("--cpu-quota: no cgroup cpu controller found")
        self.groups: list[Path] = []

    def limit(self, pid: int, role: str) -> None:
        """Put process ``pid`` (all its threads) in a new group limited to ``cores``."""
        group = self.root / role
        group.mkdir(parents=True, exist_ok=True)
        quota = max(1000, round(self.cores * self.PERIOD_US))
        if self.v2:
            (self.root / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))
        self.groups.append(group)

    def throttled_s(self) -> float:
        """Seconds the limited processes spent waiting for their share, in all."""
        total = 0.0
        for group in self.groups:
            with contextlib.suppress(OSError):
                for line in (group / "cpu.stat").read_text().splitlines():
                    key, value = line.split()
                    if key == "throttled_usec":
                        total += int(value) / 1e6
                    elif key == "throttled_time":  # v1: nanoseconds
                        total += int(value) / 1e9
        return total

    def remove(self) -> None:
        """Remove the groups (their processes have ended)."""
        for group in reversed(self.groups):
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            self.root.rmdir()


# -- the server under test: one or more nodes ---------------------------------------------------

class Cluster:
    """The servers of one layout (CONFIGS), started on a fresh data directory."""

    def __init__(self, name: str, out: Path) -> None:
        self.name = name
        self.workers, self.nodes, self.db, self.redis = CONFIGS[name]
        self.out = out
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"chatnet-cluster-{name}-"))
        self.tag = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        self.schema: str | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.logs: list[Path] = []
        self.first_pids: set[int] = set()
        #: With ``--cprofile DIR``: twistd's profiler on each node (not on workers).
        self.cprofile: Path | None = CPROFILE_DIR
        #: With ``--cpu-quota``: the serving processes' CPU limits (after the setup).
        self.quota: CpuQuota | None = None

    def limit_cpu(self, cores: float) -> None:
        """Limit each serving process (a node's twistd, or each worker; not a
        supervisor) to ``cores`` of CPU."""
        self.quota = CpuQuota(f"chatnet-{self.tag}", cores)
        for pid, role in self.roles().items():
            if not role.endswith((".parent", ".child")):
                self.quota.limit(pid, role)
        fo.log(f"{self.name}: each serving process limited to {cores:g} cores")

    def start(self) -> None:
        # --idle-timeout: thousands of clients take minutes to connect (each login tells
        # every member of the room), and the first ones must not be closed meanwhile.
        options = [*fo.BENCH_OPTIONS, "--idle-timeout", "3600"]
        if self.db == "pg":
            self.schema = self.tag
            subprocess.run([*PSQL, f"CREATE SCHEMA {self.schema}"], check=True,
                           capture_output=True)
            options += ["--database", f"{PG_BASE}?options=-csearch_path%3D{self.schema}"]
        if self.redis:
            options += ["--redis", REDIS_URL, "--cluster", self.tag]
        if self.workers > 1:
            options += ["--workers", str(self.workers)]
        for n in range(self.nodes):
            port = fo.free_port()
            log_path = self.out / f"{self.tag}-node{n}.log"
            extra = ["--no-jobs"] if n else []
            profile = (str(self.cprofile / f"{self.tag}-node{n}.prof")
                       if self.cprofile is not None and self.workers == 1 else None)
            self.procs.append(fo.start_server("chatnet", self.data_dir, port,
                                              options=[*options, *extra], log_path=log_path,
                                              cprofile=profile))
            self.ports.append(port)
            self.logs.append(log_path)
            self._wait_ready(n)
        self.first_pids = set(self.pids())
        fo.log(f"{self.name}: ports {self.ports}, pids {self.pids()}, logs {self.logs}")

    def _wait_ready(self, n: int) -> None:
        """With workers: until every worker says it is listening."""
        if self.workers == 1:
            return
        deadline = time.time() + 60
        while time.time() < deadline:
            text = self.logs[n].read_text(errors="replace")
            if text.count("chatnet listening on") >= self.workers:
                time.sleep(1)
                return
            time.sleep(0.3)
        raise SystemExit(f"{self.name}: the workers of node {n} did not start; see "
                         f"{self.logs[n]}")

    def pids(self) -> list[int]:
        return [pid for proc in self.procs for pid in process_tree(proc.pid)]

    def roles(self) -> dict[int, str]:
        """pid -> 'n0' (a node's twistd), 'n0.parent' / 'n0.w1' (with workers)."""
        out = {}
        for n, proc in enumerate(self.procs):
            tree = process_tree(proc.pid)
            if self.workers == 1:
                for pid in tree:
                    out[pid] = f"n{n}" if pid == proc.pid else f"n{n}.child"
            else:
                out[proc.pid] = f"n{n}.parent"
                for i, pid in enumerate(sorted(p for p in tree if p != proc.pid)):
                    out[pid] = f"n{n}.w{i}"
        return out

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    def stop(self) -> list[str]:
        """Stop every node, drop the schema; return the log lines that look like trouble."""
        for proc in reversed(self.procs):
            fo.stop_server(proc)
        if self.quota is not None:
            self.quota.remove()
        if self.schema:
            subprocess.run([*PSQL, f"DROP SCHEMA {self.schema} CASCADE"], check=False,
                           capture_output=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        trouble = []
        for path in self.logs:
            for line in path.read_text(errors="replace").splitlines():
                if TROUBLE.search(line):
                    trouble.append(f"{path.name}: {line[:300]}")
        restarted = set(self.pids()) - self.first_pids
        if restarted:
            trouble.append(f"{self.name}: processes started after the setup: {sorted(restarted)}")
        return trouble


# -- setup: users and the rooms of several layouts (own process, not measured) -------------------

async def _setup(reactor: Any, pipe: Any, port: int, ca: str, usernames: list[str],
                 layouts: list[tuple[int, int]], concurrency: int) -> None:
    """Register everyone; for each layout ``(members, rooms)`` make ``rooms`` rooms,
    user ``i < members`` joining room ``i % rooms`` (user ``r`` makes room ``r``)."""
    from chatnet.client.connection import connect

    started = time.time()
    lanes = [usernames[i::concurrency] for i in range(concurrency)]

    async def register_lane(names: list[str]) -> None:
        conn = await connect(reactor, fo.HOST, port, ca)
        for name in names:
            await conn.register(name, fo.PASSWORD)
        await conn.close()

    await fo._bounded(reactor, concurrency, [lane for lane in lanes if lane], register_lane)
    fo.log(f"setup: registered {len(usernames)} users in {time.time() - started:.1f} s")

    tokens: dict[str, str] = {}
    room_ids: list[list[int]] = [[0] * rooms for _, rooms in layouts]

    async def user(i: int) -> None:
        conn = await connect(reactor, fo.HOST, port, ca)
        tokens[usernames[i]] = (await conn.login(usernames[i], fo.PASSWORD))["token"]
        for n, (_members, rooms) in enumerate(layouts):
            if i < rooms:
                room = await conn.request("room.create",
                                          {"name": f"bench{n}-{i}", "visibility": "public"})
                room_ids[n][i] = int(room["room_id"])
        await conn.close()

    owners = max(rooms for _, rooms in layouts)
    await fo._bounded(reactor, concurrency, list(range(owners)), user)

    async def join(i: int) -> None:
        conn = await connect(reactor, fo.HOST, port, ca)
        if usernames[i] not in tokens:
            tokens[usernames[i]] = (await conn.login(usernames[i], fo.PASSWORD))["token"]
        else:
            await conn.resume(tokens[usernames[i]])
        for n, (members, rooms) in enumerate(layouts):
            if i < members and i >= rooms:
                await conn.request("room.join", {"room_id": room_ids[n][i % rooms]})
        await conn.close()

    await fo._bounded(reactor, concurrency, list(range(len(usernames))), join)
    fo.log(f"setup: {len(layouts)} layout(s) ready, {time.time() - started:.1f} s")
    pipe.send({"room_ids": room_ids, "tokens": tokens})


def setup_main(*args: Any) -> None:
    fo._run_child(_setup, *args)


def setup(cluster: Cluster, users: int, layouts: list[tuple[int, int]],
          args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    usernames = [f"bench{i:05d}" for i in range(users)]
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=setup_main, name="bench-setup",
                       args=(theirs, cluster.ports[0], cluster.ca, usernames, layouts,
                             args.setup_concurrency))
    proc.start()
    if not mine.poll(args.setup_timeout):
        proc.terminate()
        raise SystemExit("setup did not finish in time")
    prepared: dict[str, Any] = mine.recv()
    proc.join()
    prepared["usernames"] = usernames
    return prepared


# -- one measured workload ----------------------------------------------------------------------

def measure(cluster: Cluster, prepared: dict[str, Any], layout: int, clients: int,
            senders: int, rate: float, args: argparse.Namespace,
            label: str = "") -> dict[str, Any]:
    """fanout.run's measurement against an already set-up cluster: generators with the
    first ``clients`` users in the rooms of ``layout``; CPU summed over the cluster."""
    ctx = mp.get_context("spawn")
    if args.wait_quiet:
        busy = fo.wait_for_quiet(args.wait_quiet, args.quiet_cores)
        fo.log(f"machine at {busy:.2f} cores busy before the run")
    room_ids = prepared["room_ids"][layout]
    usernames, tokens = prepared["usernames"], prepared["tokens"]
    rooms = len(room_ids)
    k_start = math.ceil(args.warmup * rate)
    k_end = math.ceil((args.warmup + args.duration) * rate)
    procs = max(args.procs, cluster.nodes)
    generators, pipes = [], []
    try:
        for n in range(procs):
            users = [(i, usernames[i], tokens[usernames[i]]) for i in range(clients)
                     if i % procs == n]
            params = {"port": cluster.ports[n % cluster.nodes], "ca": cluster.ca,
                      "room_ids": room_ids, "rate": rate, "senders": senders,
                      "k_start": k_start, "k_end": k_end, "users": users,
                      "body_bytes": args.body_bytes, "drain": args.drain,
                      "connect_concurrency": args.connect_concurrency,
                      "light": args.receivers == "light",
                      "client_msg_prefix": f"bench{uuid.uuid4().hex[:8]}"}
            proc, pipe = fo.start_generator(ctx, f"bench-gen-{n}", params, args.generator)
            generators.append(proc)
            pipes.append(pipe)
        for pipe in pipes:
            if not pipe.poll(args.setup_timeout):
                raise SystemExit("a load generator did not connect its clients in time")
            tag, _count = pipe.recv()
            assert tag == "ready"
        time.sleep(args.settle)
        t0 = time.time() + 0.5
        for pipe in pipes:
            pipe.send(t0)
        fo.wait_until(t0 + k_start / rate)
        pids = cluster.pids()
        backing = backing_pids()
        cpu0, back0 = cpu_of(pids), cpu_of(backing)
        throttled0 = cluster.quota.throttled_s() if cluster.quota else 0.0
        gen0 = [fo.cpu_seconds(g.pid or 0) for g in generators]
        machine0, wall0 = fo.machine_busy_seconds(), time.time()
        fo.wait_until(t0 + k_end / rate)
        pids_end = cluster.pids()
        cpu1, back1 = cpu_of(pids_end), cpu_of(backing)
        throttled1 = cluster.quota.throttled_s() if cluster.quota else 0.0
        gen1 = [fo.cpu_seconds(g.pid or 0) for g in generators]
        machine1, wall1 = fo.machine_busy_seconds(), time.time()
        roles = cluster.roles()
        rss = rss_kib(pids_end)
        reports = fo.collect_reports(pipes, generators, args.drain + 60)
    finally:
        for proc in generators:
            if proc.is_alive():
                proc.terminate()

    latencies: array.array[float] = array.array("d")
    for report in reports:
        latencies.frombytes(report.pop("latencies"))
        report.pop("ack_latencies")
    per_process = {roles.get(pid, str(pid)): round(cpu1[pid] - cpu0.get(pid, 0.0), 2)
                   for pid in cpu1}
    server_cpu = sum(cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1)
    backing_cpu = sum(back1[p] - back0[p] for p in back1 if p in back0)
    gen_cpu = sum(b - a for a, b in zip(gen0, gen1, strict=True))
    window = wall1 - wall0
    delivered = sum(r["delivered"] for r in reports)
    expected = sum(fo.expected_in_room(i % rooms, rooms, senders, k_start, k_end)
                   for i in range(clients))
    lat = fo._summary(latencies)
    result = {
        "config": cluster.name, "label": label, "clients": clients, "senders": senders,
        "rooms": rooms, "rate": rate, "duration": args.duration, "warmup": args.warmup,
        "receivers": args.receivers, "generator": args.generator,
        "generator_procs": procs, "ports": cluster.ports,
        "window_s": round(window, 3), "messages": k_end - k_start,
        "messages_sent": sum(r["sent"] for r in reports),
        "acked": sum(r["acked"] for r in reports),
        "send_errors": sum(r["send_errors"] for r in reports),
        "expected_deliveries": expected, "deliveries": delivered,
        "lost_deliveries": sum(r["missing"] for r in reports),
        "surplus_deliveries": sum(r["surplus"] for r in reports),
        "lost_connections": sum(r["lost_connections"] for r in reports),
        "latency_ms": {k: round(v, 3) for k, v in lat.items()},
        "server_cpu_s": round(server_cpu, 3),
        "server_cores": round(server_cpu / window, 3),
        "server_cpu_per_process_s": per_process,
        "server_processes": len(pids_end),
        "processes_changed": sorted(set(pids_end) ^ set(pids)),
        "deliveries_per_server_cpu_s": round(delivered / server_cpu, 1) if server_cpu else None,
        "redis_pg_cpu_s": round(backing_cpu, 3),
        "server_rss_kib": rss,
        "generator_cpu_s": round(gen_cpu, 3),
        "machine_busy_s": round(machine1 - machine0, 2),
        "other_cpu_s": round(machine1 - machine0 - server_cpu - gen_cpu - backing_cpu, 2),
        "generator_send_lag_max_ms": round(max(r["send_lag_max_ms"] for r in reports), 3),
        "cpu_quota_cores": cluster.quota.cores if cluster.quota else None,
        "throttled_s": round(throttled1 - throttled0, 3),
    }
    fo.log(f"{cluster.name} {label} {clients} clients x {rate:g}/s: p50 {lat['p50']:.1f} "
           f"p99 {lat['p99']:.1f} ms, lost {result['lost_deliveries']}, "
           f"{result['deliveries_per_server_cpu_s']} deliveries/CPU-s, server "
           f"{result['server_cores']:.2f} cores {per_process}")
    time.sleep(args.rest)
    return result


def held(result: dict[str, Any], p99_limit: float) -> bool:
    return bool(result["latency_ms"]["p99"] < p99_limit and result["lost_deliveries"] == 0
                and result["send_errors"] == 0 and result["acked"] >= result["messages"])


# -- the parts ----------------------------------------------------------------------------------

def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {int(p) for p in args.parts.split(",")}
    configs = args.configs.split(",")
    results: dict[str, Any] = {"part1": [], "part2": {"runs": [], "held": {}},
                               "part3": [], "trouble": {}, "code": fo.code_version(),
                               "machine": machine(), "cpu_quota": args.cpu_quota}

    def save() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    def with_cluster(name: str, users: int, layouts: list[tuple[int, int]],
                     body: Any) -> None:
        cluster = Cluster(name, out)
        try:
            cluster.start()
            prepared = setup(cluster, users, layouts, args)
            if args.cpu_quota:
                cluster.limit_cpu(args.cpu_quota)
            body(cluster, prepared)
        finally:
            trouble = cluster.stop()
            if trouble:
                results["trouble"].setdefault(cluster.tag, []).extend(trouble)
                fo.log(f"{cluster.name}: {len(trouble)} log line(s) look like trouble")
            save()  # what was measured so far survives an interrupted run

    rates = sorted(float(r) for r in args.ramp.split(","))
    for name in configs:
        ramping = 2 in parts and name in args.ramp_configs.split(",")
        if 1 not in parts and not ramping:
            continue

        layouts = [(100, 1), (1000, 1)] if 1 in parts else []
        ramp_shape = (args.ramp_clients, args.ramp_rooms)
        if ramping and ramp_shape not in layouts:
            layouts.append(ramp_shape)

        def body(cluster: Cluster, prepared: dict[str, Any], ramping: bool = ramping,
                 layouts: list[tuple[int, int]] = layouts,
                 ramp_shape: tuple[int, int] = ramp_shape) -> None:
            if 1 in parts:
                results["part1"].append(measure(cluster, prepared, 0, 100, 10, 200, args,
                                                "100x200"))
                results["part1"].append(measure(cluster, prepared, 1, 1000, 10, 20, args,
                                                "1000x20"))
            if ramping:
                results["part2"]["held"][cluster.name] = None
                ramp_args = argparse.Namespace(**{**vars(args), "duration": args.ramp_duration,
                                                  "receivers": "light"})
                ramp_layout = layouts.index(ramp_shape)
                for rate in rates:
                    r = measure(cluster, prepared, ramp_layout, args.ramp_clients,
                                min(args.ramp_senders, args.ramp_clients), rate, ramp_args,
                                "ramp")
                    r["held"] = held(r, args.ramp_p99)
                    results["part2"]["runs"].append(r)
                    if not r["held"]:
                        break
                    results["part2"]["held"][cluster.name] = rate

        with_cluster(name, max(n for n, _rooms in layouts), layouts, body)

    if 3 in parts:
        for size in (int(s) for s in args.sizes.split(",")):
            def body3(cluster: Cluster, prepared: dict[str, Any], size: int = size) -> None:
                results["part3"].append(measure(cluster, prepared, 0, size, 10,
                                                round(20000 / size, 3), args, "one room"))
                results["part3"].append(measure(cluster, prepared, 1, size, 100, 200, args,
                                                "100 rooms"))
            with_cluster(args.size_config, size, [(size, 1), (size, 100)], body3)
    held_ = results["part2"]["held"]
    results["part2"]["ratio"] = {name: round(rate / held_["1proc"], 3)
                                 for name, rate in held_.items()
                                 if name != "1proc" and rate and held_.get("1proc")}
    return results


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "python": sys.version.split()[0]}


# -- output --------------------------------------------------------------------------------------

def _row(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    per = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["server_cpu_per_process_s"].items()))
    rooms = "" if r["rooms"] == 1 else f" ({r['rooms']} rooms)"
    return (f"| {r['config']} | {r['clients']:,} x {r['rate']:g}/s{rooms} | {lat['p50']:.1f} | "
            f"{lat['p99']:.1f} | {r['lost_deliveries']} | "
            f"{r['deliveries_per_server_cpu_s'] or 0:,.0f} | {r['server_cores']:.2f} | {per} | "
            f"{r['redis_pg_cpu_s']:.1f} | {r['generator_cpu_s']:.1f} | {r['other_cpu_s']:.1f} | "
            f"{r['server_rss_kib'] / 1024:.0f} |")


HEADER = ("| server | workload | p50 ms | p99 ms | lost | deliveries / server CPU-s | "
          "server cores | CPU s per process | Redis+PG CPU s | generators CPU s | "
          "other CPU s | server RSS MiB |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"machine: {m['nproc']} x {m['cpu']}, {m['date']}, code {results['code']}"]
    if results.get("cpu_quota"):
        lines.append(f"each serving process limited to {results['cpu_quota']:g} cores "
                     "(--cpu-quota)")
    if results["part1"]:
        lines += ["", "1. fan-out per server layout", HEADER]
        lines += [_row(r) for r in results["part1"]]
    if results["part2"]["runs"]:
        first = results["part2"]["runs"][0]
        where = "one room" if first["rooms"] == 1 else f"{first['rooms']} rooms"
        lines += ["", f"2. ramp, {first['clients']:,} clients / {first['senders']} senders, "
                  + where,
                  "| server | rate msgs/s | p50 ms | p99 ms | lost | errors | server cores | "
                  "held |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["part2"]["runs"]:
            lat = r["latency_ms"]
            lines.append(f"| {r['config']} | {r['rate']:,.0f} | {lat['p50']:.1f} | "
                         f"{lat['p99']:.1f} | {r['lost_deliveries']} | {r['send_errors']} | "
                         f"{r['server_cores']:.2f} | {'yes' if r['held'] else 'no'} |")
        lines.append("most messages/s held: " + ", ".join(
            f"{k} {v:,.0f}" if v else f"{k} none" for k, v in results["part2"]["held"].items()))
        for name, ratio in results["part2"].get("ratio", {}).items():
            lines.append(f"{name} / 1proc: {ratio:.2f} (target ≥ 1.7)")
    if results["part3"]:
        lines += ["", "3. cost against size (2 workers)", HEADER]
        lines += [_row(r) for r in results["part3"]]
    if results["trouble"]:
        lines += ["", "server log lines that look like trouble:"]
        for tag, found in results["trouble"].items():
            lines.append(f"  {tag}: {len(found)} line(s)")
            lines += [f"    {line}" for line in found[:15]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (1,2,3)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"server layouts for part 1 (of {', '.join(CONFIGS)})")
    parser.add_argument("--ramp-configs", default="1proc,2w-sqlite,2w-pg",
                        help="server layouts ramped in part 2")
    parser.add_argument("--ramp", default="125,250,375,500,750,1000,1250,1500,2000",
                        help="part 2's rates, msgs/s")
    parser.add_argument("--ramp-clients", type=int, default=100,
                        help="part 2's clients, spread over --ramp-rooms rooms")
    parser.add_argument("--ramp-rooms", type=int, default=1,
                        help="part 2's rooms (client i in room i %% rooms)")
    parser.add_argument("--ramp-senders", type=int, default=100,
                        help="part 2's senders (at most --ramp-clients)")
    parser.add_argument("--ramp-p99", type=float, default=100.0, metavar="MS")
    parser.add_argument("--ramp-duration", type=float, default=10.0)
    parser.add_argument("--sizes", default="100,1000,5000", help="part 3's client counts")
    parser.add_argument("--size-config", default="2w-sqlite", choices=tuple(CONFIGS))
    parser.add_argument("--duration", type=float, default=15.0, help="measured window, s")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--rest", type=float, default=3.0,
                        help="seconds between two workloads on the same server")
    parser.add_argument("--procs", type=int, default=2,
                        help="load generator processes (at least one per node)")
    parser.add_argument("--receivers", choices=("library", "light"), default="light",
                        help="as in fanout.py (light: the generators use less CPU)")
    parser.add_argument("--generator", choices=("python", "node"), default="python",
                        help="as in fanout.py: Python or Node.js load generators (node: "
                             "far less CPU per delivery, so the server gets the cores)")
    parser.add_argument("--wait-quiet", type=float, default=30.0, metavar="SECONDS",
                        help="before each workload, wait up to SECONDS until other processes "
                             "use less than --quiet-cores (a shared machine; 0: do not wait)")
    parser.add_argument("--quiet-cores", type=float, default=0.3)
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--connect-concurrency", type=int, default=20)
    parser.add_argument("--setup-concurrency", type=int, default=8)
    parser.add_argument("--setup-timeout", type=float, default=900.0)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "chatnet-cluster-logs"),
                        help="directory for the server logs")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--cpu-quota", type=float, metavar="CORES",
                        help="after the setup, limit each serving process (the one "
                             "process, each worker, each node) to CORES of CPU in its own "
                             "cgroup (root): 2 workers then get twice the one process's "
                             "share, and the generators the rest of the machine")
    parser.add_argument("--cprofile", metavar="DIR",
                        help="run each node (1proc, 2nodes-pg; not workers) under twistd's "
                             "cProfile, the stats in DIR/<layout>-node<n>.prof")
    args = parser.parse_args(argv)
    global CPROFILE_DIR
    if args.cprofile:
        CPROFILE_DIR = Path(args.cprofile)
        CPROFILE_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.configs.split(",") + args.ramp_configs.split(","):
        if name not in CONFIGS:
            parser.error(f"unknown server layout {name!r}")
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    started = time.time()
    results = run_parts(args)
    results["elapsed_s"] = round(time.time() - started, 1)
    print(render(results))
    print(f"\n(elapsed {results['elapsed_s'] / 60:.1f} min; server logs in {args.out})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
