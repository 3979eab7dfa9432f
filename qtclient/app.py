"""The desktop client's composition root: builds the windows, the controller,
the tray and the language switcher, and connects intents to actions.

Nothing here talks to the network itself; it only wires (STYLE.md habit 12).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtclient.audio import devices
from qtclient.controller import ChatController, LoginRequest
from qtclient.i18n import _
from qtclient.i18n.switch import LanguageSwitcher
from qtclient.idle import IdleWatcher
from qtclient.qt import QApplication, QDialog, QObject, is_deleted
from qtclient.settings import ClientSettings, LoginDefaults
from qtclient.views.dialogs import (
    CreateRoomDialog,
    DirectoryDialog,
    QuickSwitcher,
    SettingsDialog,
    UserSearchDialog,
)
from qtclient.views.login import LoginWindow
from qtclient.views.main_window import MainWindow
from qtclient.views.tray import TrayNotifier

#: Seconds to wait for the connection to close when quitting.
QUIT_GRACE = 2.0
#: How long a status-bar message stays, in milliseconds.
STATUS_MS = 8000


class ChatApp(QObject):
    """One running desktop client.

    Args:
        reactor: the Qt reactor (``qreactor``), already installed.
        settings: where preferences and the last login are kept.
        session_options: passed to :class:`~chatnet.client.session.ChatSession`
            (tests shorten reconnect delays).
        on_quit: called once the user quits and the connection is closed; the
            program passes ``reactor.stop`` (TWISTED-NOTES.md 7: under qreactor
            closing the last window does not end the program by itself).
        idle_clock: a monotonic clock in seconds for the away-after-idle timer.
        cache_dir: where image previews are downloaded (default: the user's
            cache location; tests pass a temporary folder).

    Attributes:
        dialogs: the small windows currently open, by kind (``create``,
            ``directory``, ``message``, ``invite``, ``settings``, ``switcher``).
        last_status: the last message shown in the status bar (translated).
    """

    def __init__(self, reactor: Any, settings: ClientSettings, *,
                 session_options: dict[str, Any] | None = None,
                 on_quit: Callable[[], None] | None = None,
                 idle_clock: Callable[[], float] = time.monotonic,
                 cache_dir: Path | None = None) -> None:
        super().__init__()
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            raise RuntimeError("create the QApplication (and install qreactor) first")
        self.reactor = reactor
        self.settings = settings
        self.on_quit = on_quit
        self.dialogs: dict[str, QDialog] = {}
        self.last_status = ""
        self._quitting = False
        self.language = LanguageSwitcher(app)
        self.language.apply(settings.language)
        self.controller = ChatController(reactor, session_options, self, cache_dir=cache_dir)
        self.controller.microphone = settings.microphone
        self.controller.speaker = settings.speaker
        self.login_window = LoginWindow(settings.login_defaults(), settings.language)
        self.main_window = MainWindow(self.controller)
        self.notifier = TrayNotifier(self.main_window, self)
        self.notifier.enabled = settings.notifications
        self.idle = IdleWatcher(settings.idle_minutes * 60, idle_clock, parent=self)
        self._wire()

    # -- wiring --------------------------------------------------------------------------------

    def _wire(self) -> None:
        c, login, main = self.controller, self.login_window, self.main_window
        login.login_requested.connect(self._login)
        login.language_chosen.connect(self.set_language)
        login.close_requested.connect(self.quit)
        c.logged_in.connect(self._logged_in)
        c.login_failed.connect(login.show_error)
        c.logged_out.connect(self._logged_out)
        c.error.connect(self.show_status)
        c.info.connect(self.show_status)
        c.room_opened.connect(main.show_room)
        c.notify.connect(self.notifier.notify)
        c.unread_changed.connect(self.notifier.set_unread)
        c.directory_loaded.connect(self._directory_loaded)
        c.users_found.connect(self._users_found)
        main.room_selected.connect(c.open_room)
        main.older_requested.connect(c.load_older)
        main.send_requested.connect(lambda text, reply: c.send(text, reply if reply >= 0 else None))
        main.edit_requested.connect(c.edit)
        main.delete_requested.connect(c.delete)
        main.react_requested.connect(c.react)
        main.composer_changed.connect(c.composer_changed)
        main.create_room_requested.connect(self.open_create_room)
        main.directory_requested.connect(self.open_directory)
        main.message_someone_requested.connect(lambda: self.open_user_search("message"))
        main.switcher_requested.connect(self.open_switcher)
        main.invite_dialog_requested.connect(lambda room: self.open_user_search("invite", room))
        main.invite_accepted.connect(c.accept_invite)
        main.invite_declined.connect(c.decline_invite)
        main.direct_requested.connect(c.open_direct)
        main.leave_requested.connect(c.leave_room)
        main.kick_requested.connect(c.kick)
        main.presence_chosen.connect(c.set_presence)
        main.status_text_changed.connect(self._status_text)
        main.settings_requested.connect(self.open_settings)
        main.logout_requested.connect(c.logout)
        main.quit_requested.connect(self.quit)
        main.active_changed.connect(c.set_window_active)
        main.user_input.connect(self.idle.touch)
        main.attach_requested.connect(c.attach_files)
        main.download_requested.connect(c.download_file)
        main.transfer_cancel_requested.connect(c.cancel_transfer)
        main.transfer_retry_requested.connect(c.retry_transfer)
        main.transfer_remove_requested.connect(c.dismiss_transfer)
        main.thumbnail_wanted.connect(c.want_thumbnail)
        self.idle.went_idle.connect(c.user_idle)
        self.idle.became_active.connect(c.user_active)
        self.notifier.activated.connect(self._notification_clicked)
        self.notifier.quit_requested.connect(self.quit)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, login: LoginDefaults | None = None, password: str = "") -> None:
        """Show the login window.

        Args:
            login: fill the form with this server and username (the command
                line's ``--host``, ``--port``, ``--ca``, ``--user``) instead of
                the remembered ones.
            password: with ``login``, log in at once with this password (from
                ``$CHATNET_PASSWORD``); a failure shows in the form as usual.
        """
        self.login_window.show()
        self.login_window.raise_()
        if login is not None:
            self.login_window.fill(login)
            if password and login.username:
                self.login_window.password.setText(password)
                self.login_window.submit()

    def _login(self, host: str, port: int, ca_file: str, username: str, password: str,
               register: bool) -> None:
        self.settings.remember_login(LoginDefaults(host, port, ca_file, username))
        self.controller.login(LoginRequest(host, port, ca_file, username, password, register))

    def _logged_in(self, _username: str) -> None:
        self.login_window.password.clear()
        self.login_window.set_busy(False)
        self.login_window.status.clear()
        self.login_window.hide()
        self.main_window.logged_in()
        self.main_window.show()
        self.main_window.raise_()
        self.main_window.activateWindow()
        self.notifier.show_icon(True)
        self.idle.start()

    def _logged_out(self, reason: str) -> None:
        self.idle.stop()
        self.notifier.show_icon(False)
        for dialog in list(self.dialogs.values()):
            if not is_deleted(dialog):
                dialog.close()
        self.main_window.hide()
        self.main_window.show_room(None)
        texts = {"replaced": _("You logged in somewhere else, so this session ended."),
                 "banned": _("This account is banned."),
                 "unauthenticated": _("Your session expired; log in again.")}
        self.login_window.set_busy(False)
        if reason:
            self.login_window.show_message(texts.get(reason, _("The server ended the session.")))
        self.start()

    def quit(self) -> None:
        """Close the connection (briefly waited for), then call ``on_quit`` once."""
        if self._quitting:
            return
        self._quitting = True
        self.main_window.hide()
        self.login_window.hide()
        self.notifier.show_icon(False)
        done = self.controller.shutdown()
        timer = self.reactor.callLater(QUIT_GRACE, self._finish_quit)

        def closed(_result: object) -> None:
            if timer.active():
                timer.cancel()
                self._finish_quit()

        done.addBoth(closed)

    def _finish_quit(self) -> None:
        if self.on_quit is not None:
            on_quit, self.on_quit = self.on_quit, None
            on_quit()

    # -- small windows -------------------------------------------------------------------------

    def _open(self, kind: str, dialog: QDialog) -> QDialog:
        old = self.dialogs.get(kind)
        if old is not None and not is_deleted(old):
            old.close()
        self.dialogs[kind] = dialog
        dialog.finished.connect(lambda _r, k=kind, d=dialog: self._closed(k, d))
        dialog.open()
        return dialog

    def _closed(self, kind: str, dialog: QDialog) -> None:
        if self.dialogs.get(kind) is dialog:
            del self.dialogs[kind]
        # Give the keyboard back to the main window: a window manager would,
        # but on an X display without one (a kiosk, Xvfb) the focus otherwise
        # stays with the closed dialog and typing goes nowhere.
        if self.main_window.isVisible() and not self._quitting:
            self.main_window.activateWindow()

    def open_create_room(self) -> CreateRoomDialog:
        """The "new room" dialog."""
        dialog = CreateRoomDialog(self.main_window)
        dialog.create_requested.connect(self.controller.create_room)
        self._open("create", dialog)
        return dialog

    def open_directory(self) -> DirectoryDialog:
        """The public-room directory (loads at once, searches as the user types)."""
        dialog = DirectoryDialog(self.main_window)
        dialog.search_requested.connect(self.controller.load_directory)
        dialog.join_requested.connect(self.controller.join_room)
        self._open("directory", dialog)
        self.controller.load_directory("")
        return dialog

    def open_user_search(self, purpose: str, room_id: int | None = None) -> UserSearchDialog:
        """Find a person to message (``message``) or to invite to ``room_id`` (``invite``)."""
        dialog = UserSearchDialog(purpose, self.main_window)
        dialog.search_requested.connect(self.controller.search_users)
        if purpose == "invite" and room_id is not None:
            dialog.user_chosen.connect(lambda user: self.controller.invite(room_id, user))
        else:
            dialog.user_chosen.connect(self.controller.open_direct)
        self._open(purpose, dialog)
        return dialog

    def open_switcher(self) -> QuickSwitcher:
        """The quick switcher (Ctrl+K): filter the conversations, Enter opens one."""
        dialog = QuickSwitcher(self.controller.rooms, self.main_window)
        dialog.room_chosen.connect(self.controller.open_room)
        self._open("switcher", dialog)
        return dialog

    def open_settings(self) -> SettingsDialog:
        """The settings dialog."""
        dialog = SettingsDialog(self.settings.language, self.settings.idle_minutes,
                                self.settings.notifications, self.main_window,
                                microphone=self.settings.microphone,
                                speaker=self.settings.speaker,
                                inputs=devices("input"), outputs=devices("output"))
        dialog.microphone_chosen.connect(self._microphone)
        dialog.speaker_chosen.connect(self._speaker)
        dialog.language_chosen.connect(self.set_language)
        dialog.idle_minutes_changed.connect(self._idle_minutes)
        dialog.notifications_changed.connect(self._notifications)
        self._open("settings", dialog)
        return dialog

    def _microphone(self, device_id: str) -> None:
        self.settings.microphone = self.controller.microphone = device_id

    def _speaker(self, device_id: str) -> None:
        self.settings.speaker = self.controller.speaker = device_id

    def _directory_loaded(self, rooms: list[dict[str, Any]]) -> None:
        dialog = self.dialogs.get("directory")
        if isinstance(dialog, DirectoryDialog) and not is_deleted(dialog):
            dialog.show_rooms(rooms)

    def _users_found(self, users: list[dict[str, Any]]) -> None:
        for kind in ("message", "invite"):
            dialog = self.dialogs.get(kind)
            if isinstance(dialog, UserSearchDialog) and not is_deleted(dialog):
                dialog.show_users(users)

    # -- preferences ---------------------------------------------------------------------------

    def set_language(self, language: str) -> None:
        """Switch the interface language now and remember it."""
        self.settings.language = language
        self.language.apply(language)
        self.notifier.retranslate()
        for combo in (self.login_window.language,):
            index = combo.findData(language)
            if index >= 0 and combo.currentIndex() != index:
                combo.blockSignals(True)
                combo.setCurrentIndex(index)
                combo.blockSignals(False)

    def _idle_minutes(self, minutes: int) -> None:
        self.settings.idle_minutes = minutes
        self.idle.idle_after = minutes * 60

    def _notifications(self, on: bool) -> None:
        self.settings.notifications = on
        self.notifier.enabled = on

    def _status_text(self, text: str) -> None:
        if text != self.controller.status_text:
            self.controller.set_status_text(text)

    def show_status(self, text: str) -> None:
        """A message in the main window's status bar, for a few seconds."""
        self.last_status = text
        status = self.main_window.statusBar()
        if status is not None:
            status.showMessage(text, STATUS_MS)

    def _notification_clicked(self, room_id: int) -> None:
        self.main_window.show()
        self.main_window.raise_()
        self.main_window.activateWindow()
        if room_id >= 0:
            self.controller.open_room(room_id)
