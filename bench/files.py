"""File transfer benchmark (not a test): upload and download throughput over TLS.

Starts ``twistd chatnet`` as a subprocess on loopback, creates a user, then:

1. one stream: uploads one file of ``--size`` MB and downloads it back;
2. ``--concurrent`` clients upload one ``--each`` MB file each, at the same time.

Prints MB/s (1 MB = 10^6 bytes) for each phase, the server's peak and final RSS
(``/proc/PID/status`` VmHWM/VmRSS), and CPU seconds of the server and of this
process (the client side). Example::

    .venv/bin/python bench/files.py --size 500 --concurrent 20 --each 25
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PASSWORD = "benchmark password"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"{key}:\s+(\d+) kB", text)
        out[key] = int(match.group(1)) * 1024 if match else 0
    return out


def write_random(path: Path, size: int) -> None:
    """A file of ``size`` random bytes (written in 8 MiB blocks)."""
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 * 1024 * 1024))
            f.write(block)
            left -= len(block)


def start_server(data: Path, max_file: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """twistd chatnet on a free loopback port; returns (process, port, CA path)."""
    log = data.parent / "server.log"
    process = subprocess.Popen(
        [str(BIN / "twistd"), "--nodaemon", "--pidfile=", f"--logfile={log}", "chatnet",
         "--port", "0", "--interface", "127.0.0.1", "--data-dir", str(data),
         "--max-file-size", str(max_file), "--rate-limit", "100000", "--rate-burst", "100000",
         "--open-registration"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists():
            match = re.search(r"chatnet listening on [^:]+:(\d+)", log.read_text())
            if match:
                return process, int(match.group(1)), data / "tls" / "ca.pem"
        if process.poll() is not None:
            raise SystemExit("server exited:\n" + log.read_text())
        time.sleep(0.05)
    raise SystemExit("server did not start")


async def run(reactor: Any, args: argparse.Namespace, port: int, ca: Path, work: Path,
              server_pid: int) -> dict[str, Any]:
    """The measured phases; returns the figures."""
    from twisted.internet.defer import gatherResults

    from chatnet.client.files import Download, Upload
    from chatnet.client.session import ChatSession

    figures: dict[str, Any] = {}
    me = os.getpid()

    def session(name: str) -> ChatSession:
        return ChatSession(reactor, "localhost", port, name, PASSWORD, ca=ca)

    big = work / "big.bin"
    write_random(big, args.size * 10**6)
    alice = session("alice")
    await alice.start(register=True)

    cpu0, client0, t0 = cpu_seconds(server_pid), cpu_seconds(me), time.monotonic()
    upload = Upload(alice, big, window=args.window)
    info = await upload.start()
    elapsed = time.monotonic() - t0
    figures["upload_one_stream"] = {
        "mb_per_s": round(args.size / elapsed, 1), "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu_seconds(server_pid) - cpu0, 2),
        "client_cpu_s": round(cpu_seconds(me) - client0, 2),
        "note": "includes hashing the source file before the first byte"}

    dest = work / "back.bin"
    cpu0, client0, t0 = cpu_seconds(server_pid), cpu_seconds(me), time.monotonic()
    await Download(alice, info["file_id"], dest, window=args.window).start()
    elapsed = time.monotonic() - t0
    figures["download_one_stream"] = {
        "mb_per_s": round(args.size / elapsed, 1), "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu_seconds(server_pid) - cpu0, 2),
        "client_cpu_s": round(cpu_seconds(me) - client0, 2),
        "note": "includes hashing the result before the rename"}
    figures["server_memory_after_one_stream"] = memory(server_pid)
    dest.unlink()

    sessions = [session(f"user{i}") for i in range(args.concurrent)]
    for s in sessions:
        await s.start(register=True)
    sources = []
    for i in range(args.concurrent):
        path = work / f"each{i}.bin"
        write_random(path, args.each * 10**6)
        sources.append(path)
    cpu0, client0, t0 = cpu_seconds(server_pid), cpu_seconds(me), time.monotonic()
    await gatherResults([Upload(s, p, window=args.window).start()
                         for s, p in zip(sessions, sources, strict=True)])
    elapsed = time.monotonic() - t0
    figures["concurrent_uploads"] = {
        "clients": args.concurrent, "mb_each": args.each,
        "aggregate_mb_per_s": round(args.concurrent * args.each / elapsed, 1),
        "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu_seconds(server_pid) - cpu0, 2),
        "client_cpu_s": round(cpu_seconds(me) - client0, 2)}
    figures["server_memory_end"] = memory(server_pid)
    for s in [alice, *sessions]:
        await s.close()
    return figures


def main() -> None:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=500, help="one-stream file, MB")
    parser.add_argument("--concurrent", type=int, default=20, help="concurrent uploaders")
    parser.add_argument("--each", type=int, default=25, help="file per uploader, MB")
    parser.add_argument("--window", type=int, default=8, help="chunks in flight")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chatnet-files-bench-"))
    max_file = max(args.size, args.each) * 10**6 + 1
    process, port, ca = start_server(work / "data", max_file)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    result: dict[str, Any] = {}

    async def program(reactor: Any) -> None:
        result.update(await run(reactor, args, port, ca, work, process.pid))

    try:
        react(lambda reactor: Deferred.fromCoroutine(program(reactor)))
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    one_up, one_down = result["upload_one_stream"], result["download_one_stream"]
    many = result["concurrent_uploads"]
    print(f"one stream, {args.size} MB over TLS on loopback")
    print(f"  upload   {one_up['mb_per_s']:7.1f} MB/s  ({one_up['seconds']} s, server CPU "
          f"{one_up['server_cpu_s']} s, client CPU {one_up['client_cpu_s']} s)")
    print(f"  download {one_down['mb_per_s']:7.1f} MB/s  ({one_down['seconds']} s, server CPU "
          f"{one_down['server_cpu_s']} s, client CPU {one_down['client_cpu_s']} s)")
    print(f"{many['clients']} concurrent uploads of {many['mb_each']} MB")
    print(f"  aggregate {many['aggregate_mb_per_s']:6.1f} MB/s  ({many['seconds']} s, server "
          f"CPU {many['server_cpu_s']} s)")
    for key in ("server_memory_after_one_stream", "server_memory_end"):
        mem = result[key]
        print(f"server RSS {key.removeprefix('server_memory_')}: "
              f"{mem['VmRSS'] / 2**20:.0f} MiB (peak {mem['VmHWM'] / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
