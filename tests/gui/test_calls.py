"""Voice calls in the desktop client: the Call button rings the other side, an
incoming call shows a window with Answer and Decline, the call bar shows who and
how long, Hang up ends it. No sound device here (offscreen, no sound server):
the call connects anyway and the bar says there is no microphone."""

from __future__ import annotations

import array
import math
from typing import Any

from tests.gui.helpers import click_room, shared_room
from tests.support.events import EventLog


def alice_and_bob(make_client: Any, server: Any) -> tuple[Any, EventLog, Any, int]:
    """bob (a library connection, with an event log) and alice (the desktop client)
    in a room "team": (bob, bob's log, alice's app, room_id)."""
    bob = server.user("bob")
    log = EventLog(bob, "bob")
    alice = make_client("alice")
    return bob, log, alice, shared_room(server, bob, "alice", name="team")


def test_calling_from_a_conversation(make_client: Any, server: Any, qtbot: Any) -> None:
    """alice clicks Call: bob is rung; the bar says she is calling; bob answers: the
    bar says she is in a call with him; Hang up ends it for both."""
    bob, log, alice, room_id = alice_and_bob(make_client, server)
    click_room(qtbot, alice, room_id)
    window = alice.main_window
    assert window.call_button.isVisibleTo(window) and window.call_bar.isHidden()
    window.call_button.click()
    ring = server.wait(log.next("call.ring"))
    assert ring.data["from"] == "alice" and ring.data["room_id"] == room_id
    qtbot.waitUntil(lambda: not window.call_bar.isHidden())
    assert "Calling" in window.call_bar.status.text()
    assert not window.call_button.isEnabled()
    server.request(bob, "call.accept", {"call_id": ring.data["call_id"]})
    qtbot.waitUntil(lambda: "In a call with bob" in window.call_bar.status.text())
    assert "no microphone" in window.call_bar.status.text()
    assert alice.controller.audio is not None and not alice.controller.audio.microphone
    # The audio goes over a second connection of alice's, away from file transfers.
    qtbot.waitUntil(lambda: alice.controller.audio_connection is not None)
    calls = server.running.service.chat_services.calls
    assert len(calls.calls[ring.data["call_id"]].media) == 1
    side = alice.controller.audio_connection
    window.call_bar.hang_up_button.click()
    ended = server.wait(log.next("call.ended"))
    assert ended.data["reason"] == "hangup"
    qtbot.waitUntil(window.call_bar.isHidden)
    assert window.call_button.isEnabled() and alice.controller.audio is None
    assert alice.controller.audio_connection is None
    qtbot.waitUntil(lambda: side.lost.called)


def test_answering_an_incoming_call(make_client: Any, server: Any, qtbot: Any) -> None:
    """bob calls: alice sees a window naming him, and it rings; Answer joins the call
    (bob hears of it) and the ringing stops; when bob hangs up, her bar goes and
    the status bar says the call ended."""
    bob, log, alice, room_id = alice_and_bob(make_client, server)
    window = alice.main_window
    call = server.request(bob, "call.start", {"room_id": room_id})
    qtbot.waitUntil(lambda: call["call_id"] in window.incoming)
    incoming = window.incoming[call["call_id"]]
    assert "bob is calling" in incoming.text()
    assert incoming.ringer.playing
    incoming.answer_button.click()
    assert not incoming.ringer.playing
    accepted = server.wait(log.next("call.accepted"))
    assert accepted.data["username"] == "alice"
    qtbot.waitUntil(lambda: "In a call with bob" in window.call_bar.status.text())
    server.request(bob, "call.hangup", {"call_id": call["call_id"]})
    qtbot.waitUntil(window.call_bar.isHidden)
    assert window.statusBar().currentMessage() == "The call ended."


