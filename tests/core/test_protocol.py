"""ChatServerProtocol driven through a string transport and a fake clock (no network).

The factory is wired over a real store (SQLite in ``tmp_path``) and real
services by :mod:`tests.support.harness`; only the transport and the clock
are stand-ins.
"""

from __future__ import annotations

import itertools

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from chatnet.config import PRE_LOGIN_MAX_FRAME
from chatnet.interfaces import ISessionMind
from chatnet.wire.codec import frame
from chatnet.wire.server import MAX_IN_FLIGHT
from tests.support.harness import build_harness, hello, send
from tests.support.server import PASSWORD


@pytest_twisted.async_yield_fixture
async def harness(tmp_path):
    """A factory over a real SQLite store with a MemoryReactorClock."""
    h = await build_harness(tmp_path)
    yield h
    h.close()


async def logged_in(harness, username="alice"):
    """A protocol logged in as ``username`` (the account is created first)."""
    await harness.services.accounts.create_user(username, PASSWORD)
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "auth.login",
                 "args": {"username": username, "password": PASSWORD}})
    answer = await transport.answer(2)
    assert "result" in answer, answer
    transport.new_frames()
    return proto, transport


def error_of(frame_: dict) -> str:
    assert "error" in frame_, frame_
    return frame_["error"]["code"]


@pytest_twisted.ensureDeferred
async def test_hello_answers_with_the_server_parameters(harness):
    """session.hello → {protocol: 1, server, max_frame, features, registration}."""
    proto, transport = harness.connect()
    answer = hello(proto, transport)
    result = answer["result"]
    assert result["protocol"] == 1
    assert result["max_frame"] == harness.config.max_frame
    assert result["registration"] is True
    assert isinstance(result["server"], str) and result["server"].startswith("chatnet")
    assert "resume" in result["features"]
    assert transport.connected


@pytest_twisted.ensureDeferred
async def test_the_protocol_is_a_session_mind(harness):
    """ChatServerProtocol provides ISessionMind (verified)."""
    proto, _transport = harness.connect()
    assert verifyObject(ISessionMind, proto)


@pytest_twisted.ensureDeferred
async def test_a_first_request_other_than_hello_gets_protocol_version_and_close(harness):
    """PROTOCOL.md 3.1: any other first request → protocol_version, then the close."""
    proto, transport = harness.connect()
    send(proto, {"id": 1, "op": "session.ping", "args": {}})
    assert error_of(transport.frames[0]) == "protocol_version"
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_hello_with_another_protocol_version_is_refused_and_closed(harness):
    """session.hello {protocol: 2} → protocol_version, and the connection closes."""
    proto, transport = harness.connect()
    send(proto, {"id": 1, "op": "session.hello", "args": {"protocol": 2, "client": "x"}})
    assert error_of(transport.frames[0]) == "protocol_version"
    harness.clock.advance(0)
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_a_second_hello_is_a_conflict(harness):
    """Saying hello twice is refused with conflict; the connection stays."""
    proto, transport = harness.connect()
    hello(proto, transport)
    answer = hello(proto, transport, request_id=2)
    assert error_of(answer) == "conflict"
    assert transport.connected


@pytest.mark.parametrize("op", ["room.list", "msg.send", "auth.logout", "user.get",
                                "auth.change_password"])
@pytest_twisted.ensureDeferred
async def test_ops_before_login_are_unauthenticated(harness, op):
    """Before login only session/auth ops pass; others → unauthenticated, connection kept."""
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": op, "args": {}})
    assert error_of(transport.frames[-1]) == "unauthenticated"
    assert transport.connected


@pytest_twisted.ensureDeferred
async def test_ping_is_allowed_before_login(harness):
    """session.ping works right after hello and returns the clock's time in ms."""
    harness.clock.advance(1234.5)
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "session.ping"})
    assert transport.frames[-1] == {"id": 2, "result": {"ts": 1234500}}


@pytest_twisted.ensureDeferred
async def test_unknown_op_gets_unknown_op_and_the_connection_stays(harness):
    """An op the registry does not list → unknown_op naming it; later requests still work."""
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "room.teleport", "args": {}})
    assert error_of(transport.frames[-1]) == "unknown_op"
    assert "room.teleport" in transport.frames[-1]["error"]["message"]
    send(proto, {"id": 3, "op": "session.ping"})
    assert "result" in transport.frames[-1]


