"""History by date in the desktop client: "Go to date…" (``msg.history
{around_ts}``) and the personal export of a date range
(``chatnet.client.export``), against a real server whose clock the test sets
to other days, so that its messages carry those days' times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor

from qtclient.qt import QDate, QDialogButtonBox, QTimer
from qtclient.views.dialogs import DateDialog, ExportDialog
from tests.gui.conftest import ServerHandle
from tests.gui.helpers import click_room, say, shared_room

TODAY = date.today()
#: Messages are sent on these days: none the day in between.
THREE_DAYS_AGO = TODAY - timedelta(days=3)
TWO_DAYS_AGO = TODAY - timedelta(days=2)
YESTERDAY = TODAY - timedelta(days=1)


class ShiftedClock:
    """The reactor, its clock moved by :attr:`offset` seconds: the server stamps
    messages with ``seconds()``. Only ever moved forward (rate limits are
    token buckets on this clock)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.offset = 0.0

    def seconds(self) -> float:
        """The shifted time."""
        return float(self._real.seconds()) + self.offset

    def set(self, moment: datetime) -> None:
        """From now on, the clock reads ``moment`` (local time), going on from there."""
        self.offset = moment.timestamp() - float(self._real.seconds())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def clock() -> ShiftedClock:
    """The server's clock, three days ago at noon until the test moves it."""
    shifted = ShiftedClock(reactor)
    shifted.set(datetime.combine(THREE_DAYS_AGO, datetime.min.time()) + timedelta(hours=12))
    return shifted


@pytest.fixture
def server(tmp_path: Path, wait: Any, clock: ShiftedClock) -> Iterator[ServerHandle]:
    """A real server on the shifted clock (``make_client`` logs in to it)."""
    handle = ServerHandle(tmp_path / "data", wait, clock=clock, rate=1e6, burst=1e6)
    yield handle
    handle.close()


def at(day: date, hour: int) -> datetime:
    """``day`` at ``hour`` o'clock, local time."""
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=hour)


def days_of_messages(server: ServerHandle, clock: ShiftedClock) -> tuple[Any, int, int]:
    """bob's room "general" with alice: 5 messages three days ago at noon,
    none two days ago, 5 yesterday at 8:00, 80 today (more than the first page);
    and a direct room between bob and alice with one message today. Returns (bob, general, dm)."""
    bob = server.user("bob")
    server.user("alice")  # registered (three days ago)
    general = shared_room(server, bob, "alice", name="general")
    dm = int(server.request(bob, "dm.open", {"username": "alice"})["room_id"])
    for n in range(1, 6):
        say(server, bob, general, f"three days ago {n}")
    clock.set(at(YESTERDAY, 8))
    for n in range(1, 6):
        say(server, bob, general, f"yesterday {n}")
    clock.offset = 0.0
    for n in range(1, 81):
        say(server, bob, general, f"today {n}")
    say(server, bob, dm, "today, just us")
    return bob, general, dm


def _on_screen(view: Any, row: int) -> bool:
    rect = view.visualRect(view.model().index(row, 0))
    return rect.isValid() and view.viewport().rect().intersects(rect)


def go_to(qtbot: Any, app: Any, day: date) -> None:
    """*Chat → Go to date…*, pick ``day`` in the calendar, Go."""
    app.main_window.date_action.trigger()
    qtbot.waitUntil(lambda: isinstance(app.dialogs.get("date"), DateDialog))
    dialog = app.dialogs["date"]
    qtbot.waitUntil(dialog.isVisible)
    dialog.calendar.setSelectedDate(QDate(day.year, day.month, day.day))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_go_to_date_shows_the_first_message_of_that_day(
        make_client: Any, server: ServerHandle, clock: ShiftedClock, qtbot: Any) -> None:
    """*Go to date…* on a day with messages loads the history around that day
    and shows its first message, highlighted, on screen; on a day without any
    it says so and shows the nearest message (the next morning's, eight hours
    after the day ends, rather than the noon before, twelve hours before it)."""
    _bob, general, _dm = days_of_messages(server, clock)
    alice = make_client("alice", register=False)
    timeline = click_room(qtbot, alice, general)
    assert timeline.bodies()[0] != "three days ago 1"  # the newest page only
    window = alice.main_window

    go_to(qtbot, alice, THREE_DAYS_AGO)
    qtbot.waitUntil(lambda: window.timeline.highlighted() is not None)
    row = next(r for r in range(timeline.rowCount())
               if timeline.item(r).body == "three days ago 1")
    assert window.timeline.highlighted() == f"m{timeline.item(row).msg_id}"
    assert _on_screen(window.timeline, row)
    assert datetime.fromtimestamp(timeline.item(row).ts / 1000).date() == THREE_DAYS_AGO
    assert timeline.has_newer  # the window around that day, not the newest page

    window.timeline._end_highlight()
    go_to(qtbot, alice, TWO_DAYS_AGO)
    qtbot.waitUntil(lambda: window.timeline.highlighted() is not None)
    row = next(r for r in range(timeline.rowCount()) if timeline.item(r).body == "yesterday 1")
    assert window.timeline.highlighted() == f"m{timeline.item(row).msg_id}"
    assert _on_screen(window.timeline, row)
    assert alice.last_status.startswith("No messages on ")
    assert alice.last_status.endswith("; showing the nearest one.")


