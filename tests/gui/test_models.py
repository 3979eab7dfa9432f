"""The Qt models on their own: the rules that keep a conversation free of
duplicates and the unread counts right, whatever order things arrive in."""

from __future__ import annotations

from typing import Any

import pytest

from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import PENDING, SENT, TimelineModel
from qtclient.views.delegates import chip_text, reaction_tooltip


def _msg(seq: int, body: str = "", sender: str = "bob", cid: str = "", **extra: Any
         ) -> dict[str, Any]:
    return {"room_id": 1, "msg_id": 1000 + seq, "seq": seq, "sender": sender,
            "ts": 1_700_000_000_000, "body": body or f"m{seq}", "client_msg_id": cid, **extra}


@pytest.mark.parametrize("order", [("ack", "event"), ("event", "ack"), ("event", "event")])
def test_a_sent_message_shows_once_whatever_arrives_first(order: tuple[str, str]) -> None:
    """The pending row becomes the stored message on the acknowledgement or the
    ``msg`` event, whichever comes first; the other (or a replay) changes nothing."""
    timeline = TimelineModel(1, "alice")
    timeline.load_latest([_msg(1)], has_more=False, read_seq=1)
    timeline.add_pending("c1", "hello", ts=1_700_000_000_500)
    assert timeline.bodies() == ["m1", "hello"] and timeline.item(1).state == PENDING
    for step in order:
        if step == "ack":
            timeline.acknowledge("c1", msg_id=1002, seq=2, ts=1_700_000_000_600)
        else:
            timeline.add_message(_msg(2, "hello", sender="alice", cid="c1"))
    assert timeline.bodies() == ["m1", "hello"]
    assert [timeline.item(r).state for r in range(2)] == [SENT, SENT]
    assert [timeline.item(r).seq for r in range(2)] == [1, 2]


def test_catch_up_fills_gaps_in_seq_order_without_duplicates() -> None:
    """Messages arriving out of order (catch-up after live ones) are put in seq
    order, and one already shown is not shown again."""
    timeline = TimelineModel(1, "alice")
    timeline.load_latest([_msg(1), _msg(2)], has_more=False, read_seq=2)
    for seq in (5, 3, 4, 3, 5):
        timeline.add_message(_msg(seq))
    assert [timeline.item(r).seq for r in range(timeline.rowCount())] == [1, 2, 3, 4, 5]


def test_merge_latest_applies_offline_edits_deletions_and_reactions() -> None:
    """A fresh newest page replaces bodies and reactions and drops what is gone."""
    timeline = TimelineModel(1, "alice")
    timeline.load_latest([_msg(1), _msg(2), _msg(3)], has_more=False, read_seq=3)
    timeline.merge_latest([_msg(1, "edited", edited_ts=5), _msg(3, reactions={"👍": ["bob"]}),
                           _msg(4)])
    assert timeline.bodies() == ["edited", "m3", "m4"]
    assert timeline.index(1).data(TimelineModel.Roles.Reactions) == [("👍", 1, False)]


def test_caught_up_update_replaces_body_and_reactions() -> None:
    """``msg.updated`` from the library's catch-up replaces what an older loaded
    page shows; an update for a message not loaded changes nothing."""
    timeline = TimelineModel(1, "alice")
    timeline.load_latest([_msg(1), _msg(2)], has_more=False, read_seq=2)
    timeline.apply_update(_msg(1, "fixed typo", edited_ts=7, reactions={"🎉": ["bob", "eve"]}))
    timeline.apply_update(_msg(99, "not here"))
    assert timeline.bodies() == ["fixed typo", "m2"]
    assert timeline.item(0).edited_ts == 7
    assert timeline.index(0).data(TimelineModel.Roles.Reactions) == [("🎉", 2, False)]


def test_a_summarised_message_shows_counts_and_stays_current() -> None:
    """A message the server sent summarised (counts, no names) shows its counts with
    the user's own marked; live reactions move them; its tooltip data says the names
    are unknown; a later listed version replaces it."""
    timeline = TimelineModel(1, "alice")
    summarised = _msg(1, reaction_counts={"🎉": 26000, "👍": 3}, my_reactions=["👍"],
                      reactions_summarised=True)
    timeline.load_latest([summarised, _msg(2, reactions={"👍": ["bob"]})], has_more=False,
                         read_seq=2)
    roles = TimelineModel.Roles
    assert timeline.index(0).data(roles.Reactions) == [("🎉", 26000, False), ("👍", 3, True)]
    assert timeline.index(0).data(roles.ReactionUsers) == {"🎉": None, "👍": None}
    revision = timeline.item(0).revision
    timeline.apply_reaction(1001, "🎉", "carol", True)
    timeline.apply_reaction(1001, "👍", "alice", False)
    timeline.apply_reaction(1001, "👍", "alice", False)  # a repeat of one's own: nothing
    assert timeline.index(0).data(roles.Reactions) == [("🎉", 26001, False), ("👍", 2, False)]
    assert timeline.item(0).revision == revision + 2
    timeline.names = {"bob": "Bob B."}
    assert timeline.index(1).data(roles.ReactionUsers) == {"👍": ["Bob B."]}
    timeline.apply_update(_msg(1, reactions={"👍": ["bob"]}))
    assert timeline.index(0).data(roles.Reactions) == [("👍", 1, False)]