@pytest_twisted.ensureDeferred
async def test_a_perspective_method_name_is_not_an_op(harness):
    """Names that exist on objects but are not registered cannot be called."""
    proto, transport = harness.connect()
    hello(proto, transport)
    for i, name in enumerate(["mind_hello", "perspective_register", "__init__",
                              "connectionLost"], start=2):
        send(proto, {"id": i, "op": name, "args": {}})
        assert error_of(transport.frames[-1]) == "unknown_op"


@pytest.mark.parametrize("bad_id", ["1", 1.5, True, 0, -3, 2**63, [1]])
@pytest_twisted.ensureDeferred
async def test_an_id_that_is_not_a_positive_integer_gets_an_error_event(harness, bad_id):
    """A request whose id is not an integer ≥ 1 gets an ``error`` event (bad_request)."""
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": bad_id, "op": "session.ping", "args": {}})
    last = transport.frames[-1]
    assert last["event"] == "error"
    assert last["data"]["code"] == "bad_request"
    assert "id" in last["data"]["message"]
    assert transport.connected


@pytest_twisted.ensureDeferred
async def test_op_that_is_not_a_string_is_bad_request(harness):
    """A request whose op is not a string → bad_request naming op."""
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": 42})
    assert error_of(transport.frames[-1]) == "bad_request"
    assert "op" in transport.frames[-1]["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_a_bad_argument_is_bad_request_naming_the_field(harness):
    """Argument validation happens before dispatch; the message names the field."""
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "auth.login", "args": {"username": "alice", "password": 5}})
    answer = transport.frames[-1]
    assert error_of(answer) == "bad_request"
    assert answer["error"]["message"] == "password must be a string"


@pytest_twisted.ensureDeferred
async def test_frames_split_at_odd_offsets_are_reassembled(harness):
    """Frames cut anywhere (even inside the length prefix) and glued together all arrive."""
    proto, transport = harness.connect()
    data = (frame({"id": 1, "op": "session.hello", "args": {"protocol": 1, "client": "c"}})
            + frame({"id": 2, "op": "session.ping"})
            + frame({"id": 3, "op": "session.ping"}))
    cuts = [0, 1, 3, 7, 8, 13, 29, 30, len(data) - 2, len(data)]
    for start, end in itertools.pairwise(cuts):
        proto.dataReceived(data[start:end])
    assert [f["id"] for f in transport.frames] == [1, 2, 3]
    assert all("result" in f for f in transport.frames)


@pytest_twisted.ensureDeferred
async def test_a_partial_frame_waits_for_the_rest(harness):
    """Half a frame is not answered until the other half arrives."""
    proto, transport = harness.connect()
    hello(proto, transport)
    data = frame({"id": 2, "op": "session.ping"})
    proto.dataReceived(data[:5])
    assert len(transport.frames) == 1
    proto.dataReceived(data[5:])
    assert transport.frames[-1]["id"] == 2


@pytest_twisted.ensureDeferred
async def test_idle_timeout_closes_after_the_configured_time(harness):
    """A logged-in connection that sends nothing for idle_timeout seconds is closed,
    silently."""
    _proto, transport = await logged_in(harness)
    harness.clock.advance(harness.config.idle_timeout - 1)
    assert transport.connected
    harness.clock.advance(1)
    assert not transport.connected
    assert transport.new_frames() == []  # no farewell frame for an idle close


