"""Creating, joining, leaving rooms; inviting and removing people where the role allows."""

from __future__ import annotations

from typing import Any

import pytest

from qtclient.models.invites import InviteListModel
from qtclient.models.members import MemberListModel
from qtclient.qt import ItemRole, QMenu
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

    # a moderator cannot remove the owner
    assert set(actions(alice, "olga")) == {"message", "profile"}
    assert set(actions(carol, "alice")) == {"message", "profile"}  # carol is a plain member
    actions(alice, "carol")["kick"].trigger()
    qtbot.waitUntil(lambda: carol.controller.rooms.room(room_id) is None)
    qtbot.waitUntil(lambda: "carol" not in members.usernames())
    assert room_index(alice, room_id).data() == "general"
    assert members.index(0).data(MemberListModel.Roles.Role) == "owner"


def _invite_rows(app: Any) -> list[int]:
    return app.controller.invites.room_ids()


def test_an_invitation_is_shown_not_joined_and_join_accepts_it(make_client: Any, server: Any,
                                                                qtbot: Any, wait: Any) -> None:
    """An invitation (room.create {members}) shows in the invitations section, not
    in the room list; Join accepts it: the room opens and bob sees alice join."""
    alice = make_client("alice")
    window = alice.main_window
    assert not window.invites_panel.isVisibleTo(window)
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room = server.request(bob, "room.create", {"name": "plans", "visibility": "private",
                                               "members": ["alice"]})
    room_id = room["room_id"]
    qtbot.waitUntil(lambda: _invite_rows(alice) == [room_id])
    assert window.invites_panel.isVisibleTo(window)
    assert window.invites_title.text() == "Invitation (1)"
    assert alice.controller.rooms.room(room_id) is None
    index = alice.controller.invites.index(0)
    assert index.data() == "plans"
    assert index.data(InviteListModel.Roles.By) == "bob"
    window.accept_invite_button.click()
    qtbot.waitUntil(lambda: alice.controller.current_room == room_id)
    assert window.room_title.text() == "# plans"
    assert _invite_rows(alice) == []
    assert not window.invites_panel.isVisibleTo(window)
    wait(log.next("room.member", username="alice", change="joined"))


def test_decline_and_invitations_waiting_at_login(make_client: Any, server: Any,
                                                  qtbot: Any, wait: Any) -> None:
    """Invitations made while alice was away are listed at login; Decline refuses
    the selected one on the server; one accepted on another device becomes a room."""
    server.user("alice")
    bob = server.user("bob")
    first = server.request(bob, "room.create", {"name": "one", "visibility": "private",
                                                "members": ["alice"]})["room_id"]
    second = server.request(bob, "room.create", {"name": "two", "visibility": "private",
                                                 "members": ["alice"]})["room_id"]
    alice = make_client("alice", register=False)
    qtbot.waitUntil(lambda: set(_invite_rows(alice)) == {first, second})
    window = alice.main_window
    assert window.invites_title.text() == "Invitations (2)"
    view = window.invite_list
    row = _invite_rows(alice).index(first)
    view.setCurrentIndex(alice.controller.invites.index(row))
    window.decline_invite_button.click()
    qtbot.waitUntil(lambda: _invite_rows(alice) == [second])
    elsewhere = server.user("alice", register=False)
    pending = server.request(elsewhere, "room.invites")["invites"]
    assert [i["room"]["room_id"] for i in pending] == [second]
    server.request(elsewhere, "room.join", {"room_id": second})
    qtbot.waitUntil(lambda: alice.controller.rooms.room(second) is not None)
    assert _invite_rows(alice) == []
    assert alice.controller.rooms.room(second).name == "two"


@pytest.mark.server_config(max_frame=4096)
def test_the_room_list_has_every_page(make_client: Any, server: Any, qtbot: Any) -> None:
    """A user in more rooms than one room.list answer can carry (here: than fit in a
    4 KiB frame) sees all of them."""
    server.user("alice")
    bob = server.user("bob")
    made = {shared_room(server, bob, "alice", name=f"room {n}") for n in range(9)}
    for room_id in made:
        server.request(bob, "room.update", {"room_id": room_id, "topic": "t" * 500})
    alice = make_client("alice", register=False)
    qtbot.waitUntil(lambda: {e.room_id for e in alice.controller.rooms.rooms()} == made)


def test_members_panel_shows_the_username_next_to_the_name(make_client: Any, server: Any,
                                                          qtbot: Any, wait: Any) -> None:
    """Display names can imitate someone: the members panel draws each member's
    @username whole on the name's line, even when the display name is long and
    padded to push it away; the tooltip names both."""
    alice = make_client("alice")
    mallory = server.user("mallory")
    server.request(mallory, "user.update",
                   {"display_name": "Alice" + " " * 30 + "the real alice, trust me"})
    room_id = shared_room(server, mallory, "alice")
    click_room(qtbot, alice, room_id)
    alice.main_window.members_button.click()
    members = alice.controller.members
    qtbot.waitUntil(lambda: set(members.usernames()) == {"alice", "mallory"})
    view = alice.main_window.members_view
    delegate = view.itemDelegate()
    index = members.index(members.usernames().index("mallory"))
    width = view.visualRect(index).width() - 38 - 30
    name, handle = delegate.first_line(index, view.font(), width)
    assert handle == "@mallory"
    assert name.startswith("Alice ") and "  " not in name
    assert view.fontMetrics().horizontalAdvance(f"{name}  {handle}") <= width
    assert index.data(ItemRole.ToolTipRole.value).endswith("(@mallory)")
