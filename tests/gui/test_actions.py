"""Edit, delete, react, reply and copy from the message menu; typing; presence."""

from __future__ import annotations

from typing import Any

import pytest

from chatnet.reactions import canonical_emoji
from qtclient.models.members import MemberListModel
from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import TimelineModel
from qtclient.qt import (
    QApplication,
    QEvent,
    QHelpEvent,
    QMenu,
    QModelIndex,
    QStyleOptionViewItem,
    Qt,
    QToolTip,
    QWidget,
)
from qtclient.views.conversation import QUICK_REACTIONS
from tests.gui.helpers import click_room, room_index, say, shared_room
from tests.support.events import EventLog

_TR = TimelineModel.Roles


def _row_index(timeline: TimelineModel, body: str) -> QModelIndex:
    for row in range(timeline.rowCount()):
        if timeline.item(row).body == body and timeline.item(row).msg_id is not None:
            return timeline.index(row)
    raise AssertionError(f"no stored message {body!r} in {timeline.bodies()}")


def _trigger(app: Any, index: QModelIndex, name: str) -> None:
    """Choose ``name`` from the message's right-click menu."""
    menu = QMenu()
    actions = {a.objectName(): a for a in app.main_window.timeline.message_actions(index, menu)}
    assert name in actions, f"{name} not offered; menu has {sorted(actions)}"
    actions[name].trigger()


def _send(qtbot: Any, app: Any, text: str) -> None:
    composer = app.main_window.composer
    qtbot.keyClicks(composer, text)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


