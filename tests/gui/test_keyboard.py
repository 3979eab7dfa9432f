"""The keyboard: Ctrl+K's quick switcher, Escape cancelling a reply or an edit,
Up in an empty composer editing one's own last message."""

from __future__ import annotations

from typing import Any

from qtclient.models.timeline import TimelineModel
from qtclient.qt import QApplication, QMenu, QModelIndex, Qt
from qtclient.views.dialogs import QuickSwitcher
from tests.gui.helpers import click_room, say, shared_room, wait_for_room
from tests.support.events import EventLog, barrier


def _stored(timeline: TimelineModel, body: str) -> QModelIndex:
    for row in range(timeline.rowCount()):
        if timeline.item(row).body == body and timeline.item(row).msg_id is not None:
            return timeline.index(row)
    raise AssertionError(f"no stored message {body!r} in {timeline.bodies()}")


def _trigger(app: Any, index: QModelIndex, name: str) -> None:
    """Choose ``name`` from the message's right-click menu."""
    menu = QMenu()
    actions = {a.objectName(): a for a in app.main_window.timeline.message_actions(index, menu)}
    actions[name].trigger()


def _send(qtbot: Any, app: Any, text: str) -> None:
    composer = app.main_window.composer
    qtbot.keyClicks(composer, text)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


def _focus_window(qtbot: Any, window: Any) -> None:
    """Make ``window`` the active window, as it is when someone types in it."""
    window.activateWindow()
    window.raise_()
    qtbot.waitUntil(window.isActiveWindow)


def test_ctrl_k_opens_the_quick_switcher_and_enter_switches(make_client: Any, server: Any,
                                                            qtbot: Any) -> None:
    """Ctrl+K, even while writing in the composer, opens a window with a filter
    line over the conversations; typing narrows the list, Down moves the
    highlight, Enter opens the highlighted conversation and closes the window."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    garden = shared_room(server, bob, "alice", name="garden")
    random = shared_room(server, bob, "alice", name="random")
    for room_id in (general, garden, random):
        wait_for_room(qtbot, alice, room_id)
    click_room(qtbot, alice, random)
    window = alice.main_window
    _focus_window(qtbot, window)
    window.composer.setFocus()
    qtbot.keyClicks(window.composer, "half a thought")

    qtbot.keyClick(window.composer, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: isinstance(alice.dialogs.get("switcher"), QuickSwitcher))
    switcher = alice.dialogs["switcher"]
    assert isinstance(switcher, QuickSwitcher)
    qtbot.waitUntil(switcher.isVisible)
    assert window.composer.toPlainText() == "half a thought"  # Ctrl+K did not edit it
    assert switcher.proxy.rowCount() == 3
    qtbot.waitUntil(lambda: QApplication.focusWidget() is switcher.query)

    qtbot.keyClicks(switcher.query, "g")
    assert switcher.proxy.rowCount() == 2  # general, garden
    first = switcher.current_room()
    assert first in (general, garden)
    qtbot.keyClick(switcher.query, Qt.Key.Key_Down)
    second = switcher.current_room()
    assert {first, second} == {general, garden}
    qtbot.keyClick(switcher.query, Qt.Key.Key_Up)
    assert switcher.current_room() == first

    qtbot.keyClicks(switcher.query, "en")
    assert switcher.proxy.rowCount() == 1
    assert switcher.current_room() == general
    qtbot.keyClick(switcher.query, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: alice.controller.current_room == general)
    assert window.room_id == general
    assert window.timeline.model() is alice.controller.timeline(general)
    qtbot.waitUntil(lambda: "switcher" not in alice.dialogs)
    assert not switcher.isVisible()


def test_quick_switcher_escape_closes_without_switching(make_client: Any, server: Any,
                                                        qtbot: Any) -> None:
    """Escape closes the switcher; the open conversation stays open."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    random = shared_room(server, bob, "alice", name="random")
    wait_for_room(qtbot, alice, general)
    click_room(qtbot, alice, random)
    window = alice.main_window
    _focus_window(qtbot, window)
    qtbot.keyClick(window.composer, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: "switcher" in alice.dialogs)
    switcher = alice.dialogs["switcher"]
    qtbot.waitUntil(switcher.isVisible)
    qtbot.keyClick(switcher.query, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: "switcher" not in alice.dialogs)
    assert alice.controller.current_room == random


