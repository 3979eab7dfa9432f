"""Bad input over real TLS: every error code, malformed frames, floods, slow readers.

Each test starts :class:`~tests.support.chat.Bystanders` (two users chatting
in their own room) before the trouble and checks afterwards that they still
chat: the server stays up and other sessions are unaffected.
"""

from __future__ import annotations

import sqlite3

import msgpack
import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.codec import frame
from tests.support.chat import Bystanders, create_room, expect_error, say
from tests.support.events import EventLog, barrier, wait_lost, within
from tests.support.raw import RawTap, framed, packed, plain_connect, send_raw
from tests.support.server import PASSWORD


async def protocol_error(conn, code: str):
    """Wait for the ``error`` event with ``code``, then for the server to close."""
    events = EventLog(conn, "offender")
    event = await events.next("error")
    assert event.data["code"] == code, event.data
    assert isinstance(event.data["message"], str) and event.data["message"]
    await wait_lost(conn)
    return event


@pytest_twisted.ensureDeferred
async def test_bad_request_names_the_field_and_keeps_the_connection(server):
    """Ill-typed or missing arguments → bad_request naming the field; the same
    connection keeps working."""
    bystanders = await Bystanders.start(server)
    alice = await server.user("alice")
    error = await expect_error(alice.request("room.join", {"room_id": "general"}),
                               ErrorCode.BAD_REQUEST)
    assert error.message == "room_id must be an integer"
    error = await expect_error(alice.request("msg.send", {"room_id": 1, "client_msg_id": "c"}),
                               ErrorCode.BAD_REQUEST)
    assert error.message == "body is required"
    error = await expect_error(alice.request("room.create", {"name": "x", "visibility": "open"}),
                               ErrorCode.BAD_REQUEST)
    assert "visibility" in error.message
    error = await expect_error(alice.request("room.create", {
        "name": "x", "visibility": "public", "members": ["ok", 7]}), ErrorCode.BAD_REQUEST)
    assert "members[1]" in error.message
    await barrier(alice)
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_every_request_level_error_code_leaves_the_connection_usable(server):
    """unknown_op, unauthenticated, forbidden, not_found and conflict are answers, not
    disconnections: after each the connection still works, and so do others."""
    bystanders = await Bystanders.start(server)
    alice, bob = await server.user("alice"), await server.user("bob")
    anonymous = await server.connect()
    room = await create_room(alice, bob)
    cases = [
        (alice.request("room.teleport", {}), ErrorCode.UNKNOWN_OP),
        (anonymous.request("room.list"), ErrorCode.UNAUTHENTICATED),
        (bob.request("room.delete", {"room_id": room["room_id"]}), ErrorCode.FORBIDDEN),
        (alice.request("room.join", {"room_id": 987654321}), ErrorCode.NOT_FOUND),
        (alice.request("auth.register", {"username": "bob", "password": PASSWORD}),
         ErrorCode.CONFLICT),
        (anonymous.request("auth.register", {"username": "bob", "password": PASSWORD}),
         ErrorCode.CONFLICT),
    ]
    for d, code in cases:
        await expect_error(d, code)
    for conn in (alice, bob, anonymous):
        await barrier(conn)
    await say(alice, room["room_id"], "still here")
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_oversized_length_prefix_gets_too_large_then_close(server):
    """A frame length over max_frame → error event too_large, then the server closes
    (promptly, not by the abort timer)."""
    bystanders = await Bystanders.start(server)
    offender = await server.user("mallory")
    send_raw(offender, (server.service.config.max_frame + 1).to_bytes(4, "big") + b"\0" * 64)
    event = await protocol_error(offender, "too_large")
    assert str(server.service.config.max_frame) in event.data["message"]
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_a_huge_frame_sent_in_full_is_cut_off_early(server):
    """Sending a whole over-limit frame does not make the server read it: too_large
    arrives and the connection closes while the body is still streaming."""
    bystanders = await Bystanders.start(server)
    offender = await server.user("mallory")
    size = server.service.config.max_frame * 4
    send_raw(offender, size.to_bytes(4, "big") + b"x" * size)
    await protocol_error(offender, "too_large")
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_a_history_page_over_max_frame_ends_early_and_the_connection_stays(make_server):
    """A msg.history page that would not fit in max_frame ends early with has_more
    (docs/protocol.md 6) instead of failing; the rest comes with before_seq."""
    server = await make_server(max_frame=64 * 1024)
    alice = await server.user("alice")
    rid = (await create_room(alice))["room_id"]
    for n in range(6):
        await say(alice, rid, f"{n}" + "x" * 15_000)
    page = await alice.request("msg.history", {"room_id": rid, "limit": 6})
    assert page["has_more"] is True
    newest = [m["seq"] for m in page["messages"]]
    assert 1 <= len(newest) < 6 and newest[-1] == 6
    rest = await alice.request("msg.history", {"room_id": rid, "before_seq": newest[0],
                                               "limit": 6})
    assert [m["seq"] for m in rest["messages"]][-1] == newest[0] - 1


