"""The server restarts: the client says so, reconnects by itself, and the
conversation is complete afterwards, with nothing lost or doubled."""

from __future__ import annotations

from typing import Any

from qtclient.models.members import MemberListModel
from qtclient.models.presence import UNKNOWN
from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import PENDING
from qtclient.qt import Qt
from tests.gui.helpers import click_room, room_index, say, shared_room
from tests.support.events import EventLog


def test_reconnect_after_server_restart_loses_and_doubles_nothing(
        make_client: Any, server: Any, qtbot: Any, wait: Any) -> None:
    """While the server is down the status bar and a banner say "reconnecting",
    and a message alice sends waits as pending; after the restart it is
    delivered exactly once, and what bob sent meanwhile appears exactly once."""
    alice = make_client("alice")
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    say(server, bob, room_id, "before the restart")
    qtbot.waitUntil(lambda: timeline.bodies() == ["before the restart"])
    window = alice.main_window

    server.stop()
    qtbot.waitUntil(lambda: window.connection_label.text() == "Connection lost — reconnecting…")
    assert window.banner.isVisible()
    assert "Reconnecting" in window.banner.text()

    composer = window.composer
    qtbot.keyClicks(composer, "sent while the server was down")
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    assert timeline.bodies() == ["before the restart", "sent while the server was down"]
    assert timeline.item(1).state == PENDING

    server.start()
    bob = server.user("bob", register=False)
    log = EventLog(bob, "bob")
    say(server, bob, room_id, "sent while alice was away")
    qtbot.waitUntil(lambda: window.connection_label.text() == "Connected", timeout=10000)
    assert not window.banner.isVisible()
    qtbot.waitUntil(lambda: sorted(timeline.bodies()) == sorted([
        "before the restart", "sent while the server was down", "sent while alice was away"])
        and all(timeline.item(r).state != PENDING for r in range(timeline.rowCount())),
        timeout=10000)
    seqs = [timeline.item(r).seq for r in range(timeline.rowCount())]
    assert seqs == [1, 2, 3]

    # Bob got alice's message exactly once (a ping round trip flushes anything
    # the server had written before it).
    wait(log.next("msg", where=lambda d: d["message"]["sender"] == "alice"))
    wait(bob.request("session.ping"))
    assert [e for e in log.pending("msg") if e.data["message"]["sender"] == "alice"] == []
    history = server.request(bob, "msg.history", {"room_id": room_id})["messages"]
    assert sorted(m["body"] for m in history) == sorted(timeline.bodies())


def test_changes_made_while_offline_are_reconciled(make_client: Any, server: Any,
                                                   qtbot: Any) -> None:
    """Edits and deletions made while alice's client was disconnected (which the
    library does not replay) are in her conversation once she is back."""
    # Alice's client waits a second before reconnecting, so that bob's changes
    # surely happen while it is away.
    alice = make_client("alice", session_options={"retry_initial": 1.0, "retry_jitter": 0.0})
    bob = server.user("bob")
    room_id = shared_room(server, bob, "alice")
    timeline = click_room(qtbot, alice, room_id)
    keep = say(server, bob, room_id, "to be edited")
    gone = say(server, bob, room_id, "to be deleted")
    qtbot.waitUntil(lambda: timeline.bodies() == ["to be edited", "to be deleted"])
    window = alice.main_window

    server.stop()
    qtbot.waitUntil(lambda: window.connection_label.text() != "Connected")
    server.start()
    bob = server.user("bob", register=False)
    server.request(bob, "msg.edit", {"room_id": room_id, "msg_id": keep["msg_id"],
                                     "body": "edited while away"})
    server.request(bob, "msg.delete", {"room_id": room_id, "msg_id": gone["msg_id"]})
    assert window.connection_label.text() != "Connected"  # the changes were made offline
    qtbot.waitUntil(lambda: window.connection_label.text() == "Connected", timeout=10000)
    qtbot.waitUntil(lambda: timeline.bodies() == ["edited while away"], timeout=10000)


def test_presence_is_unknown_while_disconnected_and_real_again_after(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Any) -> None:
    """While the connection is lost, nobody shows as online: the members panel
    and the direct room's dot say the presence is unknown (alice cannot know
    who left meanwhile). After the reconnect real presence is back."""
    bob = server.user("bob")
    alice = make_client("alice")
    direct = server.request(bob, "dm.open", {"username": "alice"})["room_id"]
    qtbot.waitUntil(lambda: alice.controller.rooms.room(direct) is not None)
    timeline = click_room(qtbot, alice, direct)
    qtbot.waitUntil(lambda: timeline.loaded)
    window = alice.main_window
    window.members_button.click()
    members = alice.controller.members

    def member_presence() -> dict[str, str]:
        return {str(members.index(r).data(MemberListModel.Roles.Username)):
                str(members.index(r).data(MemberListModel.Roles.Presence))
                for r in range(members.rowCount())}

    def dot() -> Any:
        return room_index(alice, direct).data(RoomListModel.Roles.Presence)

    qtbot.waitUntil(lambda: member_presence() == {"alice": "online", "bob": "online"}
                    and dot() == "online")

    server.stop()
    qtbot.waitUntil(lambda: window.connection_label.text() == "Connection lost — reconnecting…")
    assert member_presence() == {"alice": UNKNOWN, "bob": UNKNOWN}
    assert dot() == UNKNOWN
    assert "online" not in alice.controller.presence.values()
    assert not window.presence_box.isEnabled()  # her own "Online" is greyed out
    window.grab().save(str(tmp_path / "disconnected.png"))

    server.start()
    server.user("bob", register=False)
    qtbot.waitUntil(lambda: window.connection_label.text() == "Connected", timeout=10000)
    qtbot.waitUntil(lambda: member_presence() == {"alice": "online", "bob": "online"}
                    and dot() == "online", timeout=10000)
    assert window.presence_box.isEnabled()
