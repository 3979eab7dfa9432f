"""Search in the desktop client (docs/protocol.md 6, ``msg.search``): Ctrl+F in
a conversation, Ctrl+Shift+F in all of them, results with their matches
emphasised, best or newest first, paged; choosing a result opens its
conversation at that message, with the history around it."""

from __future__ import annotations

from typing import Any

import pytest

from qtclient.app import ChatApp
from qtclient.models.search import RECENT, SearchResultsModel
from qtclient.qt import QColor, QImage, QRectF, Qt
from qtclient.views.search import MARK_BACKGROUND, SearchPanel
from tests.gui.helpers import click_room, say, shared_room, wait_for_room

_SR = SearchResultsModel.Roles


def say_many(server: Any, conn: Any, room_id: int, bodies: list[str]) -> list[dict[str, Any]]:
    """Send ``bodies`` in order, pipelined (each ``msg.send`` waited for at the end)."""
    from twisted.internet.defer import gatherResults

    from tests.gui.helpers import _ids

    sends = [conn.request("msg.send", {"room_id": room_id, "body": body,
                                       "client_msg_id": f"s{next(_ids)}"})
             for body in bodies]
    result: list[dict[str, Any]] = server.wait(gatherResults(sends), timeout=30000)
    return result


def focus(qtbot: Any, app: ChatApp) -> None:
    """Make the client's window the active one, as when someone types in it."""
    app.window.activateWindow()
    app.window.raise_()
    qtbot.waitUntil(app.window.isActiveWindow)


def search(qtbot: Any, app: ChatApp, words: str, everywhere: bool = False) -> SearchPanel:
    """Ctrl+F (or Ctrl+Shift+F) in the composer, type ``words``, Enter; wait for
    the first page."""
    window = app.main_window
    focus(qtbot, app)
    window.composer.setFocus()
    modifiers = Qt.KeyboardModifier.ControlModifier
    if everywhere:
        modifiers |= Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window.composer, Qt.Key.Key_F, modifiers)
    panel = window.search_panel
    qtbot.waitUntil(panel.isVisible)
    qtbot.waitUntil(panel.query.hasFocus)
    panel.query.clear()
    if words.isascii():
        qtbot.keyClicks(panel.query, words)
    else:
        panel.query.insert(words)  # as an input method commits it (QTest types ASCII only)
    qtbot.keyClick(panel.query, Qt.Key.Key_Return)
    results = app.controller.search_results
    qtbot.waitUntil(lambda: results.done and not results.loading and results.query == words)
    return panel


def marked(index: Any) -> list[str]:
    """The parts of a result's snippet its marks cover."""
    text = str(index.data(_SR.Snippet))
    return [text[start:end] for start, end in index.data(_SR.Marks)]


def colour_in(image: QImage, rect: QRectF, colour: QColor) -> int:
    """How many pixels inside ``rect`` (device-independent pixels) are ``colour``."""
    ratio = image.devicePixelRatio()
    inner = rect.adjusted(1, 1, -1, -1)
    count = 0
    for y in range(int(inner.top() * ratio), int(inner.bottom() * ratio)):
        for x in range(int(inner.left() * ratio), int(inner.right() * ratio)):
            if image.pixelColor(x, y).rgb() == colour.rgb():
                count += 1
    return count


