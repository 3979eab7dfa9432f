"""Slow consumers benchmark (not a test): some clients stop reading while the rest chat.

DESIGN.md: "Slow peers cost only themselves. Per-connection output is bounded;
a reader that falls behind is ... disconnected ..., never allowed to grow
server memory without bound."

``--clients`` clients (default 500) chat in ``--rooms`` public rooms (default
10 of 50) at ``--rate`` messages per second in all, with bodies of
``--body-bytes``; they are the chatnet client library over verified TLS in
``--procs`` load-generator processes (``bench/roomchat.py``). After
``--before`` seconds, ``--stuck`` of them (default 50, spread over the rooms;
they never send) stop reading: their TLS transport pauses, so the kernel
stops taking bytes from the server once the socket buffers are full, and the
server queues their frames until its output limit (``--max-output``) is
passed and it drops them. The run goes on for ``--stuck-window`` seconds.

Printed:

* the readers' latency (p50/p99/max) for messages due before the stop, while
  stuck clients were still connected, and after the last one was dropped, and
  deliveries missed (must be 0);
* when each stuck client was dropped, seconds after it stopped reading (taken
  from the ``presence {state: offline}`` event its room-mates receive), and
  how many never were;
* the server's RSS over time (sampled every 0.5 s, printed every 5 s), its
  peak over the baseline, and the bound ``stuck x --max-output``.

The server runs with its default limits except ``--max-output``, which this
benchmark lowers to 1 MiB by default (the default is 8 MiB) so that the stuck
clients pass it within the run: with 8 MiB the same happens, eight times
later and with eight times the memory. ``--open-registration`` and a high
``--registrations-per-hour`` are there only to create the accounts.

    .venv/bin/python bench/slow_consumers.py
    .venv/bin/python bench/slow_consumers.py --max-output 8388608 --body-bytes 15000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server and /proc helpers
import hostile  # machine()
import roomchat  # steady chat in rooms, measured


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, chat, stop reading, measure."""
    data_dir = Path(tempfile.mkdtemp(prefix="chatnet-slow-"))
    port = fanout.free_port()
    options = ["--open-registration", "--registrations-per-hour", "1000000",
               "--max-output", str(args.max_output)]
    server = fanout.start_server("chatnet", data_dir, port, options=options)
    ca = str(data_dir / "tls" / "ca.pem")
    sampler = roomchat.Sampler(server.pid, 0.5)
    sampler.start()
    generators: roomchat.Generators | None = None
    try:
        names = [f"s{i:04d}" for i in range(args.clients)]
        room_specs = [(f"room{r}", names[r::args.rooms]) for r in range(args.rooms)]
        prepared = roomchat.run_setup(port, ca, names, room_specs, args.setup_concurrency)
        tokens, room_ids = prepared["tokens"], prepared["rooms"]
        index = {name: i for i, name in enumerate(names)}
        # The stuck ones: the first members of each room in turn (not its creator).
        stuck: list[int] = []
        depth = 1
        while len(stuck) < args.stuck:
            for _room, members in room_specs:
                if depth < len(members) and len(stuck) < args.stuck:
                    stuck.append(index[members[depth]])
            depth += 1
        stuck_set = set(stuck)
        stop_at = args.warmup + args.before
        schedule = roomchat.Schedule(
            rate=args.rate, rooms=[room_ids[room] for room, _ in room_specs],
            senders={room_ids[room]: [index[m] for m in members if index[m] not in stuck_set]
                     for room, members in room_specs},
            phases=[("warmup", 0, args.warmup), ("before", args.warmup, stop_at),
                    ("stuck", stop_at, stop_at + args.stuck_window)])
        room_of = {name: room_ids[room] for room, members in room_specs for name in members}
        clients = [(index[n], n, tokens[n], room_of[n]) for n in names]
        params = [{"port": port, "ca": ca, "users": part, "schedule": schedule,
                   "connect_concurrency": 20, "body_bytes": args.body_bytes, "drain": 10.0,
                   "stuck": [i for i, *_ in part if i in stuck_set], "stuck_at": stop_at}
                  for part in roomchat.split_users(clients, args.procs)]
        generators = roomchat.Generators(params)
        fanout.log(f"{generators.wait_ready()} clients logged in; {len(stuck)} will stop "
                   f"reading {stop_at:g} s after the start")
        time.sleep(2.0)
        t0 = time.time() + 1.0
        generators.start(t0)
        fanout.wait_until(t0 + args.warmup)
        cpu0 = fanout.cpu_seconds(server.pid)
        fanout.wait_until(t0 + stop_at)
        baseline = fanout.memory_kib(server.pid)["VmRSS"]
        fanout.log(f"stuck clients stop reading now; server RSS {baseline / 1024:.1f} MiB")
        fanout.wait_until(t0 + stop_at + args.stuck_window)
        cpu1 = fanout.cpu_seconds(server.pid)
        merged = roomchat.merge(generators.reports(args.stuck_window + 120))
        end_rss = fanout.memory_kib(server.pid)["VmRSS"]
        server_log = (data_dir / "server.log").read_text(errors="replace")
    finally:
        sampler.stop()
        if generators is not None:
            generators.stop()
        fanout.stop_server(server)
        shutil.rmtree(data_dir, ignore_errors=True)

    stopped = t0 + stop_at
    stuck_names = merged["stuck"]
    dropped = sorted(merged["offline"][n] - stopped for n in stuck_names
                     if n in merged["offline"])
    last_drop = stopped + dropped[-1] if len(dropped) == len(stuck_names) and dropped else None
    # Latency windows, by when a message was due: before the stop, while stuck clients
    # were connected, after the last was dropped.
    end = stop_at + args.stuck_window
    cut = (last_drop - t0) if last_drop is not None else end
    windows = roomchat.phase_summary(merged, dataclasses.replace(schedule, phases=[
        ("warmup", 0, args.warmup), ("before", args.warmup, stop_at),
        ("while stuck", stop_at, min(cut, end)), ("after the last drop", min(cut, end), end)]))
    missing = sum(c.get("missing", 0) for c in merged["per_phase"].values())
    duplicates = sum(c.get("duplicates", 0) for c in merged["per_phase"].values())
    series = []
    next_t = t0
    for t, rss, _cpu, fds in sampler.samples:
        if t >= next_t:
            series.append((round(t - stopped, 1), round(rss / 1024, 1), fds))
            next_t = t + 5.0
    peak = max((s[1] for s in sampler.samples if s[0] >= stopped), default=baseline)
    return {
        "clients": args.clients, "rooms": args.rooms, "stuck": len(stuck_names),
        "rate": args.rate, "body_bytes": args.body_bytes, "max_output": args.max_output,
        "before_s": args.before, "stuck_window_s": args.stuck_window,
        "server_options": options,
        "latency": {name: w["latency_ms"] for name, w in windows.items()},
        "deliveries": {name: w["latency_ms"]["n"] for name, w in windows.items()},
        "missed": missing, "duplicates": duplicates,
        "send_errors": merged["errors"],
        "readers_lost": sorted(n for n in merged["lost"] if n not in stuck_names),
        "dropped_after_s": [round(d, 1) for d in dropped],
        "never_dropped": len(stuck_names) - len(dropped),
        "server_log_overflows": server_log.count("is not reading; disconnecting"),
        "rss_baseline_kib": baseline, "rss_peak_kib": peak, "rss_end_kib": end_rss,
        "rss_bound_kib": len(stuck_names) * args.max_output // 1024,
        "rss_series": series,
        "server_cpu_s": round(cpu1 - cpu0, 1),
        "code": fanout.code_version(), "machine": hostile.machine(),
    }


