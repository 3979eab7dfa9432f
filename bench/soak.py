"""Soak benchmark (not a test): steady chat with clients dropping and coming back, for
minutes; the server's memory, file descriptors and latency must not drift.

``--clients`` users (default 100) chat in ``--rooms`` public rooms (default 5)
at ``--rate`` messages per second in all (default 20). Each is a
:class:`chatnet.client.session.ChatSession` (the client library's
self-healing session: reconnect with back-off, ``auth.resume``, re-send of
unacknowledged messages, catch-up of what was missed) in one of ``--procs``
load-generator processes. Every ``--drop-min`` to ``--drop-max`` seconds
(uniformly at random) each session's connection is dropped, alternately as an
abort (TCP reset: a network loss) and as a clean close, and the session comes
back by itself; with the defaults that is about 2.5 reconnects a second. Every
message must reach every member of its room exactly once, live or by the
catch-up after a reconnect.

After ``--warmup`` seconds (not measured), the run lasts ``--duration``
seconds (default 600). The server's RSS, open file descriptors (``/proc/<pid>/fd``)
and CPU time are sampled every 5 s; deliveries are binned per minute by the
time they were received, in three kinds: *live* (sender and receiver both
connected: the server's latency), *caught up* (fetched by a receiver after
its reconnect) and *sender away* (due while its sender was reconnecting, so
queued by its session and sent once back). Printed: one line per minute
(median RSS and fds, server CPU, count and p50/p99/max of each kind,
reconnects and how long they took from the drop), the drift from the first
minute to the last, and the verdict.

The run fails (exit status 1) when:

* the server's RSS in the last minute (median of its samples) is more than
  ``--max-rss-growth`` MiB (default 16) *and* more than ``--max-rss-growth-pct``
  per cent (default 10) above the first minute's: a leak grows with time,
  while allocator noise does not;
* the open file descriptors (median, last minute vs first) grew by more than
  ``--max-fd-growth`` (default 10; reconnects in flight make them move by a
  few);
* any message was missed or delivered twice, or a send failed.

Live latency drift (p99 of the last minute over the first) is printed and
fails the run only when ``--max-p99-ratio`` is given (the machine is shared:
latency is noisy, memory and descriptors are not).

The server runs with its default limits; ``--open-registration`` and a high
``--registrations-per-hour`` only serve to create the accounts.

    .venv/bin/python bench/soak.py                      # 10 minutes
    .venv/bin/python bench/soak.py --duration 120 --warmup 20
"""

from __future__ import annotations

import argparse
import array
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server and /proc helpers
import hostile  # machine()
import roomchat  # setup, schedule, sampler