def test_ctrl_f_finds_a_chinese_word_inside_a_sentence_and_marks_it(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Any) -> None:
    """Ctrl+F in a conversation opens the search bar for that conversation;
    数据 finds the message 🎉 报告数据已上传 (the word inside a sentence, an
    emoji before it), and only in that room. The result names the room, the
    sender and the date, and the snippet is drawn with 数据 — those two
    characters and not their neighbours — bold on the highlight colour."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    other = shared_room(server, bob, "alice", name="other")
    say(server, bob, general, "🎉 报告数据已上传")
    say(server, bob, general, "nothing to see here")
    say(server, bob, other, "另一个数据")
    click_room(qtbot, alice, general)

    panel = search(qtbot, alice, "数据")
    results = alice.controller.search_results
    assert panel.scope.currentData() == general  # "In # general"
    assert results.room_id == general
    assert results.rowCount() == 1
    index = results.index(0)
    assert index.data(_SR.RoomLabel) == "# general"
    assert index.data(_SR.SenderName) == "bob"
    assert marked(index) == ["数据"]
    assert panel.status.text() == "1 message found"

    # Painted: the mark's rectangle is on the highlight, "报告" before it is not.
    view = panel.results
    qtbot.waitUntil(lambda: view.visualRect(index).height() > 0)
    option = view.item_option(0)
    [mark] = view.result_delegate.mark_rects(option, index)
    text = str(index.data(_SR.Snippet))
    start16 = len(text[: text.index("报告")].encode("utf-16-le")) // 2
    [before] = view.result_delegate.text_rects(option, index, start16, start16 + 2)
    assert before.right() <= mark.left() + 0.5
    viewport = view.viewport()
    assert viewport is not None
    image = viewport.grab().toImage()
    image.save(str(tmp_path / "results.png"))
    # The glyphs, bold, cover part of it; the rest is the highlight.
    assert colour_in(image, mark, MARK_BACKGROUND) > mark.width() * mark.height() * 0.1
    assert colour_in(image, before, MARK_BACKGROUND) == 0


def test_ctrl_shift_f_searches_every_room_by_stem_best_or_newest_first(
        make_client: Any, server: Any, qtbot: Any) -> None:
    """Ctrl+Shift+F searches all the account's rooms: "upload" finds "uploaded"
    and "Uploading" (the stem), each result naming its room, the matched word
    marked; "Newest first" orders them by time."""
    alice = make_client("alice")
    bob = server.user("bob")
    alpha = shared_room(server, bob, "alice", name="alpha")
    beta = shared_room(server, bob, "alice", name="beta")
    say(server, bob, alpha, "I uploaded the slides: upload, upload, upload")
    say(server, bob, beta, "Uploading now, and then more: the deck, the notes, the rest")
    say(server, bob, beta, "downloads are different")
    # Indexed now rather than within a quarter of a second (SQLite ranks what
    # the index holds; messages still queued come newest first).
    server.wait(server.running.service.search_indexer.run_once())
    wait_for_room(qtbot, alice, alpha)
    wait_for_room(qtbot, alice, beta)

    panel = search(qtbot, alice, "upload", everywhere=True)
    results = alice.controller.search_results
    assert panel.scope.currentData() == -1 and results.room_id is None
    assert results.rowCount() == 2
    rows = {results.index(r).data(_SR.RoomLabel): results.index(r) for r in range(2)}
    assert set(rows) == {"# alpha", "# beta"}
    assert marked(rows["# alpha"]) == ["uploaded", "upload", "upload", "upload"]
    assert marked(rows["# beta"]) == ["Uploading"]
    # Best first: the older message, which says it four times…
    assert [results.index(r).data(_SR.RoomLabel) for r in range(2)] == ["# alpha", "# beta"]

    # …or newest first.
    panel.order.setCurrentIndex(panel.order.findData(RECENT))
    panel.order.activated.emit(panel.order.currentIndex())
    qtbot.waitUntil(lambda: results.order == RECENT and results.done and not results.loading)
    assert [results.index(r).data(_SR.RoomLabel) for r in range(2)] == ["# beta", "# alpha"]


def test_a_search_that_matches_nothing_says_so(make_client: Any, server: Any,
                                               qtbot: Any) -> None:
    """Words found nowhere leave the list empty and the panel says so; Escape
    closes the panel."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    say(server, bob, general, "hello there")
    click_room(qtbot, alice, general)
    panel = search(qtbot, alice, "zebra")
    assert alice.controller.search_results.rowCount() == 0
    assert panel.status.text() == "No messages in this conversation match “zebra”."
    panel.scope.setCurrentIndex(panel.scope.findData(-1))
    panel.scope.activated.emit(panel.scope.currentIndex())
    qtbot.waitUntil(lambda: panel.status.text() == "No messages match “zebra”.")
    qtbot.keyClick(panel.query, Qt.Key.Key_Escape)
    assert not panel.isVisible()


