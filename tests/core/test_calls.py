"""Voice calls on the server (PROTOCOL.md 8, chatnet/services/calls.py): ring,
accept, reject, hang up, the ring timeout, a dropped connection, and the audio
relay (in order, not back to the sender, never from outsiders, never queued for
a receiver that cannot keep up). Real server over TLS, library connections.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred

from chatnet.errors import ErrorCode
from chatnet.services import calls as calls_module
from tests.support.chat import expect_error, room_with_members
from tests.support.events import EventLog, barrier, until, wait_lost, within


async def people(server: Any, *names: str) -> list[Any]:
    """Logged-in connections, each with an :class:`EventLog` as ``.log``."""
    conns = []
    for name in names:
        conn = await server.user(name)
        conn.log = EventLog(conn, name)
        conns.append(conn)
    return conns


def service(server: Any) -> Any:
    """The server's CallService."""
    return server.service.chat_services.calls


async def call_between(alice: Any, *callees: Any) -> tuple[int, int]:
    """A room of alice and the callees; alice calls, every callee accepts.

    Returns:
        (room_id, call_id).
    """
    room_id = await room_with_members(alice, *callees, name="call room")
    call = await within(alice.request("call.start", {"room_id": room_id}), "call.start")
    for callee in callees:
        ring = await callee.log.next("call.ring", where=lambda d: d["call_id"] == call["call_id"])
        assert ring.data == {"call_id": call["call_id"], "room_id": room_id, "from": "alice"}
        await within(callee.request("call.accept", {"call_id": call["call_id"]}), "call.accept")
    return room_id, int(call["call_id"])


@pytest_twisted.ensureDeferred
async def test_a_two_party_call_rings_connects_relays_audio_in_order_and_ends(make_server):
    """alice calls bob: bob is rung, accepts (alice hears of it), alice's packets
    reach bob in order and unchanged, not alice herself; bob hangs up: alice gets
    call.left and call.ended {hangup}; the call is recorded."""
    server = await make_server()
    alice, bob = await people(server, "alice", "bob")
    room_id, call_id = await call_between(alice, bob)
    accepted = await alice.log.next("call.accepted")
    assert accepted.data == {"call_id": call_id, "username": "bob"}
    packets = [bytes([n]) * (60 + n) for n in range(20)]
    for seq, data in enumerate(packets):
        alice.notify("call.audio", {"call_id": call_id, "seq": seq, "data": data})
    got = [await bob.log.next("call.audio") for _ in packets]
    assert [(e.data["seq"], e.data["data"], e.data["from"]) for e in got] == \
        [(seq, data, "alice") for seq, data in enumerate(packets)]
    await barrier(alice)
    assert alice.log.pending("call.audio") == []
    await within(bob.request("call.hangup", {"call_id": call_id}), "call.hangup")
    assert (await alice.log.next("call.left")).data == {"call_id": call_id, "username": "bob"}
    assert (await alice.log.next("call.ended")).data == {"call_id": call_id, "reason": "hangup"}
    assert (await bob.log.next("call.ended")).data["reason"] == "hangup"
    records = await service(server).store.calls_in_room(room_id)
    assert [(r.call_id, r.reason, r.participants) for r in records] == \
        [(call_id, "hangup", (alice.login_result["user_id"], bob.login_result["user_id"]))]
    assert records[0].answered_ts is not None and records[0].duration_ms >= 0
    assert service(server).calls == {}


@pytest_twisted.ensureDeferred
async def test_a_rejected_call_ends_for_the_caller(make_server):
    """bob rejects: alice gets call.rejected then call.ended {rejected}."""
    server = await make_server()
    alice, bob = await people(server, "alice", "bob")
    room_id = await room_with_members(alice, bob)
    call = await within(alice.request("call.start", {"room_id": room_id}), "call.start")
    await bob.log.next("call.ring")
    await within(bob.request("call.reject", {"call_id": call["call_id"]}), "call.reject")
    assert (await alice.log.next("call.rejected")).data["username"] == "bob"
    assert (await alice.log.next("call.ended")).data == {"call_id": call["call_id"],
                                                          "reason": "rejected"}


