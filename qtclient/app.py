"""The desktop client's composition root: builds the windows, one controller and
page per account, the tray and the language switcher, and connects intents to
actions.

Nothing here talks to the network itself; it only wires (STYLE.md habit 12).

Several accounts (issue 11): each :class:`AccountUnit` is one account's
:class:`~qtclient.controller.ChatController` (its own connection and models)
and :class:`~qtclient.views.main_window.MainWindow` (its page in the
:class:`~qtclient.views.app_window.AppWindow`). The accounts signed in to are
remembered in ``QSettings`` (:meth:`ClientSettings.accounts
<qtclient.settings.ClientSettings.accounts>`) and their passwords in the
system keyring when there is one (:class:`~qtclient.accounts.PasswordStore`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from qtclient.accounts import Account, PasswordStore
from qtclient.audio import devices
from qtclient.controller import ChatController, LoginRequest
from qtclient.feed import FEED_UPLOADS
from qtclient.i18n import _
from qtclient.i18n.switch import LanguageSwitcher
from qtclient.idle import IdleWatcher
from qtclient.qt import QApplication, QDate, QDialog, QObject, QStandardPaths, is_deleted
from qtclient.settings import ClientSettings, LoginDefaults
from qtclient.views.admin import AdminWindow
from qtclient.views.app_window import AppWindow
from qtclient.views.contacts import AddContactDialog, ContactsDialog, ProfileCard
from qtclient.views.dialogs import (
    CreateRoomDialog,
    DateDialog,
    DirectoryDialog,
    ExportDialog,
    QuickSwitcher,
    SettingsDialog,
    UserSearchDialog,
)
from qtclient.views.feed import FeedWindow
from qtclient.views.login import LoginWindow
from qtclient.views.main_window import MainWindow
from qtclient.views.profile import ProfileEditor
from qtclient.views.tray import TrayNotifier

#: Seconds to wait for the connections to close when quitting.
QUIT_GRACE = 2.0
#: How long a status-bar message stays, in milliseconds.
STATUS_MS = 8000


class AccountUnit(QObject):
    """One account in the running client: its controller and its page.

    Args:
        account: where and as whom (None until a login form names it).
        controller: its connection and models.
        page: its conversation UI, a page of the AppWindow once signed in.

    Attributes:
        logged_in: whether its session is up (between ``logged_in`` and
            ``logged_out`` / ``login_failed``).
        in_window: whether it has a page and a button in the AppWindow.
        form: the login form waiting for its login, if any.
        remember: whether to keep the password in the keyring after this login.
        password: the password of the login in flight (dropped once answered).
    """

    def __init__(self, account: Account | None, controller: ChatController,
                 page: MainWindow, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.account = account
        self.controller = controller
        self.page = page
        self.logged_in = False
        #: The account's Administration window, while open.
        self.admin_window: AdminWindow | None = None
        self.in_window = False
        self.form: LoginWindow | None = None
        self.remember = False
        self.password = ""

    @property
    def key(self) -> str:
        """The account's key ("" before it is named)."""
        return self.account.key if self.account is not None else ""

    @property
    def busy(self) -> bool:
        """Whether a login is in flight."""
        return self.controller.session is not None and not self.logged_in