def test_edit_react_reply_delete_from_the_message_menu(make_client: Any, server: Any,
                                                       qtbot: Any, wait: Any) -> None:
    """Alice edits her message, reacts, replies to bob, deletes; bob sees each
    change, and alice's conversation shows it (edited mark, chips, quote)."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    say(server, bob, room_id, "bob's question")
    _send(qtbot, alice, "first draft")
    qtbot.waitUntil(lambda: timeline.bodies() == ["bob's question", "first draft"]
                    and timeline.item(1).msg_id is not None)
    draft = _row_index(timeline, "first draft")
    msg_id = draft.data(_TR.MsgId)

    # Edit: the composer takes the text; Enter saves it.
    _trigger(alice, draft, "edit")
    composer = alice.main_window.composer
    assert composer.toPlainText() == "first draft"
    assert alice.main_window.compose_label.text() == "Editing your message"
    composer.clear()
    _send(qtbot, alice, "final text")
    edited = wait(log.next("msg.edited", msg_id=msg_id))
    assert edited.data["body"] == "final text"
    qtbot.waitUntil(lambda: _row_index(timeline, "final text").data(_TR.Edited) is True)

    # React from the menu, then take it back by clicking the chip.
    _trigger(alice, _row_index(timeline, "final text"), "react:👍")
    wait(log.next("msg.reaction", msg_id=msg_id, emoji="👍", on=True, username="alice"))
    qtbot.waitUntil(lambda: _row_index(timeline, "final text").data(_TR.Reactions)
                    == [("👍", 1, True)])
    view = alice.main_window.timeline
    index = _row_index(timeline, "final text")
    view.scrollTo(index)
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    option.rect = view.visualRect(index)
    layout = view.message_delegate.layout_for(option, index)
    chip = layout.chips[0][0].translated(option.rect.topLeft())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=chip.center())
    wait(log.next("msg.reaction", msg_id=msg_id, emoji="👍", on=False))
    qtbot.waitUntil(lambda: _row_index(timeline, "final text").data(_TR.Reactions) == [])

    # Bob's reaction and edit reach alice.
    server.request(bob, "msg.react", {"room_id": room_id, "msg_id": msg_id, "emoji": "❤️",
                                      "on": True})
    qtbot.waitUntil(lambda: _row_index(timeline, "final text").data(_TR.Reactions)
                    == [("❤️", 1, False)])
    question = _row_index(timeline, "bob's question").data(_TR.MsgId)
    server.request(bob, "msg.edit", {"room_id": room_id, "msg_id": question,
                                     "body": "bob's better question"})
    qtbot.waitUntil(lambda: "bob's better question" in timeline.bodies())

    # Reply to bob's message: the quote shows, and the server records reply_to.
    _trigger(alice, _row_index(timeline, "bob's better question"), "reply")
    assert alice.main_window.compose_label.text().startswith("Replying to bob")
    _send(qtbot, alice, "my answer")
    reply = wait(log.next("msg", where=lambda d: d["message"]["body"] == "my answer"))
    assert reply.data["message"]["reply_to"] == question
    qtbot.waitUntil(lambda: "my answer" in timeline.bodies()
                    and _row_index(timeline, "my answer").data(_TR.ReplyPreview)
                    == ("bob", "bob's better question"))

    # Copy puts the text on the clipboard.
    _trigger(alice, _row_index(timeline, "my answer"), "copy")
    assert QApplication.clipboard().text() == "my answer"

    # Delete: gone for bob and from alice's view.
    _trigger(alice, _row_index(timeline, "final text"), "delete")
    wait(log.next("msg.deleted", msg_id=msg_id))
    qtbot.waitUntil(lambda: timeline.bodies() == ["bob's better question", "my answer"])


#: Emoji for the crowded message below (real ones, so the chips render).
CROWD = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘",
         "🥰", "😗", "😙", "🥲", "😚", "🙂"]


def _chip_click(qtbot: Any, app: Any, index: QModelIndex, emoji: str) -> None:
    """Click the reaction chip of ``emoji`` on the message at ``index``."""
    view = app.main_window.timeline
    view.scrollTo(index)
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    option.rect = view.visualRect(index)
    layout = view.message_delegate.layout_for(option, index)
    [rect] = [r for r, e, _n, _m in layout.chips if e == emoji]
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=rect.translated(option.rect.topLeft()).center())


def test_reactions_menu_offers_what_the_server_accepts(make_client: Any, server: Any,
                                                       qtbot: Any, wait: Any,
                                                       tmp_path: Any) -> None:
    """The menu offers only single, fully qualified emoji. A crowded message (1,200
    reactions: the server sends counts only) shows its counts, takes live reactions,
    greys out new emoji past the message's cap, and a reaction past the user's own
    cap is explained in the status bar."""
    assert all(canonical_emoji(e) == e for e in QUICK_REACTIONS)
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    crowded = say(server, bob, room_id, "crowded")["msg_id"]
    store = server.running.service.store
    ids = [store.ids.next_id() for _ in range(60)]

    def flood(t: Any) -> None:
        t.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                      "created_ts) VALUES (?, ?, 'F', 'x', 0)",
                      [(uid, f"fan-{uid}") for uid in ids])
        t.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
                      [(crowded, uid, e, i) for uid in ids for i, e in enumerate(CROWD)])

    wait(store.db.run_interaction("flood", flood))
    timeline = click_room(qtbot, alice, room_id)
    index = _row_index(timeline, "crowded")
    assert index.data(_TR.Reactions) == [(e, 60, False) for e in CROWD]
    assert set(index.data(_TR.ReactionUsers).values()) == {None}

    # Full message: the quick emoji not on it are greyed out, and the menu says why.
    menu = QMenu()
    actions = {a.objectName(): a for a in alice.main_window.timeline.message_actions(
        index, menu)}
    assert actions["react:😂"].isEnabled() and not actions["react:👍"].isEnabled()
    assert not actions["react:🎉"].isEnabled()
    assert "20 different reactions" in actions["react-limit"].text()

    # Live reactions move the counts; alice's own click is highlighted.
    server.request(bob, "msg.react", {"room_id": room_id, "msg_id": crowded, "emoji": "😀",
                                      "on": True})
    qtbot.waitUntil(lambda: _row_index(timeline, "crowded").data(_TR.Reactions)[0]
                    == ("😀", 61, False))
    for emoji in CROWD[:5]:
        _chip_click(qtbot, alice, _row_index(timeline, "crowded"), emoji)
        qtbot.waitUntil(lambda e=emoji: (e, 61 + (e == "😀"), True)
                        in _row_index(timeline, "crowded").data(_TR.Reactions))
    # What the person sees, kept in tmp_path for whoever wants to look at it.
    alice.main_window.grab().save(str(tmp_path / "summarised.png"))
    # Hovering a chip says how many (names are unknown for a summarised message).
    view = alice.main_window.timeline
    index = _row_index(timeline, "crowded")
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    option.rect = view.visualRect(index)
    layout = view.message_delegate.layout_for(option, index)
    for rect, emoji, _n, _m in layout.chips[:1] + layout.chips[-1:]:
        spot = rect.translated(option.rect.topLeft()).center()
        hover = QHelpEvent(QEvent.Type.ToolTip, spot, view.viewport().mapToGlobal(spot))
        assert view.message_delegate.helpEvent(hover, view, option, index)
        qtbot.waitUntil(lambda: QToolTip.isVisible())
        assert QToolTip.text() == {
            "😀": "You and 61 others reacted with 😀",
            "🙂": "60 people reacted with 🙂"}[emoji]
    _chip_click(qtbot, alice, _row_index(timeline, "crowded"), CROWD[5])
    qtbot.waitUntil(lambda: "at most 5 different reactions" in alice.last_status)
    assert (CROWD[5], 60, False) in _row_index(timeline, "crowded").data(_TR.Reactions)


def test_only_own_messages_can_be_edited(make_client: Any, server: Any, qtbot: Any) -> None:
    """The menu of someone else's message offers no edit, and delete only to moderators."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    say(server, bob, room_id, "bob's words")
    qtbot.waitUntil(lambda: timeline.bodies() == ["bob's words"])
    menu = QMenu()
    names = {a.objectName() for a in alice.main_window.timeline.message_actions(
        _row_index(timeline, "bob's words"), menu)}
    assert "edit" not in names and "delete" not in names
    assert {"reply", "copy", "react:👍"} <= names