def test_reaction_chips_and_tooltips_read_well() -> None:
    """Chips shorten big counts; tooltips list names (at most ten, then "and N
    others") or, for a summarised message, say how many."""
    assert [chip_text("🎉", n) for n in (7, 999, 1250, 26001)] == [
        "🎉 7", "🎉 999", "🎉 1.2k", "🎉 26k"]
    assert reaction_tooltip("👍", 2, False, ["Bob", "Eve"]) == "Bob, Eve reacted with 👍"
    names = [f"u{i}" for i in range(12)]
    assert reaction_tooltip("👍", 12, False, names) == (
        "u0, u1, u2, u3, u4, u5, u6, u7, u8, u9 and 2 others reacted with 👍")
    assert reaction_tooltip("👍", 1, True, None) == "You reacted with 👍"
    assert reaction_tooltip("👍", 2, True, None) == "You and 1 other reacted with 👍"
    assert reaction_tooltip("👍", 1, False, None) == "1 person reacted with 👍"


def test_unread_is_last_seq_minus_read_seq_and_never_goes_back() -> None:
    """The room list counts like the server; an older room.list (taken before
    catch-up messages arrived) does not undo what was counted since."""
    rooms = RoomListModel()
    rooms.reset_rooms([{"room_id": 7, "kind": "group", "name": "x", "last_seq": 10,
                        "read_seq": 8, "unread": 2}])
    rooms.note_message(7, 11, ts=1, unread=True)
    rooms.note_message(7, 12, ts=2, unread=True)
    assert rooms.room(7).unread == 4
    rooms.reset_rooms([{"room_id": 7, "kind": "group", "name": "x", "last_seq": 11,
                        "read_seq": 8, "unread": 3}])
    assert rooms.room(7).unread == 4
    rooms.mark_read(7, 12)
    assert rooms.room(7).unread == 0
    rooms.note_message(7, 13, ts=3, unread=False)  # seen arriving
    assert rooms.room(7).unread == 0 and rooms.room(7).read_seq == 13


def test_a_sent_file_keeps_its_attachment_from_pending_to_stored() -> None:
    """A file message shows its attachment while pending and after the
    acknowledgement; a reply to it quotes the file's name (it has no text)."""
    timeline = TimelineModel(1, "alice")
    timeline.load_latest([], has_more=False, read_seq=0)
    file = {"file_id": "ab12", "name": "plan.pdf", "size": 2048, "mime": "application/pdf"}
    timeline.add_pending("c1", "", ts=1_700_000_000_500, attachments=[file])
    roles = TimelineModel.Roles
    assert timeline.index(0).data(roles.Attachments) == [("ab12", "plan.pdf", 2048,
                                                          "application/pdf")]
    timeline.acknowledge("c1", msg_id=1001, seq=1, ts=1_700_000_000_600)
    assert timeline.item(0).state == SENT and timeline.item(0).attachments == [file]
    timeline.add_message(_msg(2, "nice", reply_to=1001))
    assert timeline.index(1).data(roles.ReplyPreview) == ("alice", "📎 plan.pdf")


def test_transfers_by_room_and_by_file() -> None:
    """The strip's proxy lists only the open room's uploads; downloads are found
    by file id, the latest one replacing a finished earlier one."""
    from qtclient.models.transfers import DONE, RUNNING, RoomUploadsProxy, TransfersModel

    model = TransfersModel()
    proxy = RoomUploadsProxy()
    proxy.setSourceModel(model)
    first = model.add_upload(1, "/tmp/a", "a", "text/plain", 10)
    model.add_upload(2, "/tmp/b", "b", "text/plain", 10)
    model.add_download("f1", "c", "/tmp/c", "", 0)
    assert proxy.rowCount() == 0
    proxy.set_room(1)
    assert [proxy.index(r, 0).data() for r in range(proxy.rowCount())] == ["a"]
    proxy.set_room(2)
    assert [proxy.index(r, 0).data() for r in range(proxy.rowCount())] == ["b"]
    model.set_progress(first, 5, 10)
    assert model.item(first) is not None and model.item(first).fraction == 0.5  # type: ignore[union-attr]
    download = model.download_for("f1")
    assert download is not None
    model.set_state(download.transfer_id, DONE)
    again = model.add_download("f1", "c", "/tmp/elsewhere/c", "", 0)
    assert model.download_for("f1") is model.item(again)
    assert model.rowCount() == 3  # the finished one was replaced
    model.set_state(again, RUNNING)
    assert model.item(again).state == RUNNING  # type: ignore[union-attr]


def test_previews_are_bounded_and_reloadable() -> None:
    """The preview cache keeps the most recently used pixmaps; one dropped is
    asked for again (its state is forgotten), as is one no longer queued."""
    from qtclient.models.thumbnails import LOADING, READY, ThumbnailCache
    from qtclient.qt import QPixmap

    cache = ThumbnailCache(limit=2)
    for name in ("a", "b", "c"):
        cache.mark_loading(name)
        cache.store(name, QPixmap(4, 4), f"/cache/{name}")
    assert cache.pixmap("a") is None and cache.state("a") is None
    assert cache.state("c") == READY and cache.path("a") == "/cache/a"
    cache.mark_loading("d")
    assert cache.state("d") == LOADING
    cache.forget("d")
    assert cache.state("d") is None


def test_file_sizes_are_in_si_units_as_the_terminal_prints_them() -> None:
    """Sizes are counted in thousands, as ``chatnet`` (the terminal client)
    prints them: 300,000 bytes is 300.0 kB, 40,000,000 bytes 40.0 MB (not 293.0 kB
    and 38.1 MB, which divide by 1024 under the same unit names)."""
    from qtclient.qt import QLocale
    from qtclient.transfers import human_size

    before = QLocale()
    QLocale.setDefault(QLocale(QLocale.Language.English, QLocale.Country.UnitedStates))
    try:
        assert human_size(999) == "999 bytes"
        assert human_size(1000) == "1.0 kB"
        assert human_size(300_000) == "300.0 kB"
        assert human_size(40_000_000) == "40.0 MB"
        assert human_size(2_500_000_000) == "2.5 GB"
    finally:
        QLocale.setDefault(before)