def test_results_page_with_more_and_on_scroll(make_client: Any, server: Any,
                                              qtbot: Any) -> None:
    """70 matches come 30 at a time: "More" fetches the next page (the server's
    ``next_cursor``), scrolling to the end of the list the one after; then
    "More" goes away. No result is listed twice."""
    alice = make_client("alice")
    bob = server.user("bob")
    general = shared_room(server, bob, "alice", name="general")
    say_many(server, bob, general, [f"kiwi number {n}" for n in range(70)])
    click_room(qtbot, alice, general)
    panel = search(qtbot, alice, "kiwi")
    results = alice.controller.search_results
    assert results.rowCount() == 30 and results.has_more
    assert panel.more_button.isVisible()
    assert panel.status.text() == "30 messages found so far"
    panel.more_button.click()
    qtbot.waitUntil(lambda: results.rowCount() == 60 and not results.loading)
    bar = panel.results.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: results.rowCount() == 70 and not results.loading)
    assert not results.has_more and not panel.more_button.isVisible()
    ids = [results.index(r).data(_SR.MsgId) for r in range(70)]
    assert len(set(ids)) == 70
    assert panel.status.text() == "70 messages found"


def _seqs(timeline: Any) -> list[int]:
    return [timeline.item(r).seq for r in range(timeline.stored_count)]


def _on_screen(view: Any, row: int) -> bool:
    model = view.model()
    rect = view.visualRect(model.index(row, 0))
    viewport = view.viewport()
    return rect.isValid() and viewport.rect().intersects(rect)


@pytest.mark.server_config(rate=1e6, burst=1e6)  # 300 sends at once
def test_a_result_in_a_long_room_opens_there_and_scrolling_loads_both_ways(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Any) -> None:
    """In a room of 300 messages, a result near the start (message 80) opens the
    room at that message: it is on screen, highlighted, with its neighbours
    loaded (the page around it) but not the newest. A message arriving then is
    not appended after the gap; scrolling down loads the newer pages up to it
    (no gap, nothing twice), scrolling up the older ones to the first."""
    alice = make_client("alice")
    bob = server.user("bob")
    lobby = shared_room(server, bob, "alice", name="lobby")
    big = shared_room(server, bob, "alice", name="big")
    bodies = [f"filler message {n}" for n in range(1, 301)]
    bodies[79] = "the needle is here"
    say_many(server, bob, big, bodies)
    click_room(qtbot, alice, lobby)

    panel = search(qtbot, alice, "needle", everywhere=True)
    results = alice.controller.search_results
    assert results.rowCount() == 1
    view = panel.results
    qtbot.waitUntil(lambda: view.visualRect(results.index(0)).height() > 0)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.visualRect(results.index(0)).center())

    timeline = alice.controller.timeline(big)
    window = alice.main_window
    qtbot.waitUntil(lambda: alice.controller.current_room == big
                    and window.timeline.highlighted() is not None)
    seqs = _seqs(timeline)
    assert 80 in seqs and 79 in seqs and 81 in seqs
    assert 300 not in seqs and timeline.has_newer and timeline.has_more
    row = timeline.row_of_seq(80)
    assert window.timeline.highlighted() == f"m{timeline.item(row).msg_id}"
    assert _on_screen(window.timeline, row)
    assert window.room_title.text() == "# big"
    window.grab().save(str(tmp_path / "jump.png"))

    # A live message is not put after the gap…
    say(server, bob, big, "live after the jump")
    qtbot.waitUntil(lambda: alice.controller.rooms.room(big).last_seq == 301)
    assert 301 not in _seqs(timeline)
    # …scrolling down brings the newer pages, up to it.
    bar = window.timeline.verticalScrollBar()
    for _page in range(10):
        if not timeline.has_newer:
            break
        count = timeline.stored_count
        bar.setValue(bar.maximum())
        qtbot.waitUntil(lambda c=count: timeline.stored_count > c or not timeline.has_newer)
    assert not timeline.has_newer
    seqs = _seqs(timeline)
    assert seqs[-1] == 301 and seqs == list(range(seqs[0], 302))
    # Scrolling up brings the older ones, down to the first message.
    for _page in range(10):
        if not timeline.has_more:
            break
        count = timeline.stored_count
        bar.setValue(0)
        qtbot.waitUntil(lambda c=count: timeline.stored_count > c or not timeline.has_more)
    assert _seqs(timeline) == list(range(1, 302))