@pytest_twisted.ensureDeferred
async def test_each_connection_times_out_on_its_own_activity(harness):
    """Connections share one idle timer, yet each is closed exactly idle_timeout
    after its own last frame, in that order; once none is left, no timer is."""
    timeout = harness.config.idle_timeout
    first_proto, first = await logged_in(harness)
    harness.clock.advance(3)
    _second_proto, second = await logged_in(harness, "bob")
    harness.clock.advance(2)
    send(first_proto, {"id": 7, "op": "session.ping", "args": {}})  # first: active at t=5
    harness.clock.advance(timeout - 3 - 2)  # t = timeout: neither is due yet
    assert first.connected and second.connected
    harness.clock.advance(3)  # t = timeout + 3: second's deadline
    assert first.connected and not second.connected
    harness.clock.advance(2)  # t = timeout + 5: first's
    assert not first.connected
    assert harness.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_frames_reset_the_idle_timeout_but_dribbled_bytes_do_not(harness):
    """Only a complete frame counts as activity: a peer that sends one byte now and
    then, never finishing a frame, is still closed after idle_timeout."""
    proto, transport = await logged_in(harness)
    timeout = harness.config.idle_timeout
    harness.clock.advance(timeout - 1)
    send(proto, {"id": 9, "op": "session.ping", "args": {}})
    harness.clock.advance(timeout - 1)
    assert transport.connected
    for piece in (b"\x00", b"\x00", b"\x00"):  # a length prefix, never finished
        proto.dataReceived(piece)
        harness.clock.advance(0.3)
    harness.clock.advance(1)
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_login_deadline_closes_a_connection_that_does_not_log_in(harness):
    """A connection has login_timeout seconds to send hello and log in; then it gets
    error {unauthenticated} and is closed, even while it keeps pinging."""
    proto, transport = harness.connect()
    hello(proto, transport)
    deadline = harness.config.login_timeout
    for request_id in range(2, 2 + int(deadline)):
        send(proto, {"id": request_id, "op": "session.ping", "args": {}})
        harness.clock.advance(0.99)
    assert transport.connected
    harness.clock.advance(1)
    assert not transport.connected
    last = transport.frames[-1]
    assert last["event"] == "error" and last["data"]["code"] == "unauthenticated"
    assert "log in within" in last["data"]["message"]


@pytest_twisted.ensureDeferred
async def test_the_login_deadline_does_not_apply_after_login(harness):
    """After a login, only the idle timeout closes the connection."""
    proto, transport = await logged_in(harness)
    for request_id in range(10, 40):
        send(proto, {"id": request_id, "op": "session.ping", "args": {}})
        harness.clock.advance(1)
    assert transport.connected


@pytest_twisted.ensureDeferred
async def test_frames_before_login_are_limited_to_8_kib(harness):
    """Before login the frame limit is PRE_LOGIN_MAX_FRAME (8 KiB): a larger length
    prefix gets too_large and a close, although max_frame is 1 MiB."""
    proto, transport = harness.connect()
    hello(proto, transport)
    assert transport.frames[-1]["result"]["max_frame"] == harness.config.max_frame
    proto.dataReceived((PRE_LOGIN_MAX_FRAME + 1).to_bytes(4, "big"))
    assert transport.frames[-1]["event"] == "error"
    assert transport.frames[-1]["data"]["code"] == "too_large"
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_after_login_frames_up_to_max_frame_are_accepted(harness):
    """Once logged in, a frame of 100 KiB (over the pre-login limit) is read."""
    proto, transport = await logged_in(harness)
    send(proto, {"id": 5, "op": "session.ping", "args": {"pad": "x" * 100_000}})
    assert "result" in await transport.answer(5)


@pytest_twisted.ensureDeferred
async def test_unauthenticated_connections_per_address_are_capped(tmp_path):
    """More than max_unauthenticated_per_address connections from one address that
    have not logged in are refused at once; a login frees a place."""
    harness = await build_harness(tmp_path, max_unauthenticated_per_address=3)
    try:
        await harness.services.accounts.create_user("alice", PASSWORD)
        held = [harness.connect() for _ in range(3)]
        assert all(t.connected for _p, t in held)
        _proto, refused = harness.connect()
        assert not refused.connected and refused.frames == []
        proto, transport = held[0]
        hello(proto, transport)
        send(proto, {"id": 2, "op": "auth.login",
                     "args": {"username": "alice", "password": PASSWORD}})
        assert "result" in await transport.answer(2)
        _proto, admitted = harness.connect()
        assert admitted.connected
        held[1][1].loseConnection()
        _proto, again = harness.connect()
        assert again.connected
        assert harness.factory.gate.count == 3
    finally:
        harness.close()


