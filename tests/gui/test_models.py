"""The Qt models on their own: the rules that keep a conversation free of
duplicates and the unread counts right, whatever order things arrive in."""

from __future__ import annotations

from typing import Any

import pytest

from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import PENDING, SENT, TimelineModel


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
