"""Properties of the wire under hostile input (Hypothesis): nothing a peer sends
breaks the frame decoder, the argument validator, the server's dispatcher or
the client core — every input ends in a frame, a protocol error or an answer.

The dispatcher properties run the real server protocol over a real SQLite
store with every "thread" run in the caller (:mod:`tests.support.synchronous`):
a request that needs only the database is answered before ``dataReceived``
returns, so each example's outcome is complete, and repeatable, when the
frames have been fed.

The number of examples scales with the Hypothesis profile
(``HYPOTHESIS_PROFILE=ci`` in CI, ``long`` for a long run; tests/core/conftest.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import txaio
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, globalLogPublisher

from chatnet.client.core import ClientCore, Event, ProtocolError
from chatnet.config import PRE_LOGIN_MAX_FRAME
from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.codec import unpack
from chatnet.wire.framing import PREFIX_SIZE, FrameDecoder, FrameError, encode_frame
from chatnet.wire.ops import OPS, TEXT_RULES, Field, Op
from tests.support.harness import FrameTransport, Harness, build_synchronous_harness, hello, send
from tests.support.server import PASSWORD
from tests.support.synchronous import run_now
from tests.support.wire_strategies import (
    canonical_text,
    cut,
    frame_streams,
    near_args,
    packed,
    prefixed,
    python_values,
    valid_args,
    wire_values,
)

txaio.use_twisted()

_cuts = st.lists(st.integers(min_value=0, max_value=2**16), max_size=12)


def examples(n: int) -> int:
    """``n`` examples under the default profile, scaled by the active profile."""
    return max(1, n * settings.default.max_examples // 100)


# -- (a) the frame decoder ---------------------------------------------------------------


def drain(decoder: FrameDecoder) -> tuple[list[bytes], tuple[int, bool] | None]:
    """Every complete frame now buffered, and the error that stopped the stream."""
    frames: list[bytes] = []
    while True:
        try:
            payload = decoder.next_frame()
        except FrameError as exc:
            return frames, (exc.length, exc.too_large)
        if payload is None:
            return frames, None
        frames.append(payload)


def decode_in_pieces(pieces: list[bytes], max_length: int) -> tuple[list[bytes],
                                                                    tuple[int, bool] | None,
                                                                    FrameDecoder]:
    """Feed ``pieces`` one by one, taking frames after each, until an error."""
    decoder = FrameDecoder(max_length)
    frames: list[bytes] = []
    for piece in pieces:
        decoder.feed(piece)
        got, error = drain(decoder)
        frames += got
        if error is not None:
            return frames, error, decoder
    return frames, None, decoder


_streams = st.one_of(st.binary(max_size=300), frame_streams().map(b"".join),
                     st.lists(st.binary(max_size=40).map(prefixed), max_size=8).map(b"".join))


@settings(max_examples=examples(150), deadline=None)
@given(stream=_streams, cuts=_cuts, max_length=st.integers(min_value=1, max_value=64))
def test_frames_do_not_depend_on_how_the_bytes_are_cut(stream, cuts, max_length):
    """Any byte string, cut anywhere, yields the same frames and the same error
    (or none) as fed whole; nothing but FrameError is raised, and no byte is
    copied more than three times (receive, compact, hand out)."""
    whole, whole_error, _ = decode_in_pieces([stream], max_length)
    frames, error, decoder = decode_in_pieces(cut(stream, cuts), max_length)
    assert frames == whole
    assert error == whole_error
    assert decoder.copied <= 3 * len(stream)
    if error is None:
        assert decoder.buffered == len(stream) - sum(PREFIX_SIZE + len(f) for f in frames)


@settings(max_examples=examples(200), deadline=None)
@given(before=st.lists(st.binary(min_size=1, max_size=30), max_size=4),
       max_length=st.integers(min_value=1, max_value=2**20),
       over=st.integers(min_value=1, max_value=2**32 - 1), tail=st.binary(max_size=20),
       cuts=_cuts)
def test_a_length_over_the_limit_is_refused_as_soon_as_it_arrives(before, max_length, over,
                                                                   tail, cuts):
    """A length over the limit is refused (too_large, with the length) once its
    4 bytes are in, whatever follows and however the stream is cut; the frames
    before it still come out."""
    length = min(max_length + over, 2**32 - 1)
    assume(length > max_length)
    good = [p for p in before if len(p) <= max_length]
    stream = b"".join(encode_frame(p) for p in good) + length.to_bytes(4, "big") + tail
    frames, error, _ = decode_in_pieces(cut(stream, cuts), max_length)
    assert frames == good
    assert error == (length, True)


@settings(max_examples=examples(100), deadline=None)
@given(before=st.lists(st.binary(min_size=1, max_size=30), max_size=4), tail=st.binary(max_size=9))
def test_an_empty_frame_is_refused(before, tail):
    """Length 0 is invalid (PROTOCOL.md 1): FrameError with too_large False."""
    stream = b"".join(encode_frame(p) for p in before) + bytes(4) + tail
    frames, error, _ = decode_in_pieces([stream], 64)
    assert frames == before
    assert error == (0, False)


# -- (b) the argument validator ---------------------------------------------------------------

_LABEL = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_]*)(\[\d+\])?\b")


def conforms(f: Field, value: Any, label: str) -> None:
    """Assert that ``value`` is of ``f``'s type and within its bounds."""
    kind = f.kind
    if kind == "str":
        assert isinstance(value, str), label
        assert len(value) >= f.min_len, label
        assert f.max_len is None or len(value) <= f.max_len, label
        assert f.choices is None or value in f.choices, label
        assert f.pattern is None or f.pattern.fullmatch(value), label
        refused = TEXT_RULES[f.text]
        assert refused is None or refused.search(value) is None, label
        assert canonical_text(f, value) == value, label
    elif kind == "int":
        assert type(value) is int, label
        assert f.minimum is None or value >= f.minimum, label
        assert f.maximum is None or value <= f.maximum, label
    elif kind == "bool":
        assert type(value) is bool, label
    elif kind == "bin":
        assert type(value) is bytes, label
        assert f.max_len is None or len(value) <= f.max_len, label
    elif kind == "list":
        assert type(value) is list, label
        assert f.min_len <= len(value), label
        assert f.max_len is None or len(value) <= f.max_len, label
        if f.item is not None:
            for i, item in enumerate(value):
                conforms(f.item, item, f"{label}[{i}]")
    elif kind == "map":
        assert type(value) is dict, label
    else:  # pragma: no cover
        raise AssertionError(f"unknown kind {kind}")


