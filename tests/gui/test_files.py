"""Files (PROTOCOL.md 7) in the desktop client: drop or attach to send, cancel and
retry, download to a chosen place, image previews. A real server over TLS; the
other side is a library connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from qtclient.models.thumbnails import READY, THUMBNAIL_HEIGHT, THUMBNAIL_WIDTH
from qtclient.models.transfers import CANCELLED, FAILED, RUNNING, TransfersModel
from qtclient.qt import QBuffer, QByteArray, QColor, QImage, QIODevice, Qt
from qtclient.views.main_window import downloads_folder
from tests.gui.helpers import click_room, drop_files, fetch, say, shared_room, upload
from tests.support.events import EventLog, barrier

_R = TransfersModel.Roles


def _from(username: str) -> Any:
    def check(data: dict[str, Any]) -> bool:
        return bool(data["message"]["sender"] == username)

    return check


def _png(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#1a73e8"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, "PNG")
    return bytes(data.data())


def test_dropped_files_are_sent_and_the_peer_gets_the_same_bytes(
        make_client: Any, server: Any, qtbot: Any, wait: Any, tmp_path: Path) -> None:
    """A file dropped on the message list and another dropped on the composer are
    uploaded at the same time, each with a row in the attachments strip, and sent
    to the open room; bob downloads exactly the bytes alice had, and alice's
    conversation shows both files."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    window = alice.main_window
    transfers = alice.controller.files.transfers
    first = tmp_path / "plan.bin"
    first.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    second = tmp_path / "notes.txt"
    second.write_text("agenda: files\n" * 1000)
    rows_seen: set[int] = set()
    transfers.rowsInserted.connect(lambda *_a: rows_seen.add(transfers.rowCount()))

    assert drop_files(window.timeline.viewport(), [first])
    assert drop_files(window.composer.viewport(), [second])
    assert transfers.rowCount() == 2  # both on their way at once
    assert window.attachments_strip.isVisibleTo(window)
    assert [row.toolTip() for row in window.attachments_strip.rows()] == [
        str(first.resolve()), str(second.resolve())]

    received = {}
    for _ in range(2):
        event = wait(log.next("msg", where=_from("alice")))
        (attachment,) = event.data["message"]["attachments"]
        received[attachment["name"]] = attachment
    assert fetch(server, bob, received["plan.bin"]["file_id"]) == first.read_bytes()
    assert fetch(server, bob, received["notes.txt"]["file_id"]) == second.read_bytes()
    assert received["notes.txt"]["mime"] == "text/plain"
    assert received["plan.bin"]["size"] == first.stat().st_size

    qtbot.waitUntil(lambda: transfers.rowCount() == 0)  # sent: rows leave the strip
    assert not window.attachments_strip.isVisibleTo(window)
    qtbot.waitUntil(lambda: timeline.stored_count == 2)
    shown = {timeline.item(r).attachments[0]["name"] for r in range(timeline.rowCount())}
    assert shown == {"plan.bin", "notes.txt"}
    assert all(file_id for r in range(2) for file_id, *_ in window.timeline.file_spots(r))


def test_the_attach_button_sends_the_chosen_files(make_client: Any, server: Any, qtbot: Any,
                                                  wait: Any, tmp_path: Path) -> None:
    """The paperclip next to Send asks for files and sends them to the open room."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    chosen = tmp_path / "budget.csv"
    chosen.write_text("q1,q2\n1,2\n")
    window = alice.main_window
    window.choose_files = lambda _parent: [str(chosen)]
    qtbot.mouseClick(window.attach_button, Qt.MouseButton.LeftButton)
    event = wait(log.next("msg", where=_from("alice")))
    (attachment,) = event.data["message"]["attachments"]
    assert attachment["name"] == "budget.csv"
    assert fetch(server, bob, attachment["file_id"]) == chosen.read_bytes()


def test_a_dropped_folder_is_refused_with_a_message(make_client: Any, server: Any,
                                                    qtbot: Any, wait: Any,
                                                    tmp_path: Path) -> None:
    """Dropping a folder sends nothing (no zip) and the status bar says folders
    cannot be sent."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(b"not really a jpeg")

    assert drop_files(alice.main_window.timeline.viewport(), [folder])
    assert "“holiday photos” is a folder" in alice.last_status
    assert "Folders cannot be sent" in alice.main_window.statusBar().currentMessage()
    assert alice.controller.files.transfers.rowCount() == 0
    assert not alice.main_window.attachments_strip.isVisibleTo(alice.main_window)
    say(server, bob, room_id, "barrier")  # alice's client is idle; nothing else arrives
    wait(barrier(bob))
    assert [e for e in log.pending("msg") if e.data["message"]["sender"] == "alice"] == []