@pytest_twisted.ensureDeferred
async def test_an_unanswered_call_ends_with_no_answer(make_server, monkeypatch):
    """Nobody answers within the ring timeout (45 s; shortened here): call.ended
    {no_answer} to the caller and the callee, whose ringing stops."""
    monkeypatch.setattr(calls_module, "RING_TIMEOUT", 0.2)
    server = await make_server()
    alice, bob = await people(server, "alice", "bob")
    room_id = await room_with_members(alice, bob)
    call = await within(alice.request("call.start", {"room_id": room_id}), "call.start")
    for conn in (alice, bob):
        ended = await conn.log.next("call.ended")
        assert ended.data == {"call_id": call["call_id"], "reason": "no_answer"}
    await expect_error(bob.request("call.accept", {"call_id": call["call_id"]}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_a_participant_whose_connection_drops_leaves_and_the_call_ends(make_server):
    """bob's connection is cut mid-call: alice gets call.left {bob} and, with fewer
    than two left, call.ended {hangup}."""
    server = await make_server()
    alice, bob = await people(server, "alice", "bob")
    _room, call_id = await call_between(alice, bob)
    bob.abort()
    await wait_lost(bob)
    assert (await alice.log.next("call.left")).data == {"call_id": call_id, "username": "bob"}
    assert (await alice.log.next("call.ended")).data["reason"] == "hangup"
    assert service(server).calls == {}


@pytest_twisted.ensureDeferred
async def test_a_group_call_goes_on_while_two_remain(make_server):
    """alice, bob and carol: audio from one reaches both others; carol leaves and
    the call goes on between alice and bob; then it ends when alice leaves."""
    server = await make_server()
    alice, bob, carol = await people(server, "alice", "bob", "carol")
    _room, call_id = await call_between(alice, bob, carol)
    bob.notify("call.audio", {"call_id": call_id, "seq": 1, "data": b"bob"})
    for conn in (alice, carol):
        assert (await conn.log.next("call.audio")).data["from"] == "bob"
    await within(carol.request("call.hangup", {"call_id": call_id}), "carol hangs up")
    assert (await alice.log.next("call.left")).data["username"] == "carol"
    alice.notify("call.audio", {"call_id": call_id, "seq": 2, "data": b"alice"})
    assert (await bob.log.next("call.audio")).data["data"] == b"alice"
    await barrier(alice)
    assert alice.log.pending("call.ended") == []
    await within(alice.request("call.hangup", {"call_id": call_id}), "alice hangs up")
    assert (await bob.log.next("call.ended")).data["reason"] == "hangup"


@pytest_twisted.ensureDeferred
async def test_audio_from_outside_the_call_is_dropped_and_counted(make_server):
    """carol (a member who did not answer) and dave (not a member) send audio into
    alice and bob's call: nobody receives it; the server counts it."""
    server = await make_server()
    alice, bob, carol, dave = await people(server, "alice", "bob", "carol", "dave")
    room_id = await room_with_members(alice, bob, carol)
    call = await within(alice.request("call.start", {"room_id": room_id}), "call.start")
    call_id = call["call_id"]
    await within(bob.request("call.accept", {"call_id": call_id}), "call.accept")
    for outsider in (carol, dave):
        outsider.notify("call.audio", {"call_id": call_id, "seq": 1, "data": b"x" * 80})
        await barrier(outsider)
    for conn in (alice, bob):
        await barrier(conn)
        assert conn.log.pending("call.audio") == []
    assert service(server).dropped["not_participant"] == 2
    await expect_error(dave.request("call.accept", {"call_id": call_id}), ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_who_may_start_a_call(make_server):
    """Not a member: not_found. A call already in the room: conflict naming it.
    A session already in a call cannot start another."""
    server = await make_server()
    alice, bob, dave = await people(server, "alice", "bob", "dave")
    room_id = await room_with_members(alice, bob)
    await expect_error(dave.request("call.start", {"room_id": room_id}), ErrorCode.NOT_FOUND)
    call = await within(alice.request("call.start", {"room_id": room_id}), "call.start")
    error = await expect_error(bob.request("call.start", {"room_id": room_id}),
                               ErrorCode.CONFLICT)
    assert error.details["call_id"] == call["call_id"]
    other = await room_with_members(alice, dave, name="other")
    await expect_error(alice.request("call.start", {"room_id": other}), ErrorCode.CONFLICT)


@pytest_twisted.ensureDeferred
async def test_a_receiver_that_cannot_keep_up_loses_audio_not_memory(make_server):
    """bob stops reading; alice sends 3 MB of audio: once bob's connection is
    backed up (8 KiB unsent in the kernel) the server drops his packets instead
    of queueing them, and alice's call and connection carry on."""
    server = await make_server()
    alice, bob = await people(server, "alice", "bob")
    _room, call_id = await call_between(alice, bob)
    # A small receive buffer: the server's send queue fills after a few KiB
    # instead of the megabytes loopback would otherwise absorb.
    bob.transport.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bob.transport.pauseProducing()
    packet = b"\x55" * 2000
    for seq in range(1500):
        alice.notify("call.audio", {"call_id": call_id, "seq": seq, "data": packet})
        if seq % 100 == 99:
            await barrier(alice)
    await barrier(alice)
    calls = service(server)
    assert calls.dropped["backed_up"] > 0
    assert calls.relayed + calls.dropped["backed_up"] == 1500
    # What reached bob's socket before it backed up: a few hundred KiB at most
    # (buffers), not the 3 MB sent.
    assert calls.relayed * len(packet) < 512 * 1024
    bob_session = next(iter(server.service.fanout.sessions_of(bob.login_result["user_id"])))
    assert bob_session._outbox.queued <= 2 * len(packet) + 200  # at most what was in flight
    bob.transport.resumeProducing()
    await barrier(bob)
    assert not alice.lost.called and not bob.lost.called
    await within(alice.request("call.hangup", {"call_id": call_id}), "hang up")
    ended: Deferred[Any] = bob.log.next("call.ended")
    assert (await ended).data["reason"] == "hangup"


@pytest_twisted.ensureDeferred
async def test_a_second_connection_can_carry_the_audio(make_server):
    """alice attaches a second connection of hers to the call (call.attach): her
    audio from it reaches bob as hers, bob's audio comes to it and no longer to
    her first connection; when it closes, bob's audio goes to the first again.
    Nobody else may attach to her call."""
    server = await make_server()
    alice, bob, carol = await people(server, "alice", "bob", "carol")
    _room, call_id = await call_between(alice, bob)
    media = await server.user("alice", register=False)
    media.log = EventLog(media, "alice-media")
    await within(media.request("call.attach", {"call_id": call_id}), "call.attach")
    await expect_error(carol.request("call.attach", {"call_id": call_id}), ErrorCode.NOT_FOUND)
    media.notify("call.audio", {"call_id": call_id, "seq": 1, "data": b"from media"})
    heard = await bob.log.next("call.audio")
    assert (heard.data["from"], heard.data["data"]) == ("alice", b"from media")
    bob.notify("call.audio", {"call_id": call_id, "seq": 1, "data": b"to media"})
    assert (await media.log.next("call.audio")).data["data"] == b"to media"
    await barrier(bob)
    await barrier(alice)
    assert alice.log.pending("call.audio") == []
    await media.close()
    await wait_lost(media)
    calls = service(server)
    await until(lambda: not calls.calls[call_id].media, "the server to see the close")
    bob.notify("call.audio", {"call_id": call_id, "seq": 2, "data": b"to alice"})
    assert (await alice.log.next("call.audio")).data["data"] == b"to alice"


@pytest_twisted.ensureDeferred
async def test_one_stuck_receiver_does_not_hold_up_the_others(make_server):
    """In a call of three, bob stops reading: carol still gets every packet alice
    sends, in order and as they are sent (each half second of audio before
    alice's next ping answer), while bob's are dropped once his connection
    backs up."""
    server = await make_server()
    alice, bob, carol = await people(server, "alice", "bob", "carol")
    _room, call_id = await call_between(alice, bob, carol)
    bob.transport.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bob.transport.pauseProducing()
    carol_got: list[int] = []
    carol.add_listener(lambda e: e.name == "call.audio" and carol_got.append(e.data["seq"]))
    packet = b"\x33" * 160  # 20 ms of Opus at 64 kbit/s
    # 20 s of audio in half seconds, sent faster than real time but within alice's
    # request rate (a packet costs a tenth of a request).
    for batch in range(40):
        for seq in range(batch * 25, batch * 25 + 25):
            alice.notify("call.audio", {"call_id": call_id, "seq": seq, "data": packet})
        await barrier(alice)
        await barrier(carol)  # everything relayed before alice's ping reached carol
        assert carol_got == list(range(batch * 25 + 25))
    calls = service(server)
    assert calls.dropped["backed_up"] > 0
    bob_session = next(iter(server.service.fanout.sessions_of(bob.login_result["user_id"])))
    assert bob_session._outbox.queued == 0  # nothing waits in memory for bob