@pytest_twisted.ensureDeferred
async def test_no_event_exceeds_max_frame(make_server):
    """A message that fits in a request either goes out in an event within max_frame or
    is refused with too_large; members never get a frame over the announced limit."""
    server = await make_server(max_frame=4096)
    alice, bob = await server.user("alice"), await server.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    try:
        await say(alice, rid, "x" * 3990)
    except ChatError as error:
        assert error.code is ErrorCode.TOO_LARGE
    await barrier(bob)
    await barrier(alice)


@pytest_twisted.ensureDeferred
async def test_rate_limit_answers_rate_limited_with_retry_after(make_server):
    """Past the burst, requests get rate_limited with details.retry_after_ms; other
    connections have their own budget and keep chatting."""
    server = await make_server(rate=1.0, burst=15.0)
    bystanders = await Bystanders.start(server)
    flooder = await server.user("flood")  # hello 1 + register 5 + login 5 tokens
    outcomes = []
    pings = [flooder.request("session.ping") for _ in range(10)]
    for d in pings:
        try:
            outcomes.append(await within(d, "ping"))
        except Exception as exc:  # collected and checked below
            outcomes.append(exc)
    limited = [o for o in outcomes if not isinstance(o, dict)]
    assert limited, "no request was rate limited"
    assert all(getattr(o, "code", None) is ErrorCode.RATE_LIMITED for o in limited)
    retry = limited[0].details["retry_after_ms"]
    assert isinstance(retry, int) and 0 < retry <= 1000
    assert isinstance(outcomes[0], dict)  # the budget left was used first
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_first_request_other_than_hello_gets_protocol_version(server):
    """A connection whose first request is not session.hello gets protocol_version and
    is closed."""
    bystanders = await Bystanders.start(server)
    conn = await server.connect(hello=False)
    await expect_error(conn.request("session.ping"), ErrorCode.PROTOCOL_VERSION)
    await wait_lost(conn)
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_hello_with_unknown_protocol_version_is_refused(server):
    """session.hello {protocol: 99} → protocol_version, then the close."""
    bystanders = await Bystanders.start(server)
    conn = await server.connect(hello=False)
    error = await expect_error(conn.request("session.hello", {"protocol": 99, "client": "x"}),
                               ErrorCode.PROTOCOL_VERSION)
    assert "1" in error.message
    await wait_lost(conn)
    await bystanders.check()