@pytest_twisted.ensureDeferred
async def test_a_request_without_id_gets_an_error_event_and_is_not_run(harness):
    """Only notifications may omit the id (PROTOCOL.md 1): an id-less file.download is
    refused with an error event naming the op, and nothing is left in flight."""
    proto, transport = await logged_in(harness)
    for _ in range(2500):  # 0.1 token each: past the burst of 200
        send(proto, {"op": "file.download",
                     "args": {"file_id": "x" * 24, "offset": 0, "length": 10}})
    events = [f for f in transport.new_frames() if f.get("event") == "error"]
    assert events and all(e["data"]["code"] == "bad_request" for e in events)
    assert "file.download is a request and needs an id" in events[0]["data"]["message"]
    # Each refusal costs a whole token: no more error events than the burst allows.
    assert len(events) <= harness.config.burst
    assert not proto._in_flight and proto._notifications == 0
    assert transport.connected


@pytest_twisted.ensureDeferred
async def test_zero_length_frame_is_a_protocol_error(harness):
    """A frame of length 0 → error event bad_request, then close (PROTOCOL.md 1)."""
    proto, transport = harness.connect()
    hello(proto, transport)
    proto.dataReceived(b"\x00\x00\x00\x00")
    assert transport.frames[-1]["event"] == "error"
    assert transport.frames[-1]["data"]["code"] == "bad_request"
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_a_payload_that_is_not_a_map_is_a_protocol_error(harness):
    """A msgpack array instead of a map → error event bad_request, then close."""
    proto, transport = harness.connect()
    proto.dataReceived(frame([1, 2, 3]))  # type: ignore[arg-type]
    assert transport.frames[-1] == {"event": "error", "data": {
        "code": "bad_request", "message": "payload must be a msgpack map"}}
    assert not transport.connected


@pytest_twisted.ensureDeferred
async def test_an_oversized_length_prefix_gets_too_large_and_close(harness):
    """A length over max_frame → error event too_large, close; the body is never read."""
    proto, transport = harness.connect()
    hello(proto, transport)
    too_big = harness.config.max_frame + 1
    proto.dataReceived(too_big.to_bytes(4, "big") + b"x" * 100)
    last = transport.frames[-1]
    assert last["event"] == "error" and last["data"]["code"] == "too_large"
    assert not transport.connected
    proto.dataReceived(frame({"id": 9, "op": "session.ping"}))  # after close: ignored
    assert transport.frames[-1] is last


@pytest_twisted.ensureDeferred
async def test_rate_limit_refuses_with_retry_after_and_recovers_with_time(tmp_path):
    """Past the burst, requests get rate_limited with details.retry_after_ms; once the
    clock has moved on, they pass again."""
    h = await build_harness(tmp_path, rate=2.0, burst=3.0)
    try:
        proto, transport = h.connect()
        hello(proto, transport)  # 1 token
        send(proto, {"id": 2, "op": "session.ping"})
        send(proto, {"id": 3, "op": "session.ping"})
        send(proto, {"id": 4, "op": "session.ping"})
        refused = transport.frames[-1]
        assert error_of(refused) == "rate_limited"
        assert refused["error"]["details"] == {"retry_after_ms": 500}
        h.clock.advance(0.5)
        send(proto, {"id": 5, "op": "session.ping"})
        assert "result" in transport.frames[-1]
    finally:
        h.close()


@pytest_twisted.ensureDeferred
async def test_login_then_ops_pass_and_login_again_is_a_conflict(harness):
    """After auth.login the user's ops work; a second login on the same connection → conflict."""
    proto, transport = await logged_in(harness)
    assert proto.username == "alice"
    send(proto, {"id": 3, "op": "room.list", "args": {}})
    answer = await transport.answer(3)
    assert answer["result"] == {"rooms": []}
    send(proto, {"id": 4, "op": "auth.login", "args": {"username": "alice",
                                                        "password": PASSWORD}})
    assert error_of(await transport.answer(4)) == "conflict"


@pytest_twisted.ensureDeferred
async def test_a_request_id_in_flight_cannot_be_reused(harness):
    """A second request with the id of one still being processed → bad_request."""
    await harness.services.accounts.create_user("alice", PASSWORD)
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "auth.login", "args": {"username": "alice",
                                                        "password": PASSWORD}})
    send(proto, {"id": 2, "op": "session.ping"})
    duplicate = transport.frames[-1]
    assert error_of(duplicate) == "bad_request"
    assert "in flight" in duplicate["error"]["message"]
    login = await transport.next(lambda f: f.get("id") == 2 and "result" in f)
    assert login["result"]["username"] == "alice"


