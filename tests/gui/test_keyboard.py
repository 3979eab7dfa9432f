"""The keyboard: Ctrl+K's quick switcher, Escape cancelling a reply or an edit,
Up in an empty composer editing one's own last message."""

from __future__ import annotations

from typing import Any

from qtclient.qt import QApplication, Qt
from qtclient.views.dialogs import QuickSwitcher
from tests.gui.helpers import click_room, shared_room, wait_for_room


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