def canonical(f: Field, raw: Any) -> Any:
    """What the validator should make of an accepted raw value."""
    if f.kind == "str":
        return canonical_text(f, raw)
    if f.kind == "list":
        return [canonical(f.item, v) if f.item is not None else v for v in raw]
    return raw


def check_outcome(op: Op, args: Any) -> dict[str, Any] | None:
    """Validate; assert the result is a clean map or a bad_request naming a
    field. Returns the clean map, or None if refused."""
    try:
        clean = op.validate(args)
    except ChatError as error:
        assert error.code is ErrorCode.BAD_REQUEST, error
        assert isinstance(error.message, str)
        named = _LABEL.match(error.message)
        assert named is not None, error.message
        assert named["field"] in {f.name for f in op.args} | {"args"}, error.message
        return None
    assert isinstance(clean, dict)
    assert list(clean) == [f.name for f in op.args]
    raw_args = args if isinstance(args, dict) else {}
    for f in op.args:
        raw = raw_args.get(f.name)
        if raw is None:
            assert not f.required, f.name
            assert clean[f.name] == f.default, f.name
        else:
            conforms(f, clean[f.name], f.name)
            assert clean[f.name] == canonical(f, raw), f.name
    return clean


@st.composite
def hostile_args(draw: st.DrawFn) -> tuple[Op, Any]:
    """An op and an ``args`` value: anything at all, or its own fields each
    valid, hostile or missing."""
    op = OPS[draw(st.sampled_from(sorted(OPS)), label="op")]
    names = [f.name for f in op.args] or ["x"]
    args = draw(st.one_of(python_values(), near_args(op),
                          st.dictionaries(st.sampled_from(names), python_values(6))),
                label="args")
    return op, args