@pytest_twisted.ensureDeferred
async def test_too_many_requests_in_flight_pause_reading_until_answers_go_out(harness):
    """With MAX_IN_FLIGHT requests pending, the server stops reading; it resumes and
    answers everything once they complete."""
    proto, transport = await logged_in(harness)
    count = MAX_IN_FLIGHT + 6
    proto.dataReceived(b"".join(frame({"id": 100 + i, "op": "room.list"})
                                for i in range(count)))
    assert transport.producerState == "paused"
    assert len(proto._in_flight) == MAX_IN_FLIGHT
    await transport.answer(100 + count - 1)
    answered = {f["id"] for f in transport.frames if f.get("id", 0) >= 100}
    assert answered == {100 + i for i in range(count)}
    assert transport.producerState == "producing"


@pytest_twisted.ensureDeferred
async def test_connection_lost_detaches_the_session(harness):
    """Dropping the connection logs the session out of the fan-out."""
    proto, transport = await logged_in(harness)
    assert proto in harness.fanout.sessions_of(proto.user_id)
    assert proto in harness.factory.protocols
    transport.loseConnection()
    assert not harness.fanout.sessions_of(proto.user_id)
    assert proto not in harness.factory.protocols


@pytest_twisted.ensureDeferred
async def test_a_notification_is_never_answered(harness):
    """A request without id (notification) gets no response, even when it fails."""
    proto, transport = await logged_in(harness)
    send(proto, {"op": "msg.typing", "args": {"room_id": 12345, "typing": True}})
    send(proto, {"op": "room.teleport", "args": {}})
    send(proto, {"op": "msg.typing", "args": {"room_id": "bad"}})
    send(proto, {"id": 9, "op": "session.ping"})
    assert [f.get("id") for f in transport.new_frames()] == [9]


@pytest_twisted.ensureDeferred
async def test_end_session_sends_session_ended_then_closes(harness):
    """end_session(reason) writes session.ended {reason} and closes the connection."""
    proto, transport = await logged_in(harness)
    proto.end_session("shutdown")
    assert transport.frames[-1] == {"event": "session.ended", "data": {"reason": "shutdown"}}
    assert not transport.connected
    # The outbox let go of the transport: TLS sends close_notify only once no
    # producer is registered.
    assert transport.producer is None


@pytest_twisted.ensureDeferred
async def test_a_close_scheduled_after_the_peer_left_leaves_no_timer(harness):
    """If the peer disconnects between a refused hello and the close the server
    scheduled for it, the close does nothing: no abort timer outlives the connection
    (on a real TLS transport that late abort raised in the reactor)."""
    proto, transport = harness.connect()
    send(proto, {"id": 1, "op": "session.hello", "args": {"protocol": 2, "client": "x"}})
    transport.loseConnection()  # the peer is gone before the scheduled close runs
    harness.clock.advance(0)
    assert harness.clock.getDelayedCalls() == []
    assert proto not in harness.factory.protocols


@pytest_twisted.ensureDeferred
async def test_a_closed_connection_leaves_no_timers(harness):
    """After any close (here: idle timeout) no timer of the connection is left."""
    proto, transport = harness.connect()
    hello(proto, transport)
    harness.clock.advance(harness.config.idle_timeout)
    assert not transport.connected
    assert harness.clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_resume_tokens_expire_after_their_lifetime(tmp_path):
    """auth.resume works until token_lifetime has passed on the server's clock, then
    fails with unauthenticated (PROTOCOL.md 3.5)."""
    h = await build_harness(tmp_path, token_lifetime=3600)
    try:
        _proto, transport = await logged_in(h)
        token = (await transport.answer(2))["result"]["token"]
        h.clock.advance(3599)
        proto2, transport2 = h.connect()
        hello(proto2, transport2)
        send(proto2, {"id": 2, "op": "auth.resume", "args": {"token": token}})
        assert (await transport2.answer(2))["result"]["username"] == "alice"
        h.clock.advance(1)
        proto3, transport3 = h.connect()
        hello(proto3, transport3)
        send(proto3, {"id": 2, "op": "auth.resume", "args": {"token": token}})
        assert error_of(await transport3.answer(2)) == "unauthenticated"
    finally:
        h.close()


