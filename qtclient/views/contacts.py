"""The Contacts window of an account, the "Add contact" dialog and the profile card
(docs/protocol.md 4: ``contact.*``, ``user.get``).

Like the other small windows they are opened with ``open()`` and only emit
intents; the account's :class:`~qtclient.controller.ChatController` keeps the
lists (:attr:`contacts`, :attr:`incoming`, :attr:`outgoing`) current from the
``contact.*`` and ``presence`` events and says so with ``contacts_changed``.
"""

from __future__ import annotations

import contextlib
import html
from typing import TYPE_CHECKING, Any

from qtclient.i18n import _
from qtclient.models.avatars import AvatarCache
from qtclient.models.presence import STATE_COLOURS, STATE_NAMES, UNKNOWN, normalise
from qtclient.qt import (
    QContextMenuEvent,
    QDateTime,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QIcon,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QLocale,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSize,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.views.delegates import avatar_pixmap
from qtclient.views.dialogs import _Dialog

if TYPE_CHECKING:
    from qtclient.controller import ChatController

#: Where a list item keeps its username.
USERNAME = Qt.ItemDataRole.UserRole
#: The pictures in the Contacts window's lists, and on the profile card.
ROW_AVATAR, CARD_AVATAR = 28, 72


def profile_line(profile: dict[str, Any]) -> str:
    """ "Name (@username) — status text" for a list."""
    username = str(profile.get("username", ""))
    name = " ".join(str(profile.get("display_name") or username).split())
    line = f"{name} (@{username})"
    status = " ".join(str(profile.get("status_text") or "").split())
    return f"{line} — {status}" if status else line


class ContactList(QListWidget):
    """The contacts; right click for Message, Profile, Remove, Block.

    Signals:
        action_chosen(action, username): ``message``, ``profile``, ``remove``, ``block``.
    """

    action_chosen = pyqtSignal(str, str)

    def contact_actions(self, item: QListWidgetItem | None, menu: QMenu) -> list[Any]:
        """Fill ``menu`` for the contact of ``item`` (actions named by ``objectName``)."""
        if item is None:
            return []
        username = str(item.data(USERNAME))
        actions = []
        for name, text in (("message", _("Message")), ("profile", _("Profile…")),
                           ("remove", _("Remove contact")), ("block", _("Block"))):
            action = menu.addAction(text)
            assert action is not None
            action.setObjectName(name)
            action.triggered.connect(
                lambda _c=False, n=name: self.action_chosen.emit(n, username))
            actions.append(action)
        return actions

    def contextMenuEvent(self, e: QContextMenuEvent | None) -> None:
        """Right click on a contact: its menu."""
        if e is None:
            return
        menu = QMenu(self)
        if self.contact_actions(self.itemAt(e.pos()), menu):
            menu.exec(e.globalPos())


class ContactsDialog(_Dialog):
    """An account's contacts (picture with a presence dot, name, status text), the
    requests it received (Accept / Decline) and those it sent (Withdraw), the
    people it blocked (Unblock), and "Add contact…".

    Signals:
        add_requested(): open the Add contact dialog.
        respond_requested(username, accept)
        remove_requested(username): a contact, or a request of ours (withdraw).
        block_requested(username)
        unblock_requested(username)
        message_requested(username): ``dm.open``.
        profile_requested(username): open a profile card.
    """

    add_requested = pyqtSignal()
    respond_requested = pyqtSignal(str, bool)
    remove_requested = pyqtSignal(str)
    block_requested = pyqtSignal(str)
    unblock_requested = pyqtSignal(str)
    message_requested = pyqtSignal(str)
    profile_requested = pyqtSignal(str)

    def __init__(self, state: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.resize(460, 640)
        self.contacts_label = QLabel()
        self.contacts_list = ContactList()
        self.contacts_list.action_chosen.connect(self._contact_action)
        self.contacts_list.itemDoubleClicked.connect(
            lambda item: self.message_requested.emit(str(item.data(USERNAME))))
        self.incoming_label = QLabel()
        self.incoming_list = QListWidget()
        self.incoming_list.setMaximumHeight(110)
        self.accept_button = QPushButton()
        self.accept_button.clicked.connect(lambda: self._respond(True))
        self.decline_button = QPushButton()
        self.decline_button.clicked.connect(lambda: self._respond(False))
        self.outgoing_label = QLabel()
        self.outgoing_list = QListWidget()
        self.outgoing_list.setMaximumHeight(90)
        self.withdraw_button = QPushButton()
        self.withdraw_button.clicked.connect(self._withdraw)
        self.blocked_label = QLabel()
        self.blocked_list = QListWidget()
        self.blocked_list.setMaximumHeight(70)
        self.unblock_button = QPushButton()
        self.unblock_button.clicked.connect(self._unblock)
        self.add_button = QPushButton()
        self.add_button.clicked.connect(self.add_requested)
        self.close_button = QPushButton()
        self.close_button.clicked.connect(self.reject)
        answer = QHBoxLayout()
        answer.addStretch(1)
        answer.addWidget(self.accept_button)
        answer.addWidget(self.decline_button)
        withdraw = QHBoxLayout()
        withdraw.addStretch(1)
        withdraw.addWidget(self.withdraw_button)
        unblock = QHBoxLayout()
        unblock.addStretch(1)
        unblock.addWidget(self.unblock_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.add_button)
        bottom.addStretch(1)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.contacts_label)
        layout.addWidget(self.contacts_list, 1)
        layout.addWidget(self.incoming_label)
        layout.addWidget(self.incoming_list)
        layout.addLayout(answer)
        layout.addWidget(self.outgoing_label)
        layout.addWidget(self.outgoing_list)
        layout.addLayout(withdraw)
        layout.addWidget(self.blocked_label)
        layout.addWidget(self.blocked_list)
        layout.addLayout(unblock)
        layout.addLayout(bottom)
        for view in (self.contacts_list, self.incoming_list, self.outgoing_list):
            view.setIconSize(QSize(ROW_AVATAR, ROW_AVATAR))
        # Pictures arrive one by one: draw them together, once per turn of the loop.
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(0)
        self._repaint.timeout.connect(self.refresh)
        state.contacts_changed.connect(self.refresh)
        state.avatars.changed.connect(self._avatar_changed)
        self.finished.connect(self._stop_following)
        self.retranslate()

    def _stop_following(self, _result: int) -> None:
        with contextlib.suppress(TypeError, RuntimeError):
            self.state.contacts_changed.disconnect(self.refresh)
            self.state.avatars.changed.disconnect(self._avatar_changed)

    def _avatar_changed(self, _username: str) -> None:
        self._repaint.start()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Contacts"))
        self.accept_button.setText(_("Accept"))
        self.decline_button.setText(_("Decline"))
        self.withdraw_button.setText(_("Withdraw"))
        self.unblock_button.setText(_("Unblock"))
        self.add_button.setText(_("Add contact…"))
        self.close_button.setText(_("Close"))
        self.refresh()

    def refresh(self) -> None:
        """Show the controller's lists as they are now."""
        state = self.state
        self.contacts_label.setText(_("Contacts ({count})").format(count=len(state.contacts)))
        self.incoming_label.setText(
            _("Requests to you ({count})").format(count=len(state.incoming)))
        self.outgoing_label.setText(
            _("Your requests ({count})").format(count=len(state.outgoing)))
        self.blocked_label.setText(_("Blocked ({count})").format(count=len(state.blocked)))
        self._fill(self.contacts_list, [
            (username, profile_line(profile),
             state.presence.get(username, UNKNOWN if state.connection != "online"
                                else normalise(profile.get("presence"))),
             str(profile.get("display_name") or username))
            for username, profile in sorted(state.contacts.items())])
        self._fill(self.incoming_list, [
            (username, f"@{username}" + (f" — {' '.join(message.split())}" if message else ""),
             None, username) for username, message in sorted(state.incoming.items())])
        self._fill(self.outgoing_list, [
            (username, f"@{username}", None, username) for username in sorted(state.outgoing)])
        self._fill(self.blocked_list, [
            (username, f"@{username}", None, username) for username in sorted(state.blocked)])
        self.accept_button.setEnabled(bool(state.incoming))
        self.decline_button.setEnabled(bool(state.incoming))
        self.withdraw_button.setEnabled(bool(state.outgoing))
        self.unblock_button.setEnabled(bool(state.blocked))

    def _fill(self, view: QListWidget, rows: list[tuple[str, str, str | None, str]]) -> None:
        """Rows of (username, text, presence or None, display name), each with the
        person's picture (and presence dot)."""
        current = view.currentItem()
        keep = str(current.data(USERNAME)) if current is not None else None
        ratio = self.devicePixelRatioF()
        font = view.font()
        font.setBold(True)
        view.clear()
        for username, text, presence, name in rows:
            item = QListWidgetItem(text)
            item.setData(USERNAME, username)
            item.setIcon(QIcon(avatar_pixmap(self.state.avatars, username, name, ROW_AVATAR,
                                             font, presence, ratio)))
            if presence is not None:
                item.setToolTip(_(STATE_NAMES.get(presence, STATE_NAMES["offline"])))
            view.addItem(item)
            if username == keep:
                view.setCurrentItem(item)
        if view.currentItem() is None and view.count():
            view.setCurrentRow(0)

    def row_of(self, view: QListWidget, username: str) -> QListWidgetItem | None:
        """The item of ``username`` in ``view`` (tests, and selection)."""
        for row in range(view.count()):
            item = view.item(row)
            if item is not None and item.data(USERNAME) == username:
                return item
        return None

    def _respond(self, accept: bool) -> None:
        item = self.incoming_list.currentItem()
        if item is not None:
            self.respond_requested.emit(str(item.data(USERNAME)), accept)

    def _withdraw(self) -> None:
        item = self.outgoing_list.currentItem()
        if item is not None:
            self.remove_requested.emit(str(item.data(USERNAME)))

    def _unblock(self) -> None:
        item = self.blocked_list.currentItem()
        if item is not None:
            self.unblock_requested.emit(str(item.data(USERNAME)))

    def _contact_action(self, action: str, username: str) -> None:
        signal = {"message": self.message_requested, "profile": self.profile_requested,
                  "remove": self.remove_requested, "block": self.block_requested}[action]
        signal.emit(username)


class AddContactDialog(_Dialog):
    """A username and an optional message for ``contact.request``.

    Signals:
        request_requested(username, message)
    """

    request_requested = pyqtSignal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.username = QLineEdit()
        self.message = QPlainTextEdit()
        self.message.setMaximumHeight(80)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._send)
        self.buttons.rejected.connect(self.reject)
        # (Qt makes no label for an empty text, so the labels are made here.)
        self.labels = [QLabel(), QLabel()]
        self.form = QFormLayout()
        self.form.addRow(self.labels[0], self.username)
        self.form.addRow(self.labels[1], self.message)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.buttons)
        self.username.textChanged.connect(self._update_ok)
        self.retranslate()
        self._update_ok()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Add contact"))
        self.labels[0].setText(_("Username:"))
        self.labels[1].setText(_("Message (optional):"))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setText(_("Send request"))

    def _update_ok(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setEnabled(bool(self.username.text().strip().lstrip("@")))

    def _send(self) -> None:
        username = self.username.text().strip().lstrip("@")
        if username:
            self.request_requested.emit(username, self.message.toPlainText().strip())
            self.accept()


def last_seen_text(ts: int) -> str:
    """When someone was last seen (``ts`` in ms), as a local date and time."""
    moment = QDateTime.fromMSecsSinceEpoch(ts)
    return QLocale().toString(moment, QLocale.FormatType.ShortFormat)


class ProfileCard(_Dialog):
    """Someone's profile (``user.get``): picture, display name, @username, status
    text, presence and last seen, with Message and Block (or Unblock) buttons.

    Args:
        username: whose profile.
        parent: the main window.
        avatars: the account's profile pictures (None: the initial only).

    Signals:
        message_requested(username)
        block_requested(username, on): block (True) or unblock them.
    """

    message_requested = pyqtSignal(str)
    block_requested = pyqtSignal(str, bool)

    def __init__(self, username: str, parent: QWidget | None = None,
                 avatars: AvatarCache | None = None) -> None:
        super().__init__(parent)
        self.username = username
        self.avatars = avatars
        self.profile: dict[str, Any] = {"username": username}
        self.avatar_label = QLabel()
        self.avatar_label.setFixedSize(CARD_AVATAR, CARD_AVATAR)
        #: Whether the user blocked this person (:meth:`set_blocked`).
        self.blocked = False
        self.name_label = QLabel()
        font = self.name_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.name_label.setFont(font)
        self.username_label = QLabel(f"@{username}")
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.presence_label = QLabel()
        self.presence_label.setTextFormat(Qt.TextFormat.RichText)
        self.last_seen_label = QLabel()
        self.message_button = QPushButton()
        self.message_button.clicked.connect(self._message)
        self.block_button = QPushButton()
        self.block_button.clicked.connect(
            lambda: self.block_requested.emit(self.username, not self.blocked))
        self.close_button = QPushButton()
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.block_button)
        buttons.addStretch(1)
        buttons.addWidget(self.message_button)
        buttons.addWidget(self.close_button)
        names = QVBoxLayout()
        names.addStretch(1)
        head = QHBoxLayout()
        head.addWidget(self.avatar_label, 0, Qt.AlignmentFlag.AlignTop)
        head.addSpacing(8)
        head.addLayout(names, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        for label in (self.name_label, self.username_label, self.status_label,
                      self.presence_label, self.last_seen_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            (names if label in (self.name_label, self.username_label) else layout).addWidget(
                label)
        names.addStretch(1)
        layout.addLayout(buttons)
        if avatars is not None:
            avatars.changed.connect(self._avatar_changed)
            self.finished.connect(self._stop_following)
        self.retranslate()

    def _stop_following(self, _result: int) -> None:
        with contextlib.suppress(TypeError, RuntimeError):
            if self.avatars is not None:
                self.avatars.changed.disconnect(self._avatar_changed)

    def _avatar_changed(self, username: str) -> None:
        if username in ("", self.username):
            self.show_avatar()

    def show_avatar(self) -> None:
        """Draw the person's picture (or initial) beside their name."""
        font = self.name_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        name = str(self.profile.get("display_name") or self.username)
        self.avatar_label.setPixmap(avatar_pixmap(self.avatars, self.username, name,
                                                  CARD_AVATAR, font,
                                                  ratio=self.devicePixelRatioF()))

    def show_profile(self, profile: dict[str, Any]) -> None:
        """Fill the card with ``user.get``'s answer (others' are ignored)."""
        if profile.get("username") != self.username:
            return
        self.profile = dict(profile)
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        profile = self.profile
        self.setWindowTitle(_("Profile"))
        self.name_label.setText(" ".join(str(profile.get("display_name")
                                             or self.username).split()))
        self.status_label.setText(str(profile.get("status_text") or ""))
        self.status_label.setVisible(bool(profile.get("status_text")))
        state = normalise(profile.get("presence")) if "presence" in profile else UNKNOWN
        self.presence_label.setText(
            f'<span style="color:{STATE_COLOURS[state]}">\u25cf</span> '
            f"{html.escape(_(STATE_NAMES[state]))}")
        last_seen = profile.get("last_seen")
        self.last_seen_label.setText(
            _("Last seen {when}").format(when=last_seen_text(int(last_seen)))
            if last_seen and state == "offline" else "")
        self.last_seen_label.setVisible(bool(self.last_seen_label.text()))
        self.message_button.setText(_("Message"))
        self.block_button.setText(_("Unblock") if self.blocked else _("Block"))
        self.close_button.setText(_("Close"))
        self.show_avatar()

    def set_blocked(self, blocked: bool) -> None:
        """Whether the user blocked this person (the button offers the other)."""
        self.blocked = blocked
        self.block_button.setText(_("Unblock") if blocked else _("Block"))

    def _message(self) -> None:
        self.message_requested.emit(self.username)
        self.accept()