def test_typing_is_shown_both_ways(make_client: Any, server: Any, qtbot: Any,
                                   wait: Any) -> None:
    """Typing in the composer tells bob; bob typing shows "bob is typing…" under
    the conversation until he stops."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    qtbot.keyClicks(alice.main_window.composer, "thinking")
    wait(log.next("typing", room_id=room_id, username="alice", typing=True))
    alice.main_window.composer.clear()
    wait(log.next("typing", room_id=room_id, username="alice", typing=False))

    label = alice.main_window.typing_label
    bob.notify("msg.typing", {"room_id": room_id, "typing": True})
    qtbot.waitUntil(lambda: label.text() == "bob is typing…")
    bob.notify("msg.typing", {"room_id": room_id, "typing": False})
    qtbot.waitUntil(lambda: label.text() == "")


def member_presence(members: MemberListModel, name: str) -> Any:
    """The presence the members panel shows for ``name`` (None: not listed)."""
    for row in range(members.rowCount()):
        index = members.index(row)
        if index.data(MemberListModel.Roles.Username) == name:
            return index.data(MemberListModel.Roles.Presence)
    return None


def test_presence_dots_follow_the_other_person(make_client: Any, server: Any,
                                               qtbot: Any, wait: Any) -> None:
    """A direct conversation opened from "Message someone" shows the other
    person's presence, in the room list and the members panel, as it changes;
    alice's own choice reaches bob."""
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice = make_client("alice")
    alice.main_window.message_button.click()
    dialog = alice.dialogs["message"]
    qtbot.keyClicks(dialog.query, "bob")
    qtbot.waitUntil(lambda: dialog.results.count() == 1)
    dialog.action.click()
    qtbot.waitUntil(lambda: alice.controller.current_room is not None)
    room_id = alice.controller.current_room

    def dot() -> Any:
        return room_index(alice, room_id).data(RoomListModel.Roles.Presence)

    qtbot.waitUntil(lambda: dot() == "online")
    assert room_index(alice, room_id).data() == "bob"
    alice.main_window.members_button.click()
    assert alice.main_window.members_panel.isVisible()
    members = alice.controller.members

    qtbot.waitUntil(lambda: member_presence(members, "bob") == "online")
    server.request(bob, "presence.set", {"state": "busy"})
    qtbot.waitUntil(lambda: dot() == "busy" and member_presence(members, "bob") == "busy")

    box = alice.main_window.presence_box
    box.setCurrentIndex(box.findData("away"))
    box.activated.emit(box.currentIndex())
    wait(log.next("presence", username="alice", state="away"))

    wait(bob.close())
    qtbot.waitUntil(lambda: dot() == "offline" and member_presence(members, "bob") == "offline")