def test_declining_and_a_caller_who_gives_up(make_client: Any, server: Any,
                                             qtbot: Any) -> None:
    """Decline tells bob (call.ended rejected). A second call that bob gives up
    before alice answers closes her window by itself, and it stops ringing."""
    bob, log, alice, room_id = alice_and_bob(make_client, server)
    window = alice.main_window
    first = server.request(bob, "call.start", {"room_id": room_id})
    qtbot.waitUntil(lambda: first["call_id"] in window.incoming)
    window.incoming[first["call_id"]].decline_button.click()
    assert server.wait(log.next("call.ended")).data["reason"] == "rejected"
    qtbot.waitUntil(lambda: first["call_id"] not in window.incoming)
    second = server.request(bob, "call.start", {"room_id": room_id})
    qtbot.waitUntil(lambda: second["call_id"] in window.incoming)
    incoming = window.incoming[second["call_id"]]
    assert incoming.ringer.playing
    server.request(bob, "call.hangup", {"call_id": second["call_id"]})
    qtbot.waitUntil(lambda: second["call_id"] not in window.incoming)
    assert not incoming.isVisible() and not incoming.ringer.playing


def test_audio_from_the_call_is_decoded_and_mixed(make_client: Any, server: Any, qtbot: Any,
                                                  wait: Any) -> None:
    """Opus packets bob sends reach alice's CallAudio, which decodes them and marks
    him as speaking (the mixer's output would go to a speaker if one existed)."""
    from chatnet.client.opus import OpusEncoder
    from qtclient.audio import level, mix

    bob, log, alice, room_id = alice_and_bob(make_client, server)
    click_room(qtbot, alice, room_id)
    alice.main_window.call_button.click()
    ring = server.wait(log.next("call.ring"))
    server.request(bob, "call.accept", {"call_id": ring.data["call_id"]})
    qtbot.waitUntil(lambda: alice.controller.call_since is not None)
    encoder = OpusEncoder()
    # 1 s of a 440 Hz tone at half scale.
    tone = [array.array("h", (int(16000 * math.sin(2 * math.pi * 440 * (n * 960 + i) / 48000))
                              for i in range(960))).tobytes() for n in range(50)]
    sent = [0]

    def bob_speaks(packets: int) -> None:
        for _ in range(packets):
            seq = sent[0]
            for packet in encoder.encode(tone[seq % len(tone)]):
                bob.notify("call.audio", {"call_id": ring.data["call_id"], "seq": seq,
                                          "data": packet})
            sent[0] += 1

    def shown() -> bool:
        # bob goes on talking while we wait: a loaded machine may play a single
        # burst out before the call bar's next 200 ms tick looks at the levels.
        bob_speaks(5)
        return "speaking: bob" in alice.main_window.call_bar.status.text()

    bob_speaks(len(tone))
    qtbot.waitUntil(lambda: alice.controller.speaking() == ["bob"], timeout=5000)
    qtbot.waitUntil(shown)
    loud = tone[10]
    mixed = array.array("h")
    mixed.frombytes(mix([loud, loud, loud]))
    assert (max(mixed), min(mixed)) == (32767, -32768)  # clipped, not wrapped
    assert level(bytes(mixed)) == 1.0
    assert mix([]) == bytes(1920)


def test_sound_devices_are_chosen_in_settings(make_client: Any, qtbot: Any) -> None:
    """Settings offers the system default and each device; a choice is remembered
    and used by the next call."""
    from qtclient.views.dialogs import SettingsDialog

    alice = make_client("alice")
    dialog = alice.open_settings()
    assert dialog.microphone.itemText(0) == "System default"
    assert dialog.microphone.currentIndex() == 0 and dialog.speaker.currentIndex() == 0
    offered = SettingsDialog("en", 5, True, microphone="ab12",
                             inputs=[("ab12", "USB headset"), ("cd34", "Built-in")])
    chosen: list[str] = []
    offered.microphone_chosen.connect(chosen.append)
    assert offered.microphone.currentText() == "USB headset"
    offered.microphone.setCurrentIndex(2)
    assert chosen == ["cd34"]
    dialog.microphone_chosen.emit("cd34")
    assert alice.settings.microphone == "cd34" and alice.controller.microphone == "cd34"
