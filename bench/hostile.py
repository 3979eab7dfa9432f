"""Hostile clients benchmark (not a test): normal people chat while others attack.

The server under test is ``twistd chatnet`` as a subprocess with its **default
limits** (only ``--open-registration`` and a high ``--registrations-per-hour``,
to create the accounts in the setup; more with ``--server-option``). Normal
clients (``bench/roomchat.py``: the chatnet client library, verified TLS,
``auth.resume``) chat in ``--rooms`` public rooms at ``--rate`` messages per
second in all; every delivery is recorded with its latency, and a new login
(``auth.resume`` on a fresh connection) is tried every second to show that the
server still admits people. The run has four phases (seconds, after ``t0``):

``warmup``  not reported;
``quiet``   normal chat only;
``hostile`` normal chat while every chosen flood runs;
``after``   normal chat again, floods stopped (the server's memory should be
            back near what it was in the quiet phase by its end).

The floods (``--floods``, default all), each in its own process with its own
reactor (niced, ``--hostile-nice``, so that the attackers' own CPU does not
take the server's: a real attacker does not run on the server), each from its
own loopback address (127.0.0.10 and up; the normal clients use 127.0.0.1), so
per-address limits see several attackers:

``malformed``  ``--malformed-conns`` connections: logged in, batches of bad ids,
               unknown ops, ill-typed or missing arguments, args that are not a
               map; between batches, a fresh connection that sends one frame
               the server must close on (garbage bytes, a list or a string
               payload, an oversized or zero length, bytes that are not
               msgpack, invalid UTF-8), before login;
``reactions``  ``--reactors`` members of the first room react to one message
               with distinct emoji, on and off, as fast as they are let;
``rooms``      ``room.create {members: [victim]}`` x ``--room-spam`` against a
               normal user; afterwards the victim's ``room.list`` is paged;
``guess``      ``--guessers`` connections try wrong passwords for a normal
               user's account (connections cut by the login deadline reconnect);
``uploads``    ``--uploads`` unfinished ``file.upload.begin`` (random sha256);
``downloads``  ``file.download`` of a 64 KiB file, from the start each time;
``unauth``     ``--unauth-conns`` connections held open without logging in
               (re-opened when cut); beyond the per-address cap they are refused;
``dribble``    a logged-in connection sends ``max_frame`` (1 MiB) frames one
               byte per TLS record; first a connection not logged in announces
               one (refused at the length);
``history``    ``msg.history {limit: 200}`` at ``--history-rate`` req/s in a
               room of 200 messages of 64 KB (16,000 four-byte characters);
``idless``     a connection that never reads sends id-less ``file.download``
               requests at ``--idless-rate`` frames/s; at the end it reads
               what the server sent back.

Every flood respects ``retry_after_ms`` of the per-connection request rate
(hammering past it only buys more cheap refusals) but keeps trying past every
other refusal. Printed: p50/p99/max latency per phase and the hostile/quiet
ratio, deliveries missed (must be 0), failed sends, new logins, server CPU and
RSS per phase, and each flood's outcome counts.

    .venv/bin/python bench/hostile.py
    .venv/bin/python bench/hostile.py --floods malformed,guess --hostile 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # the fan-out benchmark's server and /proc helpers
import roomchat  # steady chat in rooms, measured

HOST = fanout.HOST
FLOODS = ("malformed", "reactions", "rooms", "guess", "uploads", "downloads", "unauth",
          "dribble", "history", "idless")
#: Each flood's source address (the normal clients use 127.0.0.1).
ADDRESSES = {name: f"127.0.0.{10 + n}" for n, name in enumerate(FLOODS)}
#: Emoji for the reactions flood: runs of code points that are each one emoji (not the
#: hair components U+1F9B0-U+1F9B3, which only modify another).
EMOJI = [chr(c) for r in ((0x1F600, 0x1F650), (0x1F680, 0x1F6C6), (0x1F910, 0x1F93B),
                          (0x1F947, 0x1F9B0), (0x1F9B4, 0x1F9FF)) for c in range(*r)]
#: A 64 KB message body: the longest body (16,000 characters) of 4-byte characters.
BIG_BODY = "\U0001F600" * 16_000


# -- the flood processes ---------------------------------------------------------------------------

def outcome(result: Any) -> str:
    """``ok``, a ``ChatError`` code (with a hint for rate limits), or an exception name."""
    from twisted.python.failure import Failure

    from chatnet.client.core import ConnectionClosed

    if not isinstance(result, Failure):
        return "ok"
    error = result.value
    if isinstance(error, ConnectionClosed):
        return "connection closed"
    code = getattr(getattr(error, "code", None), "value", None)
    if code is None:
        return type(error).__name__
    if code == "rate_limited":
        details = getattr(error, "details", None) or {}
        if "budget" in details:
            return f"rate_limited ({details['budget']} budget)"
        if "failed logins" in str(error):
            return "rate_limited (login back-off)"
        return "rate_limited (request rate)"
    if code == "conflict" and (getattr(error, "details", None) or {}).get("limit"):
        return f"conflict (limit {error.details['limit']})"  # type: ignore[attr-defined]
    return str(code)


def retry_after(result: Any) -> float:
    """Seconds to wait if ``result`` is the per-connection request rate's refusal, else 0."""
    if outcome(result) == "rate_limited (request rate)":
        details = getattr(result.value, "details", None) or {}
        return min(1.0, details.get("retry_after_ms", 100) / 1000)
    return 0.0