@pytest_twisted.ensureDeferred
async def test_a_banned_account_cannot_log_in(harness):
    """Login to a banned account → banned (PROTOCOL.md 3.4), with the right password."""
    user = await harness.services.accounts.create_user("mallory", PASSWORD)
    await harness.store.db.run_interaction("ban", lambda t: t.execute(
        "UPDATE users SET banned = 1 WHERE user_id = ?", (user.user_id,)))
    proto, transport = harness.connect()
    hello(proto, transport)
    send(proto, {"id": 2, "op": "auth.login", "args": {"username": "mallory",
                                                        "password": PASSWORD}})
    assert error_of(await transport.answer(2)) == "banned"
    assert not harness.fanout.sessions_of(user.user_id)


@pytest_twisted.ensureDeferred
async def test_the_server_reads_a_dribbled_frame_in_linear_work(harness):
    """A 256 KiB request dribbled one byte at a time after login is answered, and the
    protocol's decoder copied each byte a small constant number of times (Twisted's
    Int32StringReceiver copied the whole buffer per read: quadratic)."""
    proto, transport = await logged_in(harness)
    data = frame({"id": 7, "op": "session.ping", "args": {"pad": "p" * 256 * 1024}})
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert "result" in await transport.answer(7)
    assert proto._decoder.copied <= 4 * len(data)


@pytest_twisted.ensureDeferred
async def test_unknown_ops_and_bad_ids_spend_the_rate_limit(harness):
    """Frames the server refuses cost a token like any other: past the burst, an
    unknown op gets rate_limited instead of unknown_op, and a bad id nothing at all."""
    proto, transport = await logged_in(harness)
    burst = int(harness.config.burst)
    for request_id in range(100, 100 + burst + 5):
        send(proto, {"id": request_id, "op": "no.such.op", "args": {}})
    codes = [error_of(f) for f in transport.new_frames()]
    answered = codes.count("unknown_op")  # logging in spent a few tokens
    assert burst - 10 <= answered < burst
    assert codes == ["unknown_op"] * answered + ["rate_limited"] * (len(codes) - answered)
    send(proto, {"id": "not a number", "op": "session.ping"})
    assert transport.new_frames() == []


@pytest_twisted.ensureDeferred
async def test_too_many_small_reads_pause_reading_from_the_socket(harness):
    """A peer that cuts its bytes into tiny pieces (one TLS record each) spends a
    small-read budget; past it the server stops reading from the socket for a while,
    so one dribbling connection cannot keep a core busy. Large reads cost nothing."""
    from chatnet.wire.server import SMALL_READ_BURST, SMALL_READS_PER_SECOND

    proto, transport = await logged_in(harness)
    data = frame({"id": 7, "op": "session.ping", "args": {"pad": "p" * 4000}})
    for request_id in range(1100, 1250):
        # Whole frames of 600 bytes, each in one read: large reads cost nothing
        # (150 of them: within the request rate limit, which pauses reading too).
        proto.dataReceived(frame({"id": request_id, "op": "session.ping",
                                  "args": {"pad": "p" * 550}}))
        transport.clear()
    assert transport.producerState == "producing"
    harness.clock.advance(10)  # the rate limit refills; the small-read bucket is full
    # 1,500 one-byte pieces at once (a single socket read can hold that many tiny
    # TLS records): all are read, and the pause covers every one past the burst.
    over = 500
    for i in range(int(SMALL_READ_BURST) + over):
        proto.dataReceived(data[i:i + 1])
    assert transport.producerState == "paused"
    harness.clock.advance(over / SMALL_READS_PER_SECOND - 0.5)
    assert transport.producerState == "paused"
    harness.clock.advance(1)
    assert transport.producerState == "producing"
    proto.dataReceived(data[int(SMALL_READ_BURST) + over:])
    assert "result" in await transport.answer(7)


