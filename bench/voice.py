"""Voice relay benchmark (not a test): latency the server adds to call audio, and
its CPU per call (DESIGN.md: ≤ 5 ms p99, 200 concurrent two-party calls per node).

``twistd chatnet`` runs as a subprocess with limits out of the way
(``fanout.BENCH_OPTIONS``). For each N in ``--calls``, N two-party calls (and,
with ``--group`` > 2, one more call of that many people) run for
``--duration`` seconds: every participant sends one 80-byte ``call.audio``
packet every 20 ms (Opus at ~32 kbit/s is 60-180 bytes; the size hardly
matters to the relay), carrying its send time; the calls are spread over the
20 ms interval. Receivers record send-to-receive latency on the same clock;
load generators are ``--procs`` processes of their own (with ``--pin``: on the
CPUs other than the server's), and report how late their own 5 ms timer fired
(while that stays small, the latency is the server's). Printed per N: packets
sent and received, lost (sequence gaps), latency p50/p99/max, the server's
CPU over the measured window and per call, and the largest N whose p99 stays
≤ 5 ms. The latency is end to end through the
server on loopback, so it is an upper bound of what the server adds.

With ``--upload-mb M`` one more two-party call runs in which the caller also
uploads an M MB file on the same connection (the library's ``Upload``, its
default window of 8 x 256 KiB chunks) from the start of the measured window:
the latency of that caller's audio is reported on its own (head-of-line
blocking behind file chunks on one TCP connection), with the upload's rate.
With ``--attach`` that caller's audio goes over a second connection
(``call.attach``) while the upload keeps the first.

    .venv/bin/python bench/voice.py --calls 25,50,100,200 --duration 10
    .venv/bin/python bench/voice.py --calls 1 --upload-mb 200 --duration 10
    .venv/bin/python bench/voice.py --calls 1 --upload-mb 200 --duration 10 --attach
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server, /proc and child-process helpers
import roomchat  # its setup (users, rooms, tokens)

HOST = fanout.HOST
PACKET_BYTES = 80
INTERVAL = 0.02
#: Send phases per 20 ms interval (calls are spread over them).
SLOTS = 10
#: The generators' own timer, whose lateness says how busy they are (seconds).
LAG_TICK = 0.005


async def _talk(reactor: Any, pipe: Any, p: dict[str, Any]) -> None:
    """A load generator: connect its calls' members, ring and answer, then send and
    receive audio from ``t0`` for ``duration`` seconds; report to the pipe."""
    from twisted.internet.task import LoopingCall, deferLater
    from twisted.internet.threads import deferToThread

    from chatnet.client.calls import Calls
    from chatnet.client.connection import connect

    latencies: list[float] = []
    lag: list[float] = []  # how late this generator's own 5 ms timer fired, ms
    beside_upload: list[tuple[float, float]] = []
    counts = {"sent": 0, "received": 0, "gaps": 0}
    t_end = [float("inf")]
    uploader = p.get("uploader")

    def listener(event: Any) -> None:
        if event.name == "call.audio":
            now = time.time()
            sent_at = struct.unpack_from("d", event.data["data"])[0]
            if sent_at < t_end[0]:
                latency = (now - sent_at) * 1000
                if event.data["from"] == uploader:
                    beside_upload.append((sent_at, latency))
                else:
                    latencies.append(latency)
                    counts["received"] += 1

    members: list[tuple[Any, Calls]] = []
    calls: list[Any] = []
    upload_conn: list[Any] = []
    n_address = p["address_base"]
    for room_id, tokens in p["calls"]:
        peers = []
        for token in tokens:
            conn = await connect(reactor, HOST, p["port"], p["ca"],
                                 source=fanout.client_address(n_address))
            n_address += 1
            await conn.resume(token)
            conn.add_listener(listener)
            peers.append((conn, Calls(conn, jitter_limit=10_000)))
        if uploader is not None and tokens[0] == p["upload_token"]:
            upload_conn.append(peers[0][0])
        # The caller changes from run to run: starting calls has a per-user budget
        # (5 at once, then 1 a minute) that the same caller every run would exhaust.
        uploading = bool(upload_conn) and upload_conn[0] is peers[0][0]
        turn = 0 if uploading else p["run"] % len(peers)
        first = await peers[turn][1].start(room_id)
        for _conn, mine in peers[:turn] + peers[turn + 1:]:
            while first.call_id not in mine.ringing:
                await deferLater(reactor, 0.01, lambda: None)
            calls.append(await mine.accept(first.call_id))
        if p.get("attach") and uploading:
            media = await connect(reactor, HOST, p["port"], p["ca"],
                                  source=fanout.client_address(n_address))
            n_address += 1
            await media.resume(tokens[0])
            await first.attach(media)
            members.append((media, Calls(media)))
        calls.append(first)
        members += peers
    pipe.send(("ready", len(members)))
    t0: float = await deferToThread(pipe.recv)
    t_end[0] = t0 + p["duration"]
    padding = bytes(PACKET_BYTES - 8)

    # Calls are spread over the 20 ms interval (SLOTS phases, and the generators
    # offset from each other), as calls that began at different moments are: all
    # sending at the same instant would measure a burst's queue, not the relay.
    slots = [calls[k::SLOTS] for k in range(SLOTS)]
    ticks = [0]

    def send_slots(count: int) -> None:
        for _ in range(count):  # a late timer sends the slots it skipped
            now = time.time()
            if now >= t_end[0]:
                return
            data = struct.pack("d", now) + padding
            for call in slots[ticks[0] % SLOTS]:
                call.send(data)
                counts["sent"] += 1
            ticks[0] += 1

    def tick() -> None:
        now = time.monotonic()
        if last[0]:
            lag.append((now - last[0] - LAG_TICK) * 1000)
        last[0] = now

    last = [0.0]
    loop = LoopingCall.withCount(send_slots)
    loop.clock = reactor
    ticker = LoopingCall(tick)
    ticker.clock = reactor
    await deferLater(reactor, max(0.0, t0 + p["phase"] - time.time()), lambda: None)
    loop.start(INTERVAL / SLOTS)
    ticker.start(LAG_TICK)
    upload: dict[str, Any] = {}
    if upload_conn:
        upload = _upload_beside(reactor, upload_conn[0], p["upload_path"])
    await deferLater(reactor, max(0.0, t_end[0] - time.time()) + 1.0, lambda: None)
    loop.stop()
    ticker.stop()
    during: list[float] = []
    if upload:
        upload["running"].cancel()
        start, end = upload["started"], upload["done_at"][0] or t_end[0]
        # Only the packets sent while the upload ran.
        during = [latency for sent_at, latency in beside_upload if start <= sent_at <= end]
        upload = {"bytes": upload["sent"][0], "seconds": round(end - start, 2)}
    for call in calls:
        counts["gaps"] += sum(call.gaps.values())
    for conn, _calls in members:
        conn.abort()
    pipe.send(("done", {"latencies": latencies, "beside_upload": during, "lag": lag,
                        "upload": upload, **counts}))


def _upload_beside(reactor: Any, conn: Any, path: str) -> dict[str, Any]:
    """Start uploading ``path`` on ``conn`` (a ChatConnection) with the library's
    Upload; what it has sent is tracked in the returned map."""
    from twisted.internet.defer import Deferred, succeed

    from chatnet.client.files import Upload

    class _Session:  # the parts of ChatSession an Upload uses, over one connection
        def __init__(self) -> None:
            self.reactor = reactor
            self.call = conn.request

        def when_connected(self) -> Deferred[None]:
            return succeed(None)

    state: dict[str, Any] = {"sent": [0], "done_at": [None], "started": time.time()}
    upload = Upload(_Session(), path,  # type: ignore[arg-type]
                    progress=lambda done, _total: state["sent"].__setitem__(0, done))
    running = upload.start()
    running.addBoth(lambda r: state["done_at"].__setitem__(0, time.time()) or r)
    running.addErrback(lambda _f: None)
    state["running"] = running
    return state


def talk_main(pipe: Any, params: dict[str, Any]) -> None:
    """Process target for :func:`_talk` (on the CPUs ``params["cpus"]`` if given)."""
    if params.get("cpus"):
        os.sched_setaffinity(0, params["cpus"])
    fanout._run_child(_talk, pipe, params)


def run_one(port: int, ca: str, server_pid: int, call_specs: list[tuple[int, list[str]]],
            procs: int, duration: float, upload: dict[str, Any] | None = None,
            cpus: set[int] | None = None, run: int = 0) -> dict[str, Any]:
    """Run the given calls in ``procs`` generators; the figures of that run.
    ``upload`` (``uploader``, ``upload_token``, ``upload_path``) goes to the first
    generator, whose calls must include the uploader's. ``cpus``: where the
    generators run (None: anywhere); ``run``: which run this is (who calls)."""
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for i in range(procs):
        mine = call_specs[i::procs]
        if not mine:
            continue
        parent, child = ctx.Pipe()
        params = {"port": port, "ca": ca, "calls": mine, "duration": duration,
                  "address_base": 1000 * (i + 1), "cpus": cpus,
                  "phase": INTERVAL / SLOTS * i / procs, "run": run}
        if upload and i == 0:
            params.update(upload)
        proc = ctx.Process(target=talk_main, args=(child, params))
        proc.start()
        workers.append((proc, parent))
    for _proc, parent in workers:
        if not parent.poll(120):
            raise SystemExit("a load generator did not connect its calls in time")
        parent.recv()
    t0 = time.time() + 1.0
    for _proc, parent in workers:
        parent.send(t0)
    fanout.wait_until(t0)
    cpu0 = fanout.cpu_seconds(server_pid)
    fanout.wait_until(t0 + duration)
    cpu = fanout.cpu_seconds(server_pid) - cpu0
    latencies: list[float] = []
    lag: list[float] = []
    beside: list[float] = []
    uploaded: dict[str, Any] = {}
    totals = {"sent": 0, "received": 0, "gaps": 0}
    for proc, parent in workers:
        if not parent.poll(duration + 60):
            raise SystemExit("a load generator did not report")
        _tag, report = parent.recv()
        latencies += report.pop("latencies")
        beside += report.pop("beside_upload")
        lag += report.pop("lag")
        uploaded = report.pop("upload") or uploaded
        for key in totals:
            totals[key] += report[key]
        proc.join(30)
    summary = fanout._summary(latencies)  # type: ignore[arg-type]
    result = {**totals, "latency_ms": {k: round(v, 2) for k, v in summary.items()},
              "generator_lag_ms": {k: round(v, 2) for k, v in fanout._summary(lag).items()},  # type: ignore[arg-type]
              "server_cpu_s": round(cpu, 2), "server_cpu_share": round(cpu / duration, 3)}
    if upload:
        result["beside_upload"] = {
            "packets": len(beside), "upload": uploaded,
            "latency_ms": {k: round(v, 2) for k, v in fanout._summary(beside).items()}}  # type: ignore[arg-type]
    return result


def main() -> None:
    """Parse options, set up once, run each N, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="25,50,100,200",
                        help="comma-separated numbers of concurrent two-party calls")
    parser.add_argument("--group", type=int, default=8,
                        help="people in one more, group call (0: none)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--upload-mb", type=int, default=0,
                        help="one more call whose caller uploads a file this big meanwhile")
    parser.add_argument("--attach", action="store_true",
                        help="that caller's audio goes over a second connection "
                             "(call.attach)")
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0 alone, load generators on the other CPUs")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    sizes = sorted({int(x) for x in args.calls.split(",") if x.strip()})
    pairs = max(sizes)
    users = [f"v{i}" for i in range(2 * pairs + max(args.group, 0))]
    rooms = [(f"call{i}", [users[2 * i], users[2 * i + 1]]) for i in range(pairs)]
    if args.group > 2:
        rooms.append(("group", users[2 * pairs:2 * pairs + args.group]))
    if args.upload_mb:
        users += ["uploader", "listener"]
        rooms.append(("upload", ["uploader", "listener"]))
    data = Path(tempfile.mkdtemp(prefix="chatnet-voice-"))
    port = fanout.free_port()
    options = fanout.BENCH_OPTIONS
    upload: dict[str, Any] | None = None
    if args.upload_mb:
        options = (*options, "--max-file-size", str((args.upload_mb + 1) * 1024 * 1024))
        upload_path = data.parent / f"{data.name}-upload.bin"
        with upload_path.open("wb") as out:
            for _ in range(args.upload_mb):
                out.write(os.urandom(1024 * 1024))
    server = fanout.start_server("chatnet", data, port, options=options)
    generator_cpus: set[int] | None = None
    if args.pin:
        # Threads the server starts later inherit its affinity.
        os.sched_setaffinity(server.pid, {0})
        generator_cpus = (os.sched_getaffinity(0) - {0}) or {0}
    ca = str(data / "tls" / "ca.pem")
    results = []
    try:
        time.sleep(1.0)
        setup = roomchat.run_setup(port, ca, users, rooms)
        tokens, room_ids = setup["tokens"], setup["rooms"]
        specs = [(room_ids[name], [tokens[m] for m in members]) for name, members in rooms
                 if name != "upload"]
        if args.upload_mb:
            upload = {"uploader": "uploader", "upload_token": tokens["uploader"],
                      "upload_path": str(upload_path), "attach": args.attach}
        for run, n in enumerate(sizes):
            chosen = specs[:n] + (specs[pairs:] if args.group > 2 else [])
            if upload is not None:
                # First, so the first generator (which uploads) has it.
                chosen = [(room_ids["upload"], [tokens["uploader"], tokens["listener"]]),
                          *chosen]
            fanout.log(f"{n} two-party calls" + (f" + one of {args.group}" if args.group > 2
                                                 else ""))
            result = {"calls": n, "group": args.group if args.group > 2 else 0,
                      **run_one(port, ca, server.pid, chosen, args.procs, args.duration,
                                upload, generator_cpus, run)}
            fanout.log(json.dumps(result))
            results.append(result)
    finally:
        fanout.stop_server(server)
        shutil.rmtree(data, ignore_errors=True)
        if args.upload_mb:
            upload_path.unlink(missing_ok=True)
    within = [r["calls"] for r in results if r["latency_ms"]["p99"] <= 5.0]
    report = {"runs": results, "largest_n_p99_within_5ms": max(within) if within else None,
              "duration_s": args.duration, "procs": args.procs, "code": fanout.code_version()}
    print(f"voice relay: {args.duration:.0f} s per run, 50 packets/s per participant "
          f"({PACKET_BYTES} B), code {report['code']}")
    print("  calls  group     sent  received  lost   p50 ms   p99 ms   max ms  "
          "server CPU  per call  generator lag p99 ms")
    for r in results:
        lat = r["latency_ms"]
        per_call = r["server_cpu_share"] / (r["calls"] + (1 if r["group"] else 0)) * 100
        print(f"  {r['calls']:5}  {r['group']:5}  {r['sent']:7}  {r['received']:8}  "
              f"{r['gaps']:4}  {lat['p50']:7.2f}  {lat['p99']:7.2f}  {lat['max']:7.2f}  "
              f"{r['server_cpu_share']:9.1%}  {per_call:6.2f} %  "
              f"{r['generator_lag_ms']['p99']:8.2f}")
    print(f"  largest N with p99 <= 5 ms: {report['largest_n_p99_within_5ms']}")
    for r in results:
        if "beside_upload" in r:
            b = r["beside_upload"]
            lat, up = b["latency_ms"], b["upload"]
            rate = up.get("bytes", 0) / 1e6 / up["seconds"] if up.get("seconds") else 0.0
            print(f"  N={r['calls']}: audio from a client uploading meanwhile "
                  f"({up.get('bytes', 0) / 1e6:.0f} MB in {up.get('seconds')} s, "
                  f"{rate:.0f} MB/s): {b['packets']} packets, p50 {lat['p50']:.1f} ms, "
                  f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
