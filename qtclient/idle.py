"""Noticing that the user has stepped away (presence ``away`` after idle)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qtclient.qt import QCursor, QObject, QPoint, QTimer, pyqtSignal


class IdleWatcher(QObject):
    """Tells when the user has given no input for a while, and when they are back.

    Input is sensed cheaply: the pointer's position is sampled every few
    seconds, and the windows call :meth:`touch` on keyboard input and focus.
    (A Python event filter on the whole application would run for every Qt
    event, including the reactor's timers.)

    Args:
        idle_after: seconds without input before :attr:`went_idle`; 0 disables.
        clock: a monotonic clock in seconds (tests pass their own).
        sample_ms: how often the pointer is sampled, in milliseconds.

    Signals:
        went_idle(): no input for ``idle_after`` seconds.
        became_active(): input again after :attr:`went_idle`.
    """

    went_idle = pyqtSignal()
    became_active = pyqtSignal()

    def __init__(self, idle_after: float, clock: Callable[[], float] = time.monotonic,
                 sample_ms: int = 5000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.idle_after = idle_after
        self.clock = clock
        self.idle = False
        self._last_input = clock()
        self._last_pos: QPoint | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(sample_ms)
        self._timer.timeout.connect(self.check)

    def start(self) -> None:
        """Start sampling."""
        self._last_input = self.clock()
        self._timer.start()

    def stop(self) -> None:
        """Stop sampling (logged out)."""
        self._timer.stop()
        self.idle = False

    def touch(self) -> None:
        """The user did something."""
        self._last_input = self.clock()
        if self.idle:
            self.idle = False
            self.became_active.emit()

    def check(self) -> None:
        """Sample the pointer; signal the change to idle when it is due."""
        pos = QCursor.pos()
        if self._last_pos is not None and pos != self._last_pos:
            self.touch()
        self._last_pos = pos
        if (self.idle_after > 0 and not self.idle
                and self.clock() - self._last_input >= self.idle_after):
            self.idle = True
            self.went_idle.emit()
