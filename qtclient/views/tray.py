"""Desktop notifications and the unread count, through a system-tray icon."""

from __future__ import annotations

from qtclient.i18n import _, ngettext
from qtclient.qt import (
    ID,
    QAction,
    QApplication,
    QMenu,
    QObject,
    QSystemTrayIcon,
    QWidget,
    pyqtSignal,
)
from qtclient.views.icons import app_icon

#: How long a notification bubble stays, in milliseconds.
NOTIFICATION_MS = 6000


class TrayNotifier(QObject):
    """The tray icon (badge and tooltip with the unread count) and notifications.

    Desktops without a system tray (and the ``offscreen`` platform of the
    tests) have no QSystemTrayIcon: then a notification only asks the window
    manager to draw attention to the window (``QApplication.alert``), and the
    count stays in the window title.

    With several accounts the app names the account in the notification's
    title; a click on it says which account and room it was about.

    Args:
        window: the main window (alerted, and raised from the tray).

    Attributes:
        current_account: the key of the account shown; its notifications are
            left out while the window has the focus (the user sees it), those of
            the other accounts are not.

    Signals:
        shown(title, text): a notification was given (whichever way).
        activated(account, room_id): the user clicked a notification or the tray
            icon (account "" and room -1 when none is attached).
        quit_requested(): "Quit" from the tray menu.
    """

    shown = pyqtSignal(str, str)
    activated = pyqtSignal(str, ID)
    quit_requested = pyqtSignal()

    def __init__(self, window: QWidget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self.enabled = True
        self.unread = 0
        self.current_account = ""
        #: (account, room id) of the last notification: what a click on it opens.
        self.last: tuple[str, int] = ("", -1)
        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(app_icon(), self)
            menu = QMenu(window)
            self._show_action = QAction(menu)
            self._show_action.triggered.connect(lambda: self.activated.emit("", -1))
            self._quit_action = QAction(menu)
            self._quit_action.triggered.connect(self.quit_requested.emit)
            menu.addAction(self._show_action)
            menu.addAction(self._quit_action)
            self.tray.setContextMenu(menu)
            self.tray.messageClicked.connect(lambda: self.activated.emit(*self.last))
            self.tray.activated.connect(self._tray_clicked)
        self.retranslate()

    @property
    def available(self) -> bool:
        """Whether a tray icon is shown."""
        return self.tray is not None

    def show_icon(self, visible: bool) -> None:
        """Show the tray icon while logged in, hide it otherwise."""
        if self.tray is not None:
            self.tray.setVisible(visible)

    def retranslate(self) -> None:
        """Re-read texts after a language switch."""
        if self.tray is not None:
            self._show_action.setText(_("Show chatnet"))
            self._quit_action.setText(_("Quit"))
        self.set_unread(self.unread)

    def tooltip(self) -> str:
        """The tray tooltip for the current unread count."""
        if not self.unread:
            return _("chatnet — no unread messages")
        return ngettext("chatnet — {n} unread message", "chatnet — {n} unread messages",
                        self.unread).format(n=self.unread)

    def set_unread(self, count: int) -> None:
        """Show ``count`` unread messages on the icon and in the tooltip."""
        self.unread = count
        if self.tray is not None:
            self.tray.setIcon(app_icon(count))
            self.tray.setToolTip(self.tooltip())

    def notify(self, title: str, text: str, room_id: int = -1, account: str = "") -> None:
        """Notify the user, unless notifications are off or the window has the
        focus and shows ``account``."""
        if not self.enabled or (self.window.isActiveWindow()
                                and account == self.current_account):
            return
        self.last = (account, room_id)
        if self.tray is not None and self.tray.supportsMessages():
            self.tray.showMessage(title, text, app_icon(self.unread), NOTIFICATION_MS)
        else:
            QApplication.alert(self.window)
        self.shown.emit(title, text)

    def _tray_clicked(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.activated.emit("", -1)