def test_escape_cancels_a_reply_and_an_edit(make_client: Any, server: Any, qtbot: Any,
                                            wait: Any) -> None:
    """Escape in the composer stops replying (what was typed stays, and goes out
    as a plain message) and stops editing (the edit's text is dropped and the
    message is not changed)."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    say(server, bob, room_id, "a question")
    _send(qtbot, alice, "my words")
    qtbot.waitUntil(lambda: timeline.bodies() == ["a question", "my words"]
                    and timeline.item(1).msg_id is not None)
    window, composer = alice.main_window, alice.main_window.composer

    _trigger(alice, _stored(timeline, "a question"), "reply")
    assert window.compose_mode is not None and window.compose_bar.isVisibleTo(window)
    qtbot.keyClicks(composer, "not a reply after all")
    qtbot.keyClick(composer, Qt.Key.Key_Escape)
    assert window.compose_mode is None and not window.compose_bar.isVisibleTo(window)
    assert composer.toPlainText() == "not a reply after all"
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    sent = wait(log.next("msg", where=lambda d: d["message"]["sender"] == "alice"
                         and d["message"]["body"] == "not a reply after all"))
    assert sent.data["message"].get("reply_to") is None

    _trigger(alice, _stored(timeline, "my words"), "edit")
    assert window.compose_mode is not None and window.compose_mode[0] == "edit"
    assert composer.toPlainText() == "my words"
    qtbot.keyClicks(composer, " changed")
    qtbot.keyClick(composer, Qt.Key.Key_Escape)
    assert window.compose_mode is None and not window.compose_bar.isVisibleTo(window)
    assert composer.toPlainText() == ""
    wait(barrier(bob))
    assert log.pending("msg.edited") == []
    assert "my words" in timeline.bodies()


def test_up_in_an_empty_composer_edits_ones_last_message(make_client: Any, server: Any,
                                                         qtbot: Any, wait: Any) -> None:
    """Up with nothing written starts editing alice's newest message in the open
    conversation (not bob's newer one, nor one of another room); Enter saves
    the edit. Up in a composer with text moves the cursor as usual."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    other = shared_room(server, bob, "alice", name="other")
    room_id = shared_room(server, bob, "alice", name="general")
    click_room(qtbot, alice, other)
    _send(qtbot, alice, "elsewhere")
    timeline = click_room(qtbot, alice, room_id)
    _send(qtbot, alice, "older of mine")
    _send(qtbot, alice, "newest of mine")
    qtbot.waitUntil(lambda: len(timeline.bodies()) == 2
                    and all(timeline.item(r).msg_id is not None for r in range(2)))
    say(server, bob, room_id, "bob after that")
    qtbot.waitUntil(lambda: timeline.bodies()[-1] == "bob after that")
    window, composer = alice.main_window, alice.main_window.composer
    mine = _stored(timeline, "newest of mine").data(TimelineModel.Roles.MsgId)

    qtbot.keyClicks(composer, "two")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "lines")
    qtbot.keyClick(composer, Qt.Key.Key_Up)
    assert window.compose_mode is None  # text there: Up is the cursor's
    assert composer.textCursor().blockNumber() == 0
    composer.clear()

    qtbot.keyClick(composer, Qt.Key.Key_Up)
    assert window.compose_mode == ("edit", mine)
    assert composer.toPlainText() == "newest of mine"
    assert window.compose_label.text() == "Editing your message"
    composer.selectAll()
    _send(qtbot, alice, "newest, edited")
    edited = wait(log.next("msg.edited", msg_id=mine))
    assert edited.data["body"] == "newest, edited"
    qtbot.waitUntil(lambda: "newest, edited" in timeline.bodies())
