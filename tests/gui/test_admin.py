"""The Administration window (docs/protocol.md 9): offered to admins and
auditors only; users, rooms, sessions, the audit log, the monitor and
broadcasts, against a real server."""

from __future__ import annotations

from typing import Any

from qtclient.app import ChatApp
from qtclient.views.admin import MONITOR_ROWS, AdminForm, AdminWindow
from tests.gui.conftest import ServerHandle
from tests.gui.helpers import say, shared_room


def give_roles(server: ServerHandle, username: str, roles: list[str]) -> None:
    """Register ``username`` and give them server ``roles`` in the store (as
    tests/core/test_admin.py's ``with_roles``), before any desktop login."""
    conn = server.wait(server.running.user(username))
    store = server.running.service.store
    user = server.wait(store.user_by_name(username))
    server.wait(store.set_roles(user.user_id, roles))
    server.wait(conn.close())


def open_admin(qtbot: Any, app: ChatApp) -> AdminWindow:
    """*Chat → Administration…* and the users' first page."""
    page = app.main_window
    assert page.admin_action.isVisible()
    page.admin_action.trigger()
    window = app.unit.admin_window
    assert window is not None and window.isVisible()
    qtbot.waitUntil(lambda: bool(window.users.items))
    return window


def select_user(qtbot: Any, window: AdminWindow, username: str) -> None:
    tab = window.users
    qtbot.waitUntil(lambda: any(u["username"] == username for u in tab.items))
    assert tab.select_where(lambda u: u["username"] == username)


def user_row(window: AdminWindow, username: str) -> dict[str, Any]:
    return next(u for u in window.users.items if u["username"] == username)


def submit(form: AdminForm | None, **values: Any) -> None:
    """Fill a form's fields by key and press OK."""
    assert form is not None
    for key, value in values.items():
        field = form.fields[key]
        if isinstance(value, bool):
            field.setChecked(value)
        elif hasattr(field, "setPlainText"):
            field.setPlainText(value)
        else:
            field.setText(value)
    assert form.ok_button.isEnabled()
    form.ok_button.click()


def test_the_entry_is_offered_to_admins_only(make_client: Any, server: ServerHandle) -> None:
    """*Administration…* is hidden for a user without a server role and shown
    for an admin."""
    carol = make_client("carol")
    assert not carol.main_window.admin_action.isVisible()
    assert not carol.controller.can_administer
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    assert root.controller.roles == {"admin"}
    assert root.main_window.admin_action.isVisible()