def test_cancel_then_retry_resumes_the_upload(make_client: Any, server: Any, qtbot: Any,
                                              wait: Any, tmp_path: Path) -> None:
    """Cancel stops an upload half-way (the row offers Retry); Retry resumes from
    the bytes the server already has, completes, and the file is sent once."""
    alice = make_client("alice")
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    window = alice.main_window
    transfers = alice.controller.files.transfers
    source = tmp_path / "video.bin"
    source.write_bytes(os.urandom(6 * 1024 * 1024))
    mib = 1024 * 1024
    progress: list[int] = []

    def changed(top_left: Any, *_args: Any) -> None:
        done = int(top_left.data(_R.Done))
        progress.append(done)
        state = top_left.data(_R.State)
        rows = window.attachments_strip.rows()
        # Cancel as soon as a whole MiB is on the server, exactly then (no timing).
        if state == RUNNING and done >= mib and rows and rows[0].cancel_button.isVisible():
            rows[0].cancel_button.click()

    transfers.dataChanged.connect(changed)
    assert drop_files(window.composer.viewport(), [source])
    qtbot.waitUntil(lambda: transfers.rowCount() == 1
                    and transfers.items()[0].state == CANCELLED)
    transfers.dataChanged.disconnect(changed)
    (row,) = window.attachments_strip.rows()
    assert row.retry_button.isVisible() and not row.cancel_button.isVisible()
    assert row.status.text() == "Cancelled"
    assert max(progress) < source.stat().st_size

    progress.clear()
    transfers.dataChanged.connect(
        lambda top_left, *_a: progress.append(int(top_left.data(_R.Done))))
    qtbot.mouseClick(row.retry_button, Qt.MouseButton.LeftButton)
    event = wait(log.next("msg", where=_from("alice")))
    (attachment,) = event.data["message"]["attachments"]
    assert fetch(server, bob, attachment["file_id"]) == source.read_bytes()
    # The retry's first report past zero is the server's offset: at least the
    # MiB sent before the cancel (a fresh upload would start at one chunk).
    assert min(p for p in progress if p > 0) >= mib
    wait(barrier(bob))
    assert [e for e in log.pending("msg") if e.data["message"]["sender"] == "alice"] == []
    qtbot.waitUntil(lambda: transfers.rowCount() == 0)


def test_a_received_image_shows_a_preview(make_client: Any, server: Any, qtbot: Any,
                                          wait: Any) -> None:
    """An image bob sends is downloaded into alice's cache folder by itself and
    shown scaled into the preview box; a PDF gets no preview."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    png = _png(800, 600)
    image = upload(server, bob, "whiteboard.png", png)
    assert image["mime"] == "image/png"
    pdf = upload(server, bob, "minutes.pdf", b"%PDF-1.4 minutes")
    say(server, bob, room_id, "from the meeting",
        attachments=[image["file_id"], pdf["file_id"]])
    qtbot.waitUntil(lambda: timeline.stored_count == 1)

    thumbnails = alice.controller.files.thumbnails
    qtbot.waitUntil(lambda: thumbnails.state(image["file_id"]) == READY)
    pixmap = thumbnails.pixmap(image["file_id"])
    assert pixmap is not None
    size = pixmap.deviceIndependentSize()
    assert (round(size.width()), round(size.height())) == (213, THUMBNAIL_HEIGHT)
    assert size.width() <= THUMBNAIL_WIDTH
    cached = Path(thumbnails.path(image["file_id"]))
    assert cached.is_relative_to(alice.controller.cache_root)
    assert cached.read_bytes() == png
    assert thumbnails.state(pdf["file_id"]) is None  # not an image: never fetched
    spots = alice.main_window.timeline.file_spots(0)
    assert [(file_id, thumb is not None) for file_id, _button, thumb in spots] == [
        (image["file_id"], True), (pdf["file_id"], False)]
    assert spots[0][2] is not None and spots[0][2].height() == THUMBNAIL_HEIGHT


def test_download_saves_the_identical_file_where_chosen_then_opens_it(
        make_client: Any, server: Any, qtbot: Any, wait: Any, tmp_path: Path) -> None:
    """Download asks where to save (starting in the Downloads folder), writes
    exactly the file's bytes there, and the button becomes Open, which opens it."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    data = os.urandom(900 * 1024)
    report = upload(server, bob, "report.pdf", data)
    say(server, bob, room_id, "", attachments=[report["file_id"]])
    qtbot.waitUntil(lambda: timeline.stored_count == 1)

    window = alice.main_window
    dest = tmp_path / "saved" / "Q3 report.pdf"
    dest.parent.mkdir()
    asked: list[str] = []
    opened: list[str] = []

    def choose(_parent: Any, suggested: str) -> str:
        asked.append(suggested)
        return str(dest)

    window.choose_save_path = choose
    window.open_file = opened.append
    view = window.timeline
    delegate = view.message_delegate
    qtbot.waitUntil(lambda: bool(view.file_spots(0)))
    (file_id, button, _thumb), = view.file_spots(0)
    assert delegate.file_action(file_id) == "download"
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=button.center())
    assert asked == [str(downloads_folder() / "report.pdf")]
    qtbot.waitUntil(lambda: delegate.file_action(file_id) == "open", timeout=10000)
    assert dest.read_bytes() == data
    assert not Path(str(dest) + ".part").exists()

    (file_id, button, _thumb), = view.file_spots(0)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=button.center())
    assert opened == [str(dest)]
    assert asked == [str(downloads_folder() / "report.pdf")]  # no second dialog


@pytest.mark.server_config(max_file_size=4000)
def test_a_file_over_the_servers_limit_fails_with_the_limit(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Path) -> None:
    """A file larger than the server accepts fails in its row, saying the limit;
    Remove takes the row away."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    click_room(qtbot, alice, room_id)
    big = tmp_path / "scan.tiff"
    big.write_bytes(bytes(5000))
    window = alice.main_window
    transfers = alice.controller.files.transfers
    assert drop_files(window.timeline.viewport(), [big])
    qtbot.waitUntil(lambda: transfers.items()[0].state == FAILED)
    (row,) = window.attachments_strip.rows()
    assert row.status.text() == "Failed: Too large: this server accepts files up to 4.0 kB."
    assert row.retry_button.isVisible() and row.remove_button.isVisible()
    qtbot.mouseClick(row.remove_button, Qt.MouseButton.LeftButton)
    assert transfers.rowCount() == 0
    assert not window.attachments_strip.isVisibleTo(window)
