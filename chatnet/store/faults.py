"""Storage faults: answered ``unavailable``, logged once per burst.

A full disk, a database locked by another program, a read-only file or a lost
connection to PostgreSQL are faults of the machine, not of a request. Each
failed operation becomes :class:`~chatnet.errors.StorageUnavailable` (code
``unavailable``: try again), the server keeps serving whatever does not need
the broken part, and recovers by itself once the fault is gone: nothing is
cached or disabled on the way.

The log gets one warning when a burst starts (and a reminder every
:data:`REMINDER_INTERVAL` seconds while it lasts), not one per request, and an
info line when it ends: a burst ends when every kind of operation that failed
in it (each named transaction, file writes) has succeeded again. Operations
that kept working meanwhile (reads while writes are locked out) do not end it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.errors import StorageUnavailable

#: Seconds between reminders while a burst of storage faults lasts.
REMINDER_INTERVAL = 300.0


class StorageFaults:
    """Counts storage faults and logs their bursts.

    Args:
        clock: ``seconds()`` for the reminder interval (the reactor).

    Attributes:
        failing: what failed in the current burst -> how many times.
        failures: failed operations in the current burst.
    """

    log = Logger()

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.failing: dict[str, int] = {}
        self.failures = 0
        self._warned_at: float | None = None

    def failed(self, what: str, error: BaseException) -> StorageUnavailable:
        """Record that ``what`` failed because of ``error`` (a storage fault).

        Args:
            what: the operation (a transaction's name, ``"file write"`` …).
            error: the engine's or the OS's exception, for the log.

        Returns:
            the error to raise instead.
        """
        first = not self.failing
        self.failing[what] = self.failing.get(what, 0) + 1
        self.failures += 1
        now = self.clock.seconds()
        if first or self._warned_at is None or now - self._warned_at >= REMINDER_INTERVAL:
            self._warned_at = now
            self.log.warn(
                "storage unavailable ({what}: {error}); requests that need it are answered "
                "'unavailable' until it recovers ({failures} failure(s) so far in this burst)",
                what=what, error=f"{type(error).__name__}: {error}", failures=self.failures)
        return StorageUnavailable()

    def succeeded(self, what: str) -> None:
        """Record that ``what`` worked; ends the burst once nothing is failing."""
        if self.failing.pop(what, None) is not None and not self.failing:
            self.log.info("storage available again after {failures} failed operation(s)",
                          failures=self.failures)
            self.failures = 0
            self._warned_at = None


def log_background_failure(log: Logger, what: str) -> Callable[[Failure], None]:
    """An errback for background work (expiry, clean-up, logout bookkeeping).

    A storage fault is left out (:class:`StorageFaults` has warned about the
    burst already; the work runs again later); anything else is logged as a
    failure with ``what`` as the message.

    Args:
        log: the caller's logger.
        what: what failed, e.g. ``"message expiry failed"``.
    """
    def errback(failure: Failure) -> None:
        if not failure.check(StorageUnavailable):
            log.failure(what, failure)

    return errback