def test_banning_from_the_users_tab_ends_the_session_and_is_audited(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """Ban… on bob (a reason, no end) ends bob's desktop session with "banned";
    the table then says banned, and the audit log lists user.banned with the
    reason. Unban lets him in again."""
    bob = make_client("bob")
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    tab = window.users
    assert [tab.table.horizontalHeaderItem(c).text() for c in range(5)] == [  # type: ignore[union-attr]
        "Username", "Display name", "Roles", "Banned", "Sessions"]
    select_user(qtbot, window, "bob")
    assert user_row(window, "bob")["sessions"] == 1
    assert tab.ban_button.isEnabled() and not tab.unban_button.isEnabled()
    tab.ban_button.click()
    submit(window.form, reason="spam")
    qtbot.waitUntil(lambda: not bob.unit.logged_in, timeout=10000)
    qtbot.waitUntil(lambda: bob.login_window.isVisible())
    assert "banned" in bob.login_window.status.text()
    qtbot.waitUntil(lambda: user_row(window, "bob")["banned"])
    assert window.status.text() == "@bob is banned."
    row = next(r for r, u in enumerate(tab.items) if u["username"] == "bob")
    assert tab.table.item(row, 3).text() == "yes"  # type: ignore[union-attr]

    window.tabs.setCurrentWidget(window.audit)
    qtbot.waitUntil(lambda: "user.banned" in window.audit.actions_shown())
    entry = next(e for e in window.audit.items if e["action"] == "user.banned")
    assert entry["username"] == "bob" and entry["details"]["reason"] == "spam"
    stamps = [e["ts"] for e in window.audit.items]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    window.audit.action.setCurrentIndex(window.audit.action.findData("login"))
    qtbot.waitUntil(lambda: bool(window.audit.items)
                    and set(window.audit.actions_shown()) == {"login"})

    select_user(qtbot, window, "bob")
    assert tab.unban_button.isEnabled()
    tab.unban_button.click()
    qtbot.waitUntil(lambda: not user_row(window, "bob")["banned"])
    server.user("bob", register=False)  # may sign in again


def test_refusals_show_the_servers_message_and_roles_passwords_users_change(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """Banning oneself is refused with the server's sentence; Roles… gives
    auditor, Create user… makes an account that can log in, Reset password…
    changes it."""
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    tab = window.users
    select_user(qtbot, window, "root")
    tab.ban_button.click()
    submit(window.form)
    qtbot.waitUntil(lambda: window.status.text().startswith("The server refused it: "))
    assert root.unit.logged_in

    tab.create_button.click()
    submit(window.form, username="dora", password="a long password 1", auditor=True)
    qtbot.waitUntil(lambda: window.status.text() == "@dora was created.")
    qtbot.waitUntil(lambda: any(u["username"] == "dora" for u in tab.items))
    assert user_row(window, "dora")["roles"] == ["auditor"]
    dora = server.wait(server.running.user("dora", password="a long password 1",
                                           register=False))
    server.wait(dora.close())

    select_user(qtbot, window, "dora")
    tab.roles_button.click()
    form = window.form
    assert form is not None and form.fields["auditor"].isChecked()
    submit(form, admin=True, auditor=False)
    qtbot.waitUntil(lambda: user_row(window, "dora")["roles"] == ["admin"])

    tab.password_button.click()
    form = window.form
    assert form is not None
    form.fields["password"].setText("a long password 2")
    form.fields["again"].setText("a long password 3")
    assert not form.ok_button.isEnabled() and form.problem.text()
    submit(form, again="a long password 2")
    qtbot.waitUntil(lambda: window.status.text() == "The password of @dora was reset.")
    dora = server.wait(server.running.user("dora", password="a long password 2",
                                           register=False))
    server.wait(dora.close())


def test_an_auditor_reads_everything_but_changes_nothing(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """An auditor gets the window with every tab (users, rooms, sessions, audit,
    monitor, export) filled, and none of the write actions."""
    make_client("bob")
    give_roles(server, "audrey", ["auditor"])
    audrey = make_client("audrey", register=False)
    assert audrey.controller.can_administer and not audrey.controller.is_admin
    window = open_admin(qtbot, audrey)
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [
        "Users", "Rooms", "Sessions", "Audit log", "Monitor", "Export"]
    select_user(qtbot, window, "bob")
    for button in (window.users.create_button, window.users.ban_button,
                   window.users.unban_button, window.users.password_button,
                   window.users.roles_button, window.rooms.ban_button,
                   window.rooms.unban_button, window.broadcast_button):
        assert button.isHidden()
    assert "auditor" in window.role_label.text()
    window.tabs.setCurrentWidget(window.sessions)
    qtbot.waitUntil(lambda: {s["username"] for s in window.sessions.items} >= {"bob", "audrey"})
    window.tabs.setCurrentWidget(window.audit)
    qtbot.waitUntil(lambda: "login" in window.audit.actions_shown())


def test_broadcast_reaches_everyone_as_an_announcement(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """Broadcast… sends admin.broadcast; bob's page shows it in the
    announcement bar above the conversation, until closed."""
    bob = make_client("bob")
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    assert window.broadcast_button.isVisible()
    window.broadcast_button.click()
    submit(window.form, body="Maintenance at 18:00")
    page = bob.main_window
    qtbot.waitUntil(lambda: not page.announcement.isHidden())
    text = page.announcement_label.text()
    assert "Maintenance at 18:00" in text and "Announcement from @root" in text
    assert window.status.text() == "The announcement was sent."
    page.announcement_close.click()
    assert page.announcement.isHidden()


def test_rooms_can_be_banned_and_the_monitor_lists_messages(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """The Rooms tab bans and unbans a room; the Monitor tab, while watching,
    lists every message (time, room, sender, text) and keeps the last 1,000."""
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    bob = server.user("bob")
    room_id = shared_room(server, bob, name="lobby")
    window = open_admin(qtbot, root)
    rooms = window.rooms
    window.tabs.setCurrentWidget(rooms)
    qtbot.waitUntil(lambda: any(r["room_id"] == room_id for r in rooms.items))
    assert rooms.select_where(lambda r: r["room_id"] == room_id)
    rooms.ban_button.click()
    submit(window.form, reason="off topic")
    qtbot.waitUntil(lambda: any(r["room_id"] == room_id and r["banned"] for r in rooms.items))
    assert rooms.unban_button.isEnabled()
    rooms.unban_button.click()
    qtbot.waitUntil(lambda: any(r["room_id"] == room_id and not r["banned"]
                                for r in rooms.items))

    monitor = window.monitor
    window.tabs.setCurrentWidget(monitor)
    monitor.watch.setChecked(True)
    qtbot.waitUntil(lambda: monitor.on)
    say(server, bob, room_id, "hello there")
    qtbot.waitUntil(lambda: len(monitor.rows()) == 1)
    row = monitor.rows()[0]
    assert row[1:] == ["#lobby", "bob", "hello there"] and row[0]
    for n in range(MONITOR_ROWS + 5):
        monitor.add_message({"room_id": room_id, "sender": "x", "ts": 1, "body": str(n)})
    rows = monitor.rows()
    assert len(rows) == MONITOR_ROWS and rows[-1][3] == str(MONITOR_ROWS + 4)
    monitor.add_message({"room_id": room_id, "sender": "carol", "ts": 1, "body": "needle"})
    monitor.filter.setText("NEEDLE")
    assert [r[3] for r in monitor.visible_rows()] == ["needle"]
    monitor.filter.setText("carol")
    assert [r[2] for r in monitor.visible_rows()] == ["carol"]
    monitor.filter.setText("")
    assert len(monitor.visible_rows()) == MONITOR_ROWS
    monitor.watch.setChecked(False)
    qtbot.waitUntil(lambda: not monitor.on)
    window.close()
    qtbot.waitUntil(lambda: root.unit.admin_window is None)


def test_the_monitor_resumes_after_a_reconnect(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """The server forgets admin.monitor with the connection; once the client is
    back it asks again, and messages keep arriving in the Monitor tab."""
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    monitor = window.monitor
    window.tabs.setCurrentWidget(monitor)
    monitor.watch.setChecked(True)
    qtbot.waitUntil(lambda: monitor.on)
    server.stop()
    qtbot.waitUntil(lambda: root.controller.connection == "reconnecting", timeout=10000)
    server.start()
    qtbot.waitUntil(lambda: root.controller.connection == "online", timeout=15000)
    bob = server.user("bob")
    room_id = shared_room(server, bob, name="after")
    say(server, bob, room_id, "still watched")
    qtbot.waitUntil(lambda: any(r[3] == "still watched" for r in monitor.rows()),
                    timeout=10000)


def test_the_rooms_tab_shows_the_members_of_rooms_the_admin_is_in(
        make_client: Any, server: ServerHandle, qtbot: Any) -> None:
    """Selecting a room the admin is a member of lists its members (username,
    display name, role) from ``room.members``; for a room the admin is not in,
    the panel gives ``admin.rooms``' count and says members are shown to
    members only, with no list."""
    give_roles(server, "root", ["admin"])
    bob = server.user("bob")
    server.request(bob, "user.update", {"display_name": "Bob Builder"})
    server.user("carol")
    general = shared_room(server, bob, "root", "carol", name="general")
    secret = shared_room(server, bob, "carol", name="secret", visibility="private")
    root = make_client("root", register=False)
    qtbot.waitUntil(lambda: root.controller.rooms.room(general) is not None)
    window = open_admin(qtbot, root)
    rooms = window.rooms
    window.tabs.setCurrentWidget(rooms)
    qtbot.waitUntil(lambda: {general, secret} <= {r["room_id"] for r in rooms.items})
    assert rooms.members_title.text() == "Select a room to see its members."

    assert rooms.select_where(lambda r: r["room_id"] == general)
    qtbot.waitUntil(lambda: rooms.members_list.count() == 3)
    shown = [rooms.members_list.item(i).text()  # type: ignore[union-attr]
             for i in range(rooms.members_list.count())]
    assert shown == ["@bob — Bob Builder (owner)", "@carol", "@root"]
    assert rooms.members_title.text() == "3 members of #general:"
    assert not rooms.members_list.isHidden()

    assert rooms.select_where(lambda r: r["room_id"] == secret)
    assert rooms.members_list.count() == 0 and rooms.members_list.isHidden()
    assert rooms.members_title.text() == (
        "#secret has 2 members. The server shows who they are to members of the room "
        "only, and you are not one.")
