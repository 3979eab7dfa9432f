"""How message bubbles are laid out, offscreen and without a server: the time
(and "(edited)") is always shown whole, however narrow the window, however
short the message and however long the sender's display name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qtclient.models.timeline import TimelineModel
from qtclient.qt import QFontMetricsF, QLocale, QStyleOptionViewItem
from qtclient.views.conversation import TimelineView
from qtclient.views.delegates import MessageLayout, clock_text

#: When the messages were sent, in ms since the epoch.
_TS = 1_700_000_000_000
_CAROL = "Caroline Alexandra Montgomery-Smythe of Westmorland"


@pytest.fixture
def english() -> Iterator[None]:
    """The English locale (times like "11:24 AM") for the test."""
    before = QLocale()
    QLocale.setDefault(QLocale(QLocale.Language.English, QLocale.Country.UnitedStates))
    yield
    QLocale.setDefault(before)


def _timeline() -> TimelineModel:
    names = {"bob": "Bob", "carol": _CAROL}
    timeline = TimelineModel(1, "alice", names)
    rows = [("bob", "k"), ("alice", "k"), ("carol", "ok"), ("alice", "k"),
            ("bob", "a much longer message that has to wrap over several lines in a window "
                    "this narrow, so that its bubble is as wide as bubbles get")]
    timeline.load_latest([{"room_id": 1, "msg_id": 100 + i, "seq": i + 1, "sender": sender,
                           "ts": _TS + i, "body": body, "client_msg_id": ""}
                          for i, (sender, body) in enumerate(rows)],
                         has_more=False, read_seq=len(rows))
    timeline.apply_edit(103, "k", _TS + 60_000)  # alice's second "k": "(edited)"
    return timeline


def _layouts(view: TimelineView) -> list[tuple[Any, MessageLayout, QStyleOptionViewItem]]:
    model = view.model()
    assert model is not None
    out = []
    for row in range(model.rowCount()):
        index = model.index(row, 0)
        option = QStyleOptionViewItem()
        view.initViewItemOption(option)
        option.rect = view.visualRect(index)
        out.append((index, view.message_delegate.layout_for(option, index), option))
    return out


@pytest.mark.parametrize("width", [250, 320, 700])
def test_the_time_is_never_cut_off(width: int, english: None, qtbot: Any,
                                   tmp_path: Path) -> None:
    """Every bubble gives its time (with "(edited)") at least the width the font
    needs for the whole text, inside the bubble and clear of the sender's name:
    a one-letter message's bubble grows to fit it, and a long display name is
    shortened instead."""
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(width, 700)
    view.setModel(_timeline())
    view.show()
    qtbot.waitUntil(lambda: view.message_delegate.view_width == view.viewport().width())
    view.grab().save(str(tmp_path / f"bubbles-{width}.png"))
    notes = []
    for index, layout, option in _layouts(view):
        _body, _bold, small = view.message_delegate.fonts(option)
        note = view.message_delegate.header_note(index)
        notes.append(note)
        needed = QFontMetricsF(small).horizontalAdvance(note)
        assert layout.note.width() >= needed, (note, layout.note, needed)
        assert layout.bubble.contains(layout.note), (note, layout.bubble, layout.note)
        assert layout.name.right() < layout.note.left(), (layout.name, layout.note)
        assert layout.note.right() <= layout.header.right()
    assert notes[0] == clock_text(_TS) and notes[0].endswith("M")  # "10:13 PM"
    assert notes[3] == clock_text(_TS + 3) + " (edited)"
    # The long display name gave way to the time rather than the other way round.
    _index, carol, option = _layouts(view)[2]
    if width < 400:
        bold = view.message_delegate.fonts(option)[1]
        assert 0 < carol.name.width() < QFontMetricsF(bold).horizontalAdvance(_CAROL)
