"""Messages between a desktop client and a library client, unread counts, history."""

from __future__ import annotations

from typing import Any

from qtclient.models.timeline import TimelineModel
from qtclient.qt import Qt
from tests.gui.helpers import click_room, say, shared_room, unread, wait_for_room
from tests.support.events import EventLog


def test_messages_go_both_ways_through_the_composer(make_client: Any, server: Any,
                                                    qtbot: Any, wait: Any) -> None:
    """What bob sends appears in alice's conversation; what alice types and sends
    with Enter reaches bob once; Shift+Enter makes a new line, not a message."""
    alice = make_client("alice")
    bob = server.user("bob")
    bob_events = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")

    def from_alice(data: dict[str, Any]) -> bool:
        return bool(data["message"]["sender"] == "alice")

    timeline = click_room(qtbot, alice, room_id)

    say(server, bob, room_id, "hello alice")
    qtbot.waitUntil(lambda: timeline.bodies() == ["hello alice"])

    composer = alice.main_window.composer
    qtbot.keyClicks(composer, "hi bob")
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    event = wait(bob_events.next("msg", where=from_alice))
    assert event.data["message"]["body"] == "hi bob"
    assert event.data["message"]["sender"] == "alice"
    assert composer.toPlainText() == ""

    qtbot.keyClicks(composer, "line one")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "line two")
    assert [e for e in bob_events.pending("msg") if from_alice(e.data)] == []
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    event = wait(bob_events.next("msg", where=from_alice))
    assert event.data["message"]["body"] == "line one\nline two"
    qtbot.waitUntil(lambda: timeline.bodies() == ["hello alice", "hi bob",
                                                  "line one\nline two"])
    seqs = [timeline.item(row).seq for row in range(timeline.rowCount())]
    assert seqs == [1, 2, 3]


def test_unread_counts_and_the_new_messages_marker(make_client: Any, server: Any,
                                                   qtbot: Any, wait: Any) -> None:
    """Messages to a room alice is not looking at raise its unread count (and the
    window title); opening it shows "new messages" above the first unread one,
    clears the count and moves alice's read position on the server."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    random = shared_room(server, bob, "alice", name="random")
    say(server, bob, random, "already read")
    click_room(qtbot, alice, random)
    click_room(qtbot, alice, general)
    for text in ("one", "two", "three"):
        say(server, bob, random, text)
    qtbot.waitUntil(lambda: unread(alice, random) == 3)
    assert unread(alice, general) == 0
    assert "(3 unread)" in alice.window.windowTitle()

    timeline = click_room(qtbot, alice, random)
    qtbot.waitUntil(lambda: timeline.bodies() == ["already read", "one", "two", "three"])
    markers = [bool(timeline.index(row).data(TimelineModel.Roles.NewMarker))
               for row in range(timeline.rowCount())]
    assert markers == [False, True, False, False]
    qtbot.waitUntil(lambda: unread(alice, random) == 0)
    assert "unread" not in alice.window.windowTitle()

    def server_unread() -> int:
        conn = server.user("alice", register=False)
        rooms = server.request(conn, "room.list")["rooms"]
        return next(r["unread"] for r in rooms if r["room_id"] == random)

    qtbot.waitUntil(lambda: server_unread() == 0)


def test_unread_rooms_counted_at_login(make_client: Any, server: Any, qtbot: Any) -> None:
    """Messages that arrived while alice was offline show as unread when she logs in."""
    bob = server.user("bob")
    server.user("alice")
    room_id = shared_room(server, bob, "alice")
    say(server, bob, room_id, "while you were out")
    say(server, bob, room_id, "and another")
    alice = make_client("alice", register=False)
    wait_for_room(qtbot, alice, room_id)
    assert unread(alice, room_id) == 2


def test_scrolling_back_fetches_history_lazily(make_client: Any, server: Any,
                                               qtbot: Any, wait: Any) -> None:
    """Opening a long room loads only the newest page; scrolling to the top
    fetches older pages until the first message, keeping the view in place."""
    from twisted.internet.defer import gatherResults

    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    wait(gatherResults([bob.request("msg.send", {"room_id": room_id, "body": f"message {n}",
                                                 "client_msg_id": f"h{n}"})
                        for n in range(1, 161)]))
    timeline = click_room(qtbot, alice, room_id)
    view = alice.main_window.timeline
    assert timeline.rowCount() == 50
    assert timeline.bodies()[-1] == "message 160"
    qtbot.waitUntil(lambda: view.at_bottom() and view.verticalScrollBar().maximum() > 0)

    bar = view.verticalScrollBar()
    while timeline.has_more:
        before = timeline.rowCount()
        bar.setValue(0)
        qtbot.waitUntil(lambda b=before: timeline.rowCount() > b)
        # The message that was on top is still where it was: the view did not jump.
        assert bar.value() > 0
    assert timeline.rowCount() == 160
    assert timeline.bodies()[0] == "message 1"
    assert [timeline.item(r).seq for r in range(160)] == list(range(1, 161))


def test_sending_scrolls_to_the_new_message_but_others_messages_do_not(
        make_client: Any, server: Any, qtbot: Any, wait: Any) -> None:
    """Scrolled up to read, alice is not moved by bob's new message; when she
    sends one herself, the conversation scrolls to the bottom, where it is."""
    from twisted.internet.defer import gatherResults

    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    wait(gatherResults([bob.request("msg.send", {"room_id": room_id, "body": f"line {n}",
                                                 "client_msg_id": f"s{n}"})
                        for n in range(1, 41)]))
    timeline = click_room(qtbot, alice, room_id)
    assert not timeline.has_more  # all 40 loaded: scrolling up fetches nothing
    view = alice.main_window.timeline
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: view.at_bottom() and bar.maximum() > 1000)
    bar.setValue(bar.maximum() // 2)
    reading = bar.value()
    assert not view.at_bottom()

    maximum = bar.maximum()
    say(server, bob, room_id, "bob says something new")
    qtbot.waitUntil(lambda: timeline.bodies()[-1] == "bob says something new"
                    and bar.maximum() > maximum)
    assert bar.value() == reading  # not yanked away from what she reads

    maximum = bar.maximum()
    composer = alice.main_window.composer
    qtbot.keyClicks(composer, "and here is mine")
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    assert timeline.bodies()[-1] == "and here is mine"
    qtbot.waitUntil(lambda: bar.maximum() > maximum and view.at_bottom())
    last = view.visualRect(timeline.index(timeline.rowCount() - 1, 0))
    assert view.viewport().rect().contains(last)  # her message is in view, whole

    # Once at the bottom again, others' messages keep it there. (Her message is
    # stored first: sent at the same moment, bob's could take the seq before it.)
    qtbot.waitUntil(lambda: timeline.item(timeline.rowCount() - 1).state == "sent")
    maximum = bar.maximum()
    say(server, bob, room_id, "and an answer")
    qtbot.waitUntil(lambda: timeline.bodies()[-1] == "and an answer"
                    and bar.maximum() > maximum)
    qtbot.waitUntil(view.at_bottom)
