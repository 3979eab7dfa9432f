"""Burn after reading (docs/protocol.md 6, ``ttl`` and ``msg.expired``): the
composer's 🔥 toggle sends the chosen ``ttl``; such messages show a countdown,
repainted every second by the view's one timer, and vanish when they expire."""

from __future__ import annotations

from typing import Any

from qtclient.qt import Qt
from qtclient.views.delegates import countdown_text
from tests.gui.helpers import click_room, say, shared_room
from tests.support.events import EventLog


def _key_of(timeline: Any, body: str) -> str | None:
    for row in range(timeline.rowCount()):
        item = timeline.item(row)
        if item.body == body and item.msg_id is not None:
            return str(item.key)
    return None


def test_a_message_with_ttl_counts_down_and_vanishes_when_it_expires(
        make_client: Any, server: Any, qtbot: Any) -> None:
    """bob's message with ``ttl: 1`` shows in alice's conversation with 🔥 and
    its countdown while the view's timer runs; ``msg.expired`` takes it away
    (the message beside it stays), and with nothing left to count the timer stops."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    view = alice.main_window.timeline
    say(server, bob, room_id, "this one stays")
    say(server, bob, room_id, "read me fast", ttl=1)
    qtbot.waitUntil(lambda: _key_of(timeline, "read me fast") is not None)
    key = _key_of(timeline, "read me fast")
    assert view.countdown.isActive()
    row = timeline.row_of_msg(int(key[1:]))
    assert "🔥 0:01" in view.message_delegate.header_note(timeline.index(row))
    qtbot.waitUntil(lambda: key in view.message_delegate.countdowns)
    assert view.message_delegate.countdowns[key] in ("0:01", "0:00")
    qtbot.waitUntil(lambda: _key_of(timeline, "read me fast") is None, timeout=10000)
    assert timeline.bodies() == ["this one stays"]
    qtbot.waitUntil(lambda: not view.countdown.isActive(), timeout=3000)


def test_the_toggle_sends_the_chosen_ttl_and_the_countdown_runs(
        make_client: Any, server: Any, qtbot: Any, wait: Any) -> None:
    """Choosing "10 seconds" under 🔥 turns burning on: the message reaches bob
    with ``ttl: 10`` and alice sees it counting down from 0:10, second by
    second; with the toggle off again, the next message has no ``ttl``."""
    alice = make_client("alice")
    bob = server.user("bob")
    bob_events = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    window = alice.main_window
    burn = window.burn_button
    assert not burn.isChecked() and burn.ttl is None
    burn.choices[10].trigger()
    assert burn.isChecked() and burn.ttl == 10

    def from_alice(data: dict[str, Any]) -> bool:
        return bool(data["message"]["sender"] == "alice")

    qtbot.keyClicks(window.composer, "secret")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    event = wait(bob_events.next("msg", where=from_alice))
    assert event.data["message"]["body"] == "secret"
    assert event.data["message"]["ttl"] == 10

    qtbot.waitUntil(lambda: _key_of(timeline, "secret") is not None)
    key = _key_of(timeline, "secret")
    delegate = window.timeline.message_delegate
    qtbot.waitUntil(lambda: key in delegate.countdowns)
    first = delegate.countdowns[key]
    assert first in (countdown_text(10), countdown_text(9), countdown_text(8))
    # The shared timer repaints it: the countdown goes down without anything else happening.
    qtbot.waitUntil(lambda: delegate.countdowns[key] < first, timeout=3000)

    qtbot.mouseClick(burn, Qt.MouseButton.LeftButton)
    assert burn.ttl is None
    qtbot.keyClicks(window.composer, "plain")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    event = wait(bob_events.next("msg", where=from_alice))
    assert event.data["message"]["body"] == "plain"
    assert "ttl" not in event.data["message"]
