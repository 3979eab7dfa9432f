"""What must hold whatever a peer sends, checked by property tests and fuzz targets.

:class:`WireProbe` drives the real server protocol over a synchronous harness
(:mod:`tests.support.synchronous`): :meth:`WireProbe.exchange` feeds a byte
stream to a fresh, anonymous or logged-in connection and raises
``AssertionError`` if the dispatcher broke a rule (module constants below).
:func:`client_exchange` does the same for the client core against a hostile
server. ``tests/core/test_fuzz_properties.py`` (Hypothesis) and
``fuzz/*.py`` (atheris) share them, so both hunt for the same bugs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from chatnet.client.core import ClientCore, Event, ProtocolError
from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.codec import unpack
from chatnet.wire.framing import FrameDecoder, FrameError
from chatnet.wire.server import ChatServerProtocol
from tests.support.harness import FrameTransport, Harness, build_synchronous_harness, hello, send
from tests.support.server import PASSWORD
from tests.support.synchronous import run_now

#: Connection states a stream can be fed in.
FRESH, ANONYMOUS, LOGGED_IN = "fresh", "anonymous", "logged in"
STATES = (FRESH, ANONYMOUS, LOGGED_IN)

#: Error codes a peer may see (``internal`` means a bug: never expected here).
CODES = frozenset(code.value for code in ErrorCode)


class ErrorLog:
    """Collects error-level log events while installed (a context manager)."""

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

    def describe(self) -> str:
        """The collected events as text, tracebacks included."""
        texts = []
        for event in self.events:
            text = formatEvent(event)
            if "log_failure" in event:
                text += "\n" + event["log_failure"].getTraceback()
            texts.append(text)
        return "\n".join(texts)


def valid_id(value: Any) -> bool:
    """The server's rule for a request id (PROTOCOL.md 2: an integer >= 1, 64-bit)."""
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


def check_frame(frame: dict[str, Any]) -> None:
    """A frame the server wrote is a well-formed response or event (PROTOCOL.md 2),
    and never ``internal``."""
    if "event" in frame:
        assert isinstance(frame["event"], str) and isinstance(frame["data"], dict), frame
        if frame["event"] == "error":
            assert frame["data"]["code"] in CODES - {"internal"}, frame
        return
    assert valid_id(frame.get("id")), frame
    if "error" in frame:
        error = frame["error"]
        assert set(error) <= {"code", "message", "details"}, frame
        assert error["code"] in CODES - {"internal"}, frame
        assert isinstance(error["message"], str) and error["message"], frame
        assert isinstance(error.get("details", {}), dict), frame
    else:
        assert isinstance(frame["result"], dict), frame


def is_closing_notice(frame: dict[str, Any]) -> bool:
    """What a connection must get before the server closes it: an ``error``
    event, ``session.ended``, or a ``protocol_version`` answer (PROTOCOL.md 3.1)."""
    if frame.get("event") in ("error", "session.ended"):
        return True
    error = frame.get("error")
    return isinstance(error, dict) and error.get("code") == "protocol_version"


