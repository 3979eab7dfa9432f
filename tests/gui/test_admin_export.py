"""The Administration window's Export tab (docs/protocol.md 9, ``admin.export``):
a range of days, a room or a sender, the server's progress events, then the
file downloaded through the account's downloads, never over an existing file.
Against a real server whose clock the test sets (as in test_dates.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from qtclient.qt import QDate
from tests.gui import test_dates
from tests.gui.conftest import ServerHandle
from tests.gui.helpers import say, shared_room
from tests.gui.test_admin import give_roles, open_admin
from tests.gui.test_dates import THREE_DAYS_AGO, TODAY, YESTERDAY, ShiftedClock, at

#: The fixtures of test_dates.py: a server on a clock the test sets.
clock = test_dates.clock
server = test_dates.server


def _qdate(day: Any) -> QDate:
    return QDate(day.year, day.month, day.day)


def test_the_export_saves_the_messages_of_the_range_as_json_lines(
        make_client: Any, server: ServerHandle, clock: ShiftedClock, qtbot: Any,
        tmp_path: Path) -> None:
    """Messages three days ago, yesterday and today, in "general" and in
    another room. Exporting yesterday to today of "general" shows the server's
    progress, then saves exactly that room's messages of those two days, one
    JSON object a line, beside (not over) the file of the name chosen; the
    audit log lists the export. Filtering by sender keeps only bob's."""
    bob = server.user("bob")
    carol = server.user("carol")
    general = shared_room(server, bob, "carol", name="general")
    other = shared_room(server, carol, "bob", name="other")
    say(server, bob, general, "too old")
    clock.set(at(YESTERDAY, 8))
    say(server, bob, general, "yesterday from bob")
    say(server, carol, general, "yesterday from carol")
    say(server, carol, other, "elsewhere")
    clock.set(max(datetime.now(), at(TODAY, 0)))
    say(server, bob, general, "today from bob")
    give_roles(server, "root", ["auditor"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    tab = window.export
    assert window.tabs.isTabVisible(window.tabs.indexOf(tab))
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: any(room_id == general for room_id, _name in tab.rooms))
    tab.first.setDate(_qdate(YESTERDAY))
    tab.last.setDate(_qdate(TODAY))
    assert tab.choose_room(general)
    chosen = tmp_path / "export.jsonl"
    chosen.write_text("keep me\n")
    asked: list[str] = []
    tab.choose_save_path = lambda _parent, suggested: asked.append(suggested) or str(chosen)
    progress: list[int] = []
    root.controller.admin_export_progress.connect(lambda d: progress.append(d["messages"]))
    saved: list[str] = []
    tab.finished.connect(saved.append)

    assert tab.start_button.isEnabled()
    tab.start_button.click()
    assert asked and asked[0].endswith(".jsonl")
    qtbot.waitUntil(lambda: bool(saved), timeout=15000)
    written = tmp_path / "export (1).jsonl"
    assert saved == [str(written)]
    assert chosen.read_text() == "keep me\n"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert [(m["room"], m["sender"], m["body"]) for m in lines] == [
        ("general", "bob", "yesterday from bob"), ("general", "carol", "yesterday from carol"),
        ("general", "bob", "today from bob")]
    assert progress and progress[-1] == 3
    assert "3 messages" in tab.state.text() and str(written) in tab.state.text()
    assert not tab.bar.isVisible()

    window.tabs.setCurrentWidget(window.audit)
    window.audit.reload()
    qtbot.waitUntil(lambda: "export" in window.audit.actions_shown())

    saved.clear()
    tab.user.setText("@bob")
    assert tab.choose_room(None)
    tab.first.setDate(_qdate(THREE_DAYS_AGO))
    tab.start_button.click()
    qtbot.waitUntil(lambda: bool(saved), timeout=15000)
    assert saved == [str(tmp_path / "export (2).jsonl")]
    bodies = [json.loads(line)["body"]
              for line in Path(saved[0]).read_text().splitlines()]
    assert bodies == ["too old", "yesterday from bob", "today from bob"]


def test_a_refused_export_says_why_and_keeps_nothing(
        make_client: Any, server: ServerHandle, clock: ShiftedClock, qtbot: Any,
        tmp_path: Path) -> None:
    """An export for a user who does not exist is refused with the server's
    sentence; no file is written and *Export…* is offered again."""
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    window = open_admin(qtbot, root)
    tab = window.export
    tab.user.setText("nobody")
    tab.choose_save_path = lambda _parent, _suggested: str(tmp_path / "x.jsonl")
    saved: list[str] = []
    tab.finished.connect(saved.append)
    tab.start_button.click()
    assert not tab.start_button.isEnabled()
    qtbot.waitUntil(lambda: bool(saved), timeout=15000)
    assert saved == [""]
    assert tab.state.text().startswith("Export failed: ")
    assert not (tmp_path / "x.jsonl").exists()
    assert tab.start_button.isEnabled()