class ChatApp(QObject):
    """One running desktop client, with one or several accounts.

    Args:
        reactor: the Qt reactor (``qreactor``), already installed.
        settings: where preferences and the accounts are kept.
        session_options: passed to :class:`~chatnet.client.session.ChatSession`
            (tests shorten reconnect delays).
        on_quit: called once the user quits and the connections are closed; the
            program passes ``reactor.stop`` (TWISTED-NOTES.md 7: under qreactor
            closing the last window does not end the program by itself).
        idle_clock: a monotonic clock in seconds for the away-after-idle timer.
        cache_dir: where image previews are downloaded (default: the user's
            cache location; tests pass a temporary folder).
        passwords: where passwords are remembered (default: the system keyring
            when there is one, else nowhere).

    Attributes:
        units: the accounts in the window, in the strip's order.
        current: the account shown (None while none is in the window).
        login_unit: the account the start window logs in (while no account is
            in the window it is the one ``controller`` and ``main_window`` name).
        window: the :class:`AppWindow` (strip and pages).
        login_window: the start window (closing it quits).
        account_dialog: the "add an account" / "sign in" dialog, while open.
        dialogs: the small windows currently open, by kind (``create``,
            ``directory``, ``message``, ``invite``, ``settings``, ``switcher``,
            ``date``, ``export``).
        last_status: the last message shown in a status bar (translated).
    """

    def __init__(self, reactor: Any, settings: ClientSettings, *,
                 session_options: dict[str, Any] | None = None,
                 on_quit: Callable[[], None] | None = None,
                 idle_clock: Callable[[], float] = time.monotonic,
                 cache_dir: Path | None = None,
                 passwords: PasswordStore | None = None) -> None:
        super().__init__()
        app = QApplication.instance()
        if not isinstance(app, QApplication):
            raise RuntimeError("create the QApplication (and install qreactor) first")
        self.reactor = reactor
        self.settings = settings
        self.session_options = session_options
        self.cache_dir = cache_dir
        self.passwords = passwords if passwords is not None else PasswordStore()
        self.on_quit = on_quit
        self.dialogs: dict[str, QDialog] = {}
        self.last_status = ""
        self._quitting = False
        self._active = True
        self.language = LanguageSwitcher(app)
        self.language.apply(settings.language)
        self.window = AppWindow()
        self.notifier = TrayNotifier(self.window, self)
        self.notifier.enabled = settings.notifications
        self.idle = IdleWatcher(settings.idle_minutes * 60, idle_clock, parent=self)
        self.units: list[AccountUnit] = []
        self.current: AccountUnit | None = None
        self.login_unit = self._new_unit(None)
        self.login_window = LoginWindow(settings.login_defaults(), settings.language,
                                        keyring=self.passwords.available)
        self.account_dialog: LoginWindow | None = None
        self._wire()

    # -- the account shown ---------------------------------------------------------------------

    @property
    def unit(self) -> AccountUnit:
        """The account shown, or the start window's while none is."""
        return self.current if self.current is not None else self.login_unit

    @property
    def controller(self) -> ChatController:
        """The controller of :attr:`unit`."""
        return self.unit.controller

    @property
    def main_window(self) -> MainWindow:
        """The conversation UI of :attr:`unit` (a page of :attr:`window`)."""
        return self.unit.page

    # -- wiring --------------------------------------------------------------------------------

    def _wire(self) -> None:
        login, window = self.login_window, self.window
        login.login_requested.connect(partial(self._login, login))
        login.language_chosen.connect(self.set_language)
        login.close_requested.connect(self.quit)
        window.account_chosen.connect(self._account_chosen)
        window.add_account_requested.connect(self.open_add_account)
        window.sign_in_requested.connect(self._sign_in_requested)
        window.remove_requested.connect(self._remove_requested)
        window.quit_requested.connect(self.quit)
        window.active_changed.connect(self._active_changed)
        window.user_input.connect(self.idle.touch)
        self.idle.went_idle.connect(self._went_idle)
        self.idle.became_active.connect(self._became_active)
        self.notifier.activated.connect(self._notification_clicked)
        self.notifier.quit_requested.connect(self.quit)

    def _new_unit(self, account: Account | None) -> AccountUnit:
        """An account's controller and page, wired (not yet in the window)."""
        controller = ChatController(self.reactor, self.session_options, self,
                                    cache_dir=self.cache_dir)
        controller.microphone = self.settings.microphone
        controller.speaker = self.settings.speaker
        unit = AccountUnit(account, controller, MainWindow(controller), self)
        self._wire_unit(unit)
        return unit

    def _wire_unit(self, unit: AccountUnit) -> None:
        c, main = unit.controller, unit.page
        c.logged_in.connect(lambda _username: self._logged_in(unit))
        c.login_failed.connect(partial(self._login_failed, unit))
        c.logged_out.connect(partial(self._logged_out, unit))
        c.error.connect(partial(self._show_status, unit))
        c.info.connect(partial(self._show_status, unit))
        c.room_opened.connect(main.show_room)
        c.notify.connect(partial(self._notify, unit))
        c.unread_changed.connect(self._unread_changed)
        c.directory_loaded.connect(self._directory_loaded)
        c.users_found.connect(self._users_found)
        c.announcement.connect(main.show_announcement)
        main.room_selected.connect(c.open_room)
        main.older_requested.connect(c.load_older)
        main.newer_requested.connect(c.load_newer)
        main.search_requested.connect(
            lambda query, room, order: c.search(query, room if room >= 0 else None, order))
        main.search_more_requested.connect(c.search_more)
        main.message_requested.connect(c.show_message)
        main.date_dialog_requested.connect(self.open_date_dialog)
        main.export_dialog_requested.connect(self.open_export)
        main.export_cancel_requested.connect(c.cancel_export)
        main.send_requested.connect(lambda text, reply, ttl: c.send(
            text, reply if reply >= 0 else None, ttl or None))
        main.edit_requested.connect(c.edit)
        main.delete_requested.connect(c.delete)
        main.react_requested.connect(c.react)
        main.composer_changed.connect(c.composer_changed)
        main.create_room_requested.connect(self.open_create_room)
        main.directory_requested.connect(self.open_directory)
        main.message_someone_requested.connect(lambda: self.open_user_search("message"))
        main.switcher_requested.connect(self.open_switcher)
        main.contacts_requested.connect(self.open_contacts)
        main.feed_requested.connect(self.open_feed)
        main.profile_requested.connect(self.open_profile)
        main.profile_editor_requested.connect(self.open_profile_editor)
        main.invite_dialog_requested.connect(lambda room: self.open_user_search("invite", room))
        main.invite_accepted.connect(c.accept_invite)
        main.invite_declined.connect(c.decline_invite)
        main.direct_requested.connect(c.open_direct)
        main.leave_requested.connect(c.leave_room)
        main.kick_requested.connect(c.kick)
        main.presence_chosen.connect(c.set_presence)
        main.status_text_changed.connect(partial(self._status_text, unit))
        main.settings_requested.connect(self.open_settings)
        main.admin_requested.connect(lambda: self.open_admin(unit))
        main.logout_requested.connect(lambda: self.remove_account(unit))
        main.quit_requested.connect(self.quit)
        main.sign_in_requested.connect(lambda: self.open_sign_in(unit))
        main.user_input.connect(self.idle.touch)
        main.attach_requested.connect(c.attach_files)
        main.download_requested.connect(c.download_file)
        main.transfer_cancel_requested.connect(c.cancel_transfer)
        main.transfer_retry_requested.connect(c.retry_transfer)
        main.transfer_remove_requested.connect(c.dismiss_transfer)
        main.thumbnail_wanted.connect(c.want_thumbnail)

    def _unit_for(self, key: str) -> AccountUnit | None:
        return next((u for u in self.units if u.key == key), None)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, login: LoginDefaults | None = None, password: str = "") -> None:
        """Bring back the remembered accounts, sign in those whose password the
        keyring has, and show the main window, or the login window while no
        account can sign in by itself.

        Args:
            login: the command line's ``--host``, ``--port``, ``--ca``,
                ``--user``: the login window is filled with it (instead of the
                remembered account) and, with ``password``, logs in at once;
                a remembered account of the same user and server is the one
                used, else the account is added once signed in.
            password: with ``login``, the password (from ``$CHATNET_PASSWORD``);
                a failure shows in the form as usual. It is not put in the keyring.
        """
        accounts = self.settings.accounts()
        for account in accounts:
            if self._unit_for(account.key) is None:
                unit = self._new_unit(account)
                unit.page.show_signed_out()
                self._add_to_window(unit)
        wanted = self._unit_for(self.settings.current_account) or (
            self.units[0] if self.units else None)
        if wanted is not None:
            self._switch(wanted)
        command_line = (Account(login.host, login.port, login.ca_file, login.username).key
                        if login is not None and login.username else "")
        automatic = [u for u in self.units
                     if u.key != command_line and self._sign_in_saved(u)]
        if login is not None:
            self._show_login_window(self._unit_for(command_line) or self.login_unit)
            self.login_window.fill(login)
            if password and login.username:
                self.login_window.remember.setChecked(False)
                self.login_window.password.setText(password)
                self.login_window.submit()
        elif automatic:
            self._show_main_window()
            if self.current is not None and self.current not in automatic:
                self.open_sign_in(self.current)
        else:
            self._show_login_window(self.current or self.login_unit)

    def _sign_in_saved(self, unit: AccountUnit) -> bool:
        """Log a remembered account in with the keyring's password; whether it could."""
        assert unit.account is not None
        password = self.passwords.get(unit.account)
        if password is None or unit.controller.session is not None:
            return False
        unit.remember = True
        self._log_in(unit, password)
        return True

    def _log_in(self, unit: AccountUnit, password: str, register: bool = False) -> None:
        account = unit.account
        assert account is not None
        unit.password = password
        unit.controller.login(LoginRequest(account.host, account.port, account.ca_file,
                                           account.username, password, register))

    def _show_login_window(self, unit: AccountUnit) -> None:
        """The start window, for ``unit`` (filled with its account, if named)."""
        self.login_unit = unit
        form = self.login_window
        form.target = unit
        if unit.account is not None:
            account = unit.account
            form.fill(LoginDefaults(account.host, account.port, account.ca_file,
                                    account.username))
        form.set_busy(False)
        form.show()
        form.raise_()

    def _show_main_window(self) -> None:
        self.login_window.hide()
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        self.notifier.show_icon(True)
        self.idle.start()

    def _login(self, form: LoginWindow, host: str, port: int, ca_file: str, username: str,
               password: str, register: bool, remember: bool) -> None:
        """A login form was submitted: log in the account it names."""
        account = Account(host, port, ca_file, username)
        unit = self._unit_for(account.key)
        if unit is not None and (unit.logged_in or unit.busy):
            form.show_error(_("This account is already added."))
            return
        if unit is None:
            previous = form.target
            unit = (previous if isinstance(previous, AccountUnit) and not previous.in_window
                    and not previous.busy else self._new_unit(None))
        if unit.account is not None and unit.account.key == account.key:
            account = Account(host, port, ca_file, username, unit.account.label)
        unit.account = account
        unit.form, unit.remember = form, remember
        form.target = unit
        if form is self.login_window:
            self.login_unit = unit
        self.settings.remember_login(LoginDefaults(host, port, ca_file, username))
        self._log_in(unit, password, register)

    def _logged_in(self, unit: AccountUnit) -> None:
        unit.logged_in = True
        account = unit.account
        assert account is not None
        if unit.form is not None:  # a login form's choice; a keyring login keeps it
            if unit.remember and unit.password:
                self.passwords.set(account, unit.password)
            else:
                self.passwords.delete(account)
        unit.password = ""
        form, unit.form = unit.form, None
        unit.page.logged_in()
        if not unit.in_window:
            self._add_to_window(unit)
        self.window.strip.set_signed_in(unit.key, True)
        self._save_accounts()
        if form is not None:
            form.password.clear()
            form.set_busy(False)
            form.status.clear()
            if form is self.account_dialog:
                self._close_account_dialog()
            else:
                form.hide()
        shown = self.current
        if form is not None or shown is None or not (shown.logged_in or shown.busy):
            self._switch(unit)
        if not self.window.isVisible():
            self._show_main_window()

    def _login_failed(self, unit: AccountUnit, text: str) -> None:
        unit.logged_in = False
        unit.password = ""
        form, unit.form = unit.form, None
        if form is not None and not is_deleted(form):
            form.show_error(text)
            return
        if not unit.in_window:
            return  # removed meanwhile
        # A remembered account that could not sign in by itself.
        unit.page.show_signed_out(lambda: text)
        if unit is self.current:
            self.open_sign_in(unit, text)

    def _logged_out(self, unit: AccountUnit, reason: str) -> None:
        """The session ended: by "Log out" (``reason`` ""; the account was being
        removed), or the server's doing (the account stays, signed out)."""
        unit.logged_in = False
        self._close_admin(unit)
        if not reason:
            return
        texts = {"replaced": _("You logged in somewhere else, so this session ended."),
                 "banned": _("This account is banned."),
                 "unauthenticated": _("Your session expired; log in again.")}
        text = texts.get(reason, _("The server ended the session."))
        self._close_dialogs_of(unit)
        self.window.strip.set_signed_in(unit.key, False)
        unit.page.show_signed_out(lambda: texts.get(reason, _("The server ended the session.")))
        if not any(u.logged_in for u in self.units):
            self._hide_main_window()
            self._show_login_window(unit)
            self.login_window.show_message(text)
        elif unit is self.current:
            self.open_sign_in(unit, text)
        else:
            self._show_status(unit, text)

    def _hide_main_window(self) -> None:
        self.idle.stop()
        self.notifier.show_icon(False)
        self._close_dialogs()
        self.window.hide()

    # -- accounts in the window ----------------------------------------------------------------

    def _add_to_window(self, unit: AccountUnit) -> None:
        account = unit.account
        assert account is not None
        unit.in_window = True
        self.units.append(unit)
        self.window.add_page(account.key, account.initials, account.title, unit.page)
        self.window.strip.set_signed_in(account.key, unit.logged_in)
        self._unread_changed()

    def _save_accounts(self) -> None:
        self.settings.save_accounts([u.account for u in self.units if u.account is not None])

    def _switch(self, unit: AccountUnit) -> None:
        """Show ``unit``'s page (instant: each page keeps its state)."""
        if unit is self.current or not unit.in_window:
            return
        previous, self.current = self.current, unit
        if previous is not None:
            self._close_dialogs()
            previous.controller.set_window_active(False)
        self.window.show_page(unit.key)
        self.settings.current_account = unit.key
        self.notifier.current_account = unit.key
        unit.controller.set_window_active(self._active)

    def switch_to(self, key: str) -> None:
        """Show the account ``key`` (a click in the strip, Ctrl+<n>, a notification)."""
        unit = self._unit_for(key)
        if unit is not None:
            self._switch(unit)

    def _account_chosen(self, key: str) -> None:
        unit = self._unit_for(key)
        if unit is None:
            return
        self._switch(unit)
        if not unit.logged_in and not unit.busy:
            self.open_sign_in(unit)

    def _sign_in_requested(self, key: str) -> None:
        unit = self._unit_for(key)
        if unit is not None:
            self._switch(unit)
            self.open_sign_in(unit)

    def _remove_requested(self, key: str) -> None:
        unit = self._unit_for(key)
        if unit is not None:
            self.remove_account(unit)

    def open_add_account(self) -> LoginWindow:
        """The "+" button: the login form as a dialog over the main window."""
        return self._open_account_dialog(None)

    def open_sign_in(self, unit: AccountUnit, message: str = "") -> LoginWindow:
        """Sign in again to a remembered account (its password was not kept, or
        the server ended its session): the form, server and user fixed."""
        dialog = self._open_account_dialog(unit)
        if message:
            dialog.show_message(message)
        return dialog

    def _open_account_dialog(self, unit: AccountUnit | None) -> LoginWindow:
        self._close_account_dialog()
        defaults = self.settings.login_defaults()
        dialog = LoginWindow(LoginDefaults(defaults.host, defaults.port, defaults.ca_file, ""),
                             self.settings.language, self.window, adding=True,
                             keyring=self.passwords.available)
        if unit is not None and unit.account is not None:
            account = unit.account
            dialog.for_account(LoginDefaults(account.host, account.port, account.ca_file,
                                             account.username), account.title)
            dialog.target = unit
        dialog.login_requested.connect(partial(self._login, dialog))
        dialog.cancelled.connect(lambda: self._account_dialog_cancelled(dialog))
        self.account_dialog = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def _account_dialog_cancelled(self, dialog: LoginWindow) -> None:
        if self.account_dialog is dialog:
            self.account_dialog = None
        unit = dialog.target
        if isinstance(unit, AccountUnit) and unit.form is dialog:
            unit.form = None
            if not unit.in_window:  # a new account given up: drop it
                self._dispose(unit)
        dialog.deleteLater()
        if self.window.isVisible() and not self._quitting:
            self.window.activateWindow()

    def _close_account_dialog(self) -> None:
        dialog, self.account_dialog = self.account_dialog, None
        if dialog is not None and not is_deleted(dialog):
            dialog.target = None
            dialog.close()

    def remove_account(self, unit: AccountUnit) -> None:
        """Sign out of ``unit`` (revoking its session) and forget it: its page,
        button, remembered entry and keyring password go. "Log out" in the
        Chat menu does this to the account shown. With no account left the
        login window comes back, filled with this one."""
        account = unit.account
        if account is not None:
            self.passwords.delete(account)
        self._close_admin(unit)
        if unit.in_window:
            index = self.units.index(unit)
            self.units.remove(unit)
            unit.in_window = False
            self.window.remove_page(unit.key)
            self._save_accounts()
            if unit is self.current:
                self._close_dialogs()
                self.current = None
                if self.units:
                    self._switch(self.units[min(index, len(self.units) - 1)])
        unit.logged_in = False
        done = unit.controller.logout()
        unit.page.show_room(None)
        if not any(u.logged_in or u.busy for u in self.units):
            if self.window.isVisible():
                self._hide_main_window()
            self._show_login_window(self.current or unit)
        if unit is not self.login_unit:
            done.addBoth(lambda _result: self._dispose(unit))

    def _dispose(self, unit: AccountUnit) -> None:
        """Delete an account's controller and page once it is in no window and
        no form (and its session is closed)."""
        if unit is self.login_unit or unit.in_window or unit.form is not None:
            return
        if unit.controller.session is not None:
            unit.controller.shutdown().addBoth(lambda _result: self._dispose(unit))
            return
        for obj in (unit.page, unit.controller, unit):
            if not is_deleted(obj):
                obj.deleteLater()

    def quit(self) -> None:
        """Close the connections (briefly waited for), then call ``on_quit`` once."""
        if self._quitting:
            return
        self._quitting = True
        self.window.hide()
        self.login_window.hide()
        self._close_account_dialog()
        self.notifier.show_icon(False)
        self.settings.sync()
        units = list(dict.fromkeys([*self.units, self.login_unit]))
        for unit in units:
            self._close_admin(unit)
        done: Deferred[Any] = gatherResults([u.controller.shutdown() for u in units])
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

    # -- focus, idle, notifications, unread ----------------------------------------------------

    def _active_changed(self, active: bool) -> None:
        """Only the account shown is "being read" while the window has the focus."""
        self._active = active
        for unit in self.units:
            unit.controller.set_window_active(active and unit is self.current)

    def _went_idle(self) -> None:
        for unit in self.units:
            if unit.logged_in:
                unit.controller.user_idle()

    def _became_active(self) -> None:
        for unit in self.units:
            if unit.logged_in:
                unit.controller.user_active()

    def _notify(self, unit: AccountUnit, title: str, text: str, room_id: int) -> None:
        """A notification; with several accounts its title names the account."""
        if len(self.units) > 1 and unit.account is not None:
            title = _("{title} — {account}").format(title=title, account=unit.account.title)
        self.notifier.notify(title, text, room_id, unit.key)

    def _unread_changed(self, _count: int = 0) -> None:
        total = 0
        for unit in self.units:
            count = unit.controller.rooms.total_unread()
            self.window.strip.set_unread(unit.key, count)
            total += count
        self.notifier.set_unread(total)
        self.window.set_unread(total)

    def _notification_clicked(self, key: str, room_id: int) -> None:
        """A click on a notification (or the tray icon): the window, the
        notification's account and room."""
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()
        unit = self._unit_for(key) if key else None
        if unit is not None:
            self._switch(unit)
        if room_id >= 0:
            self.controller.open_room(room_id)

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
        if self.window.isVisible() and not self._quitting:
            self.window.activateWindow()

    def _close_dialogs(self) -> None:
        """Close the small windows (they belong to the account shown)."""
        for dialog in list(self.dialogs.values()):
            if not is_deleted(dialog):
                dialog.close()

    def _close_dialogs_of(self, unit: AccountUnit) -> None:
        if unit is self.current:
            self._close_dialogs()

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
        controller = self.controller
        dialog = UserSearchDialog(purpose, self.main_window)
        dialog.search_requested.connect(controller.search_users)
        if purpose == "invite" and room_id is not None:
            dialog.user_chosen.connect(lambda user: controller.invite(room_id, user))
        else:
            dialog.user_chosen.connect(controller.open_direct)
        self._open(purpose, dialog)
        return dialog

    def open_contacts(self) -> ContactsDialog:
        """The current account's Contacts window (its lists asked for again)."""
        controller = self.controller
        dialog = ContactsDialog(controller, self.main_window)
        dialog.add_requested.connect(self.open_add_contact)
        dialog.respond_requested.connect(controller.respond_contact)
        dialog.remove_requested.connect(controller.remove_contact)
        dialog.block_requested.connect(controller.block_user)
        dialog.unblock_requested.connect(controller.unblock_user)
        dialog.message_requested.connect(controller.open_direct)
        dialog.profile_requested.connect(self.open_profile)
        self._open("contacts", dialog)
        controller.load_contacts()
        return dialog

    def open_add_contact(self) -> AddContactDialog:
        """Ask someone to be a contact (``contact.request``)."""
        dialog = AddContactDialog(self.main_window)
        dialog.request_requested.connect(self.controller.request_contact)
        self._open("add_contact", dialog)
        return dialog

    def open_profile(self, username: str) -> ProfileCard:
        """Someone's profile card (``user.get``), with Message and Block buttons."""
        controller = self.controller
        dialog = ProfileCard(username, self.main_window, controller.avatars)
        dialog.set_blocked(username in controller.blocked)
        dialog.block_button.setVisible(username != controller.me)

        def blocked_changed() -> None:
            dialog.set_blocked(username in controller.blocked)

        controller.profile_loaded.connect(dialog.show_profile)
        controller.contacts_changed.connect(blocked_changed)

        def closed(_result: int) -> None:
            _disconnect(controller.profile_loaded, dialog.show_profile)
            _disconnect(controller.contacts_changed, blocked_changed)

        dialog.finished.connect(closed)
        dialog.message_requested.connect(controller.open_direct)
        dialog.block_requested.connect(controller.block_user)
        self._open("profile", dialog)
        controller.load_profile(username)
        return dialog

    def open_profile_editor(self) -> ProfileEditor:
        """The user's own profile: display name, status text, picture."""
        controller = self.controller
        dialog = ProfileEditor(controller, self.main_window)
        dialog.save_requested.connect(lambda changes: controller.update_profile(**changes))
        self._open("profile_editor", dialog)
        return dialog

    def open_feed(self) -> FeedWindow:
        """The current account's Feed window (its newest posts asked for again)."""
        controller = self.controller
        feed = controller.feed
        window = FeedWindow(controller, self.main_window)
        window.post_requested.connect(feed.post)
        window.attach_requested.connect(partial(controller.attach_files, FEED_UPLOADS))
        window.detach_requested.connect(feed.detach)
        window.like_requested.connect(feed.like)
        window.comment_requested.connect(feed.comment)
        window.delete_requested.connect(feed.delete)
        window.comment_delete_requested.connect(feed.delete_comment)
        window.older_requested.connect(feed.load_older)
        window.earlier_comments_requested.connect(feed.load_comments)
        window.download_requested.connect(controller.download_file)
        window.thumbnail_wanted.connect(controller.want_thumbnail)
        window.transfer_cancel_requested.connect(controller.cancel_transfer)
        window.transfer_retry_requested.connect(controller.retry_transfer)
        window.transfer_remove_requested.connect(controller.dismiss_transfer)
        self._open("feed", window)
        feed.refresh()
        return window

    def open_switcher(self) -> QuickSwitcher:
        """The quick switcher (Ctrl+K): filter the conversations, Enter opens one."""
        dialog = QuickSwitcher(self.controller.rooms, self.main_window)
        dialog.room_chosen.connect(self.controller.open_room)
        self._open("switcher", dialog)
        return dialog

    def open_date_dialog(self, room_id: int) -> DateDialog:
        """"Go to date…": a calendar; the conversation is then shown from that day."""
        controller = self.controller
        dialog = DateDialog(controller.room_label(room_id), QDate.currentDate(),
                            self.main_window)
        dialog.date_chosen.connect(
            lambda y, m, d: controller.show_date(room_id, date(y, m, d)))
        self._open("date", dialog)
        return dialog

    def open_export(self) -> ExportDialog:
        """"Export my conversations…": a date range and a file name, then the
        export runs with its progress window."""
        unit = self.unit
        folder = QStandardPaths.writableLocation(
            QStandardPaths.StandardLocation.DocumentsLocation)
        dialog = ExportDialog(QDate.currentDate(), Path(folder) if folder else Path.home(),
                              self.main_window)
        dialog.export_requested.connect(partial(self._export, unit))
        self._open("export", dialog)
        return dialog

    def _export(self, unit: AccountUnit, first: date, last: date, name: str) -> None:
        if unit.controller.export is not None:
            self._show_status(unit, _("An export is already running."))
            return
        unit.page.show_export_progress()
        if not unit.controller.export_conversations(first, last, name):
            unit.page.export_ended(False)
            self._show_status(unit, _("Not connected to the server."))

    def open_admin(self, unit: AccountUnit | None = None) -> AdminWindow:
        """*Administration…* of an account (the one shown by default): one window
        per account, raised again if it is open."""
        unit = unit or self.unit
        window = unit.admin_window
        if window is not None and not is_deleted(window):
            window.show()
            window.raise_()
            return window
        c = unit.controller
        window = AdminWindow(c.admin, unit.key, c.is_admin, c.room_label, self.window,
                             download=c.download_export, transfers=c.files.transfers,
                             members=c.admin_room_members)
        c.monitor_message.connect(window.monitor.add_message)
        c.admin_export_progress.connect(window.export.progress)
        c.connection_changed.connect(window.connection_changed)
        window.finished.connect(lambda _r, u=unit, w=window: self._admin_closed(u, w))
        unit.admin_window = window
        window.show()
        return window

    def _admin_closed(self, unit: AccountUnit, window: AdminWindow) -> None:
        if unit.admin_window is window:
            unit.admin_window = None
            with suppress(TypeError, RuntimeError):
                unit.controller.monitor_message.disconnect(window.monitor.add_message)
                unit.controller.admin_export_progress.disconnect(window.export.progress)
                unit.controller.connection_changed.disconnect(window.connection_changed)

    def _close_admin(self, unit: AccountUnit) -> None:
        window = unit.admin_window
        if window is not None and not is_deleted(window):
            window.close()
        unit.admin_window = None

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
        self.settings.microphone = device_id
        for unit in [*self.units, self.login_unit]:
            unit.controller.microphone = device_id

    def _speaker(self, device_id: str) -> None:
        self.settings.speaker = device_id
        for unit in [*self.units, self.login_unit]:
            unit.controller.speaker = device_id

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

    def _status_text(self, unit: AccountUnit, text: str) -> None:
        if text != unit.controller.status_text:
            unit.controller.set_status_text(text)

    def show_status(self, text: str) -> None:
        """A message in the shown account's status bar, for a few seconds."""
        self._show_status(self.unit, text)

    def _show_status(self, unit: AccountUnit, text: str) -> None:
        if is_deleted(unit.page):
            return  # an answer that came after the account was logged out and disposed
        self.last_status = text
        status = unit.page.statusBar()
        if status is not None:
            status.showMessage(text, STATUS_MS)


def _disconnect(signal: Any, slot: Any) -> None:
    """Disconnect ``slot`` from ``signal`` if it still is connected."""
    with suppress(TypeError, RuntimeError):
        signal.disconnect(slot)
