"""Frame reassembly benchmark (not a test): server CPU for one frame dribbled one byte
per TLS record.

A client that sends a large frame one byte per TLS record makes the server's
TLS layer hand the framing code one byte at a time. Twisted's
``Int32StringReceiver`` joins its whole buffer again for every piece, so its
work grows with the square of the frame size; chatnet's
:class:`chatnet.wire.framing.FrameDecoder` is linear. This script measures,
in one run, the server CPU time (utime + stime from ``/proc``) that one such
frame costs:

1. chatnet (``twistd chatnet`` with its default limits), after login: a
   ``session.ping`` padded to ``--size`` bytes of payload (default 1 MiB, the
   default ``max_frame``), dribbled for ``--seconds`` (default 30): the server
   reads small records at a limited rate (200 a second past a burst of 1,000),
   so the frame is not finished, and what is measured is the server CPU a
   dribbler costs per second (the reassembly itself is shown linear by
   ``tests/core/test_protocol.py``, which counts the bytes copied);
2. chatnet before login: the same 1 MiB frame announced by a connection that
   has not logged in, which the server refuses (``too_large``) as soon as the
   length arrives (the pre-login limit is 8 KiB); and an 8 KiB ``session.hello``
   (the largest frame allowed before login) dribbled the same way;
3. ``bench/bare_fanout_server.py`` (plain ``Int32StringReceiver``), the same
   frame at each of ``--bare-sizes`` (default 128 and 256 KiB: at 1 MiB the
   quadratic case takes minutes). Its cost at ``--size`` is extrapolated with
   ``cpu(n) = a*n + c*n**2`` fitted to two sizes (a per-record cost, which
   both servers pay, plus the buffer copies); ``--bare-sizes 1048576``
   measures it directly instead.

The client runs TLS in memory (Python's ``ssl.SSLObject``): each one-byte
write is one TLS record, and the records go to the socket 1,024 at a time, so
the client is never what limits the pace. Both servers run as subprocesses
started with ``bench/fanout.py``'s helpers; the client runs in this process.

    .venv/bin/python bench/dribble.py                        # bare at 128 + 256 KiB, fitted
    .venv/bin/python bench/dribble.py --bare-sizes 1048576   # bare measured at 1 MiB
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import shutil
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server and /proc helpers

from chatnet.wire.codec import frame, pack, unpack
from chatnet.wire.framing import FrameDecoder, encode_frame

HOST = fanout.HOST
MIB = 1024 * 1024


class ConnectionGone(Exception):
    """The server closed the connection (or refused it)."""


class BlockingClient:
    """A blocking TLS connection that speaks chatnet frames by hand (hostile traffic).

    TLS runs in memory (``ssl.SSLObject`` over ``MemoryBIO``s, the server verified
    against ``ca``) and the socket carries whatever records it produced: so
    :meth:`dribble` can make one TLS record per byte and still hand the kernel
    large writes, and the server, not this client, is what limits the pace.

    Args:
        port: the server's port on 127.0.0.1.
        ca: the PEM CA that signed the server's certificate.
        source: local address to connect from (another loopback address makes
            the server see another peer), or None.
        timeout: seconds any single socket operation may block.

    Raises:
        ConnectionGone: the connection or the TLS handshake failed.
    """

    def __init__(self, port: int, ca: str, source: str | None = None,
                 timeout: float = 60.0) -> None:
        try:
            self.sock = socket.create_connection(
                (HOST, port), timeout=timeout, source_address=(source, 0) if source else None)
        except OSError as exc:
            raise ConnectionGone(f"cannot connect: {exc}") from exc
        context = ssl.create_default_context(cafile=ca)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_hostname=HOST)
        self.decoder = FrameDecoder(64 * MIB)
        self.next_id = 1
        self.events: list[dict[str, Any]] = []
        self.closed = False
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()
            except (OSError, ssl.SSLError) as exc:
                self.close()
                raise ConnectionGone(f"TLS handshake failed: {exc}") from exc
        self._flush()

    def _flush(self) -> None:
        """Send the TLS records produced so far."""
        data = self._out.read()
        if data:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise ConnectionGone(str(exc)) from exc

    def _receive(self) -> None:
        """Read once from the socket into TLS (blocking)."""
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            self.closed = True
            raise ConnectionGone(str(exc)) from exc
        if not data:
            self.closed = True
            raise ConnectionGone("closed by the server")
        self._in.write(data)

    def send_frame(self, payload: dict[str, Any]) -> None:
        """Send one complete frame in one TLS record."""
        self.tls.write(frame(payload))
        self._flush()

    def read_message(self) -> dict[str, Any]:
        """The next payload from the server (blocking).

        Raises:
            ConnectionGone: the server closed the connection first.
        """
        while True:
            payload = self.decoder.next_frame()
            if payload is not None:
                message: dict[str, Any] = unpack(payload)
                return message
            try:
                self.decoder.feed(self.tls.read(65536))
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()
            except ssl.SSLZeroReturnError as exc:
                self.closed = True
                raise ConnectionGone("closed by the server") from exc
            except ssl.SSLError as exc:
                self.closed = True
                raise ConnectionGone(str(exc)) from exc

    def take_id(self) -> int:
        """A fresh request id."""
        request_id = self.next_id
        self.next_id += 1
        return request_id

    def wait_answer(self, request_id: int) -> dict[str, Any]:
        """Read until the answer to ``request_id``; events met on the way are kept
        in :attr:`events`. Returns the response map (``result`` or ``error``)."""
        while True:
            message = self.read_message()
            if "event" in message:
                self.events.append(message)
            elif message.get("id") == request_id:
                return message

    def request(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and wait for its answer (the response map)."""
        request_id = self.take_id()
        self.send_frame({"id": request_id, "op": op, "args": args or {}})
        return self.wait_answer(request_id)

    def server_spoke(self) -> bool:
        """Whether the server has sent something not read yet (without blocking)."""
        return bool(self.tls.pending() or self._in.pending
                    or select.select([self.sock], [], [], 0)[0])

    def dribble(self, data: bytes, until: float | None = None, batch: int = 1024,
                watch_every: int = 4096, watch_server: bool = True) -> int:
        """Send ``data`` one byte per TLS record, handing the socket ``batch`` records
        at a time; stop early at ``until`` (time.time()) or when the server has
        something to say (checked every ``watch_every`` bytes: e.g. an error
        event before it closes).

        Returns:
            bytes sent.
        """
        write = self.tls.write
        sent = 0
        try:
            for i in range(len(data)):
                write(data[i:i + 1])
                sent += 1
                if sent % batch == 0:
                    self._flush()
                if sent % watch_every == 0:
                    if until is not None and time.time() >= until:
                        break
                    if watch_server and self.server_spoke():
                        break
            self._flush()
        except (ConnectionGone, ssl.SSLError):
            self.closed = True
        return sent

    def close(self) -> None:
        """Drop the connection."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


def padded_ping(request_id: int, payload_size: int) -> bytes:
    """A complete ``session.ping`` frame whose payload is exactly ``payload_size`` bytes."""
    def packed(pad: int) -> bytes:
        return pack({"id": request_id, "op": "session.ping", "args": {"pad": b"x" * pad}})

    guess = payload_size - len(packed(0))
    for pad in range(guess, max(-1, guess - 16), -1):
        data = packed(pad)
        if len(data) == payload_size:
            return encode_frame(data)
    raise ValueError(f"cannot pad a ping to {payload_size} bytes")


def padded_hello(payload_size: int) -> bytes:
    """A complete ``session.hello`` frame whose payload is exactly ``payload_size`` bytes
    (the padding is an extra top-level key, which the server ignores)."""
    def packed(pad: int) -> bytes:
        return pack({"id": 1, "op": "session.hello", "pad": b"x" * pad,
                     "args": {"protocol": 1, "client": "dribble"}})

    guess = payload_size - len(packed(0))
    for pad in range(guess, max(-1, guess - 16), -1):
        data = packed(pad)
        if len(data) == payload_size:
            return encode_frame(data)
    raise ValueError(f"cannot pad a hello to {payload_size} bytes")


def logged_in(port: int, ca: str, username: str, password: str,
              register: bool) -> BlockingClient:
    """A :class:`BlockingClient` after hello and login (registering first if asked)."""
    client = BlockingClient(port, ca)
    client.request("session.hello", {"protocol": 1, "client": "dribble"})
    if register:
        client.request("auth.register", {"username": username, "password": password})
    answer = client.request("auth.login", {"username": username, "password": password})
    if "error" in answer:
        raise SystemExit(f"login failed: {answer['error']}")
    return client


def measure(pid: int, client: BlockingClient, data: bytes, answer_id: int | None
            ) -> dict[str, Any]:
    """Dribble ``data`` and wait for the answer to ``answer_id`` (or, if None, for the
    server to speak or close); return the server's CPU seconds and what came back."""
    cpu0 = fanout.cpu_seconds(pid)
    wall0 = time.time()
    sent = client.dribble(data, watch_every=len(data) + 1 if answer_id is not None else 64,
                          batch=1024 if answer_id is not None else 16)
    outcome = "closed"
    try:
        if answer_id is not None:
            answer = client.wait_answer(answer_id)
            outcome = "answered" if "result" in answer else answer["error"]["code"]
        else:
            message = client.read_message()
            outcome = (message.get("data", {}).get("code", "event") if "event" in message
                       else "answered")
    except ConnectionGone:
        pass
    cpu = fanout.cpu_seconds(pid) - cpu0
    return {"bytes_sent": sent, "frame_bytes": len(data), "outcome": outcome,
            "server_cpu_s": round(cpu, 3), "wall_s": round(time.time() - wall0, 2)}


