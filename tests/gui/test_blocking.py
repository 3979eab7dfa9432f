"""Blocking in the desktop client (docs/protocol.md 4, ``contact.block``): the
Blocked list of the Contacts window, Block and Unblock on the profile card,
and a blocked person's messages leaving the timeline of a shared room."""

from __future__ import annotations

from typing import Any

from qtclient.app import ChatApp
from qtclient.models.timeline import TimelineModel
from qtclient.qt import QMenu
from qtclient.views.contacts import USERNAME, ContactsDialog
from tests.gui.helpers import click_room, say, shared_room
from tests.support.events import EventLog


def _senders(timeline: TimelineModel) -> list[str]:
    return [timeline.item(row).sender for row in range(timeline.rowCount())]


def _blocked_rows(dialog: ContactsDialog) -> list[str]:
    return [str(dialog.blocked_list.item(r).data(USERNAME))
            for r in range(dialog.blocked_list.count())]


def _open_contacts(app: ChatApp) -> ContactsDialog:
    app.main_window.contacts_action.trigger()
    dialog = app.dialogs["contacts"]
    assert isinstance(dialog, ContactsDialog)
    return dialog


def test_blocking_from_the_profile_card_hides_messages_until_unblocked(
        make_client: Any, server: Any, qtbot: Any, wait: Any) -> None:
    """Block on bob's profile card: his messages already shown in a shared room
    leave alice's timeline, he is listed under Blocked, the server knows it, and
    his next message does not reach her. Unblock in the Contacts window lists
    him no more and shows his messages again (the history is asked again)."""
    alice = make_client("alice")
    bob = server.user("bob")
    carol = server.user("carol")
    room_id = shared_room(server, bob, "alice", "carol")
    say(server, bob, room_id, "hello from bob")
    say(server, carol, room_id, "hello from carol")
    timeline = click_room(qtbot, alice, room_id)
    assert _senders(timeline) == ["bob", "carol"]

    alice.main_window.members_button.click()
    members = alice.controller.members
    qtbot.waitUntil(lambda: "bob" in members.usernames())
    menus = [QMenu()]
    actions = {a.objectName(): a for a in alice.main_window.members_view.member_actions(
        members.index(members.usernames().index("bob")), menus[0])}
    actions["profile"].trigger()
    card = alice.dialogs["profile"]
    assert card.block_button.text() == "Block"
    card.block_button.click()
    qtbot.waitUntil(lambda: _senders(timeline) == ["carol"])
    qtbot.waitUntil(lambda: card.block_button.text() == "Unblock")
    alice_conn = server.user("alice", register=False)
    assert server.request(alice_conn, "contact.blocks")["blocked"] == ["bob"]

    # Bob's next message does not arrive; carol's, sent after it, does.
    say(server, bob, room_id, "are you there?")
    say(server, carol, room_id, "still here")
    qtbot.waitUntil(lambda: timeline.rowCount() == 2)
    assert [timeline.item(r).body for r in range(2)] == ["hello from carol", "still here"]

    dialog = _open_contacts(alice)
    qtbot.waitUntil(lambda: _blocked_rows(dialog) == ["bob"])
    assert dialog.blocked_label.text() == "Blocked (1)"
    dialog.blocked_list.setCurrentRow(0)
    dialog.unblock_button.click()
    qtbot.waitUntil(lambda: dialog.blocked_list.count() == 0)
    assert server.request(alice_conn, "contact.blocks")["blocked"] == []
    qtbot.waitUntil(lambda: _senders(timeline) == ["bob", "carol", "bob", "carol"])
    assert [timeline.item(r).body for r in range(4)] == [
        "hello from bob", "hello from carol", "are you there?", "still here"]


def test_blocked_list_from_login_and_from_another_device(make_client: Any, server: Any,
                                                         qtbot: Any, wait: Any) -> None:
    """Those blocked before the desktop signed in are listed (``contact.blocks``);
    a block made on another device is added live (``contact.blocked``), and an
    unblock there removes it."""
    server.user("bob")
    server.user("dave")
    alice_conn = server.user("alice")
    server.request(alice_conn, "contact.block", {"username": "bob", "on": True})
    alice = make_client("alice", register=False)
    dialog = _open_contacts(alice)
    qtbot.waitUntil(lambda: _blocked_rows(dialog) == ["bob"])
    server.request(alice_conn, "contact.block", {"username": "dave", "on": True})
    qtbot.waitUntil(lambda: _blocked_rows(dialog) == ["bob", "dave"])
    server.request(alice_conn, "contact.block", {"username": "bob", "on": False})
    qtbot.waitUntil(lambda: _blocked_rows(dialog) == ["dave"])


def test_block_in_the_contacts_window_lists_them_as_blocked(make_client: Any, server: Any,
                                                            qtbot: Any, wait: Any) -> None:
    """Block in a contact's menu moves them from Contacts to Blocked; Unblock
    there tells the server (bob can ask alice to be a contact again)."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    server.request(bob, "contact.request", {"username": "alice"})
    server.request(server.user("alice", register=False), "contact.respond",
                   {"username": "bob", "accept": True})
    dialog = _open_contacts(alice)
    qtbot.waitUntil(lambda: dialog.contacts_list.count() == 1)
    menu = QMenu()
    item = dialog.row_of(dialog.contacts_list, "bob")
    actions = {a.objectName(): a for a in dialog.contacts_list.contact_actions(item, menu)}
    actions["block"].trigger()
    qtbot.waitUntil(lambda: _blocked_rows(dialog) == ["bob"])
    assert dialog.contacts_list.count() == 0
    wait(log.next("contact.removed", username="alice"))
    dialog.blocked_list.setCurrentRow(0)
    dialog.unblock_button.click()
    qtbot.waitUntil(lambda: dialog.blocked_list.count() == 0)
    server.request(bob, "contact.request", {"username": "alice"})
    qtbot.waitUntil(lambda: dialog.incoming_list.count() == 1)