class FloodContext:
    """What a flood needs: where the server is, its accounts, the deadline, the counts.

    Attributes:
        counts: outcome name -> how many.
        notes: other results (a dict of JSON values).
    """

    def __init__(self, reactor: Any, params: dict[str, Any]) -> None:
        self.reactor = reactor
        self.params = params
        self.port: int = params["port"]
        self.ca: str = params["ca"]
        self.source: str = params["source"]
        self.tokens: dict[str, str] = params["tokens"]
        self.t_end = math.inf
        self.counts: Counter[str] = Counter()
        self.notes: dict[str, Any] = {}

    def over(self) -> bool:
        """Whether the flood's time is up."""
        return time.time() >= self.t_end

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the count ``key``."""
        self.counts[key] += n

    def endpoint(self) -> Any:
        """A verified TLS client endpoint to the server, from this flood's address."""
        from twisted.internet import endpoints

        from chatnet.wire.tls import client_tls_options

        return endpoints.wrapClientTLS(
            client_tls_options(HOST, self.ca),
            endpoints.TCP4ClientEndpoint(self.reactor, HOST, self.port, timeout=10,
                                         bindAddress=(self.source, 0)))

    async def connect(self, hello: bool = True) -> Any:
        """A new :class:`ChatConnection` (after ``session.hello`` unless ``hello`` is False)."""
        from chatnet.client.connection import ChatConnectionFactory

        conn = await self.endpoint().connect(ChatConnectionFactory())
        if hello:
            await conn.hello("hostile-bench")
        return conn

    async def login(self, name: str) -> Any:
        """A new connection logged in as ``name`` (``auth.resume`` with its token)."""
        conn = await self.connect()
        await conn.resume(self.tokens[name])
        return conn

    async def sleep(self, seconds: float) -> None:
        """Wait without blocking the reactor."""
        from twisted.internet.task import deferLater

        await deferLater(self.reactor, max(0.0, seconds), lambda: None)

    async def wait(self, d: Any, seconds: float) -> bool:
        """Wait for ``d`` at most ``seconds``; whether it fired (its result is dropped)."""
        from twisted.internet.defer import Deferred

        mirror: Deferred[bool] = Deferred()
        timer = self.reactor.callLater(seconds, lambda: mirror.called or mirror.callback(False))

        def fired(_result: Any) -> None:
            if timer.active():
                timer.cancel()
            if not mirror.called:
                mirror.callback(True)

        d.addBoth(fired)
        return await mirror

    async def pump(self, conn: Any, inflight: int, issue: Any, label: str,
                   budget: list[int] | None = None) -> None:
        """Keep ``inflight`` requests ``issue(n)`` going on ``conn`` until the deadline,
        the connection's end or the shared ``budget`` (a one-item list) runs out;
        count each outcome as ``"label: outcome"``."""
        from twisted.internet.defer import Deferred, fail

        state = {"running": 0, "issued": 0, "paused_until": 0.0}
        finished: Deferred[None] = Deferred()

        def more() -> None:
            while (state["running"] < inflight and not self.over() and not conn.lost.called
                   and time.time() >= state["paused_until"]
                   and (budget is None or budget[0] > 0)):
                state["running"] += 1
                n = state["issued"]
                state["issued"] += 1
                if budget is not None:
                    budget[0] -= 1
                try:
                    d = issue(n)
                except Exception as exc:
                    d = fail(exc)
                d.addBoth(done)
            if state["running"] == 0 and not finished.called:
                if time.time() < state["paused_until"] and not self.over():
                    self.reactor.callLater(state["paused_until"] - time.time(), more)
                else:
                    finished.callback(None)

        def done(result: Any) -> None:
            state["running"] -= 1
            self.count(f"{label}: {outcome(result)}")
            wait = retry_after(result)
            if wait:
                state["paused_until"] = max(state["paused_until"], time.time() + wait)
            self.reactor.callLater(0, more)

        more()
        await finished


class Flood:
    """One kind of attack: :meth:`prepare` before the run, :meth:`run` until the
    deadline, :meth:`after` for what is measured once it stopped."""

    def __init__(self, ctx: FloodContext) -> None:
        self.ctx = ctx
        self.p = ctx.params

    async def prepare(self) -> None:
        """Log in, make what the flood needs (before the measured run)."""

    async def run(self) -> None:
        """Attack until ``ctx.over()``."""

    async def after(self) -> None:
        """Look at the damage (after the deadline)."""