def measure_for(pid: int, client: BlockingClient, data: bytes, seconds: float
                ) -> dict[str, Any]:
    """Dribble ``data`` for ``seconds`` of wall time (chatnet reads a connection
    that sends small records at a limited rate, so a large frame is not finished),
    or until the connection fails; return the server's CPU seconds and the records
    handed to the socket. (What the server says is not watched: right after the
    handshake TLS 1.3 session tickets are waiting to be read.)"""
    cpu0 = fanout.cpu_seconds(pid)
    wall0 = time.time()
    sent = client.dribble(data, until=wall0 + seconds, batch=256, watch_every=256,
                          watch_server=False)
    cpu = fanout.cpu_seconds(pid) - cpu0
    wall = time.time() - wall0
    return {"bytes_sent": sent, "frame_bytes": len(data), "server_cpu_s": round(cpu, 3),
            "wall_s": round(wall, 2), "server_cpu_share": round(cpu / wall, 3),
            "outcome": "closed" if client.closed else "unfinished"}


def run_chatnet(args: argparse.Namespace) -> dict[str, Any]:
    """The chatnet measurements (post-login frame, pre-login frames)."""
    data = Path(tempfile.mkdtemp(prefix="chatnet-dribble-"))
    port = fanout.free_port()
    # Registration is open only to make the one account; every limit is the default.
    server = fanout.start_server("chatnet", data, port,
                                 options=("--open-registration",))
    ca = str(data / "tls" / "ca.pem")
    out: dict[str, Any] = {}
    try:
        time.sleep(1.0)
        client = logged_in(port, ca, "dribbler", "dribble password 1", register=True)
        out["after_login"] = measure_for(server.pid, client, padded_ping(100, args.size),
                                         args.seconds)
        client.close()
        fanout.log(f"chatnet after login: {out['after_login']}")
        early = BlockingClient(port, ca)
        early.request("session.hello", {"protocol": 1, "client": "dribble"})
        out["before_login_1mib"] = measure(server.pid, early, padded_ping(100, args.size), None)
        early.close()
        fanout.log(f"chatnet before login, {args.size} bytes: {out['before_login_1mib']}")
        # Dribbled, even the largest frame allowed before login outlasts the login
        # deadline (10 s) at the small-read rate: measured for 15 s.
        early = BlockingClient(port, ca, timeout=15.0)
        out["before_login_8kib"] = measure_for(server.pid, early, padded_hello(8 * 1024), 15.0)
        early.close()
        fanout.log(f"chatnet before login, 8 KiB hello: {out['before_login_8kib']}")
        out["server_rss_kib"] = fanout.memory_kib(server.pid)
    finally:
        fanout.stop_server(server)
        shutil.rmtree(data, ignore_errors=True)
    return out


