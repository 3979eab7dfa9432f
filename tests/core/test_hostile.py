"""Hostile clients end to end: normal people keep chatting while every flood runs at once.

One real server (TLS on loopback, SQLite) in the test process. Three normal
users chat in a room for as long as the floods last; each flood comes from a
loopback address of its own (127.0.0.2 and up), as several attackers would, so
that the per-address limits do not mix them up. Hostile connections write each
``transport.write`` as one TLS record (no aggregation), which is what lets the
dribbling flood send one byte per record.

The server is started with a 2 s login deadline and a per-address cap of 16
unauthenticated connections, so that both act within the test; every other
limit is the default. Speed is not asserted here (``bench/hostile.py``
measures it): this test asserts that every normal message arrives, that no
normal request fails, what each flood gets back, and that afterwards the
server holds nothing for the attackers (no unauthenticated connection, no
queued output, no half-received frame, no password check waiting).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from chatnet.client.connection import ChatConnection, ChatConnectionFactory, Patient
from chatnet.errors import ChatError
from chatnet.wire.codec import frame, pack
from chatnet.wire.framing import encode_frame
from chatnet.wire.tls import DirectTLSFactory, client_tls_options
from tests.support.chat import create_room, unique
from tests.support.events import barrier, timeout_after, wait_lost, within
from tests.support.raw import framed, packed
from tests.support.server import RunningServer

#: Seconds the server gives a connection to log in (the default is 10).
LOGIN_TIMEOUT = 2.0
#: Unauthenticated connections one address may hold (the default is 256).
PER_ADDRESS = 16
#: Seconds any one step of a flood may take before the test fails.
STEP = 30.0
#: 150 distinct emoji (emoticons, then transport and map symbols).
EMOJI = [chr(c) for c in (*range(0x1F600, 0x1F650), *range(0x1F680, 0x1F6C6))]


def code_of(result: Any) -> str:
    """``ok``, or the error code a request failed with."""
    if not isinstance(result, Failure):
        return "ok"
    error = result.value
    return error.code.value if isinstance(error, ChatError) else type(error).__name__


async def hostile(server: RunningServer, source: str, hello: bool = True) -> ChatConnection:
    """A verified TLS connection from loopback address ``source`` that sends each write
    as its own TLS record (and says hello unless told not to)."""
    factory = DirectTLSFactory(client_tls_options("localhost", server.ca), True,
                               ChatConnectionFactory())
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port, timeout=10,
                                  bindAddress=(source, 0))
    tls = await within(endpoint.connect(factory), f"a connection from {source}")
    conn: ChatConnection = tls.wrappedProtocol
    if hello:
        await within(conn.hello(), "session.hello")
    return conn


async def logged_in(server: RunningServer, source: str, name: str) -> ChatConnection:
    """A hostile connection logged in as ``name`` (registered on the first call)."""
    conn = await hostile(server, source)
    with contextlib.suppress(ChatError):  # registered by an earlier connection
        await within(conn.register(name, "hostile password"), "auth.register")
    await within(conn.login(name, "hostile password"), "auth.login")
    return conn


async def answers(requests: list[Deferred[Any]]) -> Counter[str]:
    """Wait for every request; count their outcomes."""
    results = await timeout_after(DeferredList(requests, consumeErrors=True), STEP,
                                  "the answers to a flood")
    return Counter("ok" if ok else code_of(value) for ok, value in results)


class Chatter:
    """Three normal users chatting in their room until told to stop."""

    def __init__(self, members: list[ChatConnection], room_id: int) -> None:
        self.members = members
        self.room_id = room_id
        self.sent: list[str] = []
        self.received: list[list[str]] = [[] for _ in members]
        self.failures: list[str] = []
        self.stopping = False
        for got, conn in zip(self.received, members, strict=True):
            conn.add_listener(lambda e, got=got: e.name == "msg"
                              and got.append(e.data["message"]["body"]))

    async def run(self) -> None:
        """Send, one message at a time, round robin, paced at ~50 messages/s in all
        (under the default per-connection rate limit, which the chat must not hit)."""
        n = 0
        while not self.stopping:
            body = f"normal {n}"
            sender = self.members[n % len(self.members)]
            try:
                await timeout_after(sender.request("msg.send", {
                    "room_id": self.room_id, "body": body, "client_msg_id": unique("n")}),
                    STEP, "a normal msg.send")
                self.sent.append(body)
            except Exception as exc:
                self.failures.append(f"{body}: {exc!r}")
            n += 1
            await deferLater(reactor, 0.02, lambda: None)


# -- the floods (each returns what it observed) ------------------------------------------------

#: Batches of 500 malformed frames per lane. Past its burst the server reads a
#: connection at its rate (50 a second), so each batch adds about 10 s.
MALFORMED_BATCHES = 2


async def malformed(server: RunningServer, conns: list[ChatConnection]) -> dict[str, Any]:
    """A thousand malformed frames on each of three logged-in connections (they stay
    open), then each frame the server must close on, on fresh connections before login."""
    seen: Counter[str] = Counter()

    async def lane(conn: ChatConnection) -> None:
        conn.add_listener(lambda e: e.name == "error" and seen.update(
            [f"error event {e.data['code']}"]))
        for batch in range(MALFORMED_BATCHES):
            requests = []
            for j in range(100):
                bad_id = ("seven", 0, -1, 1.5, True, [1])[j % 6]
                conn.transport.write(frame({"id": bad_id, "op": "session.ping", "args": {}}))
                seen["bad ids sent"] += 1
                requests += [
                    conn.request(f"no.such.op.{batch}.{j}"),
                    conn.request("room.join", {"room_id": "general"}),
                    conn.request("session.ping", ["not", "a", "map"]),  # type: ignore[arg-type]
                    conn.request("msg.react", {"room_id": 1, "msg_id": 1, "emoji": 7}),
                ]
            seen.update(await answers(requests))
        # The flood may have emptied the lane's bucket just now: a client that
        # waits out rate_limited (as the library's does) gets its answer.
        await within(Deferred.fromCoroutine(Patient(reactor, conn.request)("session.ping")),
                     "a ping after the flood", STEP)
        assert not conn.lost.called
        seen["lanes still open"] += 1

    await timeout_after(gatherResults([Deferred.fromCoroutine(lane(c)) for c in conns]),
                        STEP * 2, "the malformed lanes")
    closers = {
        "list payload": (packed([1, 2, 3]), "bad_request"),
        "string payload": (packed("a string"), "bad_request"),
        "oversized length": (b"\xff\xff\xff\xff" + b"x" * 64, "too_large"),
        "pre-login frame over 8 KiB": (encode_frame(pack({"op": "x", "pad": b"x" * 9000})),
                                       "too_large"),
        "zero length": (b"\x00\x00\x00\x00", "bad_request"),
        "not msgpack": (framed(b"\xc1\xc1\xc1"), "bad_request"),
        "invalid UTF-8": (framed(b"\x81\xa2op\xa3\xff\xfe\xfd"), "bad_request"),
        "garbage": (b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n", "too_large"),
    }
    closed = {}
    for label, (data, _code) in closers.items():
        conn = await hostile(server, "127.0.0.2", hello=False)
        codes: list[str] = []
        conn.add_listener(lambda e, codes=codes: e.name == "error" and codes.append(
            e.data["code"]))
        conn.transport.write(data)
        await wait_lost(conn)
        closed[label] = codes
    return {"seen": seen, "closed": closed,
            "expected": {label: [code] for label, (_d, code) in closers.items()}}


async def reactions(conns: list[ChatConnection], room_id: int) -> Counter[str]:
    """Four members of the normal room react to one message with 100 distinct emoji each."""
    ack = await within(conns[0].request("msg.send", {"room_id": room_id, "body": "react",
                                                     "client_msg_id": unique("r")}), "send")
    outcomes: Counter[str] = Counter()
    for start in range(0, 100, 25):
        outcomes.update(await answers([
            conn.request("msg.react", {"room_id": room_id, "msg_id": ack["msg_id"],
                                       "emoji": EMOJI[n], "on": True})
            for conn in conns for n in range(start, start + 25)]))
    return outcomes


async def rooms(conn: ChatConnection, victim: ChatConnection, victim_name: str
                ) -> dict[str, Any]:
    """``room.create {members: [victim]}`` x 150; then the victim's ``room.list``."""
    outcomes: Counter[str] = Counter()
    for start in range(0, 150, 50):
        outcomes.update(await answers([
            conn.request("room.create", {"name": f"spam {n}", "visibility": "private",
                                         "members": [victim_name]})
            for n in range(start, start + 50)]))
    page = await within(victim.request("room.list"), "the victim's room.list")
    return {"outcomes": outcomes, "listed": len(page["rooms"])}


