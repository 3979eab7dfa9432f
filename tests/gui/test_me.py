"""Actions (IRC's ``/me``, docs/protocol.md 6): "/me waves" is sent as it is
written and shown as "* Name waves", in italics, without the name above it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtclient.models.timeline import TimelineModel
from qtclient.qt import QModelIndex, QStyleOptionViewItem, Qt
from tests.gui.helpers import click_room, say, shared_room

_TR = TimelineModel.Roles


def _row(timeline: TimelineModel, body: str) -> QModelIndex:
    for row in range(timeline.rowCount()):
        if timeline.item(row).body == body and timeline.item(row).msg_id is not None:
            return timeline.index(row)
    raise AssertionError(f"no stored message {body!r} in {timeline.bodies()}")


def test_me_is_sent_as_written_and_shown_as_an_action(make_client: Any, server: Any,
                                                      qtbot: Any, tmp_path: Path) -> None:
    """Typing "/me waves" and Enter sends exactly that body (the other side reads
    it in the room's history); bob's "/me dances" and alice's own action are
    drawn as "* Bob Builder dances" / "* alice waves" in italics with no name
    in the header, while "/meow" and a lone "/me" stay plain messages; a reply
    quoting an action quotes it as an action."""
    alice = make_client("alice")
    bob = server.user("bob")
    server.request(bob, "user.update", {"display_name": "Bob Builder"})
    general = shared_room(server, bob, "alice", name="general")
    timeline = click_room(qtbot, alice, general)
    window = alice.main_window

    qtbot.keyClicks(window.composer, "/me waves")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(timeline.item(r).body == "/me waves"
                                and timeline.item(r).msg_id is not None
                                for r in range(timeline.rowCount())))
    history = server.request(bob, "msg.history", {"room_id": general})["messages"]
    assert [m["body"] for m in history] == ["/me waves"]

    dances = say(server, bob, general, "/me dances")
    say(server, bob, general, "/meow")
    say(server, bob, general, "/me")
    say(server, bob, general, "nice moves", reply_to=dances["msg_id"])
    qtbot.waitUntil(lambda: timeline.bodies()[-1] == "nice moves")
    qtbot.waitUntil(lambda: timeline.index(timeline.rowCount() - 1).data(_TR.SenderName)
                    == "Bob Builder")

    view = window.timeline
    delegate = view.message_delegate

    def drawn(body: str) -> tuple[str, bool, int]:
        index = _row(timeline, body)
        option = QStyleOptionViewItem()
        view.initViewItemOption(option)
        option.rect = view.visualRect(index)
        key = index.data(_TR.LayoutKey)
        measure = delegate._measure_of(key, option, index)
        layout = delegate.layout_for(option, index)
        font = delegate.body_font(measure, option.font)
        return delegate.shown_body(index), font.italic(), layout.name.width()

    assert drawn("/me dances") == ("* Bob Builder dances", True, 0)
    assert drawn("/me waves") == ("* alice waves", True, 0)
    text, italic, name_w = drawn("/meow")
    assert (text, italic) == ("/meow", False) and name_w > 0
    text, italic, name_w = drawn("/me")
    assert (text, italic) == ("/me", False) and name_w > 0
    assert _row(timeline, "nice moves").data(_TR.ReplyPreview) == (
        "Bob Builder", "* Bob Builder dances")
    window.grab().save(str(tmp_path / "actions.png"))