def run_bare(size: int) -> dict[str, Any]:
    """The bare Int32StringReceiver server, one frame of ``size`` payload bytes."""
    data = Path(tempfile.mkdtemp(prefix="chatnet-dribble-bare-"))
    port = fanout.free_port()
    server = fanout.start_server("bare", data, port)
    ca = str(data / "tls" / "ca.pem")
    try:
        time.sleep(1.0)
        client = logged_in(port, ca, "dribbler", "x", register=False)
        result = measure(server.pid, client, padded_ping(100, size), 100)
        client.close()
        fanout.log(f"bare at {size} bytes: {result}")
        return result
    finally:
        fanout.stop_server(server)
        shutil.rmtree(data, ignore_errors=True)


def bare_at(size: int, measured: dict[int, float]) -> tuple[float, str]:
    """The bare server's CPU seconds at ``size``: measured, or fitted to two sizes.

    Returns:
        (seconds, how it was obtained).
    """
    if size in measured:
        return measured[size], "measured"
    (n1, y1), (n2, y2) = sorted(measured.items())[-2:]
    a = (y1 * n2 * n2 - y2 * n1 * n1) / (n1 * n2 * n2 - n2 * n1 * n1)
    c = (y1 - a * n1) / (n1 * n1)
    return a * size + c * size * size, (
        f"fitted a*n + c*n^2 to {n1 // 1024} and {n2 // 1024} KiB: "
        f"a = {a * 1e6:.2f} us/byte, c = {c * 1e12:.2f} ps/byte^2")