class Malformed(Flood):
    """Thousands of malformed frames from several connections."""

    BAD_IDS = ("seven", 0, -1, 1.5, True, 2**63, [1], {"id": 1})

    def closers(self) -> list[tuple[str, bytes]]:
        from chatnet.wire.codec import pack
        from chatnet.wire.framing import encode_frame

        return [
            ("garbage bytes", os.urandom(64)),
            ("list payload", encode_frame(pack([1, 2, 3]))),  # type: ignore[arg-type]
            ("string payload", encode_frame(pack("just a string"))),  # type: ignore[arg-type]
            ("oversized length", b"\xff\xff\xff\xff" + b"x" * 64),
            ("zero length", b"\x00\x00\x00\x00"),
            ("not msgpack", encode_frame(b"\xc1\xc1\xc1")),
            ("invalid UTF-8", encode_frame(b"\x81\xa2op\xa3\xff\xfe\xfd")),
        ]

    async def prepare(self) -> None:
        self.conns = [await self.ctx.login(name) for name in self.p["users"]]

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        await gatherResults([Deferred.fromCoroutine(self._run_lane(conn, i))
                             for i, conn in enumerate(self.conns)])

    async def _run_lane(self, conn: Any, lane: int) -> None:
        from twisted.internet.defer import DeferredList

        from chatnet.wire.codec import frame

        ctx = self.ctx
        conn.add_listener(lambda e: e.name == "error" and ctx.count(
            f"error event, connection kept: {e.data.get('code')}"))
        closers = self.closers()
        n = 0
        while not ctx.over() and not conn.lost.called:
            pending = []
            for j in range(60):
                kind = j % 6
                if kind == 0:
                    bad = self.BAD_IDS[(n + j) % len(self.BAD_IDS)]
                    conn.transport.write(frame({"id": bad, "op": "session.ping", "args": {}}))
                    ctx.count("bad id sent")
                    continue
                if kind == 1:
                    label, d = "unknown op", conn.request(f"no.such.op.{n + j}")
                elif kind == 2:
                    label, d = "ill-typed arg", conn.request("room.join", {"room_id": "general"})
                elif kind == 3:
                    label, d = "missing arg", conn.request("msg.send", {
                        "room_id": 1, "client_msg_id": f"m{lane}-{n}-{j}"})
                elif kind == 4:
                    label, d = "args not a map", conn.request("session.ping", ["a", "list"])
                else:
                    label, d = "ill-typed args", conn.request("msg.react", {
                        "room_id": 1, "msg_id": 1, "emoji": 7, "on": "yes"})
                d.addBoth(lambda r, label=label: ctx.count(f"{label}: {outcome(r)}"))
                pending.append(d)
            n += 60
            await DeferredList(pending, consumeErrors=True)
            waited = await ctx.wait(conn.request("session.ping"), 30)
            if not waited:
                ctx.count("lane stalled")
                break
            label, data = closers[(n // 60 + lane) % len(closers)]
            await self._closing_frame(label, data)
        if conn.lost.called and not ctx.over():
            ctx.count("logged-in lane cut by the server")
        conn.abort()

    async def _closing_frame(self, label: str, data: bytes) -> None:
        ctx = self.ctx
        try:
            conn = await ctx.connect(hello=False)
        except Exception:
            ctx.count("connection failed")
            return
        events: list[Any] = []
        conn.add_listener(events.append)
        conn.transport.write(data)
        if not await ctx.wait(conn.when_lost(), 15):
            ctx.count(f"{label}: not closed within 15 s")
            conn.abort()
            return
        codes = [e.data.get("code") for e in events if e.name == "error"]
        ctx.count(f"{label}: {codes[0] if codes else 'closed without error event'}, closed")


class Reactions(Flood):
    """Thousands of ``msg.react`` on one message from several connections."""

    async def prepare(self) -> None:
        ctx = self.ctx
        self.conns = [await ctx.login(name) for name in self.p["users"]]
        ack = await self.conns[0].request("msg.send", {
            "room_id": self.p["room_id"], "body": "react to this", "client_msg_id": "target"})
        self.msg_id = ack["msg_id"]

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        ctx, room_id = self.ctx, self.p["room_id"]

        def lane(i: int, conn: Any) -> Any:
            def issue(n: int) -> Any:
                emoji = EMOJI[(i * 7 + n) % len(EMOJI)]
                return conn.request("msg.react", {"room_id": room_id, "msg_id": self.msg_id,
                                                  "emoji": emoji,
                                                  "on": (n // len(EMOJI)) % 2 == 0})
            return Deferred.fromCoroutine(ctx.pump(conn, 4, issue, "msg.react"))

        await gatherResults([lane(i, c) for i, c in enumerate(self.conns)])

    async def after(self) -> None:
        conn = self.conns[0]
        try:
            page = await conn.request("msg.history", {"room_id": self.p["room_id"],
                                                      "after_seq": 0, "limit": 200})
        except Exception as exc:
            self.ctx.notes["target message"] = f"msg.history failed: {exc}"
            return
        for message in page["messages"]:
            if message.get("msg_id") == self.msg_id:
                reactions = message.get("reactions") or {}
                self.ctx.notes["target message"] = {
                    "distinct emoji": len(reactions),
                    "reactions": sum(len(v) for v in reactions.values())}


class Rooms(Flood):
    """``room.create {members: [victim]}`` over and over against one normal user."""

    async def prepare(self) -> None:
        self.conns = [await self.ctx.login(self.p["user"]) for _ in range(2)]

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        ctx, victim = self.ctx, self.p["victim"]
        budget = [self.p["count"]]

        def lane(conn: Any) -> Any:
            def issue(n: int) -> Any:
                return conn.request("room.create", {
                    "name": f"spam {id(conn) % 1000} {n}", "visibility": "private",
                    "members": [victim]})
            return Deferred.fromCoroutine(ctx.pump(conn, 4, issue, "room.create", budget))

        await gatherResults([lane(c) for c in self.conns])

    async def after(self) -> None:
        """Page through the victim's ``room.list`` on a second session of theirs."""
        ctx = self.ctx
        conn = await ctx.login(self.p["victim"])
        pages = rooms = 0
        cursor = None
        started = time.time()
        try:
            while True:
                result = await conn.request("room.list", {} if cursor is None
                                            else {"cursor": cursor})
                pages += 1
                rooms += len(result["rooms"])
                cursor = result.get("next_cursor")
                if not cursor or pages > 1000:
                    break
            ctx.notes["victim room.list"] = {"pages": pages, "rooms": rooms,
                                             "seconds": round(time.time() - started, 2)}
        except Exception as exc:
            ctx.notes["victim room.list"] = f"failed after {pages} pages: {exc}"
        conn.abort()


class Guess(Flood):
    """Wrong passwords for one account from many connections."""

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        await gatherResults([Deferred.fromCoroutine(self._lane(i))
                             for i in range(self.p["conns"])])

    async def _lane(self, lane: int) -> None:
        from twisted.python.failure import Failure

        from chatnet.errors import ChatError

        ctx, victim = self.ctx, self.p["victim"]
        n = 0
        while not ctx.over():
            try:
                conn = await ctx.connect()
            except Exception:
                ctx.count("connection refused or failed")
                await ctx.sleep(0.2)
                continue
            ctx.count("connections")
            deadline_events: list[str] = []
            conn.add_listener(lambda e, seen=deadline_events: e.name == "error"
                              and seen.append(str(e.data.get("message"))))
            while not ctx.over() and not conn.lost.called:
                n += 1
                try:
                    await conn.login(victim, f"wrong password {lane} {n}")
                    ctx.count("auth.login: ok (!)")
                except ChatError as error:
                    failure = Failure(error)
                    ctx.count(f"auth.login: {outcome(failure)}")
                    wait = retry_after(failure)
                    if wait:
                        await ctx.sleep(wait)
            if conn.lost.called:
                ctx.count("cut by the login deadline" if any("log in within" in m for m in
                                                             deadline_events)
                          else "closed by the server")
            else:
                conn.abort()


class Uploads(Flood):
    """Thousands of ``file.upload.begin`` never finished."""

    async def prepare(self) -> None:
        self.conns = [await self.ctx.login(self.p["user"]) for _ in range(2)]

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        ctx = self.ctx
        budget = [self.p["count"]]

        def lane(conn: Any) -> Any:
            def issue(n: int) -> Any:
                return conn.request("file.upload.begin", {
                    "name": f"never-{n}.bin", "size": 1_000_000,
                    "sha256": os.urandom(32).hex()})
            return Deferred.fromCoroutine(ctx.pump(conn, 8, issue, "file.upload.begin", budget))

        await gatherResults([lane(c) for c in self.conns])


class Downloads(Flood):
    """``file.download`` from the start, over and over."""

    async def prepare(self) -> None:
        import hashlib

        self.conns = [await self.ctx.login(self.p["user"]) for _ in range(2)]
        conn = self.conns[0]
        data = os.urandom(64 * 1024)
        begun = await conn.request("file.upload.begin", {
            "name": "flood.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        await conn.request("file.upload.chunk", {"upload_id": begun["upload_id"], "offset": 0,
                                                 "data": data})
        done = await conn.request("file.upload.finish", {"upload_id": begun["upload_id"]})
        self.file_id = done["file_id"]

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        ctx = self.ctx

        def lane(conn: Any) -> Any:
            def issue(_n: int) -> Any:
                return conn.request("file.download", {"file_id": self.file_id, "offset": 0,
                                                      "length": 64 * 1024})
            return Deferred.fromCoroutine(ctx.pump(conn, 4, issue, "file.download"))

        await gatherResults([lane(c) for c in self.conns])


class Unauthenticated(Flood):
    """Connections held open without logging in."""

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        self.held = 0
        self.ctx.notes["most held at once"] = 0
        await gatherResults([Deferred.fromCoroutine(self._lane())
                             for _ in range(self.p["conns"])])

    async def _lane(self) -> None:
        from chatnet.client.connection import ChatConnectionFactory

        ctx = self.ctx
        while not ctx.over():
            try:
                conn = await ctx.endpoint().connect(ChatConnectionFactory())
            except Exception as exc:
                # A reset as soon as the server accepts is the gate's refusal too; a
                # timeout is a SYN never answered (the listen backlog was full).
                ctx.count("refused (closed before TLS)" if "reset" in str(exc) else
                          "TCP connect timed out (SYN not answered)" if "timeout" in str(exc)
                          else f"TCP connection failed: {exc}")
                await ctx.sleep(0.2)
                continue
            opened = time.time()
            tls_up: list[bool] = []
            conn.handshake.addCallbacks(lambda _r, up=tls_up: up.append(True),
                                        lambda _f: None)
            await ctx.wait(conn.handshake, 10)
            if not tls_up or conn.lost.called:
                ctx.count("refused (closed before TLS)")
                conn.abort()
                await ctx.sleep(0.2)
                continue
            ctx.count("admitted")
            self.held += 1
            ctx.notes["most held at once"] = max(ctx.notes["most held at once"], self.held)
            messages: list[str] = []
            conn.add_listener(lambda e, seen=messages: e.name == "error"
                              and seen.append(str(e.data.get("message"))))
            with contextlib.suppress(Exception):  # lost already: counted below
                conn.request("session.hello", {"protocol": 1, "client": "idle"}).addErrback(
                    lambda _f: None)
            await ctx.wait(conn.when_lost(), max(0.0, ctx.t_end - time.time()))
            self.held -= 1
            if conn.lost.called:
                if any("log in within" in m for m in messages):
                    ctx.count("cut by the login deadline")
                elif time.time() - opened >= self.p["login_timeout"] - 1:
                    ctx.count("closed at the login deadline, no error event received")
                else:
                    ctx.count(f"closed by the server after {time.time() - opened:.0f} s")
            else:
                ctx.count("still held at the end")
                conn.abort()


class Dribble(Flood):
    """``max_frame`` frames one byte per TLS record (blocking TLS sockets in a thread)."""

    async def run(self) -> None:
        from twisted.internet.threads import deferToThread

        counts = await deferToThread(self._dribble, self.ctx.t_end)
        self.ctx.counts.update(counts)

    def _dribble(self, t_end: float) -> Counter[str]:
        import dribble

        ctx = self.ctx
        counts: Counter[str] = Counter()
        size = self.p["size"]
        try:
            early = dribble.BlockingClient(ctx.port, ctx.ca, ctx.source)
            early.request("session.hello", {"protocol": 1, "client": "dribble"})
            sent = early.dribble(dribble.padded_ping(2, size), until=t_end, batch=16,
                                 watch_every=64)
            try:
                message = early.read_message()
                code = message.get("data", {}).get("code", "?")
            except dribble.ConnectionGone:
                code = "none"
            counts[f"before login: {size}-byte frame announced -> {code}, closed"] += 1
            ctx.notes["before login: bytes sent before the server spoke"] = sent
            early.close()
        except dribble.ConnectionGone as exc:
            counts[f"before login: connection failed ({exc})"] += 1
        dribbled = 0
        while time.time() < t_end:
            try:
                client = dribble.BlockingClient(ctx.port, ctx.ca, ctx.source)
                client.request("session.hello", {"protocol": 1, "client": "dribble"})
                client.request("auth.resume", {"token": ctx.tokens[self.p["user"]]})
                data = dribble.padded_ping(7, size)
                started = time.time()
                sent = client.dribble(data, until=t_end, watch_every=65536)
                dribbled += sent
                if sent == len(data):
                    answer = client.wait_answer(7)
                    counts["after login: frames answered" if "result" in answer
                           else f"after login: {answer['error']['code']}"] += 1
                    ctx.notes.setdefault("after login: seconds per frame", []).append(
                        round(time.time() - started, 1))
                elif client.closed:
                    counts["after login: cut by the server mid-frame"] += 1
                else:
                    counts["after login: frame unfinished at the end"] += 1
                client.close()
            except dribble.ConnectionGone as exc:
                counts[f"connection lost: {exc}"] += 1
        ctx.notes["after login: bytes dribbled (= TLS records)"] = dribbled
        return counts


class History(Flood):
    """``msg.history`` pages of 200 big messages, paced."""

    async def prepare(self) -> None:
        from twisted.internet.defer import gatherResults

        self.conn = await self.ctx.login(self.p["user"])
        room_id = self.p["room_id"]
        for start in range(0, 200, 20):
            await gatherResults([self.conn.request("msg.send", {
                "room_id": room_id, "body": BIG_BODY, "client_msg_id": f"big-{n}"})
                for n in range(start, start + 20)])

    async def run(self) -> None:
        from twisted.internet.defer import Deferred
        from twisted.internet.task import LoopingCall

        ctx, conn = self.ctx, self.conn
        in_flight = [0]
        finished: Deferred[None] = Deferred()

        def done(result: Any) -> None:
            in_flight[0] -= 1
            ctx.count(f"msg.history: {outcome(result)}")
            if not isinstance(result, dict):
                return
            ctx.count("msg.history: messages received", len(result.get("messages", ())))

        def tick() -> None:
            if ctx.over() or conn.lost.called:
                loop.stop()
                return
            if in_flight[0] >= 32:
                ctx.count("msg.history: not sent (32 in flight)")
                return
            in_flight[0] += 1
            conn.request("msg.history", {"room_id": self.p["room_id"], "limit": 200}
                         ).addBoth(done)

        loop = LoopingCall(tick)
        loop.clock = ctx.reactor
        loop.start(1.0 / self.p["rate"]).addBoth(lambda _r: finished.callback(None))
        await finished
        while in_flight[0] and time.time() < ctx.t_end + 30:
            await ctx.sleep(0.1)


class IdLess(Flood):
    """Id-less requests on a connection that never reads."""

    async def prepare(self) -> None:
        self.conn = await self.ctx.login(self.p["user"])
        self.errors: Counter[str] = Counter()
        self.conn.add_listener(lambda e: e.name == "error" and self.errors.update(
            [f"{e.data.get('code')}: {e.data.get('message')}"]))

    async def run(self) -> None:
        from chatnet.wire.codec import frame

        ctx, conn = self.ctx, self.conn
        conn.transport.pauseProducing()  # stop reading from the socket
        one = frame({"op": "file.download",
                     "args": {"file_id": "f" * 24, "offset": 0, "length": 256 * 1024}})
        per_tick = max(1, int(self.p["rate"] / 100))
        sent = 0
        while not ctx.over() and not conn.lost.called:
            conn.transport.write(one * per_tick)
            sent += per_tick
            await ctx.sleep(0.01)
        ctx.notes["id-less frames sent"] = sent

    async def after(self) -> None:
        ctx, conn = self.ctx, self.conn
        if not conn.lost.called:
            conn.transport.resumeProducing()
            answered = await ctx.wait(conn.request("session.ping"), 60)
            ctx.notes["connection"] = ("still open, answers" if answered and not conn.lost.called
                                       else "cut by the server")
        else:
            ctx.notes["connection"] = "cut by the server"
        ctx.counts.update({f"error event: {k}": v for k, v in self.errors.items()})
        conn.abort()


FLOOD_CLASSES: dict[str, type[Flood]] = {
    "malformed": Malformed, "reactions": Reactions, "rooms": Rooms, "guess": Guess,
    "uploads": Uploads, "downloads": Downloads, "unauth": Unauthenticated,
    "dribble": Dribble, "history": History, "idless": IdLess}


async def _flood(reactor: Any, pipe: Any, name: str, params: dict[str, Any]) -> None:
    from twisted.internet.threads import deferToThread

    if params.get("nice"):
        os.nice(params["nice"])
    ctx = FloodContext(reactor, params)
    flood = FLOOD_CLASSES[name](ctx)
    try:
        await flood.prepare()
    except Exception as exc:
        pipe.send(("ready", f"prepare failed: {exc!r}"))
        return
    pipe.send(("ready", None))
    t_start, t_end = await deferToThread(pipe.recv)
    ctx.t_end = t_end
    await ctx.sleep(t_start - time.time())
    started = time.time()
    try:
        await flood.run()
    except Exception as exc:
        ctx.notes["run failed"] = repr(exc)
    ctx.notes["ran for s"] = round(time.time() - started, 1)
    try:
        await flood.after()
    except Exception as exc:
        ctx.notes["after failed"] = repr(exc)
    pipe.send(("report", {"counts": dict(ctx.counts), "notes": ctx.notes}))


def flood_main(pipe: Any, name: str, params: dict[str, Any]) -> None:
    """Process target: prepare flood ``name``, run it between the times the parent
    sends, report ``{"counts", "notes"}``."""
    fanout._run_child(_flood, pipe, name, params)


# -- the run ------------------------------------------------------------------------------------

def plan(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, list[str]]],
                                               dict[str, dict[str, Any]]]:
    """Accounts, rooms and each flood's parameters (before tokens are known)."""
    normal = [f"n{i:04d}" for i in range(args.clients)]
    rooms = [(f"room{r}", normal[r::args.rooms]) for r in range(args.rooms)]
    users = list(normal)
    floods: dict[str, dict[str, Any]] = {}
    for name in args.floods:
        p: dict[str, Any] = {"source": ADDRESSES[name], "nice": args.hostile_nice}
        if name == "malformed":
            p["users"] = [f"mal{i:02d}" for i in range(args.malformed_conns)]
        elif name == "reactions":
            p["users"] = [f"react{i:02d}" for i in range(args.reactors)]
            rooms[0][1].extend(p["users"])
        elif name == "rooms":
            p.update(user="roomer", victim=normal[1 % len(normal)], count=args.room_spam)
        elif name == "guess":
            p.update(victim=normal[0], conns=args.guessers)
        elif name == "uploads":
            p.update(user="uploader", count=args.uploads)
        elif name == "downloads":
            p["user"] = "downloader"
        elif name == "dribble":
            p.update(user="dribbler", size=1024 * 1024)
        elif name == "idless":
            p.update(user="idler", rate=args.idless_rate)
        elif name == "unauth":
            p.update(conns=args.unauth_conns, login_timeout=args.login_timeout)
        elif name == "history":
            p.update(user="historian", rate=args.history_rate)
            rooms.append(("history-room", ["historian"]))
        users.extend(u for u in p.get("users", ()) if u not in users)
        if "user" in p and p["user"] not in users:
            users.append(p["user"])
        floods[name] = p
    return users, rooms, floods


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, chat quietly, chat under attack, chat after; measure."""
    ctx = multiprocessing.get_context("spawn")
    data_dir = Path(tempfile.mkdtemp(prefix="chatnet-hostile-"))
    port = fanout.free_port()
    options = ["--open-registration", "--registrations-per-hour", "1000000",
               *args.server_option]
    server = fanout.start_server("chatnet", data_dir, port, options=options)
    ca = str(data_dir / "tls" / "ca.pem")
    sampler = roomchat.Sampler(server.pid, 0.5)
    sampler.start()
    generators: roomchat.Generators | None = None
    flood_procs: dict[str, Any] = {}
    flood_pipes: dict[str, Any] = {}
    try:
        users, room_specs, flood_params = plan(args)
        prepared = roomchat.run_setup(port, ca, users, room_specs, args.setup_concurrency)
        tokens, room_ids = prepared["tokens"], prepared["rooms"]

        for name, p in flood_params.items():
            p.update(port=port, ca=ca, tokens=tokens)
            if name == "reactions":
                p["room_id"] = room_ids["room0"]
            if name == "history":
                p["room_id"] = room_ids["history-room"]
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=flood_main, name=f"flood-{name}", args=(theirs, name, p))
            proc.start()
            flood_procs[name], flood_pipes[name] = proc, mine
        for name, pipe in flood_pipes.items():
            if not pipe.poll(300):
                raise SystemExit(f"flood {name} did not get ready")
            _tag, problem = pipe.recv()
            if problem:
                raise SystemExit(f"flood {name}: {problem}")
        fanout.log(f"floods ready: {', '.join(flood_params) or 'none'}")

        normal = [u for u in users if u.startswith("n")]
        room_of = {name: room_ids[room] for room, members in room_specs for name in members
                   if name in normal}
        index = {name: i for i, name in enumerate(normal)}
        schedule = roomchat.Schedule(
            rate=args.rate, rooms=[room_ids[f"room{r}"] for r in range(args.rooms)],
            senders={room_ids[room]: [index[m] for m in members if m in index]
                     for room, members in room_specs if room.startswith("room")},
            phases=[("warmup", 0, args.warmup),
                    ("quiet", args.warmup, args.warmup + args.quiet),
                    ("hostile", args.warmup + args.quiet, args.warmup + args.quiet + args.hostile),
                    ("after", args.warmup + args.quiet + args.hostile,
                     args.warmup + args.quiet + args.hostile + args.after)])
        clients = [(index[n], n, tokens[n], room_of[n]) for n in normal]
        params = []
        for n, part in enumerate(roomchat.split_users(clients, args.procs)):
            p = {"port": port, "ca": ca, "users": part, "schedule": schedule,
                 "connect_concurrency": 20, "body_bytes": args.body_bytes, "drain": 10.0}
            if n == 0:
                p["probe"] = [(name, tokens[name]) for name in normal[2:12]]
                p["probe_interval"] = 1.0
            params.append(p)
        generators = roomchat.Generators(params)
        connected = generators.wait_ready()
        fanout.log(f"{connected} normal clients logged in")
        time.sleep(2.0)

        t0 = time.time() + 1.0
        generators.start(t0)
        bounds = {name: (t0 + start, t0 + end) for name, start, end in schedule.phases}
        h_start, h_end = bounds["hostile"]
        for pipe in flood_pipes.values():
            pipe.send((h_start, h_end))
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, (start, end) in bounds.items():
            fanout.wait_until(start)
            cpu[name + "_start"] = fanout.cpu_seconds(server.pid)
            fanout.log(f"phase {name} ({end - start:.0f} s)")
            fanout.wait_until(end)
            cpu[name + "_end"] = fanout.cpu_seconds(server.pid)
            rss[name + "_end"] = fanout.memory_kib(server.pid)["VmRSS"]
        peak = sampler.peak_rss(h_start, bounds["after"][1])
        quiet_rss = [s[1] for s in sampler.between(*bounds["quiet"])]

        flood_reports = {}
        for name, pipe in flood_pipes.items():
            if pipe.poll(120):
                flood_reports[name] = pipe.recv()[1]
            else:
                flood_reports[name] = {"counts": {}, "notes": {"report": "none (timed out)"}}
        merged = roomchat.merge(generators.reports(120))
        server_log = (data_dir / "server.log").read_text(errors="replace")
    finally:
        sampler.stop()
        if generators is not None:
            generators.stop()
        for proc in flood_procs.values():
            if proc.is_alive():
                proc.terminate()
        fanout.stop_server(server)
        if args.keep_data:
            fanout.log(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    phases = roomchat.phase_summary(merged, schedule)
    probe: dict[str, Counter[str]] = {name: Counter() for name in bounds}
    for t, result, _ms in merged["probe"]:
        probe[schedule.phase_of(math.ceil(t * args.rate)) if t >= 0 else "warmup"][result] += 1
    return {
        "clients": args.clients, "rooms": args.rooms, "rate": args.rate,
        "phases_s": {name: round(end - start, 1) for name, (start, end) in bounds.items()},
        "floods": list(flood_params),
        "server_options": options,
        "phase": phases,
        "new_logins": {k: dict(v) for k, v in probe.items()},
        "server_cpu_s": {name: round(cpu[name + "_end"] - cpu[name + "_start"], 2)
                         for name in bounds},
        "server_rss_kib": {"quiet_median": sorted(quiet_rss)[len(quiet_rss) // 2]
                           if quiet_rss else None,
                           "quiet_end": rss["quiet_end"], "peak": peak,
                           "hostile_end": rss["hostile_end"], "after_end": rss["after_end"]},
        "lost_connections": len(merged["lost"]),
        "floods_report": flood_reports,
        "server_log": {"errors": server_log.count("[-] Unhandled") +
                       server_log.count("#critical]") + server_log.count("#error]"),
                       "lines": server_log.count("\n")},
        "code": fanout.code_version(),
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    """nproc and the CPU model (from /proc/cpuinfo)."""
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model}


def render(r: dict[str, Any]) -> str:
    """The readable report."""
    lines = [f"hostile clients: {r['clients']} normal clients in {r['rooms']} rooms, "
             f"{r['rate']:g} msgs/s; phases {r['phases_s']}; code {r['code']}; "
             f"machine {r['machine']['nproc']} x {r['machine']['cpu']}",
             f"  server options: {' '.join(r['server_options'])}",
             f"  floods: {', '.join(r['floods']) or 'none'}",
             "  phase    deliveries  missed  dup  sends ok/err      p50 ms   p99 ms   max ms"
             "  ack p99  server CPU"]
    for name in ("quiet", "hostile", "after"):
        ph = r["phase"][name]
        lat, ack = ph["latency_ms"], ph["ack_ms"]
        errors = sum(ph["send_errors"].values())
        lines.append(
            f"  {name:8} {ph.get('delivered', 0):>10} {ph.get('missing', 0):>7} "
            f"{ph.get('duplicates', 0):>4} {ph['acked']:>8}/{errors:<5} {lat['p50']:>8.1f} "
            f"{lat['p99']:>8.1f} {lat['max']:>8.1f} {ack['p99']:>8.1f} "
            f"{r['server_cpu_s'][name]:>7.1f} s")
    q, h = r["phase"]["quiet"]["latency_ms"], r["phase"]["hostile"]["latency_ms"]
    a = r["phase"]["after"]["latency_ms"]
    lines.append(f"  p99 hostile / quiet = {h['p99'] / q['p99']:.2f}   "
                 f"p50 hostile / quiet = {h['p50'] / q['p50']:.2f}   "
                 f"p99 after / quiet = {a['p99'] / q['p99']:.2f}")
    for name in ("quiet", "hostile", "after"):
        errors = r["phase"][name]["send_errors"]
        if errors:
            lines.append(f"  failed sends in {name}: {errors}")
    lines.append("  new logins (auth.resume on a fresh connection, 1/s): "
                 + "; ".join(f"{k} {dict(v)}" for k, v in r["new_logins"].items() if v))
    m = r["server_rss_kib"]
    lines.append(f"  server RSS MiB: quiet {m['quiet_end'] / 1024:.1f}, peak "
                 f"{m['peak'] / 1024:.1f}, end of floods {m['hostile_end'] / 1024:.1f}, "
                 f"after {m['after_end'] / 1024:.1f} "
                 f"({(m['after_end'] - m['quiet_end']) / 1024:+.1f} vs quiet)")
    lines.append(f"  normal connections lost: {r['lost_connections']}; server log: "
                 f"{r['server_log']['errors']} errors in {r['server_log']['lines']} lines")
    for name, report in r["floods_report"].items():
        lines.append(f"  flood {name}:")
        for key, n in sorted(report["counts"].items()):
            lines.append(f"      {n:>8}  {key}")
        for key, value in report["notes"].items():
            lines.append(f"      {key}: {value}")
    return "\n".join(lines)


def main() -> None:
    """Parse options, run, print (exit status 1 if a normal delivery was missed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="normal clients")
    parser.add_argument("--rooms", type=int, default=5, help="rooms they chat in")
    parser.add_argument("--rate", type=float, default=50.0, help="normal msgs/s in all")
    parser.add_argument("--procs", type=int, default=2, help="normal load-generator processes")
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of quiet chat")
    parser.add_argument("--hostile", type=float, default=30.0, help="seconds of floods")
    parser.add_argument("--after", type=float, default=15.0,
                        help="seconds of chat after the floods")
    parser.add_argument("--floods", default=",".join(FLOODS),
                        help=f"comma-separated, from: {', '.join(FLOODS)} (or 'none')")
    parser.add_argument("--hostile-nice", type=int, default=10,
                        help="nice value added to the flood processes (0: none)")
    parser.add_argument("--malformed-conns", type=int, default=4)
    parser.add_argument("--reactors", type=int, default=20)
    parser.add_argument("--room-spam", type=int, default=1600)
    parser.add_argument("--guessers", type=int, default=24)
    parser.add_argument("--uploads", type=int, default=7000)
    parser.add_argument("--unauth-conns", type=int, default=300)
    parser.add_argument("--history-rate", type=float, default=20.0)
    parser.add_argument("--idless-rate", type=float, default=2000.0)
    parser.add_argument("--login-timeout", type=float, default=10.0,
                        help="the server's login deadline, to classify closes (pass "
                             "--server-option=--login-timeout=N too if it is not the default)")
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra twistd chatnet option (repeat; e.g. "
                             "--server-option=--max-unauthenticated-per-address=100)")
    parser.add_argument("--setup-concurrency", type=int, default=8)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    args.floods = [] if args.floods == "none" else [f.strip() for f in args.floods.split(",")]
    unknown = set(args.floods) - set(FLOODS)
    if unknown:
        parser.error(f"unknown floods: {', '.join(sorted(unknown))}")
    if args.clients < 12 or args.rooms < 1:
        parser.error("--clients must be at least 12 (victims and login probes), --rooms >= 1")
    result = run(args)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    missed = sum(result["phase"][p].get("missing", 0) for p in ("quiet", "hostile", "after"))
    if missed:
        print(f"FAIL: {missed} normal deliveries missed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
