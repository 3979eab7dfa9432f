"""Desktop client benchmark: start-up time, and a 10,000-message room (DESIGN.md "Targets").

This is a benchmark, not a test. It

1. starts a chatnet server in this process (TLS on loopback, SQLite in a
   temporary directory, the per-connection rate limit out of the way) and
   fills one room with ``--messages`` messages through the client library
   (not measured; paced below the per-user ``requests`` budget of 100 a
   second, which no server option lifts, and waiting out any ``rate_limited``
   answer: about 100 s for 10,000 messages);
2. starts the desktop client as a **separate process** (``--child``), on the
   Qt reactor, offscreen unless a display is set, with its own settings file,
   and measures there:

   * *window shown*: from just before the process was spawned to the login
     window's first paint (interpreter start, imports, QApplication, qreactor,
     catalogues, widgets);
   * *logged in*: from submitting the login form to the main window shown;
   * *first page*: opening the big room until its newest 50 messages are shown;
   * *scroll-back*: scrolling to the top again and again (as a person holding
     the scroll bar at the top) until all messages are loaded, page by page;
   * *scrolling*: then the whole list from top to bottom, one viewport
     height per step, each step painted synchronously; the time of each step
     (its median, 99th percentile and maximum are the "stalls" question);
   * *resize*: making the window narrower, which lays every message out again;
   * resident memory (``VmRSS``) after the window is shown, after login, and
     after the whole room is loaded.

Run from the repository root::

    .venv/bin/python bench/qt_client.py                 # 10,000 messages
    .venv/bin/python bench/qt_client.py --messages 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "bench-password-1"


def rss_kib() -> int:
    """Resident memory of this process, in KiB (Linux ``/proc``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the client process ---------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Run the client, measure, print one ``RESULT {json}`` line."""
    if args.verbose:
        import faulthandler

        faulthandler.dump_traceback_later(30, exit=True)  # where it hangs, if it does
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtclient.qt import QApplication, QSettings

    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    import qreactor

    qreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater

    from qtclient.app import ChatApp
    from qtclient.settings import ClientSettings
    from qtclient.views.accounts import STRIP_WIDTH

    settings = ClientSettings(QSettings(args.settings, QSettings.Format.IniFormat))
    client = ChatApp(reactor, settings, on_quit=reactor.stop)
    client.start()
    client.login_window.repaint()  # the first paint, done now rather than on the next loop turn
    results: dict[str, Any] = {"window_shown_s": time.time() - args.spawned_at,
                               "rss_window_shown_kib": rss_kib()}

    async def until(condition: Any, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark step timed out")
            await deferLater(reactor, 0.005, lambda: None)

    async def run() -> None:
        form = client.login_window
        form.host.setText("localhost")
        form.port.setValue(args.port)
        form.ca_file.setText(args.ca)
        form.username.setText("alice")
        form.password.setText(PASSWORD)
        start = time.perf_counter()
        form.submit()
        window = client.main_window  # the account's page in the AppWindow
        await until(window.isVisible)
        # The page takes what the AppWindow leaves beside the account strip.
        client.window.resize(1100 + STRIP_WIDTH, 720)
        client.window.repaint()
        results["login_to_main_window_s"] = time.perf_counter() - start
        results["rss_logged_in_kib"] = rss_kib()
        controller = client.controller
        await until(lambda: controller.rooms.room(args.room) is not None)
        start = time.perf_counter()
        controller.open_room(args.room)
        timeline = controller.timeline(args.room)
        await until(lambda: timeline.loaded)
        window.timeline.viewport().repaint()
        results["first_page_s"] = time.perf_counter() - start
        bar = window.timeline.verticalScrollBar()
        start = time.perf_counter()
        pages = 0
        while timeline.has_more:
            rows = timeline.rowCount()
            bar.setValue(0)
            if args.verbose:
                print(f"{time.perf_counter() - start:.2f} s: {rows} rows", file=sys.stderr)
            await until(lambda r=rows: timeline.rowCount() > r or not timeline.has_more)
            # The view lays the new rows out on its next turn and moves the
            # scroll bar to keep the reading position; only then scroll up again.
            await until(lambda: bar.value() > 0 or not timeline.has_more)
            pages += 1
        results["scroll_back_all_s"] = time.perf_counter() - start
        results["scroll_back_pages"] = pages
        results["messages_loaded"] = timeline.rowCount()
        await deferLater(reactor, 0.2, lambda: None)
        results["rss_room_loaded_kib"] = rss_kib()
        viewport = window.timeline.viewport()
        step = max(1, viewport.height())
        times = []
        bar.setValue(0)
        value = 0
        while value < bar.maximum():
            value = min(bar.maximum(), value + step)
            t0 = time.perf_counter()
            bar.setValue(value)
            viewport.repaint()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        results["scroll_steps"] = len(times)
        results["scroll_step_ms_median"] = statistics.median(times)
        results["scroll_step_ms_p99"] = times[min(len(times) - 1, int(len(times) * 0.99))]
        results["scroll_step_ms_max"] = times[-1]
        start = time.perf_counter()
        width = window.timeline.viewport().width()
        client.window.resize(900 + STRIP_WIDTH, 720)
        # The platform reports the new size and the layouts follow in events:
        # handle them now (no sleeping) until the conversation is narrower.
        while window.timeline.viewport().width() >= width:
            if time.perf_counter() - start > 10:
                raise RuntimeError("the resize did not make the conversation narrower")
            app.processEvents()
        window.timeline._width_settled()  # what the view does once the resize pauses
        window.timeline.doItemsLayout()
        viewport.repaint()
        results["relayout_after_resize_s"] = time.perf_counter() - start
        results["rss_end_kib"] = rss_kib()
        print("RESULT " + json.dumps(results), flush=True)
        await controller.shutdown()

    def go() -> None:
        d: Deferred[Any] = Deferred.fromCoroutine(run())
        d.addErrback(lambda f: f.printTraceback(file=sys.stdout))
        d.addBoth(lambda _r: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()


# -- the server and the measuring process --------------------------------------------------


async def parent(reactor: Any, args: argparse.Namespace) -> None:
    """Start and fill the server, run the client process, report."""
    import dataclasses

    from twisted.internet.utils import getProcessOutputAndValue

    from chatnet.client.connection import connect
    from chatnet.config import ServerConfig
    from chatnet.server import ChatnetService
    from qtclient.demo import DemoServer

    with tempfile.TemporaryDirectory(prefix="chatnet-qtbench-") as tmp:
        config = ServerConfig(port=0, interface="127.0.0.1", data_dir=Path(tmp) / "data",
                              open_registration=True, argon2_time_cost=1,
                              argon2_memory_kib=8, shutdown_grace=1.0)
        config = dataclasses.replace(config, rate=1e6, burst=1e6)
        service = ChatnetService(config, reactor)
        service.startService()
        port = (await service.ready).getHost().port
        ca = str(service.ca_path or Path(tmp) / "data" / "tls" / "ca.pem")
        demo = DemoServer(reactor, service, port, Path(ca))
        bob = await connect(reactor, "localhost", port, ca)
        await bob.register("bob", PASSWORD)
        await bob.login("bob", PASSWORD)
        demo.people["bob"] = bob
        room = await bob.request("room.create", {"name": "big", "visibility": "public"})
        alice = await connect(reactor, "localhost", port, ca)
        await alice.register("alice", PASSWORD)
        await alice.login("alice", PASSWORD)
        await alice.request("room.join", {"room_id": room["room_id"]})
        await alice.close()
        start = time.perf_counter()
        # 400 at once, then a pause that refills 400 of the per-user budget.
        await demo.fill("bob", room["room_id"], args.messages, batch=400, rate=95.0)
        print(f"filled {args.messages} messages in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        env = dict(os.environ)
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        child_args = [str(Path(__file__).resolve()), "--child", "--port", str(port),
                      "--ca", ca, "--room", str(room["room_id"]),
                      "--settings", str(Path(tmp) / "client.ini"),
                      "--spawned-at", repr(time.time())] + (["--verbose"] if args.verbose else [])
        running = getProcessOutputAndValue(sys.executable, child_args, env=env, path=str(ROOT))
        # Killed by a signal, it fails with the tuple (out, err, signal) as its value.
        running.addErrback(lambda f: (f.value[0], f.value[1], -f.value[2]))
        try:
            out, err, code = await running
        finally:
            await demo.stop()
    lines = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    if code != 0 or not lines:
        raise SystemExit(f"client process failed ({code}):\n{out.decode()[-2000:]}\n"
                         f"{err.decode()[-3000:]}")
    results = json.loads(lines[-1][len("RESULT "):])
    results["messages"] = args.messages
    results["cpu"] = _cpu_model()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


def report(r: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    mib = 1024.0
    rows = [
        ("window shown after start (process spawn → login window painted)",
         f"{r['window_shown_s']:.2f} s"),
        ("login → main window shown", f"{r['login_to_main_window_s']:.2f} s"),
        ("open the room (newest 50 shown)", f"{r['first_page_s'] * 1000:.0f} ms"),
        (f"scroll back through all {r['messages_loaded']:,} messages "
         f"({r['scroll_back_pages']} pages)", f"{r['scroll_back_all_s']:.1f} s"),
        (f"scroll top → bottom, {r['scroll_steps']} steps of one screen: "
         "median / p99 / max per step",
         f"{r['scroll_step_ms_median']:.1f} / {r['scroll_step_ms_p99']:.1f} / "
         f"{r['scroll_step_ms_max']:.1f} ms"),
        ("lay out all messages again after a resize", f"{r['relayout_after_resize_s']:.2f} s"),
        ("RSS: login window shown", f"{r['rss_window_shown_kib'] / mib:.0f} MiB"),
        ("RSS: logged in", f"{r['rss_logged_in_kib'] / mib:.0f} MiB"),
        (f"RSS: {r['messages_loaded']:,}-message room loaded",
         f"{r['rss_room_loaded_kib'] / mib:.0f} MiB"),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + f"\n\nMachine: {r['cpu']}."


def main() -> None:
    """Parse options; run as the measuring parent or as the client child."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="print progress")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--room", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    task.react(lambda reactor: Deferred.fromCoroutine(parent(reactor, args)))


if __name__ == "__main__":
    main()
