"""Several accounts on several servers in one desktop client (issue 11):
each with its own connection, unread badge and notifications; switching;
remembered across a restart, passwords from the keyring or asked for.

Two real servers on two ports; the desktop client is driven through its
windows: the login window, "+" in the account strip, the sign-in dialog.
"""

from __future__ import annotations

from typing import Any

import pytest
from keyring.backends import fail

from qtclient.accounts import KEYRING_SERVICE, Account, PasswordStore
from qtclient.app import AccountUnit, ChatApp
from qtclient.qt import QMenu, Qt
from qtclient.settings import LoginDefaults
from qtclient.views.login import LoginWindow
from tests.gui.conftest import Desktops, ServerHandle
from tests.gui.helpers import say, shared_room
from tests.gui.keyrings import DictKeyring
from tests.support.server import PASSWORD


def fill(form: LoginWindow, server: ServerHandle, username: str,
         password: str = PASSWORD, register: bool = True) -> None:
    """Fill a login form for ``username`` on ``server`` and press "Log in"."""
    form.host.setText("localhost")
    form.port.setValue(server.port)
    form.ca_file.setText(str(server.ca))
    form.username.setText(username)
    form.password.setText(password)
    form.register.setChecked(register)
    form.login_button.click()


def signed_in(qtbot: Any, app: ChatApp, username: str, server: ServerHandle) -> AccountUnit:
    """Wait until the account is signed in and in the window; its unit."""
    key = f"{username}@localhost:{server.port}"

    def ready() -> bool:
        unit = app._unit_for(key)
        return unit is not None and unit.logged_in

    qtbot.waitUntil(ready, timeout=10000)
    unit = app._unit_for(key)
    assert unit is not None
    return unit


def add_account(qtbot: Any, app: ChatApp, server: ServerHandle, username: str,
                register: bool = True) -> AccountUnit:
    """"+" in the account strip, the form, "Log in"; the new account's unit."""
    app.window.strip.add_button.click()
    dialog = app.account_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.cancel_button.isVisible()
    fill(dialog, server, username, register=register)
    unit = signed_in(qtbot, app, username, server)
    qtbot.waitUntil(lambda: app.account_dialog is None)
    return unit


def two_accounts(qtbot: Any, desktops: Desktops, server: ServerHandle,
                 other_server: ServerHandle, passwords: PasswordStore
                 ) -> tuple[ChatApp, AccountUnit, AccountUnit]:
    """alice on the first server (the login window), carol on the second ("+")."""
    app = desktops.start(passwords)
    assert app.login_window.isVisible()
    fill(app.login_window, server, "alice")
    alice = signed_in(qtbot, app, "alice", server)
    qtbot.waitUntil(app.window.isVisible)
    carol = add_account(qtbot, app, other_server, "carol")
    return app, alice, carol