def test_export_writes_the_messages_of_the_range(
        make_client: Any, server: ServerHandle, clock: ShiftedClock, qtbot: Any,
        tmp_path: Path) -> None:
    """*Export my conversations…* from yesterday to today writes NAME.jsonl (a JSON
    object per message) and NAME.txt with yesterday's and today's messages of
    every conversation, the direct one included, and not those of three days
    ago; a NAME.txt already there is left alone (the export takes "NAME (1)").
    The progress window follows the conversations read and closes at the end."""
    _bob, general, dm = days_of_messages(server, clock)
    alice = make_client("alice", register=False)
    click_room(qtbot, alice, general)
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    progress: list[tuple[int, int, int]] = []
    alice.controller.export_progress.connect(lambda *a: progress.append(a))

    alice.main_window.export_action.trigger()
    qtbot.waitUntil(lambda: isinstance(alice.dialogs.get("export"), ExportDialog))
    dialog = alice.dialogs["export"]
    dialog.first.setDate(QDate(YESTERDAY.year, YESTERDAY.month, YESTERDAY.day))
    dialog.last.setDate(QDate(TODAY.year, TODAY.month, TODAY.day))
    dialog.name.setText(str(tmp_path / "mine"))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: alice.main_window.export_progress is not None
                    and alice.main_window.export_progress.isVisible())
    qtbot.waitUntil(lambda: alice.controller.export is None, timeout=20000)
    assert alice.main_window.export_progress is None

    assert (tmp_path / "mine.txt").read_text(encoding="utf-8") == "keep me"
    assert not (tmp_path / "mine.jsonl").exists()
    lines = (tmp_path / "mine (1).jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    bodies = {r["body"] for r in records}
    assert bodies == {f"yesterday {n}" for n in range(1, 6)} | {
        f"today {n}" for n in range(1, 81)} | {"today, just us"}
    assert {r["room"] for r in records} == {"#general", "@bob"}
    assert {r["room_id"] for r in records} == {general, dm}
    text = (tmp_path / "mine (1).txt").read_text(encoding="utf-8")
    assert "<bob> yesterday 1" in text and "<bob> today, just us" in text
    assert "three days ago" not in text
    assert progress[-1] == (2, 2, 86)
    assert alice.last_status.startswith("Exported 86 messages from 2 conversations to ")


def test_a_cancelled_export_keeps_nothing(make_client: Any, server: ServerHandle,
                                         clock: ShiftedClock, qtbot: Any,
                                         tmp_path: Path) -> None:
    """Cancel in the progress window stops the export and removes the files it
    had begun; the status bar says so."""
    days_of_messages(server, clock)
    alice = make_client("alice", register=False)
    window = alice.main_window

    def cancel_at_first_room(done: int, _total: int, _messages: int) -> None:
        button = window.export_cancel_button
        if done == 1 and button is not None:
            QTimer.singleShot(0, button.click)  # the user clicks Cancel, mid-export

    alice.controller.export_progress.connect(cancel_at_first_room)
    window.show_export_progress()
    assert alice.controller.export_conversations(THREE_DAYS_AGO, TODAY,
                                                 str(tmp_path / "cut")) is True
    qtbot.waitUntil(lambda: alice.controller.export is None, timeout=20000)
    assert alice.last_status == "Export cancelled; nothing was kept."
    assert list(tmp_path.glob("cut*")) == []
    assert window.export_progress is None


def test_export_names_direct_rooms_whose_person_is_not_known_yet(
        server: ServerHandle, clock: ShiftedClock, wait: Any, tmp_path: Path) -> None:
    """The export labels a direct room "@bob" even when the client has not yet
    learned who is in it (the desktop learns it in the background after login):
    it asks the room's members itself."""
    from chatnet.client.connection import Patient
    from qtclient.exporting import export_to_files

    days_of_messages(server, clock)
    alice = server.user("alice", register=False)
    result = wait(export_to_files(Patient(reactor, alice.request), "alice", {}, TODAY, TODAY,
                                  tmp_path / "direct"))
    records = [json.loads(line) for line in
               result.jsonl.read_text(encoding="utf-8").splitlines()]
    assert {r["room"] for r in records} == {"#general", "@bob"}
    assert result.messages == 81 and result.rooms == 2
