"""A reactor whose "threads" run work at once, so a whole server runs synchronously.

:class:`SynchronousReactor` is a :class:`~twisted.internet.testing.MemoryReactorClock`
(time moves only when a test advances it) whose thread pool runs each call in
the calling thread and whose ``callFromThread`` calls at once. A server wired
over it with a real SQLite store (:func:`tests.support.harness.build_harness`
with ``synchronous=True``) answers every request that needs only the database,
the disk and Argon2 before ``dataReceived`` returns: nothing waits on a real
thread, so property tests and fuzz targets need no reactor and see the same
outcome for the same input every time.

Everything except the threads is real: the store, SQL, services and the
protocol are what production runs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from chatnet.cred.checkers import PasswordHasher

T = TypeVar("T")


def run_now(work: Coroutine[Any, Any, T] | Deferred[T]) -> T:
    """The result of a coroutine or Deferred that completes without waiting
    (everything it awaits runs over a :class:`SynchronousReactor`).

    Raises:
        AssertionError: it waited on something (a timer, a real thread).
        Exception: whatever it failed with.
    """
    d = Deferred.fromCoroutine(work) if not isinstance(work, Deferred) else work
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "this work waited on something that does not run synchronously"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    result: T = outcome[0]
    return result


class SynchronousThreadPool:
    """The part of :class:`twisted.python.threadpool.ThreadPool` that
    ``deferToThreadPool`` and ``adbapi`` use, running each call at once."""

    started = True

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Call ``func`` now."""
        func(*args, **kw)

    def callInThreadWithCallback(self, onResult: Callable[[bool, Any], None] | None,
                                 func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Call ``func`` now and hand ``onResult`` ``(True, result)`` or
        ``(False, Failure)``, as a worker thread would."""
        try:
            result = func(*args, **kw)
        except BaseException:
            if onResult is not None:
                onResult(False, Failure())
            return
        if onResult is not None:
            onResult(True, result)


class SynchronousReactor(MemoryReactorClock):
    """A memory reactor with a fake clock whose thread pool is synchronous."""

    def __init__(self) -> None:
        super().__init__()
        self.threadpool = SynchronousThreadPool()

    def getThreadPool(self) -> SynchronousThreadPool:  # type: ignore[override]
        """The synchronous pool."""
        return self.threadpool

    def callInThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Call now."""
        callable(*args, **kw)

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Call now: the "thread" is the caller."""
        callable(*args, **kw)


class SynchronousHasher(PasswordHasher):
    """A :class:`PasswordHasher` whose hashes run in the caller's thread."""

    def _pool(self) -> Any:
        return SynchronousThreadPool()

    def stop(self) -> None:
        """No threads to stop."""