@dataclass
class WireProbe:
    """A synchronous harness with ``alice`` to log in as, a room she owns with
    ``bob`` in it, and one message.

    Attributes:
        known: field name → values that exist on the server (for
            :func:`tests.support.wire_strategies.valid_args`).
        exchanges: streams fed so far.
    """

    harness: Harness
    user_id: int
    known: dict[str, list[Any]] = field(default_factory=dict)
    exchanges: int = 0

    @classmethod
    def build(cls, directory: Path) -> WireProbe:
        """Wire a server over a new SQLite file in ``directory`` and populate it."""
        harness = build_synchronous_harness(directory)
        alice = run_now(harness.services.accounts.create_user("alice", PASSWORD))
        run_now(harness.services.accounts.create_user("bob", PASSWORD))
        probe = cls(harness, alice.user_id)
        proto, transport = probe.connect(LOGGED_IN)
        send(proto, {"id": 3, "op": "room.create", "args": {
            "name": "fuzz", "visibility": "public", "members": ["bob"]}})
        room = transport.frames[-1]["result"]
        send(proto, {"id": 4, "op": "msg.send", "args": {
            "room_id": room["room_id"], "body": "hello", "client_msg_id": "fuzz-1"}})
        message = transport.frames[-1]["result"]
        transport.loseConnection()
        probe.known.update(room_id=[room["room_id"]], msg_id=[message["msg_id"]],
                           reply_to=[message["msg_id"]], seq=[0, message["seq"]],
                           before_seq=[message["seq"] + 1], after_seq=[0],
                           username=["alice", "bob"], sender=["alice", "bob"],
                           members=[["bob"]], mentions=[["bob"]])
        return probe

    def close(self) -> None:
        """Close the store."""
        self.harness.close()

    def connect(self, state: str) -> tuple[ChatServerProtocol, FrameTransport]:
        """A new connection in ``state``: fresh, after hello, or logged in as alice."""
        harness = self.harness
        # Let rate limits, budgets and login lock-outs left by earlier streams refill.
        harness.clock.advance(3600)
        proto, transport = harness.connect()
        if state != FRESH:
            hello(proto, transport)
        if state == LOGGED_IN:
            token = run_now(harness.services.accounts.issue_token(self.user_id))
            send(proto, {"id": 2, "op": "auth.resume", "args": {"token": token}})
            assert "result" in transport.frames[-1], transport.frames[-1]
        transport.new_frames()
        return proto, transport

    def exchange(self, state: str, pieces: list[bytes]) -> list[dict[str, Any]]:
        """Feed ``pieces`` (one stream, cut) to a new connection in ``state``.

        Returns:
            the frames the server wrote in answer.

        Raises:
            AssertionError: a rule was broken: an error was logged, a frame is
                malformed or ``internal``, a request with a valid id was not
                answered exactly once while the connection stayed open, or the
                connection was closed without an ``error`` event,
                ``session.ended`` or ``protocol_version``.
            Exception: whatever escaped ``dataReceived`` (a bug too).
        """
        self.exchanges += 1
        proto, transport = self.connect(state)
        with ErrorLog() as errors:
            for piece in pieces:
                proto.dataReceived(piece)
            self.harness.clock.advance(0)  # closes scheduled "after this answer"
            frames = transport.new_frames()
            closed = not transport.connected
            if not closed:
                transport.loseConnection()
        assert not errors.events, errors.describe()
        for frame in frames:
            check_frame(frame)
        answered = Counter(f["id"] for f in frames if "event" not in f)
        asked = requests_in(b"".join(pieces))
        if closed:
            # A protocol error (or logout, or a refused hello) may cut the stream
            # short: no request is answered twice, nothing unasked is answered, and
            # the peer was told why.
            assert all(answered[i] <= asked[i] for i in answered), (answered, asked)
            assert any(is_closing_notice(f) for f in frames), frames
        else:
            assert answered == asked, (answered, asked)
        return frames


def client_exchange(requests: int, pieces: list[bytes]) -> list[Event]:
    """Feed a hostile server's ``pieces`` to a client core with ``requests``
    requests pending.

    Returns:
        the events the core returned (until a ProtocolError, if any).

    Raises:
        AssertionError: the core returned something other than events, resolved
            a future with something other than a map, rejected one with
            something other than ChatError, or settled one twice.
        Exception: whatever escaped ``receive_data`` other than ProtocolError.
    """
    core = ClientCore()
    outcomes: list[list[Any]] = []
    for _ in range(requests):
        outcome: list[Any] = []
        core.request("session.ping").addCallbacks(outcome.append, outcome.append)
        outcomes.append(outcome)
    received: list[Event] = []
    for piece in pieces:
        try:
            events = core.receive_data(piece)
        except ProtocolError:
            break  # the caller closes the connection
        for event in events:
            assert isinstance(event, Event), event
            assert isinstance(event.name, str) and isinstance(event.data, dict), event
        received += events
    for outcome in outcomes:
        assert len(outcome) <= 1, outcome
        if outcome and not isinstance(outcome[0], dict):
            failure = outcome[0]
            assert failure.check(ChatError), failure
            assert isinstance(failure.value.message, str), failure
    core.connection_lost()
    for outcome in outcomes:
        assert len(outcome) == 1, outcome
    return received