@settings(max_examples=examples(120), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=hostile_args())
def test_the_validator_answers_any_value_with_clean_args_or_bad_request(case):
    """For any op: any value (any type, ints past 64 bits, nested lists and
    maps, each field valid, hostile or missing) gives either a map of exactly
    the declared fields, each of its declared type and within its bounds, or
    ChatError(bad_request) whose message names a field — nothing else."""
    op, args = case
    check_outcome(op, args)


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_the_validator_accepts_what_the_schema_allows(data):
    """For every op (each example checks all of them): arguments drawn from
    its own schema (bounds included, unknown keys added, optional ones absent
    or nil) pass, in canonical form. This keeps the refusals above honest: a
    validator refusing everything would pass them."""
    for name in sorted(OPS):
        op = OPS[name]
        args = data.draw(valid_args(op), label=f"args of {name}")
        clean = check_outcome(op, args)
        assert clean is not None, (name, args)


@settings(max_examples=examples(100), deadline=None)
@given(name=st.sampled_from(sorted(OPS)), value=wire_values())
def test_the_validator_survives_a_msgpack_round_trip(name, value):
    """Values as our decoder hands them over (after pack and unpack) are
    validated the same way: clean args or bad_request."""
    check_outcome(OPS[name], unpack(packed(value)))


# -- (c) the dispatcher ----------------------------------------------------------------------

FRESH, ANONYMOUS, LOGGED_IN = "fresh", "anonymous", "logged in"


@dataclass
class Wire:
    """A synchronous harness with an account to log in as, and what exists.

    Attributes:
        known: field name → values that exist on the server (for
            :func:`~tests.support.wire_strategies.valid_args`).
    """

    harness: Harness
    user_id: int
    known: dict[str, list[Any]]


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    """One synchronous harness for the module's examples: ``alice`` (who the
    examples log in as) owns a room with ``bob`` in it and one message."""
    harness = build_synchronous_harness(tmp_path_factory.mktemp("dispatch"))
    alice = run_now(harness.services.accounts.create_user("alice", PASSWORD))
    run_now(harness.services.accounts.create_user("bob", PASSWORD))
    w = Wire(harness, alice.user_id, {})
    proto, transport = connect_as(w, LOGGED_IN)
    send(proto, {"id": 3, "op": "room.create", "args": {
        "name": "fuzz", "visibility": "public", "members": ["bob"]}})
    room = transport.frames[-1]["result"]
    send(proto, {"id": 4, "op": "msg.send", "args": {
        "room_id": room["room_id"], "body": "hello", "client_msg_id": "fuzz-1"}})
    message = transport.frames[-1]["result"]
    transport.loseConnection()
    w.known.update(room_id=[room["room_id"]], msg_id=[message["msg_id"]],
                   reply_to=[message["msg_id"]], seq=[0, message["seq"]],
                   before_seq=[message["seq"] + 1], after_seq=[0],
                   username=["alice", "bob"], sender=["alice", "bob"],
                   members=[["bob"]], mentions=[["bob"]])
    yield w
    harness.close()


class ErrorLog:
    """Error-level log events while it is installed (as a context manager)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or \
                "log_failure" in event:
            self.events.append(event)

    def __enter__(self) -> ErrorLog:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self)


def connect_as(wire: Wire, state: str) -> tuple[Any, FrameTransport]:
    """A new connection in ``state`` (fresh, after hello, or logged in as alice)."""
    harness = wire.harness
    # Let rate limits, budgets and login lock-outs left by earlier examples refill.
    harness.clock.advance(3600)
    proto, transport = harness.connect()
    if state != FRESH:
        hello(proto, transport)
    if state == LOGGED_IN:
        token = run_now(harness.services.accounts.issue_token(wire.user_id))
        send(proto, {"id": 2, "op": "auth.resume", "args": {"token": token}})
        assert "result" in transport.frames[-1], transport.frames[-1]
    transport.new_frames()
    return proto, transport


def valid_id(value: Any) -> bool:
    """The server's rule for a request id (PROTOCOL.md 2)."""
    return type(value) is int and 1 <= value < 2**63


def requests_in(stream: bytes) -> Counter[int]:
    """The ids of the requests in ``stream`` (counted), up to the first frame
    that is a protocol error (bad length, not msgpack, not a map)."""
    decoder = FrameDecoder(2**32)
    decoder.feed(stream)
    ids: Counter[int] = Counter()
    while True:
        try:
            payload = decoder.next_frame()
        except FrameError:
            return ids
        if payload is None:
            return ids
        try:
            message = unpack(payload)
        except ValueError:
            return ids
        if not isinstance(message, dict):
            return ids
        if valid_id(message.get("id")):
            ids[message["id"]] += 1