def test_two_accounts_on_two_servers_each_with_its_badge_and_notifications(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """alice (first server) and carol (second) in one client: messages to each
    raise that account's own badge; a direct message to the account not shown
    is notified with the account named, and clicking the notification shows
    that account and conversation; clicking an account shows its own
    conversation list; Ctrl+1 and Ctrl+2 switch too."""
    app, alice, carol = two_accounts(qtbot, desktops, server, other_server,
                                     PasswordStore(DictKeyring()))
    strip = app.window.strip
    assert strip.keys() == [alice.key, carol.key]
    assert app.current is carol and app.main_window is carol.page
    assert alice.controller.session is not carol.controller.session

    bob = server.user("bob")
    dave = other_server.user("dave")
    general = shared_room(other_server, dave, "carol", name="general")
    qtbot.waitUntil(lambda: carol.controller.rooms.room(general) is not None)
    dm = server.request(bob, "dm.open", {"username": "alice"})["room_id"]
    qtbot.waitUntil(lambda: alice.controller.rooms.room(dm) is not None)

    with qtbot.waitSignal(app.notifier.shown, timeout=5000) as shown:
        say(server, bob, dm, "lunch?")
    title, text = shown.args
    assert text == "lunch?"
    assert title == f"bob — alice@localhost:{server.port}"
    say(server, bob, dm, "at noon")
    say(other_server, dave, general, "standup moved")
    qtbot.waitUntil(lambda: strip.buttons[alice.key].unread == 2
                    and strip.buttons[carol.key].unread == 1)
    assert "2 unread messages" in strip.buttons[alice.key].toolTip()
    assert app.window.windowTitle() == "chatnet (3 unread)"
    assert app.notifier.unread == 3

    # The carol page shows carol's rooms; clicking alice's button shows hers.
    assert [carol.page.room_list.model().index(r, 0).data()
            for r in range(carol.page.room_list.model().rowCount())] == ["general"]
    qtbot.mouseClick(strip.buttons[alice.key], Qt.MouseButton.LeftButton)
    assert app.current is alice
    assert app.window.stack.currentWidget() is alice.page
    assert app.window.stack.currentWidget().isVisible() and not carol.page.isVisible()
    rooms = alice.page.room_list.model()
    assert [rooms.index(r, 0).data() for r in range(rooms.rowCount())] == ["bob"]
    assert carol.controller.session is not None and carol.logged_in  # still live

    # Ctrl+2 / Ctrl+1 (the Accounts menu's shortcuts).
    assert app.window.account_action(2).shortcut().toString() == "Ctrl+2"
    app.window.account_action(2).trigger()
    assert app.current is carol
    app.window.account_action(1).trigger()
    assert app.current is alice
    app.window.account_action(2).trigger()

    # Clicking the notification (tray message) opens alice's direct room.
    assert app.notifier.last == (alice.key, dm)
    app.notifier.activated.emit(*app.notifier.last)
    assert app.current is alice
    qtbot.waitUntil(lambda: alice.controller.current_room == dm)
    qtbot.waitUntil(lambda: strip.buttons[alice.key].unread == 0)
    assert strip.buttons[carol.key].unread == 1


def test_both_accounts_come_back_after_a_restart_with_keyring_passwords(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """Quitting and starting again (same settings file, same keyring) brings
    both accounts back, in order, the last shown one shown, and signs both in
    with the passwords from the keyring, without any login window. The
    settings file holds no password; "Sign out and remove" forgets one."""
    backend = DictKeyring()
    app, alice, carol = two_accounts(qtbot, desktops, server, other_server,
                                     PasswordStore(backend))
    assert app.login_window.remember.isEnabled()
    assert set(backend.entries) == {(KEYRING_SERVICE, alice.key), (KEYRING_SERVICE, carol.key)}
    desktops.quit(app)
    assert PASSWORD not in (desktops.tmp_path / "client.ini").read_text()

    again = desktops.start(PasswordStore(backend))
    qtbot.waitUntil(again.window.isVisible)
    assert not again.login_window.isVisible()
    assert again.window.strip.keys() == [alice.key, carol.key]
    first = signed_in(qtbot, again, "alice", server)
    second = signed_in(qtbot, again, "carol", other_server)
    assert again.current is second
    assert again.account_dialog is None
    assert first.page.connection_label.text() == "Connected"

    menu = QMenu()
    actions = {a.objectName(): a
               for a in again.window.strip.account_actions(first.key, menu)}
    assert "sign_in" not in actions
    actions["remove"].trigger()
    assert again.window.strip.keys() == [carol.key]
    assert again.settings.accounts() == [Account("localhost", other_server.port,
                                                 str(other_server.ca), "carol")]
    assert set(backend.entries) == {(KEYRING_SERVICE, carol.key)}
    qtbot.waitUntil(lambda: first.controller.session is None)
    assert again.current is second and again.window.isVisible()


def test_without_a_keyring_the_restart_asks_for_the_passwords(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """Without a keyring the "Remember the password" box is off and disabled,
    its tooltip saying why; after a restart the login window asks for the
    password of the account shown last (server and username filled in), and
    the other account waits, faded, until its button is clicked and its
    password given."""
    passwords = PasswordStore(fail.Keyring())
    app, alice, carol = two_accounts(qtbot, desktops, server, other_server, passwords)
    form = app.login_window
    assert not form.remember.isEnabled() and not form.remember.isChecked()
    assert "keyring" in form.remember.toolTip()
    desktops.quit(app)

    again = desktops.start(passwords)
    form = again.login_window
    qtbot.waitUntil(form.isVisible)
    assert not again.window.isVisible()
    assert (form.host.text(), form.port.value(), form.username.text(), form.password.text()) \
        == ("localhost", other_server.port, "carol", "")
    form.password.setText(PASSWORD)
    form.login_button.click()
    second = signed_in(qtbot, again, "carol", other_server)
    qtbot.waitUntil(again.window.isVisible)
    assert not form.isVisible()
    assert again.current is second
    strip = again.window.strip
    assert strip.keys() == [alice.key, carol.key]
    assert not strip.buttons[alice.key].signed_in
    assert "Not signed in" in strip.buttons[alice.key].toolTip()

    qtbot.mouseClick(strip.buttons[alice.key], Qt.MouseButton.LeftButton)
    dialog = again.account_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.username.text() == "alice" and dialog.username.isReadOnly()
    assert dialog.heading.text() == f"Sign in to alice@localhost:{server.port}"
    assert again.current is not None and again.current.key == alice.key
    assert not again.current.page.signed_in
    dialog.password.setText(PASSWORD)
    dialog.login_button.click()
    first = signed_in(qtbot, again, "alice", server)
    assert again.current is first and first.page.signed_in
    assert again.window.strip.keys() == [alice.key, carol.key]


def test_the_command_line_uses_a_remembered_account(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """``chatnet-qt --host … --user alice`` with ``$CHATNET_PASSWORD`` signs in
    the remembered alice (no second button), while the other remembered
    account signs in with its keyring password; the command line's password
    is not put in the keyring."""
    backend = DictKeyring()
    app, alice, carol = two_accounts(qtbot, desktops, server, other_server,
                                     PasswordStore(backend))
    desktops.quit(app)
    del backend.entries[(KEYRING_SERVICE, alice.key)]

    login = LoginDefaults("localhost", server.port, str(server.ca), "alice")
    again = desktops.start(PasswordStore(backend), login=login, password=PASSWORD)
    first = signed_in(qtbot, again, "alice", server)
    signed_in(qtbot, again, "carol", other_server)
    qtbot.waitUntil(again.window.isVisible)
    assert again.window.strip.keys() == [alice.key, carol.key]
    assert again.current is first
    assert (KEYRING_SERVICE, alice.key) not in backend.entries


def test_adding_an_account_twice_or_cancelling(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """The add dialog refuses an account already there; Cancel (or Escape)
    closes it and leaves the accounts as they were."""
    app = desktops.start(PasswordStore(DictKeyring()))
    fill(app.login_window, server, "alice")
    signed_in(qtbot, app, "alice", server)
    app.window.strip.add_button.click()
    dialog = app.account_dialog
    assert dialog is not None
    fill(dialog, server, "alice", register=False)
    qtbot.waitUntil(lambda: dialog.status.text() == "This account is already added.")
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: app.account_dialog is None)
    assert len(app.units) == 1
    app.window.strip.add_button.click()
    dialog = app.account_dialog
    assert dialog is not None
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: app.account_dialog is None)
    assert app.window.strip.keys() == [f"alice@localhost:{server.port}"]


@pytest.mark.server_config(single_session=True)
def test_a_session_the_server_ends_leaves_the_other_account_alone(
        desktops: Desktops, server: ServerHandle, other_server: ServerHandle,
        qtbot: Any) -> None:
    """When alice logs in elsewhere on a single-session server, her account
    here turns signed out (faded button, the reason on her page) while carol's
    stays connected and shown; clicking alice asks for her password, with the
    reason, and signs her in again."""
    app, alice, carol = two_accounts(qtbot, desktops, server, other_server,
                                     PasswordStore(fail.Keyring()))
    strip = app.window.strip
    server.user("alice", register=False)  # "replaced" for the desktop session
    qtbot.waitUntil(lambda: not alice.logged_in and not strip.buttons[alice.key].signed_in)
    assert app.window.isVisible() and not app.login_window.isVisible()
    assert app.current is carol and carol.logged_in
    assert "somewhere else" in alice.page.signed_out_label.text()

    qtbot.mouseClick(strip.buttons[alice.key], Qt.MouseButton.LeftButton)
    dialog = app.account_dialog
    assert dialog is not None and dialog.username.text() == "alice"
    dialog.password.setText(PASSWORD)
    dialog.login_button.click()
    qtbot.waitUntil(lambda: alice.logged_in and strip.buttons[alice.key].signed_in)
    assert app.current is alice and alice.page.centre.currentWidget() is alice.page.empty_page