@pytest.mark.parametrize("payload, code", [
    (packed([1, 2, 3]), "bad_request"),                         # not a map
    (packed("just a string"), "bad_request"),                    # not a map either
    (b"\x00\x00\x00\x00", "bad_request"),                        # zero-length frame
    (framed(b"\x81\xa2op\xa3\xff\xfe\xfd"), "bad_request"),      # invalid UTF-8 str
    (framed(b"\xc1\xc1\xc1"), "bad_request"),                    # not msgpack at all
    (framed(msgpack.packb({"op": "x"}) + b"\x01"), "bad_request"),  # trailing bytes
    (b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n", "too_large"),      # garbage: huge "length"
], ids=["list", "string", "zero-length", "bad-utf8", "not-msgpack", "extra-data", "http"])
@pytest_twisted.ensureDeferred
async def test_malformed_frames_get_an_error_event_and_close(server, payload, code):
    """A frame the server cannot take as a msgpack map → error event, then close;
    nothing else is affected."""
    bystanders = await Bystanders.start(server)
    offender = await server.user("mallory")
    send_raw(offender, payload)
    await protocol_error(offender, code)
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_an_id_that_is_not_an_integer_gets_an_error_event(server):
    """A request with a non-integer id gets an error event (bad_request); the
    connection stays open and answers the next request."""
    alice = await server.user("alice")
    events = EventLog(alice, "alice")
    send_raw(alice, frame({"id": "seven", "op": "session.ping", "args": {}}))
    event = await events.next("error")
    assert event.data["code"] == "bad_request" and "id" in event.data["message"]
    await barrier(alice)
    assert not alice.lost.called


@pytest_twisted.ensureDeferred
async def test_half_a_frame_then_close_is_harmless(server):
    """A client that sends half a frame and disconnects leaves the server unharmed."""
    bystanders = await Bystanders.start(server)
    quitter = await server.user("quitter")
    whole = frame({"id": 50, "op": "msg.send", "args": {"room_id": 1, "body": "x" * 200,
                                                         "client_msg_id": "half"}})
    send_raw(quitter, whole[: len(whole) // 2])
    await quitter.close()
    again = await server.user("quitter", register=False)
    await barrier(again)
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_plain_tcp_garbage_on_the_tls_port_is_dropped(server):
    """A client that skips TLS and sends garbage is disconnected; nothing else notices."""
    bystanders = await Bystanders.start(server)
    client = await plain_connect(server.port)
    client.transport.write(b"\x16\x03\x01garbage that is not a TLS handshake" * 20)
    await within(client.lost, "the server to drop the plain-TCP client")
    assert b"chatnet" not in bytes(client.received)
    await bystanders.check()


@pytest_twisted.ensureDeferred
async def test_a_peer_that_never_reads_is_disconnected(make_server):
    """A member that stops reading while the room floods is cut off once its output
    queue passes max_output; the other members get every message."""
    server = await make_server(max_output=512 * 1024, rate=1e6, burst=1e6)
    alice, carol, slow = (await server.user("alice"), await server.user("carol"),
                          await server.user("slowpoke"))
    room = await create_room(alice, carol, slow)
    rid = room["room_id"]
    alice_events, carol_events = EventLog(alice, "alice"), EventLog(carol, "carol")
    slow.transport.pauseProducing()  # stop reading from the socket
    body = "x" * 15_000
    sent = 0
    while not alice_events.pending("presence"):
        # Loopback socket buffers absorb several MB before the server's queue grows.
        assert sent < 3000, "the slow reader was never disconnected"
        # Small batches: a reader that keeps up must never have max_output queued.
        batch = [alice.request("msg.send", {"room_id": rid, "body": body,
                                            "client_msg_id": f"flood-{sent + i}"})
                 for i in range(10)]
        await within(gatherResults(batch, consumeErrors=True), "a batch of msg.send")
        sent += len(batch)
    gone = await alice_events.next("presence", username="slowpoke", state="offline")
    assert gone.data["username"] == "slowpoke"
    await carol_events.next("msg", where=lambda d: d["message"]["client_msg_id"] ==
                            f"flood-{sent - 1}")
    got = [e.data["message"]["client_msg_id"] for e in carol_events.seen if e.name == "msg"]
    assert sorted(got) == sorted(f"flood-{i}" for i in range(sent))
    slow.transport.resumeProducing()
    await wait_lost(slow)
    ack = await say(alice, rid, "after the flood")
    assert ack["seq"] == sent + 1


@pytest.mark.expect_logged_errors
@pytest_twisted.ensureDeferred
async def test_internal_errors_never_leak_details(server):
    """When an op fails unexpectedly (here: a table vanished under the server), the
    client gets ``internal`` with the message "internal error" and no trace of the
    cause in the bytes it receives; the connection and the server carry on."""
    bystanders = await Bystanders.start(server)
    alice = await server.user("alice")
    tap = RawTap(alice)
    room = await create_room(alice)
    ack = await say(alice, room["room_id"], "react to me")
    db = sqlite3.connect(server.service.config.data_dir / "chatnet.db")
    try:
        db.execute("DROP TABLE reactions")
        db.commit()
    finally:
        db.close()
    error = await expect_error(alice.request("msg.react", {
        "room_id": room["room_id"], "msg_id": ack["msg_id"], "emoji": "👍", "on": True}),
        ErrorCode.INTERNAL)
    assert error.message == "internal error"
    assert error.details is None
    raw = bytes(tap.data)
    for leak in (b"Traceback", b"reactions", b"sqlite", b"OperationalError", b".py"):
        assert leak not in raw, leak
    await barrier(alice)
    await bystanders.check()