_CODES = {code.value for code in ErrorCode}


def check_frame(frame_: dict[str, Any]) -> None:
    """A frame the server wrote is a well-formed response or event (PROTOCOL.md 2)."""
    if "event" in frame_:
        assert isinstance(frame_["event"], str) and isinstance(frame_["data"], dict), frame_
        if frame_["event"] == "error":
            assert frame_["data"]["code"] in _CODES - {"internal"}, frame_
        return
    assert valid_id(frame_.get("id")), frame_
    if "error" in frame_:
        error = frame_["error"]
        assert set(error) <= {"code", "message", "details"}, frame_
        assert error["code"] in _CODES - {"internal"}, frame_
        assert isinstance(error["message"], str) and error["message"], frame_
        assert isinstance(error.get("details", {}), dict), frame_
    else:
        assert isinstance(frame_["result"], dict), frame_


def is_closing_notice(frame_: dict[str, Any]) -> bool:
    """What a connection must get before the server closes it: an ``error``
    event, ``session.ended``, or a ``protocol_version`` answer (PROTOCOL.md 3.1)."""
    if frame_.get("event") in ("error", "session.ended"):
        return True
    return frame_.get("error", {}).get("code") == "protocol_version"


def exchange(wire: Wire, state: str, stream: bytes, cuts: list[int]) -> None:
    """Feed ``stream`` (cut at ``cuts``) to a connection in ``state`` and check
    the dispatcher's properties."""
    proto, transport = connect_as(wire, state)
    with ErrorLog() as errors:
        for piece in cut(stream, cuts):
            proto.dataReceived(piece)  # nothing may escape
        wire.harness.clock.advance(0)  # closes scheduled "after this answer"
        frames = transport.new_frames()
        closed = not transport.connected
        if not closed:
            transport.loseConnection()
    assert not errors.events, [e.get("log_format") for e in errors.events]
    for frame_ in frames:
        check_frame(frame_)
        # Shown by --hypothesis-show-statistics: how deep the examples got.
        event(f"answer {frame_['error']['code']}" if "error" in frame_ else
              f"event {frame_['event']}" if "event" in frame_ else "answer result")
    answered = Counter(f["id"] for f in frames if "event" not in f)
    asked = requests_in(stream)
    if closed:
        # A protocol error (or logout, or a refused hello) may cut the stream short:
        # no request is answered twice, nothing unasked is answered, and the peer
        # was told why.
        assert all(answered[i] <= asked[i] for i in answered), (answered, asked)
        assert any(is_closing_notice(f) for f in frames), frames
    else:
        assert answered == asked, (answered, asked)


_states = st.sampled_from((FRESH, ANONYMOUS, LOGGED_IN))