async def guess(server: RunningServer, victim_name: str) -> dict[str, Any]:
    """Four connections guess the victim's password, each until the back-off refuses it
    and the login deadline has cut it off (a connection that is cut reconnects)."""
    outcomes: Counter[str] = Counter()
    endings: list[list[str]] = []

    async def lane(i: int) -> None:
        refused = False
        for attempt in range(20):
            conn = await hostile(server, "127.0.0.5")
            codes: list[str] = []
            conn.add_listener(lambda e, codes=codes: e.name == "error" and codes.append(
                e.data["code"]))
            n = 0
            while not conn.lost.called:
                n += 1
                try:
                    await timeout_after(conn.login(victim_name, f"guess {i} {attempt} {n}"),
                                        STEP, "a guess")
                    outcomes["ok"] += 1
                except ChatError as error:
                    outcomes[error.code.value] += 1
                    refused = refused or error.code.value == "rate_limited"
            await wait_lost(conn)
            endings.append(codes)
            if refused:
                return
        raise AssertionError("the login back-off never refused a guess")

    await timeout_after(gatherResults([Deferred.fromCoroutine(lane(i)) for i in range(4)]),
                        STEP * 2, "the guessers to be refused and cut off")
    return {"outcomes": outcomes, "endings": endings}


async def uploads(conn: ChatConnection) -> Counter[str]:
    """100 ``file.upload.begin`` never finished."""
    return await answers([conn.request("file.upload.begin", {
        "name": f"never-{n}.bin", "size": 1000, "sha256": os.urandom(32).hex()})
        for n in range(100)])


