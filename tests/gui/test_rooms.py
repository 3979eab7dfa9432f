"""Creating, joining, leaving rooms; inviting and removing people where the role allows."""

from __future__ import annotations

from typing import Any

from qtclient.models.members import MemberListModel
from qtclient.qt import QMenu
from tests.gui.helpers import click_room, room_index, shared_room
from tests.support.events import EventLog


def test_create_a_room_and_invite_someone(make_client: Any, server: Any, qtbot: Any,
                                          wait: Any) -> None:
    """"New room" creates and opens a room owned by alice; as owner she can
    invite bob through the invite dialog, and he is told."""
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice = make_client("alice")
    alice.main_window.new_room_button.click()
    dialog = alice.dialogs["create"]
    qtbot.keyClicks(dialog.name, "design")
    qtbot.keyClicks(dialog.topic, "pixels and words")
    dialog.public.setChecked(False)
    dialog.buttons.accepted.emit()
    qtbot.waitUntil(lambda: alice.controller.current_room is not None)
    room_id = alice.controller.current_room
    window = alice.main_window
    assert window.room_title.text() == "# design"
    assert window.room_topic.text() == "pixels and words"
    assert alice.controller.rooms.room(room_id).role == "owner"
    assert window.invite_button.isVisibleTo(window)

    window.invite_button.click()
    invite = alice.dialogs["invite"]
    qtbot.keyClicks(invite.query, "bo")
    qtbot.waitUntil(lambda: invite.results.count() == 1)
    invite.action.click()
    event = wait(log.next("room.invited"))
    assert event.data["room"]["room_id"] == room_id
    server.request(bob, "room.join", {"room_id": room_id})
    qtbot.waitUntil(lambda: alice.controller.members.usernames() == ["alice", "bob"])


def test_join_from_the_directory_then_leave(make_client: Any, server: Any, qtbot: Any) -> None:
    """Public rooms are listed in "Browse rooms"; joining opens the room; "Leave"
    takes it off the list."""
    bob = server.user("bob")
    server.request(bob, "room.create", {"name": "lunch", "visibility": "public",
                                        "topic": "where to eat"})
    alice = make_client("alice")
    alice.main_window.browse_button.click()
    dialog = alice.dialogs["directory"]
    qtbot.waitUntil(lambda: dialog.results.count() == 1)
    assert dialog.results.item(0).text().startswith("lunch — 1 member")
    dialog.action.click()
    qtbot.waitUntil(lambda: alice.controller.current_room is not None)
    room_id = alice.controller.current_room
    assert alice.main_window.room_title.text() == "# lunch"
    assert not alice.main_window.invite_button.isVisibleTo(alice.main_window)

    alice.main_window.leave_button.click()
    qtbot.waitUntil(lambda: alice.controller.rooms.room(room_id) is None)
    assert alice.main_window.centre.currentWidget() is alice.main_window.empty_page


def test_owner_removes_a_member_from_the_members_panel(make_client: Any, server: Any,
                                                       qtbot: Any, wait: Any) -> None:
    """The owner's member menu offers "remove"; the removed member's client
    drops the room; a plain member is offered no such action."""
    alice = make_client("alice")
    carol = make_client("carol")
    owner = server.user("olga")
    room_id = shared_room(server, owner, "alice", "carol")
    server.request(owner, "room.set_role", {"room_id": room_id, "username": "alice",
                                            "role": "moderator"})
    click_room(qtbot, alice, room_id)
    click_room(qtbot, carol, room_id)
    qtbot.waitUntil(lambda: alice.controller.rooms.room(room_id).role == "moderator")
    alice.main_window.members_button.click()
    members = alice.controller.members
    qtbot.waitUntil(lambda: set(members.usernames()) == {"alice", "carol", "olga"})
    qtbot.waitUntil(lambda: set(carol.controller.members.usernames()) == {"alice", "carol",
                                                                          "olga"})

    menus: list[QMenu] = []  # the actions live as long as their menu

    def actions(app: Any, username: str) -> dict[str, Any]:
        model = app.controller.members
        row = model.usernames().index(username)
        menus.append(QMenu())
        return {a.objectName(): a for a in app.main_window.members_view.member_actions(
            model.index(row), menus[-1])}

    assert set(actions(alice, "olga")) == {"message"}  # a moderator cannot remove the owner
    assert set(actions(carol, "alice")) == {"message"}  # carol is a plain member
    actions(alice, "carol")["kick"].trigger()
    qtbot.waitUntil(lambda: carol.controller.rooms.room(room_id) is None)
    qtbot.waitUntil(lambda: "carol" not in members.usernames())
    assert room_index(alice, room_id).data() == "general"
    assert members.index(0).data(MemberListModel.Roles.Role) == "owner"