@settings(max_examples=examples(100), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(state=_states, frames=frame_streams(), cuts=_cuts)
def test_the_dispatcher_answers_every_request_once_or_closes_with_a_reason(
        wire, state, frames, cuts):
    """Any frames (requests with good, bad or missing id/op/args, any msgpack
    value, junk, bad lengths), cut anywhere, to a fresh, an anonymous or a
    logged-in connection: no exception escapes dataReceived, nothing is logged
    as an error, no ``internal`` answer; each request with a valid id gets
    exactly one answer, unless the connection was closed after an ``error``
    event (or a refused hello, or logout)."""
    exchange(wire, state, b"".join(frames), cuts)


@settings(max_examples=examples(50), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(state=_states, stream=st.binary(max_size=200), cuts=_cuts)
def test_the_dispatcher_survives_raw_bytes(wire, state, stream, cuts):
    """Bytes without structure: the same properties."""
    exchange(wire, state, stream, cuts)


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_logged_in_requests_with_schema_valid_args_are_answered(wire, data):
    """Requests whose arguments pass validation reach the services with edge
    values (largest ids, longest strings and lists): each is answered once,
    never with ``internal``, and the connection stays open unless the op
    closes it (logout) or the frame is over the limit."""
    frames = []
    for request_id in range(1, data.draw(st.integers(1, 4), label="requests") + 1):
        name = data.draw(st.sampled_from(sorted(OPS)), label="op")
        args = data.draw(valid_args(OPS[name], extra_keys=False, known=wire.known),
                         label=f"args of {name}")
        frames.append(prefixed(packed({"id": request_id, "op": name, "args": args})))
    exchange(wire, LOGGED_IN, b"".join(frames), [])


@pytest.mark.parametrize("state", [FRESH, ANONYMOUS])
def test_an_oversized_frame_before_login_is_refused_with_too_large(wire, state):
    """The pre-login limit applies before login (PROTOCOL.md 1)."""
    proto, transport = connect_as(wire, state)
    proto.dataReceived((PRE_LOGIN_MAX_FRAME + 1).to_bytes(4, "big"))
    frames = transport.new_frames()
    assert frames[-1]["event"] == "error" and frames[-1]["data"]["code"] == "too_large"
    assert not transport.connected


# -- (d) the client core ---------------------------------------------------------------------


@st.composite
def server_frames(draw: st.DrawFn, requests: int) -> bytes:
    """One frame a hostile server could send: an answer to a request (asked or
    not) with any result or error, an event with any data, any value, junk."""
    kind = draw(st.integers(0, 6))
    request_id = draw(st.one_of(st.integers(0, requests + 2), wire_values(3)))
    if kind == 0:
        return prefixed(packed({"id": request_id, "result": draw(wire_values(8))}))
    if kind == 1:
        error = draw(st.one_of(
            wire_values(8),
            st.fixed_dictionaries({"code": st.one_of(st.sampled_from(sorted(_CODES)),
                                                     wire_values(2)),
                                   "message": wire_values(2)},
                                  optional={"details": wire_values(4)})))
        return prefixed(packed({"id": request_id, "error": error}))
    if kind == 2:
        return prefixed(packed({"event": draw(st.one_of(st.text(max_size=12), wire_values(2))),
                                "data": draw(wire_values(8))}))
    if kind == 3:
        return prefixed(packed(draw(wire_values(8))))
    if kind == 4:
        return prefixed(draw(st.binary(min_size=1, max_size=30)))
    if kind == 5:
        return draw(st.binary(max_size=12))
    return draw(st.sampled_from((0, 2**20 + 1, 2**32 - 1))).to_bytes(4, "big")


@st.composite
def server_streams(draw: st.DrawFn) -> tuple[int, bytes]:
    requests = draw(st.integers(0, 5))
    frames = draw(st.lists(server_frames(requests), max_size=6))
    return requests, b"".join(frames)


@settings(max_examples=examples(100), deadline=None)
@given(conversation=server_streams(), cuts=_cuts)
def test_the_client_core_survives_any_server(conversation, cuts):
    """Whatever a server sends, cut anywhere, the client core returns events
    (a str name, a map of data), resolves futures with a map, rejects them
    with ChatError, or raises ProtocolError — nothing else."""
    requests, stream = conversation
    core = ClientCore()
    outcomes: list[list[Any]] = []
    for _ in range(requests):
        outcome: list[Any] = []
        core.request("session.ping").addCallbacks(outcome.append, outcome.append)
        outcomes.append(outcome)
    for piece in cut(stream, cuts):
        try:
            events = core.receive_data(piece)
        except ProtocolError:
            break  # the caller closes the connection
        for received in events:
            assert isinstance(received, Event)
            assert isinstance(received.name, str) and isinstance(received.data, dict)
    for outcome in outcomes:
        assert len(outcome) <= 1
        if outcome:
            result = outcome[0]
            if isinstance(result, dict):
                continue
            assert result.check(ChatError), result
            assert isinstance(result.value.message, str)
    core.connection_lost()
    for outcome in outcomes:
        assert len(outcome) == 1


def test_a_server_map_key_that_cannot_be_hashed_is_a_protocol_error():
    """A map with an array as a key cannot be decoded: ProtocolError, not TypeError."""
    core = ClientCore()
    with pytest.raises(ProtocolError):
        core.receive_data(prefixed(b"\x81\x90\x01"))



# -- regressions found by the properties above ----------------------------------------------


def test_an_id_less_first_frame_other_than_hello_is_told_why_before_the_close(wire):
    """PROTOCOL.md 3.1: a first request other than session.hello ends the
    connection; without an id there is nothing to answer, so the server says
    why in an ``error`` event (protocol_version) instead of closing silently."""
    proto, transport = connect_as(wire, FRESH)
    send(proto, {"op": "auth.change_password"})
    frames = transport.new_frames()
    assert frames == [{"event": "error", "data": {
        "code": "protocol_version", "message": "the first request must be session.hello"}}]
    assert not transport.connected
