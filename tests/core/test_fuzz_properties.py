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
from collections.abc import Iterator
from typing import Any

import pytest
import txaio
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from chatnet.client.core import ClientCore, ProtocolError
from chatnet.config import PRE_LOGIN_MAX_FRAME
from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.codec import unpack
from chatnet.wire.framing import PREFIX_SIZE, FrameDecoder, FrameError, encode_frame
from chatnet.wire.ops import OPS, TEXT_RULES, Field, Op
from tests.support.harness import send
from tests.support.wire_checks import (
    ANONYMOUS,
    CODES,
    FRESH,
    LOGGED_IN,
    STATES,
    WireProbe,
    client_exchange,
)
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


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireProbe]:
    """One synchronous server for the module's examples (tests.support.wire_checks)."""
    probe = WireProbe.build(tmp_path_factory.mktemp("dispatch"))
    yield probe
    probe.close()


def exchange(wire: WireProbe, state: str, stream: bytes, cuts: list[int]) -> None:
    """Feed ``stream`` (cut at ``cuts``) to a connection in ``state``; the probe
    checks the dispatcher's rules."""
    for frame_ in wire.exchange(state, cut(stream, cuts)):
        # Shown by --hypothesis-show-statistics: how deep the examples got.
        event(f"answer {frame_['error']['code']}" if "error" in frame_ else
              f"event {frame_['event']}" if "event" in frame_ else "answer result")


_states = st.sampled_from(STATES)


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
    proto, transport = wire.connect(state)
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
            st.fixed_dictionaries({"code": st.one_of(st.sampled_from(sorted(CODES)),
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
    client_exchange(requests, cut(stream, cuts))


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
    proto, transport = wire.connect(FRESH)
    send(proto, {"op": "auth.change_password"})
    frames = transport.new_frames()
    assert frames == [{"event": "error", "data": {
        "code": "protocol_version", "message": "the first request must be session.hello"}}]
    assert not transport.connected