def render(r: dict[str, Any]) -> str:
    """The readable report."""
    lines = [f"slow consumers: {r['clients']} clients in {r['rooms']} rooms, {r['rate']:g} "
             f"msgs/s of {r['body_bytes']} bytes; {r['stuck']} stop reading after "
             f"{r['before_s']:g} s; --max-output {r['max_output']}; code {r['code']}; "
             f"machine {r['machine']['nproc']} x {r['machine']['cpu']}",
             "  readers' latency ms, by when the message was due:"]
    for name, lat in r["latency"].items():
        if name == "warmup" or not lat["n"]:
            continue
        lines.append(f"    {name:20} p50 {lat['p50']:7.1f}  p99 {lat['p99']:7.1f}  "
                     f"max {lat['max']:7.1f}  ({r['deliveries'][name]} deliveries)")
    lines.append(f"  deliveries missed {r['missed']}, duplicated {r['duplicates']}; "
                 f"send errors {r['send_errors'] or 0}; readers disconnected "
                 f"{len(r['readers_lost'])}")
    d = r["dropped_after_s"]
    if d:
        lines.append(f"  stuck clients dropped: {len(d)} of {r['stuck']}, "
                     f"{d[0]:.1f} s to {d[-1]:.1f} s after they stopped reading "
                     f"(median {d[len(d) // 2]:.1f} s); server logged {r['server_log_overflows']} "
                     f"'not reading' disconnections")
    if r["never_dropped"]:
        lines.append(f"  NOT dropped by the end: {r['never_dropped']}")
    lines.append(f"  server RSS MiB: {r['rss_baseline_kib'] / 1024:.1f} when they stopped, peak "
                 f"{r['rss_peak_kib'] / 1024:.1f} "
                 f"(+{(r['rss_peak_kib'] - r['rss_baseline_kib']) / 1024:.1f}"
                 f"; bound {r['stuck']} x max-output = {r['rss_bound_kib'] / 1024:.0f} MiB), "
                 f"end {r['rss_end_kib'] / 1024:.1f}; server CPU {r['server_cpu_s']} s")
    lines.append("  RSS over time (s after the stop: MiB, open fds): " + ", ".join(
        f"{t:g}: {m:.0f} ({f})" for t, m, f in r["rss_series"]))
    return "\n".join(lines)


def main() -> None:
    """Parse options, run, print (exit status 1 on a missed delivery, or a stuck client
    never dropped or dropped for another reason than its output)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--stuck", type=int, default=50, help="clients that stop reading")
    parser.add_argument("--rate", type=float, default=100.0, help="msgs/s in all rooms")
    parser.add_argument("--body-bytes", type=int, default=15000)
    parser.add_argument("--max-output", type=int, default=1024 * 1024,
                        help="the server's --max-output (its default is 8388608)")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--before", type=float, default=20.0,
                        help="seconds of chat before the stuck clients stop reading")
    parser.add_argument("--stuck-window", type=float, default=60.0,
                        help="seconds of chat after they stop")
    parser.add_argument("--setup-concurrency", type=int, default=8)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if not 0 < args.stuck < args.clients or args.rooms < 1:
        parser.error("--stuck must be between 1 and --clients - 1")
    result = run(args)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if result["server_log_overflows"] < len(result["dropped_after_s"]):
        print("FAIL: some stuck clients were dropped for another reason than the output "
              "limit (the server logged fewer 'not reading' disconnections)", file=sys.stderr)
        sys.exit(1)
    if result["missed"] or result["never_dropped"] or not math.isfinite(
            result["latency"]["before"]["p99"]):
        print("FAIL: missed deliveries or stuck clients never dropped", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
