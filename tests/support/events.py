"""Waiting for what a connection receives, without sleeping.

:class:`EventLog` records every event of one
:class:`~chatnet.client.connection.ChatConnection`. ``await log.next("msg")``
returns the first matching event that has not been taken yet, whether it
arrived before the call or arrives later, and fails with a readable
``AssertionError`` after a timeout. To prove that something did *not* arrive,
first :func:`barrier` the connection (a ``session.ping`` round trip: anything
the server wrote to it earlier has been received by then), then look at
:meth:`EventLog.pending`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chatnet.client.connection import ChatConnection
from chatnet.client.core import Event

#: Seconds any single wait may take before the test fails.
TIMEOUT = 5.0

Predicate = Callable[[dict[str, Any]], bool]


def _describe(name: str, match: dict[str, Any], where: Predicate | None) -> str:
    parts = [f"{k}={v!r}" for k, v in match.items()]
    if where is not None:
        parts.append("where=<predicate>")
    return f"{name}({', '.join(parts)})"


def timeout_after(d: Any, seconds: float, what: str) -> Deferred[Any]:
    """A Deferred with ``d``'s result, or failing with ``AssertionError(what)`` unless
    ``d`` fires within ``seconds``.

    ``d`` itself is never fired by this function (it may belong to someone else, who
    will fire it later); a result it produces after the timeout is discarded.

    Args:
        d: a Deferred, or a coroutine (wrapped in a Deferred).
    """
    if inspect.iscoroutine(d):
        d = Deferred.fromCoroutine(d)
    mirror: Deferred[Any] = Deferred()

    def expire() -> None:
        if not mirror.called:
            mirror.errback(AssertionError(f"timed out after {seconds} s waiting for {what}"))

    timer = reactor.callLater(seconds, expire)  # type: ignore[attr-defined]

    def done(result: Any) -> None:
        if timer.active():
            timer.cancel()
        if not mirror.called:
            if isinstance(result, Failure):
                mirror.errback(result)
            else:
                mirror.callback(result)

    d.addBoth(done)
    return mirror


class EventLog:
    """Every event one connection receives, in order, with waiting by name and content.

    Args:
        conn: the connection to listen to (listening starts at once).
        label: a name for messages (e.g. the username).
    """

    def __init__(self, conn: ChatConnection, label: str = "") -> None:
        self.conn = conn
        self.label = label or "connection"
        self.seen: list[Event] = []
        self._taken: set[int] = set()
        self._waiters: list[tuple[str, dict[str, Any], Predicate | None, Deferred[Event]]] = []
        conn.add_listener(self._on_event)

    @staticmethod
    def _matches(event: Event, name: str, match: dict[str, Any],
                 where: Predicate | None) -> bool:
        if event.name != name:
            return False
        if any(event.data.get(k) != v for k, v in match.items()):
            return False
        return where is None or bool(where(event.data))

    def _on_event(self, event: Event) -> None:
        index = len(self.seen)
        self.seen.append(event)
        for waiter in list(self._waiters):
            name, match, where, d = waiter
            if d.called:
                self._waiters.remove(waiter)
                continue
            if self._matches(event, name, match, where):
                self._waiters.remove(waiter)
                self._taken.add(index)
                d.callback(event)
                return

    def next(self, name: str, where: Predicate | None = None, timeout: float = TIMEOUT,
             **match: Any) -> Deferred[Event]:
        """The first event called ``name`` not taken yet whose data has the given
        key/value pairs (and satisfies ``where``), now or when it arrives.

        Returns:
            a Deferred firing with the :class:`Event`; it fails with
            ``AssertionError`` (listing what did arrive) after ``timeout`` seconds.
        """
        for index, event in enumerate(self.seen):
            if index not in self._taken and self._matches(event, name, match, where):
                self._taken.add(index)
                d: Deferred[Event] = Deferred()
                d.callback(event)
                return d
        d = Deferred()
        self._waiters.append((name, match, where, d))
        what = f"{_describe(name, match, where)} on {self.label}"

        def explain(failure: Any) -> Any:
            self._waiters = [w for w in self._waiters if w[3] is not d]
            if failure.check(AssertionError):
                got = ", ".join(f"{e.name}{e.data!r}" for e in self.seen[-10:]) or "nothing"
                raise AssertionError(f"{failure.getErrorMessage()}; last events: {got}")
            return failure

        mirrored = timeout_after(d, timeout, what)
        mirrored.addErrback(explain)
        return mirrored

    def pending(self, name: str | None = None) -> list[Event]:
        """Events not taken by :meth:`next`, optionally only those called ``name``."""
        return [e for i, e in enumerate(self.seen)
                if i not in self._taken and (name is None or e.name == name)]

    def names(self) -> list[str]:
        """Names of all events received, in order."""
        return [e.name for e in self.seen]


#: Waits run before every :func:`barrier`'s ping: a cluster under test registers
#: one that lets every event already published by any node reach every node
#: (:meth:`tests.support.server.RunningCluster.settle`).
SETTLE: list[Callable[[], Any]] = []


async def barrier(conn: ChatConnection) -> None:
    """A ``session.ping`` round trip: afterwards, every frame the server wrote to
    ``conn`` before answering has been received and dispatched (in a cluster,
    after every node's earlier events reached every node)."""
    for settle in SETTLE:
        await timeout_after(settle(), TIMEOUT, "the cluster settling")
    await timeout_after(conn.request("session.ping"), TIMEOUT, "session.ping answer")


#: Seconds a server-initiated close may take. Shorter than the server's abort timer
#: (``chatnet.wire.server.CLOSE_GRACE``), so a close that happens only by that abort
#: fails the test.
CLOSE_TIMEOUT = 3.0


async def wait_lost(conn: ChatConnection, timeout: float = CLOSE_TIMEOUT) -> None:
    """Wait until ``conn`` has closed; fail after ``timeout`` seconds."""
    await timeout_after(conn.when_lost(), timeout, "the connection to close")


async def within(d: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Await ``d``, failing with ``AssertionError`` after ``timeout`` seconds."""
    return await timeout_after(d, timeout, what)


async def until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking every 10 ms; fail after ``timeout``.

    For server-side state no event announces (e.g. that the server has handled a
    connection's end); everything a client can observe is awaited as an event.
    """
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while not predicate():
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)
