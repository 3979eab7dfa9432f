"""The whole server on PostgreSQL (``--database postgresql://...``), end to end.

The store tests run every query on both engines; this runs the server itself on
PostgreSQL, where transactions really run in parallel (several pooled
connections), and checks the contract that depends on it most: per-room seqs.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import gatherResults

from tests.support.chat import create_room
from tests.support.databases import postgres_url
from tests.support.events import EventLog, within


@pytest_twisted.ensureDeferred
async def test_concurrent_senders_get_gapless_seqs_on_postgresql(postgres, make_server):
    """Two users pipelining 60 sends each into one room get seqs exactly 1..120; each
    member receives all 120 msg events, and history agrees.

    (``postgres`` comes before ``make_server`` so that the server stops before its
    schema is dropped.)"""
    server = await make_server(database=postgres_url(postgres))
    alice, bob = await server.user("alice"), await server.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    logs = [EventLog(alice, "alice"), EventLog(bob, "bob")]
    sends = [conn.request("msg.send", {"room_id": rid, "body": f"{name} {n}",
                                       "client_msg_id": f"{name}-{n}"})
             for n in range(60) for conn, name in ((alice, "alice"), (bob, "bob"))]
    acks = await within(gatherResults(sends), "120 concurrent msg.send")
    assert sorted(a["seq"] for a in acks) == list(range(1, 121))
    for log in logs:
        await log.next("msg", where=lambda d: d["message"]["seq"] == 120)
        seen = sorted(e.data["message"]["seq"] for e in log.seen if e.name == "msg")
        assert seen == list(range(1, 121))
    history = await bob.request("msg.history", {"room_id": rid, "after_seq": 0, "limit": 200})
    assert [m["seq"] for m in history["messages"]] == list(range(1, 121))
    resent = await alice.request("msg.send", {"room_id": rid, "body": "alice 0",
                                              "client_msg_id": "alice-0"})
    assert resent == acks[0]