async def _soak(reactor: Any, pipe: Any, p: dict[str, Any]) -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    from chatnet.client.session import ChatSession, SessionState

    schedule: roomchat.Schedule = p["schedule"]
    k_end = schedule.k_end
    rng = random.Random(p["seed"])
    ks: array.array[int] = array.array("q")
    latency: array.array[float] = array.array("d")
    at: array.array[float] = array.array("d")
    catch_up: array.array[int] = array.array("b")
    got: dict[int, bytearray] = {}
    sessions: dict[int, ChatSession] = {}
    rooms: dict[int, int] = {}
    reconnects: array.array[float] = array.array("d")
    back_after: array.array[float] = array.array("d")
    dropped_at: dict[int, float] = {}
    drops = {"abort": 0, "close": 0, "not connected": 0}
    other = [0]

    def listener(index: int) -> Any:
        mine = got[index]

        def on_event(event: Any) -> None:
            if event.name != "msg":
                return
            now = time.time_ns()
            try:
                k_text, sent_text, how = event.data["message"]["body"].split(" ", 2)
                k, sent = int(k_text), int(sent_text)
            except (KeyError, ValueError, AttributeError):
                other[0] += 1
                return
            if 0 <= k < k_end:
                if mine[k] < 255:
                    mine[k] += 1
                ks.append(k)
                latency.append((now - sent) / 1e6)
                at.append(now / 1e9)
                # 0: live, sender connected; 1: caught up by this reconnected receiver;
                # 2: live, but the sender was away when it was due (queued by its session).
                catch_up.append(1 if event.data.get("catch_up") else
                                2 if how == "queued" else 0)

        return on_event

    def state_listener(index: int) -> Any:
        seen_first = [False]

        def on_state(state: SessionState) -> None:
            if state is SessionState.AUTHENTICATED:
                if seen_first[0]:
                    now = time.time()
                    reconnects.append(now)
                    dropped = dropped_at.pop(index, None)
                    back_after.append(now - dropped if dropped is not None else math.nan)
                seen_first[0] = True

        return on_state

    async def start(user: tuple[int, str, str, int]) -> None:
        index, name, token, room_id = user
        session = ChatSession(reactor, fanout.HOST, p["port"], name, fanout.PASSWORD,
                              token=token, ca=p["ca"], retry_initial=0.5, retry_max=5.0,
                              retry_jitter=1.0)
        got[index] = bytearray(k_end)
        rooms[index] = room_id
        session.add_listener(listener(index))
        session.add_state_listener(state_listener(index))
        await session.start()
        sessions[index] = session

    await fanout._bounded(reactor, 20, p["users"], start)
    pipe.send(("ready", len(sessions)))
    t0: float = await deferToThread(pipe.recv)
    t_end = t0 + schedule.phases[-1][2]

    # Drops: each session's connection, at random intervals, until the end.
    def drop(index: int) -> None:
        if time.time() >= t_end:
            return
        session = sessions[index]
        # The session's current connection (bench only: a network drop has no API).
        connection = session._connection
        if connection is None or not session.connected:
            drops["not connected"] += 1
        elif drops["abort"] <= drops["close"]:
            drops["abort"] += 1
            dropped_at[index] = time.time()
            connection.abort()
        else:
            drops["close"] += 1
            dropped_at[index] = time.time()
            connection.transport.loseConnection()
        reactor.callLater(rng.uniform(p["drop_min"], p["drop_max"]), drop, index)

    for index in sessions:
        reactor.callLater(max(0.0, t0 - time.time()) + rng.uniform(p["drop_min"],
                                                                   p["drop_max"]),
                          drop, index)

    # Sends: message k is due at t0 + k / rate, from its sender if it is ours.
    mine = [k for k in range(k_end) if schedule.sender_of(k) in sessions]
    acks = {"ok": 0}
    errors: dict[str, int] = {}
    done: Deferred[None] = Deferred()
    position = [0]

    def acked(_result: Any) -> None:
        acks["ok"] += 1

    def failed(failure: Any) -> None:
        key = getattr(getattr(failure.value, "code", None), "value",
                      type(failure.value).__name__)
        errors[key] = errors.get(key, 0) + 1

    def tick() -> None:
        now = time.time()
        while position[0] < len(mine) and t0 + mine[position[0]] / schedule.rate <= now:
            k = mine[position[0]]
            position[0] += 1
            session = sessions[schedule.sender_of(k)]
            how = "live" if session.connected else "queued"
            session.send_message(schedule.room_of(k), f"{k} {time.time_ns()} {how}",
                                 client_msg_id=f"soak-{k}").addCallbacks(acked, failed)
            now = time.time()
        if position[0] >= len(mine):
            done.callback(None)
        else:
            reactor.callLater(max(0.0, t0 + mine[position[0]] / schedule.rate - time.time()),
                              tick)

    reactor.callLater(max(0.0, t0 - time.time()), tick)
    await done

    def complete(index: int) -> bool:
        mine_got, room_id = got[index], rooms[index]
        return all(mine_got[k] for k in range(k_end) if schedule.room_of(k) == room_id)

    drain_until = max(time.time(), t_end) + p["drain"]
    while time.time() < drain_until:
        if (acks["ok"] + sum(errors.values()) >= len(mine)
                and all(s.connected for s in sessions.values())
                and all(complete(i) for i in sessions)):
            break
        await deferLater(reactor, 0.2, lambda: None)

    missing = duplicates = 0
    for index, mine_got in got.items():
        room_id = rooms[index]
        for k in range(k_end):
            if schedule.room_of(k) == room_id:
                missing += mine_got[k] == 0
                duplicates += max(0, mine_got[k] - 1)
    report = {"clients": len(sessions), "sent": len(mine), "acked": acks["ok"],
              "send_errors": errors, "missing": missing, "duplicates": duplicates,
              "drops": drops, "reconnects": reconnects.tobytes(),
              "back_after": back_after.tobytes(), "other_msgs": other[0],
              "ks": ks.tobytes(), "latency_ms": latency.tobytes(), "at": at.tobytes(),
              "catch_up": catch_up.tobytes(),
              "unacknowledged_at_end": sum(s.unacknowledged for s in sessions.values()),
              "connected_at_end": sum(1 for s in sessions.values() if s.connected)}
    pipe.send(("report", report))
    for session in sessions.values():
        await session.close()