def main() -> None:
    """Parse options, measure both servers, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=MIB,
                        help="payload bytes of the frame sent to chatnet (default 1 MiB, "
                             "its default max_frame)")
    parser.add_argument("--bare-sizes", default="131072,262144",
                        help="comma-separated payload sizes for the bare server; with one "
                             "size it must be --size, with two or more --size is fitted")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long to dribble to chatnet after login")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = sorted({int(x) for x in args.bare_sizes.split(",") if x.strip()})
    if len(sizes) < 2 and sizes != [args.size]:
        parser.error("--bare-sizes: give --size itself, or at least two sizes to fit")
    chatnet = run_chatnet(args)
    bare = {size: run_bare(size) for size in sizes}
    bare_cpu, how = bare_at(args.size, {n: r["server_cpu_s"] for n, r in bare.items()})
    result = {"size": args.size, "chatnet": chatnet,
              "bare": {str(n): r for n, r in bare.items()},
              "bare_cpu_s_at_size": round(bare_cpu, 3), "bare_at_size": how,
              "code": fanout.code_version()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    kib = args.size // 1024
    print(f"frame reassembly: one frame dribbled one byte per TLS record (code {result['code']})")
    a, b1, b8 = chatnet["after_login"], chatnet["before_login_1mib"], chatnet["before_login_8kib"]
    print(f"  chatnet, after login, {kib} KiB frame dribbled for {a['wall_s']} s: "
          f"{a['bytes_sent']} records handed to the socket, server CPU "
          f"{a['server_cpu_s']:.3f} s ({a['server_cpu_share']:.1%} of a core), "
          f"frame {a['outcome']}")
    print(f"  chatnet, before login, {kib} KiB announced: {b1['outcome']} after "
          f"{b1['bytes_sent']} bytes; server CPU {b1['server_cpu_s']:.3f} s")
    print(f"  chatnet, before login, 8 KiB hello: {b8['bytes_sent']} records in "
          f"{b8['wall_s']} s, server CPU {b8['server_cpu_s']:.3f} s, {b8['outcome']}")
    for n, r in bare.items():
        print(f"  bare Int32StringReceiver, {n // 1024} KiB: server CPU "
              f"{r['server_cpu_s']:.3f} s, wall {r['wall_s']} s, {r['outcome']}")
    print(f"  bare at {kib} KiB: {bare_cpu:.1f} s ({how})")


if __name__ == "__main__":
    main()
