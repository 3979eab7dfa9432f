"""Work the server does on its own, every so often (expiry, clean-up, watches).

:class:`PeriodicJob` is a ``TimerService`` whose job is a coroutine: it runs
at start and then every ``interval`` seconds on the injected clock,
``stopService`` waits for a run in progress, and a run that fails is logged
(a storage fault only as the storage warning it already caused: the next run
tries again) without stopping the loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatnet.services import Clock
from chatnet.store.faults import log_background_failure


class PeriodicJob(TimerService):
    """A coroutine run every ``interval`` seconds (a ``TimerService``).

    Subclasses implement :meth:`run_once` and name the job in
    :attr:`failure_message`.

    Args:
        interval: seconds between runs.
        clock: drives the loop and tells the time (``time_source``).
    """

    log = Logger()
    #: Logged with the failure when a run fails.
    failure_message = "a periodic job failed"

    def __init__(self, interval: float, clock: Clock) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock  # TimerService drives its loop with it
        self.time_source: Clock = clock

    async def run_once(self) -> Any:
        """Do the job once; what it returns is for callers and tests."""
        raise NotImplementedError

    def _tick(self) -> Deferred[Any]:
        d = Deferred.fromCoroutine(self.run_once())
        d.addErrback(log_background_failure(self.log, self.failure_message))
        return d


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrim(PeriodicJob):
    """Every ``interval`` seconds, give the operating system back the memory the
    C allocator keeps after a burst (glibc ``malloc_trim``).

    A flood of connections (TLS state) or large pages is freed when it ends, but
    glibc keeps the freed pages in its heaps, so the server's RSS would stay at
    its peak; trimming returns the whole free pages. Python's own small-object
    arenas are returned by Python. Where the C library has no ``malloc_trim``
    the job does nothing.

    Args:
        interval: seconds between trims.
        clock: the reactor (or a test clock).
    """

    failure_message = "trimming the heap failed"

    def __init__(self, interval: float, clock: Clock) -> None:
        super().__init__(interval, clock)
        self._trim = _malloc_trim()

    async def run_once(self) -> bool:
        """Trim once. Returns whether memory was given back (False without glibc)."""
        return bool(self._trim(0)) if self._trim is not None else False
