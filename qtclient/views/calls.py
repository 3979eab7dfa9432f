"""Voice-call views: the bar under a conversation's header while in a call, and the
window that announces an incoming call (PROTOCOL.md 8).

Audio goes through :class:`qtclient.audio.CallAudio`; without a microphone
the call still connects and the bar says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from qtclient.audio import Ringer
from qtclient.i18n import _
from qtclient.qt import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    Qt,
    QTimer,
    QWidget,
)

if TYPE_CHECKING:
    from qtclient.controller import ChatController


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss`` from an hour) of a call's duration."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class CallBar(QWidget):
    """Who the call is with, how long it has lasted, and a hang-up button; hidden
    without a call.

    Args:
        state: the controller (its ``call``, signals and ``hang_up``).
    """

    def __init__(self, state: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("call_bar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#call_bar { background: #e6f4ea; border-radius: 4px; }")
        self.status = QLabel()
        self.hang_up_button = QPushButton()
        self.hang_up_button.setStyleSheet("background: #d93025; color: white; padding: 4px 12px;")
        self.hang_up_button.clicked.connect(state.hang_up)
        self.mute_button = QPushButton()
        self.mute_button.setCheckable(True)
        self.mute_button.toggled.connect(state.set_muted)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.status, 1)
        layout.addWidget(self.mute_button)
        layout.addWidget(self.hang_up_button)
        self._tick = QTimer(self)
        self._tick.setInterval(200)  # the speaking indicator follows the voices
        self._tick.timeout.connect(self.refresh)
        state.call_changed.connect(self.refresh)
        state.call_ended.connect(lambda _reason: self.refresh())
        self.retranslate()
        self.refresh()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.hang_up_button.setText(_("Hang up"))
        self.mute_button.setText(_("Mute"))
        self.refresh()

    def refresh(self) -> None:
        """Show the current call's state (or hide)."""
        call = self.state.call
        if call is None:
            self._tick.stop()
            self.mute_button.setChecked(False)
            self.hide()
            return
        who = self.state.call_label()
        if self.state.call_since is None:
            text = _("Calling {who}…").format(who=who)
        else:
            text = _("In a call with {who} · {duration}").format(
                who=who, duration=format_duration(time.monotonic() - self.state.call_since))
        audio = self.state.audio
        if audio is None or not audio.microphone:
            text += " — " + _("no microphone")
        speaking = self.state.speaking()
        if speaking:
            names = ", ".join(self.state.display_names.get(n, n) for n in speaking)
            text += " — " + _("speaking: {names}").format(names=names)
        self.status.setText(text)
        if not self._tick.isActive():
            self._tick.start()
        self.show()


class IncomingCall(QMessageBox):
    """A window announcing a call, with Answer and Decline; it closes by itself when
    the call stops ringing.

    Args:
        state: the controller.
        call_id: the ringing call.
        caller: the caller's name as shown.
        room: the conversation's name.
    """

    def __init__(self, state: ChatController, call_id: int, caller: str, room: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.call_id = call_id
        self.setWindowTitle(_("Incoming call"))
        self.setText(_("{caller} is calling ({room})").format(caller=caller, room=room))
        self.answer_button = self.addButton(_("Answer"), QMessageBox.ButtonRole.AcceptRole)
        self.decline_button = self.addButton(_("Decline"), QMessageBox.ButtonRole.RejectRole)
        self.setModal(False)
        self.buttonClicked.connect(self._clicked)
        #: Rings on the call's speaker while this window is up.
        self.ringer = Ringer(state.speaker, self)
        self.ringer.start()

    def hideEvent(self, event: Any) -> None:
        """Closed, answered or declined: the ringing stops."""
        self.ringer.stop()
        super().hideEvent(event)

    def _clicked(self, button: object) -> None:
        if button is self.answer_button:
            self.state.accept_call(self.call_id)
        else:
            self.state.reject_call(self.call_id)
