"""Durability across a restart: acknowledged means stored (DESIGN.md, PROTOCOL.md 6)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import DeferredList

from chatnet.errors import ErrorCode
from tests.support.chat import create_room
from tests.support.events import EventLog, wait_lost


@pytest_twisted.ensureDeferred
async def test_acknowledged_messages_survive_a_restart(make_server, tmp_path):
    """Every message acknowledged before the server stopped — including sends still in
    flight when the stop began — is in history after a restart on the same data
    directory, with its seq, and seqs have no gaps; tokens and idempotency survive too."""
    data_dir = tmp_path / "persistent"
    first = await make_server(data_dir=data_dir)
    alice, bob = await first.user("alice"), await first.user("bob")
    token = alice.login_result["token"]
    rid = (await create_room(alice, bob))["room_id"]
    acks = {}
    for n in range(20):
        cmid = f"steady-{n}"
        acks[cmid] = await alice.request("msg.send", {"room_id": rid, "body": f"steady {n}",
                                                      "client_msg_id": cmid})
    in_flight = {f"rush-{n}": alice.request("msg.send", {
        "room_id": rid, "body": f"rush {n}", "client_msg_id": f"rush-{n}"}) for n in range(50)}
    events = EventLog(alice, "alice")
    # Stop as soon as the rush is being answered: later sends are at every stage
    # (queued, committing, committed but unanswered) when the server goes down.
    acks["rush-0"] = await in_flight.pop("rush-0")
    await first.stop()
    outcomes = await DeferredList(list(in_flight.values()), consumeErrors=True)
    for cmid, (ok, result) in zip(in_flight, outcomes, strict=True):
        if ok:
            acks[cmid] = result
        else:
            assert result.value.code is ErrorCode.UNAVAILABLE, result
    assert (await events.next("session.ended")).data == {"reason": "shutdown"}
    await wait_lost(alice)
    await wait_lost(bob)

    second = await make_server(data_dir=data_dir)
    again = await second.connect()
    assert (await again.resume(token))["username"] == "alice"
    history = await again.request("msg.history", {"room_id": rid, "after_seq": 0,
                                                  "limit": 200})
    stored = {m["client_msg_id"]: m for m in history["messages"]}
    for cmid, ack in acks.items():
        assert cmid in stored, f"acknowledged message {cmid} was lost"
        assert (stored[cmid]["msg_id"], stored[cmid]["seq"]) == (ack["msg_id"], ack["seq"])
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    [room] = (await again.request("room.list"))["rooms"]
    assert room["last_seq"] == len(seqs)
    resent = await again.request("msg.send", {"room_id": rid, "body": "steady 0",
                                              "client_msg_id": "steady-0"})
    assert resent == acks["steady-0"]