def test_notification_for_a_direct_message_when_not_focused(make_client: Any, server: Any,
                                                            qtbot: Any) -> None:
    """A direct message while the window is in the background gives a desktop
    notification (tray message, or a window alert where there is no tray)."""
    alice = make_client("alice")
    bob = server.user("bob")
    room = server.request(bob, "dm.open", {"username": "alice"})
    qtbot.waitUntil(lambda: alice.controller.rooms.room(room["room_id"]) is not None)
    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not alice.controller.window_active)
    with qtbot.waitSignal(alice.notifier.shown, timeout=5000) as shown:
        say(server, bob, room["room_id"], "are you there?")
    assert shown.args == ["bob", "are you there?"]


def test_away_after_idle_and_back_on_input(make_client: Any, server: Any, qtbot: Any,
                                           wait: Any) -> None:
    """With no input for the idle time, presence turns away (bob is told); the
    next keystroke turns it back to online."""
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice = make_client("alice")
    shared_room(server, bob, "alice")
    now = [1000.0]
    alice.idle.clock = lambda: now[0]
    alice.idle.touch()
    alice.idle.idle_after = 60
    now[0] += 61
    alice.idle.check()  # what the sampling timer does every few seconds
    wait(log.next("presence", username="alice", state="away"))
    box = alice.main_window.presence_box
    assert box.currentData() == "away"
    qtbot.keyClicks(alice.main_window.composer, "x")
    wait(log.next("presence", username="alice", state="online"))
    assert box.currentData() == "online"


def test_status_message_reaches_others(make_client: Any, server: Any, qtbot: Any,
                                       wait: Any) -> None:
    """The status line under the user's name sets ``status_text`` for others to see."""
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice = make_client("alice")
    shared_room(server, bob, "alice")
    field = alice.main_window.status_text
    qtbot.keyClicks(field, "at the dentist")
    qtbot.keyClick(field, Qt.Key.Key_Return)
    event = wait(log.next("user.updated", where=lambda d: d["profile"]["username"] == "alice"))
    assert event.data["profile"]["status_text"] == "at the dentist"


@pytest.mark.server_config(presence_room_limit=2)
def test_a_big_rooms_members_panel_refreshes_presence_by_asking(make_client: Any,
                                                                server: Any, qtbot: Any,
                                                                wait: Any) -> None:
    """A room over the server's presence_room_limit carries no presence events: the
    members panel asks room.members again on a timer, so bob leaving shows as
    offline there; a small room's panel does not poll."""
    alice = make_client("alice")
    bob, _carol = server.user("bob"), server.user("carol")
    room_id = shared_room(server, bob, "alice", "carol")
    click_room(qtbot, alice, room_id)
    alice.main_window.members_button.click()
    members = alice.controller.members

    qtbot.waitUntil(lambda: member_presence(members, "bob") == "online")
    timer = alice.controller.members_timer
    assert timer.isActive() and timer.interval() == 60_000
    timer.setInterval(100)
    wait(bob.close())
    qtbot.waitUntil(lambda: member_presence(members, "bob") == "offline")
    dave = server.user("dave")
    small = shared_room(server, dave, "alice", name="small")
    click_room(qtbot, alice, small)
    qtbot.waitUntil(lambda: set(members.usernames()) == {"alice", "dave"})
    assert not timer.isActive()