async def uploaded(conn: ChatConnection) -> str:
    """Upload a 4 KiB file; its file_id."""
    data = os.urandom(4096)
    begun = await within(conn.request("file.upload.begin", {
        "name": "f.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}),
        "begin")
    await within(conn.request("file.upload.chunk", {"upload_id": begun["upload_id"],
                                                    "offset": 0, "data": data}), "chunk")
    done = await within(conn.request("file.upload.finish", {"upload_id": begun["upload_id"]}),
                        "finish")
    return str(done["file_id"])


async def downloads(conn: ChatConnection, file_id: str) -> Counter[str]:
    """200 downloads of a 4 KiB file from its start."""
    return await answers([conn.request("file.download", {
        "file_id": file_id, "offset": 0, "length": 4096}) for _ in range(200)])


async def unauthenticated(server: RunningServer) -> Counter[str]:
    """PER_ADDRESS + 8 connections that never log in, opened at once from one address."""
    outcomes: Counter[str] = Counter()

    async def one() -> None:
        try:
            conn = await hostile(server, "127.0.0.8", hello=False)
        except Exception:
            outcomes["refused"] += 1  # reset as soon as the server accepted it
            return
        codes: list[str] = []
        conn.add_listener(lambda e: e.name == "error" and codes.append(e.data["code"]))
        up: list[bool] = []
        conn.handshake.addCallbacks(lambda _r: up.append(True), lambda _f: None)
        await timeout_after(conn.when_lost(), STEP, "an unauthenticated connection to end")
        if not up:
            outcomes["refused"] += 1
        elif codes == ["unauthenticated"]:
            outcomes["cut by the login deadline"] += 1
        else:
            outcomes[f"closed otherwise: {codes}"] += 1

    await gatherResults([Deferred.fromCoroutine(one()) for _ in range(PER_ADDRESS + 8)])
    return outcomes


async def dribble(server: RunningServer, conn: ChatConnection) -> dict[str, Any]:
    """Frames sent one byte per TLS record: 1,200 bytes after login (answered, though
    past 1,000 small reads the server slows the reading down to 200 a second), and
    1 MiB announced before login (refused at the length)."""
    # The client core frames the request; its bytes then go out one per TLS record.
    answered = conn.core.request("session.ping", {"pad": b"x" * 1200})
    whole = conn.core.data_to_send()
    for i in range(len(whole)):
        conn.transport.write(whole[i:i + 1])
    answer = await timeout_after(answered, STEP, "the answer to the dribbled frame")

    early = await hostile(server, "127.0.0.9")
    codes: list[str] = []
    early.add_listener(lambda e: e.name == "error" and codes.append(e.data["code"]))
    big = frame({"id": 1, "op": "session.ping", "args": {"pad": b"x" * (1024 * 1024 - 64)}})
    for i in range(4096):
        early.transport.write(big[i:i + 1])
    await wait_lost(early)
    return {"answer": answer, "before_login": codes}


async def big_room(conn: ChatConnection) -> int:
    """A room of 20 messages of 64 KB (16,000 four-byte characters); its id."""
    room = await create_room(conn, name="big")
    body = "\U0001F600" * 16_000
    await answers([conn.request("msg.send", {"room_id": room["room_id"], "body": body,
                                             "client_msg_id": unique("b")})
                   for _ in range(20)])
    return int(room["room_id"])


async def history(conn: ChatConnection, room_id: int) -> Counter[str]:
    """``msg.history {limit: 200}`` x 30 in a room of 20 messages of 64 KB."""
    outcomes: Counter[str] = Counter()
    for _ in range(30):
        outcomes.update(await answers([conn.request("msg.history", {
            "room_id": room_id, "limit": 200})]))
    return outcomes


async def idless(conn: ChatConnection) -> dict[str, Any]:
    """A connection that stops reading sends 600 id-less ``file.download`` requests,
    then reads what came back (past the burst, at the connection's rate)."""
    errors: list[str] = []
    conn.add_listener(lambda e: e.name == "error" and errors.append(e.data["message"]))
    conn.transport.pauseProducing()
    request = frame({"op": "file.download",
                     "args": {"file_id": "f" * 24, "offset": 0, "length": 65536}})
    for _ in range(6):
        conn.transport.write(request * 100)
        await deferLater(reactor, 0, lambda: None)
    conn.transport.resumeProducing()
    if not conn.lost.called:
        with contextlib.suppress(ChatError):  # cut for not reading: also bounded
            await within(conn.request("session.ping"), "a ping after the flood", STEP)
    return {"errors": errors, "open": not conn.lost.called}


# -- the test ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_normal_clients_chat_through_every_flood(make_server):
    """While every flood of the hardening issue runs at once, three normal users chat:
    every message reaches every member, no normal request fails, a fresh login
    (resume) works, each flood gets the answers its limits promise, and afterwards
    the server holds nothing for the attackers."""
    server = await make_server(login_timeout=LOGIN_TIMEOUT,
                               max_unauthenticated_per_address=PER_ADDRESS)
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    room = await create_room(alice, bob, carol, name="normal")
    token = bob.login_result["token"]
    # The attackers' accounts and what they need, before the trouble starts (each
    # flood from an address of its own).
    mallory = [await logged_in(server, "127.0.0.2", f"mallory{i}") for i in range(3)]
    reactors = [await logged_in(server, "127.0.0.3", f"reactor{i}") for i in range(4)]
    for conn in reactors:
        await within(conn.request("room.join", {"room_id": room["room_id"]}), "room.join")
    roomer = await logged_in(server, "127.0.0.4", "roomer")
    uploader = await logged_in(server, "127.0.0.6", "uploader")
    downloader = await logged_in(server, "127.0.0.7", "downloader")
    file_id = await uploaded(downloader)
    dribbler = await logged_in(server, "127.0.0.9", "dribbler")
    historian = await logged_in(server, "127.0.0.10", "historian")
    big = await big_room(historian)
    idler = await logged_in(server, "127.0.0.11", "idler")

    chatter = Chatter([alice, bob, carol], room["room_id"])
    chatting = Deferred.fromCoroutine(chatter.run())
    floods = {
        "malformed": malformed(server, mallory),
        "reactions": reactions(reactors, room["room_id"]),
        "rooms": rooms(roomer, carol, "carol"), "guess": guess(server, "bob"),
        "uploads": uploads(uploader), "downloads": downloads(downloader, file_id),
        "unauth": unauthenticated(server), "dribble": dribble(server, dribbler),
        "history": history(historian, big), "idless": idless(idler)}
    names = list(floods)
    results = await timeout_after(
        gatherResults([Deferred.fromCoroutine(c) for c in floods.values()]), 120,
        "every flood to finish")
    got = dict(zip(names, results, strict=True))

    # A fresh login with the guessed-at user's token still works.
    fresh = await server.connect()
    await within(fresh.resume(token), "auth.resume of the victim")
    chatter.stopping = True
    await within(chatting, "the normal chat to stop", STEP)
    for conn in (alice, bob, carol):
        await barrier(conn)

    # The normal users: nothing failed, everything arrived, nobody was cut off.
    assert chatter.failures == []
    assert len(chatter.sent) > 0
    for received in chatter.received:
        normal = [body for body in received if body.startswith("normal ")]
        assert sorted(normal) == sorted(chatter.sent)
    assert not any(conn.lost.called for conn in (alice, bob, carol))

    # What each flood got back.
    m = got["malformed"]
    assert m["seen"]["lanes still open"] == 3
    # Every bad id gets an error event (or, past a rate, nothing): never more.
    sent = 3 * MALFORMED_BATCHES * 100
    assert 0 < m["seen"]["error event bad_request"] <= m["seen"]["bad ids sent"] == sent
    assert set(m["seen"]) <= {"lanes still open", "bad ids sent", "error event bad_request",
                              "unknown_op", "bad_request", "rate_limited"}, m["seen"]
    assert m["seen"]["unknown_op"] + m["seen"]["bad_request"] + m["seen"]["rate_limited"] \
        == 4 * sent
    assert m["closed"] == m["expected"]
    # Reactions: capped (conflict) and, past the "changes" budget (1 a second per
    # user, 10 at once), rate_limited.
    assert set(got["reactions"]) <= {"ok", "conflict", "rate_limited"}, got["reactions"]
    assert set(got["rooms"]["outcomes"]) <= {"ok", "rate_limited", "conflict"}
    assert got["rooms"]["listed"] >= 1  # the victim's room.list still answers
    # Guesses: wrong, then refused before any hash is computed; every guessing
    # connection ends at the login deadline (error event unauthenticated).
    assert set(got["guess"]["outcomes"]) <= {"unauthenticated", "rate_limited", "unavailable"}
    assert got["guess"]["outcomes"]["rate_limited"] > 0, got["guess"]
    assert all(codes == ["unauthenticated"] for codes in got["guess"]["endings"])
    assert set(got["uploads"]) <= {"ok", "rate_limited", "conflict"}
    assert got["uploads"]["rate_limited"] + got["uploads"]["conflict"] > 0
    assert set(got["downloads"]) <= {"ok", "rate_limited"}
    assert got["downloads"]["rate_limited"] > 0
    # Connections past the per-address cap are refused before TLS; the others are cut
    # by the login deadline (a connection may be admitted after one of those is cut).
    unauth = got["unauth"]
    assert set(unauth) <= {"cut by the login deadline", "refused"}, unauth
    assert unauth["cut by the login deadline"] >= PER_ADDRESS
    assert unauth["refused"] >= 1
    assert unauth["cut by the login deadline"] + unauth["refused"] == PER_ADDRESS + 8
    assert isinstance(got["dribble"]["answer"]["ts"], int)
    assert got["dribble"]["before_login"] == ["too_large"]
    assert set(got["history"]) <= {"ok", "too_large", "rate_limited"}
    assert got["history"]["rate_limited"] > 0  # big pages are paid for
    assert got["idless"]["errors"]
    assert all("needs an id" in message for message in got["idless"]["errors"])

    # Afterwards: nothing is held for the attackers.
    factory = server.service.factory
    assert factory.gate.count == 0
    assert server.service.hasher.pending == 0
    for proto in factory.protocols:
        assert proto._outbox is None or proto._outbox.queued == 0
        assert proto._decoder.buffered == 0