def soak_main(pipe: Any, params: dict[str, Any]) -> None:
    """Process target: hold ``params["users"]`` as self-healing sessions, chat on the
    schedule while dropping their connections, report."""
    fanout._run_child(_soak, pipe, params)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, soak, measure."""
    import multiprocessing

    data_dir = Path(tempfile.mkdtemp(prefix="chatnet-soak-"))
    port = fanout.free_port()
    options = ["--open-registration", "--registrations-per-hour", "1000000"]
    server = fanout.start_server("chatnet", data_dir, port, options=options)
    ca = str(data_dir / "tls" / "ca.pem")
    sampler = roomchat.Sampler(server.pid, 5.0)
    procs: list[Any] = []
    try:
        names = [f"k{i:04d}" for i in range(args.clients)]
        room_specs = [(f"room{r}", names[r::args.rooms]) for r in range(args.rooms)]
        prepared = roomchat.run_setup(port, ca, names, room_specs, args.setup_concurrency)
        tokens, room_ids = prepared["tokens"], prepared["rooms"]
        index = {name: i for i, name in enumerate(names)}
        schedule = roomchat.Schedule(
            rate=args.rate, rooms=[room_ids[room] for room, _ in room_specs],
            senders={room_ids[room]: [index[m] for m in members]
                     for room, members in room_specs},
            phases=[("warmup", 0, args.warmup),
                    ("soak", args.warmup, args.warmup + args.duration)])
        room_of = {name: room_ids[room] for room, members in room_specs for name in members}
        clients = [(index[n], n, tokens[n], room_of[n]) for n in names]
        ctx = multiprocessing.get_context("spawn")
        pipes = []
        for n, part in enumerate(roomchat.split_users(clients, args.procs)):
            params = {"port": port, "ca": ca, "users": part, "schedule": schedule,
                      "drop_min": args.drop_min, "drop_max": args.drop_max,
                      "drain": args.drain, "seed": args.seed + n}
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=soak_main, name=f"soak-{n}", args=(theirs, params))
            proc.start()
            procs.append(proc)
            pipes.append(mine)
        up = 0
        for pipe in pipes:
            if not pipe.poll(600):
                raise SystemExit("a load generator did not start its sessions")
            up += pipe.recv()[1]
        fanout.log(f"{up} sessions logged in; warm-up {args.warmup:g} s, then "
                   f"{args.duration:g} s measured")
        time.sleep(2.0)
        t0 = time.time() + 1.0
        for pipe in pipes:
            pipe.send(t0)
        sampler.start()
        start = t0 + args.warmup
        for minute in range(math.ceil(args.duration / 60) + 1):
            fanout.wait_until(min(start + 60 * minute, t0 + args.warmup + args.duration))
            last = sampler.samples[-1] if sampler.samples else None
            if last is not None and minute:
                fanout.log(f"minute {minute}: server RSS {last[1] / 1024:.1f} MiB, "
                           f"{last[3]} fds")
        reports = []
        for pipe in pipes:
            if not pipe.poll(args.drain + 120):
                raise SystemExit("a load generator did not report")
            reports.append(pipe.recv()[1])
        for proc in procs:
            proc.join(30)
    finally:
        sampler.stop()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        fanout.stop_server(server)
        shutil.rmtree(data_dir, ignore_errors=True)
    return summarize(args, t0, sampler, reports)


def summarize(args: argparse.Namespace, t0: float, sampler: roomchat.Sampler,
              reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-minute series, drift and verdict."""
    start = t0 + args.warmup
    minutes = math.ceil(args.duration / 60)
    live: list[list[float]] = [[] for _ in range(minutes)]
    caught: list[list[float]] = [[] for _ in range(minutes)]
    queued: list[list[float]] = [[] for _ in range(minutes)]
    back: list[list[float]] = [[] for _ in range(minutes)]
    reconnects = [0] * minutes
    for r in reports:
        lat: array.array[float] = array.array("d")
        lat.frombytes(r["latency_ms"])
        at: array.array[float] = array.array("d")
        at.frombytes(r["at"])
        flags: array.array[int] = array.array("b")
        flags.frombytes(r["catch_up"])
        for value, when, flag in zip(lat, at, flags, strict=True):
            m = int((when - start) // 60)
            if 0 <= m < minutes:
                (live, caught, queued)[flag][m].append(value)
        times: array.array[float] = array.array("d")
        times.frombytes(r["reconnects"])
        after: array.array[float] = array.array("d")
        after.frombytes(r["back_after"])
        for when, seconds in zip(times, after, strict=True):
            m = int((when - start) // 60)
            if 0 <= m < minutes:
                reconnects[m] += 1
                if not math.isnan(seconds):
                    back[m].append(seconds)
    series = []
    for m in range(minutes):
        samples = sampler.between(start + 60 * m, start + 60 * (m + 1))
        rss = [s[1] for s in samples]
        fds = [s[3] for s in samples]
        cpu = (samples[-1][2] - samples[0][2]) if len(samples) > 1 else math.nan
        series.append({
            "minute": m + 1,
            "rss_median_kib": statistics.median(rss) if rss else None,
            "rss_end_kib": rss[-1] if rss else None,
            "fds_median": statistics.median(fds) if fds else None,
            "fds_max": max(fds) if fds else None,
            "server_cpu_s": round(cpu, 1),
            "live": roomchat.latency_summary(live[m]),
            "catch_up": roomchat.latency_summary(caught[m]),
            "sender_away": roomchat.latency_summary(queued[m]),
            "reconnects": reconnects[m],
            "back_after_s": roomchat.latency_summary(back[m])})
    first, last = series[0], series[-1]
    rss_growth = ((last["rss_median_kib"] or 0) - (first["rss_median_kib"] or 0)) / 1024
    rss_pct = 100 * rss_growth * 1024 / first["rss_median_kib"] if first["rss_median_kib"] \
        else math.nan
    fd_growth = (last["fds_median"] or 0) - (first["fds_median"] or 0)
    p99_ratio = last["live"]["p99"] / first["live"]["p99"] if first["live"]["p99"] else math.nan
    missing = sum(r["missing"] for r in reports)
    duplicates = sum(r["duplicates"] for r in reports)
    send_errors: dict[str, int] = {}
    for r in reports:
        for key, n in r["send_errors"].items():
            send_errors[key] = send_errors.get(key, 0) + n
    failures = []
    if rss_growth > args.max_rss_growth and rss_pct > args.max_rss_growth_pct:
        failures.append(f"server RSS grew {rss_growth:.1f} MiB ({rss_pct:.0f} %)")
    if fd_growth > args.max_fd_growth:
        failures.append(f"open file descriptors grew by {fd_growth:g}")
    if missing or duplicates:
        failures.append(f"{missing} deliveries missed, {duplicates} duplicated")
    if send_errors:
        failures.append(f"sends failed: {send_errors}")
    if args.max_p99_ratio and p99_ratio > args.max_p99_ratio:
        failures.append(f"live p99 grew {p99_ratio:.1f}x")
    drops: dict[str, int] = {}
    for r in reports:
        for key, n in r["drops"].items():
            drops[key] = drops.get(key, 0) + n
    return {
        "clients": args.clients, "rooms": args.rooms, "rate": args.rate,
        "duration_s": args.duration, "warmup_s": args.warmup,
        "drop_every_s": [args.drop_min, args.drop_max],
        "series": series,
        "drift": {"rss_mib": round(rss_growth, 1), "rss_pct": round(rss_pct, 1),
                  "fds": fd_growth, "live_p99_ratio": round(p99_ratio, 2)},
        "sent": sum(r["sent"] for r in reports), "acked": sum(r["acked"] for r in reports),
        "send_errors": send_errors, "missing": missing, "duplicates": duplicates,
        "drops": drops, "reconnects": sum(reconnects),
        "connected_at_end": sum(r["connected_at_end"] for r in reports),
        "failures": failures,
        "thresholds": {"rss_mib": args.max_rss_growth, "rss_pct": args.max_rss_growth_pct,
                       "fds": args.max_fd_growth, "p99_ratio": args.max_p99_ratio},
        "code": fanout.code_version(), "machine": hostile.machine(),
    }


def render(r: dict[str, Any]) -> str:
    """The readable report."""
    lines = [f"soak: {r['clients']} sessions in {r['rooms']} rooms, {r['rate']:g} msgs/s, each "
             f"dropped every {r['drop_every_s'][0]:g}-{r['drop_every_s'][1]:g} s; "
             f"{r['duration_s']:g} s after {r['warmup_s']:g} s of warm-up; code {r['code']}; "
             f"machine {r['machine']['nproc']} x {r['machine']['cpu']}",
             "  (live: both ends connected; caught up: by a receiver after its reconnect; "
             "sender away: sent while its sender reconnected)",
             "  min  RSS MiB  fds  CPU s   live n  p50 ms  p99 ms  max ms  caught up n  p99 ms"
             "  sender away n  p99 ms  reconnects  back p50/max s"]
    for s in r["series"]:
        live, cu, away, b = s["live"], s["catch_up"], s["sender_away"], s["back_after_s"]
        rss = s["rss_median_kib"] / 1024 if s["rss_median_kib"] else math.nan
        lines.append(
            f"  {s['minute']:>3}  {rss:7.1f} {s['fds_median'] or 0:>4.0f} "
            f"{s['server_cpu_s']:6.1f} {live['n']:>8} {live['p50']:7.1f} {live['p99']:7.1f} "
            f"{live['max']:7.1f} {cu['n']:>12} {cu['p99']:7.1f} {away['n']:>14} "
            f"{away['p99']:7.1f} {s['reconnects']:>11}  {b['p50']:.2f}/{b['max']:.2f}")
    d = r["drift"]
    lines.append(f"  drift, last minute vs first: RSS {d['rss_mib']:+.1f} MiB "
                 f"({d['rss_pct']:+.1f} %), fds {d['fds']:+g}, live p99 x{d['live_p99_ratio']}")
    lines.append(f"  messages sent {r['sent']}, acknowledged {r['acked']}, send errors "
                 f"{r['send_errors'] or 0}; deliveries missed {r['missing']}, duplicated "
                 f"{r['duplicates']}; drops {r['drops']}; reconnects {r['reconnects']}; "
                 f"connected at the end {r['connected_at_end']}")
    t = r["thresholds"]
    lines.append(f"  thresholds: RSS +{t['rss_mib']} MiB and +{t['rss_pct']} %, fds "
                 f"+{t['fds']}" + (f", p99 x{t['p99_ratio']}" if t["p99_ratio"] else ""))
    lines.append("  verdict: " + ("PASS" if not r["failures"] else
                                  "FAIL: " + "; ".join(r["failures"])))
    return "\n".join(lines)


def main() -> None:
    """Parse options, run, print; exit status 1 on a failure (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="msgs/s in all rooms")
    parser.add_argument("--duration", type=float, default=600.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--drop-min", type=float, default=20.0)
    parser.add_argument("--drop-max", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rss-growth", type=float, default=16.0, metavar="MIB")
    parser.add_argument("--max-rss-growth-pct", type=float, default=10.0, metavar="PCT")
    parser.add_argument("--max-fd-growth", type=float, default=10.0)
    parser.add_argument("--max-p99-ratio", type=float, default=0.0,
                        help="fail if the last minute's live p99 is this many times the "
                             "first's (default: report only)")
    parser.add_argument("--setup-concurrency", type=int, default=8)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if args.duration < 60:
        parser.error("--duration must be at least 60 s (the series is per minute)")
    result = run(args)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if result["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
