"""The account strip: a narrow column at the main window's left edge, one button
per account (its initials on a colour of its own, a red badge with its unread
count), then "+" to add one. Slack's workspaces, Element's missing feature.

Clicking a button switches to that account; right-click offers to sign in
again (when signed out) or to sign out and remove it. The strip only shows
and emits: :mod:`qtclient.app` decides what happens.
"""

from __future__ import annotations

import zlib

from qtclient.i18n import _, ngettext
from qtclient.qt import (
    QAbstractButton,
    QAction,
    QColor,
    QContextMenuEvent,
    QEvent,
    QFont,
    QMenu,
    QPainter,
    QPaintEvent,
    QPalette,
    QRectF,
    QSize,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

#: Width of the strip, and the side of an account's square, in pixels.
STRIP_WIDTH = 64
BUTTON_SIZE = 44
#: Background of the strip (dark, as in Slack and Element's space bar).
STRIP_COLOUR = "#202124"
#: Colours an account's square takes, chosen by a hash of its key.
#: (None red: the unread badge is red.)
ACCOUNT_COLOURS = ("#1a73e8", "#188038", "#a142f4", "#e37400", "#3f51b5", "#129eaf",
                   "#5f6368", "#795548")


def account_colour(key: str) -> QColor:
    """The colour of an account's button (the same on every run)."""
    return QColor(ACCOUNT_COLOURS[zlib.crc32(key.encode()) % len(ACCOUNT_COLOURS)])


class AccountButton(QAbstractButton):
    """One account: rounded square with the initials, the unread badge, and a
    white bar at the strip's edge while it is the account shown.

    Attributes:
        key: the account's :attr:`~qtclient.accounts.Account.key`.
        unread: the badge's number (0: no badge).
        signed_in: False draws the button faded (the account needs a password).
        current: whether it is the account shown (the white bar, a squarer shape).
    """

    def __init__(self, key: str, initials: str, title: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.initials = initials
        self.title = title
        self.unread = 0
        self.signed_in = False
        self.current = False
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        # Repainted when the pointer comes and goes (hovering lightens it).
        self.setAttribute(Qt.WidgetAttribute.WA_Hover)
        self.setFixedSize(QSize(STRIP_WIDTH, BUTTON_SIZE + 8))
        self.update_tooltip()

    def update_tooltip(self) -> None:
        """Title, then whether signed in and how much is unread."""
        if not self.signed_in:
            state = _("Not signed in — click to sign in")
        elif self.unread:
            state = ngettext("{n} unread message", "{n} unread messages",
                             self.unread).format(n=self.unread)
        else:
            state = _("No unread messages")
        self.setToolTip(f"{self.title}\n{state}")
        self.setAccessibleName(self.title)

    def paintEvent(self, e: QPaintEvent | None) -> None:
        """The square, the initials, the badge and the current-account bar."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        left = (STRIP_WIDTH - BUTTON_SIZE) / 2
        square = QRectF(left, 4, BUTTON_SIZE, BUTTON_SIZE)
        if self.current:
            painter.setBrush(QColor("white"))
            painter.drawRoundedRect(QRectF(0, 12, 4, BUTTON_SIZE - 16), 2, 2)
        colour = account_colour(self.key)
        if not self.signed_in:
            painter.setOpacity(0.45)
        elif not self.current and not self.underMouse():
            colour = colour.darker(115)
        painter.setBrush(colour)
        radius = 12 if self.current else BUTTON_SIZE / 2
        painter.drawRoundedRect(square, radius, radius)
        font = QFont(self.font())
        font.setBold(True)
        font.setPixelSize(16)
        painter.setFont(font)
        painter.setPen(QColor("white"))
        painter.drawText(square, Qt.AlignmentFlag.AlignCenter, self.initials)
        painter.setOpacity(1.0)
        if self.unread and self.signed_in:
            text = "99+" if self.unread > 99 else str(self.unread)
            small = QFont(font)
            small.setPixelSize(11)
            painter.setFont(small)
            width = max(18.0, painter.fontMetrics().horizontalAdvance(text) + 10.0)
            badge = QRectF(left + BUTTON_SIZE - width + 6, 0, width, 18)
            painter.setPen(QColor(STRIP_COLOUR))
            painter.setBrush(QColor("#d93025"))
            painter.drawRoundedRect(badge, 9, 9)
            painter.setPen(QColor("white"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        painter.end()



class AccountStrip(QWidget):
    """The column of account buttons and the "+" button.

    Signals:
        chosen(key): the user clicked an account (or chose it by keyboard).
        add_requested(): "+" was clicked.
        sign_in_requested(key): "Sign in…" from a signed-out account's menu.
        remove_requested(key): "Sign out and remove" from an account's menu.
    """

    chosen = pyqtSignal(str)
    add_requested = pyqtSignal()
    sign_in_requested = pyqtSignal(str)
    remove_requested = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedWidth(STRIP_WIDTH)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(STRIP_COLOUR))
        self.setPalette(palette)
        self.buttons: dict[str, AccountButton] = {}
        self.add_button = QToolButton()
        self.add_button.setText("+")
        self.add_button.setFixedSize(QSize(BUTTON_SIZE, BUTTON_SIZE))
        self.add_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.add_button.setStyleSheet(
            "QToolButton { color: #e8eaed; background: #3c4043; border: none;"
            f" border-radius: {BUTTON_SIZE // 2}px; font-size: 24px; }}"
            "QToolButton:hover { background: #188038; color: white; }")
        self.add_button.clicked.connect(self.add_requested)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 8, 0, 8)
        self._layout.setSpacing(4)
        self._layout.addStretch(1)
        self._layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.retranslate()

    def retranslate(self) -> None:
        """Re-read texts after a language switch."""
        self.add_button.setToolTip(_("Add an account…"))
        for button in self.buttons.values():
            button.update_tooltip()

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def add_account(self, key: str, initials: str, title: str) -> AccountButton:
        """A button for a new account, after the others."""
        button = AccountButton(key, initials, title)
        button.clicked.connect(lambda _checked=False, k=key: self.chosen.emit(k))
        self.buttons[key] = button
        self._layout.insertWidget(len(self.buttons) - 1, button)
        return button

    def remove_account(self, key: str) -> None:
        """Take an account's button away."""
        button = self.buttons.pop(key, None)
        if button is not None:
            self._layout.removeWidget(button)
            button.deleteLater()

    def keys(self) -> list[str]:
        """The accounts, top to bottom."""
        return list(self.buttons)

    def set_current(self, key: str) -> None:
        """Mark ``key`` as the account shown."""
        for k, button in self.buttons.items():
            if button.current != (k == key):
                button.current = k == key
                button.update()

    def set_unread(self, key: str, count: int) -> None:
        """The badge of ``key``'s button."""
        button = self.buttons.get(key)
        if button is not None and button.unread != count:
            button.unread = count
            button.update_tooltip()
            button.update()

    def set_signed_in(self, key: str, signed_in: bool) -> None:
        """Draw ``key``'s button faded while it is not signed in."""
        button = self.buttons.get(key)
        if button is not None and button.signed_in != signed_in:
            button.signed_in = signed_in
            button.update_tooltip()
            button.update()

    def account_actions(self, key: str, menu: QMenu) -> list[QAction]:
        """Fill ``menu`` with what can be done to the account ``key``
        (``objectName``: ``sign_in`` while signed out, ``remove``)."""
        button = self.buttons.get(key)
        if button is None:
            return []
        actions = []
        if not button.signed_in:
            sign_in = QAction(_("Sign in…"), menu)
            sign_in.setObjectName("sign_in")
            sign_in.triggered.connect(lambda: self.sign_in_requested.emit(key))
            actions.append(sign_in)
        remove = QAction(_("Sign out and remove"), menu)
        remove.setObjectName("remove")
        remove.triggered.connect(lambda: self.remove_requested.emit(key))
        actions.append(remove)
        for action in actions:
            menu.addAction(action)
        return actions

    def contextMenuEvent(self, e: QContextMenuEvent | None) -> None:
        """Right click on an account: its menu."""
        if e is None:
            return
        child = self.childAt(e.pos())
        if isinstance(child, AccountButton):
            menu = QMenu(self)
            if self.account_actions(child.key, menu):
                menu.exec(e.globalPos())
