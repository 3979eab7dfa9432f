"""The Contacts window (requests, accept, add, remove, block) and the profile card."""

from __future__ import annotations

from typing import Any

from qtclient.qt import QMenu
from qtclient.views.contacts import USERNAME
from tests.gui.helpers import click_room, shared_room
from tests.support.events import EventLog


def _contact_actions(dialog: Any, username: str, menus: list[QMenu]) -> dict[str, Any]:
    """The right-click menu of ``username`` in the Contacts window, by action name."""
    item = dialog.row_of(dialog.contacts_list, username)
    assert item is not None
    menus.append(QMenu())  # the actions live as long as their menu
    return {a.objectName(): a for a in dialog.contacts_list.contact_actions(item, menus[-1])}


def test_a_request_from_another_client_is_accepted(make_client: Any, server: Any,
                                                   qtbot: Any, wait: Any) -> None:
    """Bob's request shows among the requests to alice, with its message; Accept
    makes them contacts on both sides, shown with a presence dot and bob's
    status text; the menu's Message opens the direct conversation; bob's
    presence event turns his dot grey."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    server.request(bob, "user.update", {"status_text": "on a boat"})
    alice.main_window.contacts_action.trigger()
    dialog = alice.dialogs["contacts"]
    server.request(bob, "contact.request", {"username": "alice", "message": "hi, it's bob"})
    qtbot.waitUntil(lambda: dialog.incoming_list.count() == 1)
    assert dialog.incoming_list.item(0).text() == "@bob — hi, it's bob"
    assert dialog.incoming_label.text() == "Requests to you (1)"
    dialog.incoming_list.setCurrentRow(0)
    dialog.accept_button.click()
    qtbot.waitUntil(lambda: dialog.contacts_list.count() == 1)
    wait(log.next("contact.added", where=lambda d: d["profile"]["username"] == "alice"))
    assert dialog.incoming_list.count() == 0
    item = dialog.contacts_list.item(0)
    assert item.data(USERNAME) == "bob"
    assert item.text() == "bob (@bob) — on a boat"
    assert item.toolTip() == "Online"
    contacts = server.request(bob, "contact.list")
    assert [p["username"] for p in contacts["contacts"]] == ["alice"]

    menus: list[QMenu] = []
    actions = _contact_actions(dialog, "bob", menus)
    assert set(actions) == {"message", "profile", "remove", "block"}
    actions["message"].trigger()
    qtbot.waitUntil(lambda: alice.controller.current_room is not None)
    room_id = alice.controller.current_room
    assert alice.controller.rooms.room(room_id).is_direct
    qtbot.waitUntil(lambda: alice.controller.rooms.room(room_id).peer == "bob")

    # Presence keeps the list current: bob leaves, his dot turns Offline.
    wait(bob.close())
    qtbot.waitUntil(lambda: dialog.contacts_list.item(0).toolTip() == "Offline")


def test_add_contact_sends_a_request_the_other_side_receives(make_client: Any, server: Any,
                                                             qtbot: Any, wait: Any) -> None:
    """Add contact… sends ``contact.request`` with the message; the request is
    listed as alice's own; Withdraw takes it back."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice.main_window.contacts_action.trigger()
    dialog = alice.dialogs["contacts"]
    dialog.add_button.click()
    add = alice.dialogs["add_contact"]
    qtbot.keyClicks(add.username, "@bob")
    qtbot.keyClicks(add.message, "remember me?")
    add.buttons.accepted.emit()
    event = wait(log.next("contact.request"))
    assert event.data == {"from": "alice", "message": "remember me?"}
    qtbot.waitUntil(lambda: dialog.outgoing_list.count() == 1)
    assert dialog.outgoing_list.item(0).text() == "@bob"
    assert server.request(bob, "contact.list")["incoming"] == ["alice"]
    dialog.outgoing_list.setCurrentRow(0)
    dialog.withdraw_button.click()
    qtbot.waitUntil(lambda: dialog.outgoing_list.count() == 0)
    assert server.request(bob, "contact.list")["incoming"] == []


def test_block_removes_the_contact(make_client: Any, server: Any, qtbot: Any,
                                   wait: Any) -> None:
    """Block in a contact's menu ends the contact on both sides, and the
    server lists bob among alice's blocked users."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    server.request(bob, "contact.request", {"username": "alice"})
    server.request(server.user("alice", register=False), "contact.respond",
                   {"username": "bob", "accept": True})
    alice.main_window.contacts_action.trigger()
    dialog = alice.dialogs["contacts"]
    qtbot.waitUntil(lambda: dialog.contacts_list.count() == 1)
    menus: list[QMenu] = []
    _contact_actions(dialog, "bob", menus)["block"].trigger()
    qtbot.waitUntil(lambda: dialog.contacts_list.count() == 0)
    wait(log.next("contact.removed", username="alice"))
    alice_conn = server.user("alice", register=False)
    assert server.request(alice_conn, "contact.blocks")["blocked"] == ["bob"]
    assert server.request(alice_conn, "contact.list")["contacts"] == []


def test_profile_card_from_a_member_and_from_contacts(make_client: Any, server: Any,
                                                      qtbot: Any) -> None:
    """A member's Profile… shows the profile card: name, @username, status text
    and presence (``user.get``); its Message opens the direct conversation."""
    alice = make_client("alice")
    bob = server.user("bob")
    server.request(bob, "user.update", {"display_name": "Bob B.",
                                        "status_text": "out fishing"})
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    alice.main_window.members_button.click()
    members = alice.controller.members
    qtbot.waitUntil(lambda: "bob" in members.usernames())
    menus: list[QMenu] = [QMenu()]
    actions = {a.objectName(): a for a in alice.main_window.members_view.member_actions(
        members.index(members.usernames().index("bob")), menus[0])}
    actions["profile"].trigger()
    card = alice.dialogs["profile"]
    qtbot.waitUntil(lambda: card.status_label.text() == "out fishing")
    assert card.name_label.text() == "Bob B."
    assert card.username_label.text() == "@bob"
    assert "Online" in card.presence_label.text()
    card.message_button.click()
    qtbot.waitUntil(lambda: alice.controller.current_room not in (None, room_id))
    direct = alice.controller.current_room
    qtbot.waitUntil(lambda: alice.controller.rooms.room(direct).peer == "bob")

    # From the Contacts window too.
    server.request(bob, "contact.request", {"username": "alice"})
    alice.main_window.contacts_action.trigger()
    dialog = alice.dialogs["contacts"]
    qtbot.waitUntil(lambda: dialog.incoming_list.count() == 1)
    dialog.accept_button.click()
    qtbot.waitUntil(lambda: dialog.contacts_list.count() == 1)
    _contact_actions(dialog, "bob", menus)["profile"].trigger()
    card = alice.dialogs["profile"]
    qtbot.waitUntil(lambda: card.status_label.text() == "out fishing")