@pytest_twisted.ensureDeferred
async def test_all_of_a_users_connections_share_one_request_budget(harness):
    """The per-user 'requests' budget counts every request of every connection of the
    user: opening more connections does not multiply the rate limit. Past it a
    request is refused naming the budget."""
    from chatnet.wire.limits import BUDGETS, Budget, UserBudgets

    harness.factory.budgets = UserBudgets(harness.clock, {
        **BUDGETS, "requests": Budget("requests", rate=1.0, burst=20.0)})
    first, first_t = await logged_in(harness)
    second, second_t = harness.connect()
    hello(second, second_t)
    send(second, {"id": 2, "op": "auth.login",
                  "args": {"username": "alice", "password": PASSWORD}})
    assert "result" in await second_t.answer(2)
    answers = []
    for request_id in range(10, 21):  # 22 requests in all, over two connections
        for proto, transport in ((first, first_t), (second, second_t)):
            send(proto, {"id": request_id, "op": "session.ping", "args": {}})
            answers.extend(f for f in transport.new_frames() if f.get("id") == request_id)
    # The 21st request is refused (and its connection paused); so is the other
    # connection's next one: the budget is the user's, not the connection's.
    assert ["result" in a for a in answers] == [True] * 20 + [False] * 2
    assert {a["error"]["details"]["budget"] for a in answers[20:]} == {"requests"}


@pytest_twisted.ensureDeferred
async def test_a_user_may_have_only_so_many_sessions(tmp_path):
    """A login past max_sessions_per_user gets conflict with details.limit; when a
    session ends, a new one may log in."""
    harness = await build_harness(tmp_path, max_sessions_per_user=2)
    try:
        _first, first_t = await logged_in(harness)
        second = harness.connect()
        hello(*second)
        send(second[0], {"id": 2, "op": "auth.login",
                         "args": {"username": "alice", "password": PASSWORD}})
        assert "result" in await second[1].answer(2)
        third = harness.connect()
        hello(*third)
        send(third[0], {"id": 2, "op": "auth.login",
                        "args": {"username": "alice", "password": PASSWORD}})
        refused = await third[1].answer(2)
        assert error_of(refused) == "conflict"
        assert refused["error"]["details"] == {"limit": 2}
        first_t.loseConnection()
        send(third[0], {"id": 3, "op": "auth.login",
                        "args": {"username": "alice", "password": PASSWORD}})
        assert "result" in await third[1].answer(3)
    finally:
        harness.close()


@pytest_twisted.ensureDeferred
async def test_past_the_rate_limit_the_server_stops_reading_until_it_allows_again(harness):
    """Past the rate limit one request gets rate_limited with retry_after_ms, and the
    server reads nothing more of that connection (neither from the socket nor the
    frames already buffered) until the limit allows again: a pipelined flood is
    served at the rate, each request once, instead of being refused at full speed."""
    proto, transport = await logged_in(harness)
    count = int(harness.config.burst) + 40
    proto.dataReceived(b"".join(frame({"id": i, "op": "session.ping", "args": {}})
                                for i in range(100, 100 + count)))
    first = transport.new_frames()
    assert [error_of(f) for f in first if "error" in f] == ["rate_limited"]
    assert transport.producerState == "paused"
    answers = list(first)
    for _ in range(400):
        harness.clock.advance(0.02)
        answers += transport.new_frames()
    assert transport.producerState == "producing"
    assert sorted(f["id"] for f in answers) == list(range(100, 100 + count))
    refused = [f for f in answers if "error" in f]
    assert len(refused) <= 5  # one per pause, not one per frame


@pytest_twisted.ensureDeferred
async def test_new_connections_per_address_are_rate_limited(tmp_path):
    """An address may open connects_per_address new connections a second (twice that
    at once): past it a connection is refused before any TLS handshake; time lets
    it connect again."""
    harness = await build_harness(tmp_path, connects_per_address=5)
    try:
        opened = [harness.connect() for _ in range(11)]
        assert [t.connected for _p, t in opened] == [True] * 10 + [False]
        for _proto, transport in opened[:10]:
            transport.loseConnection()
        assert not harness.connect()[1].connected  # closing frees no new-connection budget
        harness.clock.advance(1)
        assert harness.connect()[1].connected
    finally:
        harness.close()


@pytest_twisted.ensureDeferred
async def test_login_deadlines_are_spread_out(tmp_path):
    """Each connection's login deadline is login_timeout times the factory's jitter
    (80-120 %), so that connections opened together are not all cut at once."""
    harness = await build_harness(tmp_path)
    try:
        factors = iter([0.8, 1.2])
        harness.factory.jitter = lambda: next(factors)
        (_a, early), (_b, late) = harness.connect(), harness.connect()
        timeout = harness.config.login_timeout
        harness.clock.advance(timeout * 0.8)
        assert not early.connected and late.connected
        harness.clock.advance(timeout * 0.4)
        assert not late.connected
    finally:
        harness.close()