@pytest.mark.server_config(rate=1e6, burst=1e6)
def test_sending_from_a_result_shows_the_newest_messages(make_client: Any, server: Any,
                                                         qtbot: Any) -> None:
    """Writing while a window in the middle of a long room is shown (a result
    was opened) sends the message where it belongs, after the newest one, and
    the conversation shows that end again: the newest page and the message."""
    alice = make_client("alice")
    bob = server.user("bob")
    big = shared_room(server, bob, "alice", name="big")
    bodies = [f"filler message {n}" for n in range(1, 201)]
    bodies[9] = "an old needle"
    say_many(server, bob, big, bodies)
    wait_for_room(qtbot, alice, big)
    search(qtbot, alice, "needle", everywhere=True)
    panel = alice.main_window.search_panel
    panel.results.choose(alice.controller.search_results.index(0))
    timeline = alice.controller.timeline(big)
    window = alice.main_window
    qtbot.waitUntil(lambda: window.timeline.highlighted() is not None)
    assert timeline.has_newer and 200 not in _seqs(timeline)

    window.composer.setFocus()
    qtbot.keyClicks(window.composer, "back to the present")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: timeline.loaded and not timeline.has_newer
                    and timeline.stored_count > 0 and _seqs(timeline)[-1] == 201)
    seqs = _seqs(timeline)
    assert seqs == list(range(seqs[0], 202)) and 10 not in seqs
    assert timeline.bodies()[-1] == "back to the present"
    assert timeline.bodies().count("back to the present") == 1
    qtbot.waitUntil(window.timeline.at_bottom)


def test_each_account_searches_its_own_rooms(desktops: Any, server: Any, other_server: Any,
                                             qtbot: Any) -> None:
    """Two accounts on two servers in one window: Ctrl+Shift+F searches the
    account shown, into that account's own panel; switching shows the other
    account's panel and results as they were; a result opens the conversation
    in its own account."""
    from qtclient.accounts import PasswordStore
    from tests.gui.keyrings import DictKeyring
    from tests.gui.test_several_accounts import two_accounts

    app, alice, carol = two_accounts(qtbot, desktops, server, other_server,
                                     PasswordStore(DictKeyring()))
    bob, dave = server.user("bob"), other_server.user("dave")
    apples = shared_room(server, bob, "alice", name="apples")
    cherries = shared_room(other_server, dave, "carol", name="cherries")
    say(server, bob, apples, "the fruit basket is full")
    say(other_server, dave, cherries, "fruit salad for lunch")
    qtbot.waitUntil(lambda: alice.controller.rooms.room(apples) is not None
                    and carol.controller.rooms.room(cherries) is not None)
    assert app.current is carol

    search(qtbot, app, "fruit", everywhere=True)
    carol_results = carol.controller.search_results
    assert [carol_results.index(r).data(_SR.RoomLabel) for r in range(carol_results.rowCount())
            ] == ["# cherries"]
    assert carol.page.search_panel.isVisible() and not alice.page.search_panel.isVisible()
    assert alice.controller.search_results.rowCount() == 0

    app.window.account_action(1).trigger()
    assert app.current is alice
    search(qtbot, app, "fruit", everywhere=True)
    alice_results = alice.controller.search_results
    assert [alice_results.index(r).data(_SR.RoomLabel) for r in range(alice_results.rowCount())
            ] == ["# apples"]
    assert carol_results.rowCount() == 1  # carol's results are hers, as they were
    alice.page.search_panel.results.choose(alice_results.index(0))
    qtbot.waitUntil(lambda: alice.controller.current_room == apples
                    and alice.page.timeline.highlighted() is not None)
    assert carol.controller.current_room != apples
    app.window.account_action(2).trigger()
    assert carol.page.search_panel.isVisible()
    assert carol.page.search_panel.query.text() == "fruit"
