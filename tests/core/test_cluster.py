"""Two nodes of one cluster: one PostgreSQL database, one Redis (docs/deployment.md).

Each test starts two real servers in this process, sharing a fresh PostgreSQL
schema, a data directory (the shared blob store and certificates) and a fresh
cluster name on the local Redis; clients connect over TLS to one node or the
other. Nothing is mocked: events really travel through Redis pub/sub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from chatnet.errors import ErrorCode
from tests.core.test_admin import with_roles
from tests.support.chat import create_room, expect_error, say
from tests.support.databases import postgres_url
from tests.support.events import EventLog, barrier, wait_lost


async def two_nodes(make_server: Any, postgres: str, redis: dict[str, Any],
                    tmp_path: Path, **overrides: Any) -> tuple[Any, Any]:
    """Nodes A and B of one cluster."""
    shared = {"database": postgres_url(postgres), "data_dir": tmp_path / "shared",
              **redis, **overrides}
    return await make_server(**shared), await make_server(**shared)


@pytest_twisted.ensureDeferred
async def test_messages_typing_and_receipts_reach_members_on_the_other_node(
        postgres, redis, make_server, tmp_path):
    """alice on node A and bob on node B share a room: each one's messages, typing,
    reactions and read receipts reach the other, with the room's seqs in order."""
    a, b = await two_nodes(make_server, postgres, redis, tmp_path)
    assert a.service.fanout.node != b.service.fanout.node
    alice, bob = await a.user("alice"), await b.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    for n in range(5):
        await say(alice, rid, f"a{n}")
        await say(bob, rid, f"b{n}")
    for log in (alice_events, bob_events):
        await log.next("msg", where=lambda d: d["message"]["seq"] == 10)
        seqs = [e.data["message"]["seq"] for e in log.seen if e.name == "msg"]
        assert seqs == list(range(1, 11))
    bob.notify("msg.typing", {"room_id": rid, "typing": True})
    await alice_events.next("typing", username="bob")
    await alice.request("msg.read", {"room_id": rid, "seq": 10})
    await bob_events.next("msg.receipt", username="alice", seq=10)


@pytest_twisted.ensureDeferred
async def test_a_join_on_one_node_routes_the_next_message_on_the_other(
        postgres, redis, make_server, tmp_path):
    """carol joins through node B a room alice (node A) made: alice's next message,
    sent through node A, reaches carol; after carol leaves, the next one does not."""
    a, b = await two_nodes(make_server, postgres, redis, tmp_path)
    alice, carol = await a.user("alice"), await b.user("carol")
    rid = (await create_room(alice))["room_id"]
    carol_events = EventLog(carol, "carol")
    await carol.request("room.join", {"room_id": rid})
    await say(alice, rid, "welcome")
    first = await carol_events.next("msg")
    assert first.data["message"]["body"] == "welcome"
    await carol.request("room.leave", {"room_id": rid})
    await say(alice, rid, "gone?")
    await barrier(alice)
    await barrier(carol)
    assert carol_events.pending("msg") == []


@pytest_twisted.ensureDeferred
async def test_presence_is_cluster_wide(postgres, redis, make_server, tmp_path):
    """bob's sessions on both nodes count as one presence: a second session on the
    other node announces nothing, closing one of two announces nothing, closing the
    last announces offline; an away set on one node is what the other node shows."""
    a, b = await two_nodes(make_server, postgres, redis, tmp_path)
    alice, bob_a = await a.user("alice"), await a.user("bob")
    await create_room(alice, bob_a)
    alice_events = EventLog(alice, "alice")
    bob_b = await b.user("bob", register=False)
    profile = await bob_b.request("user.get", {"username": "bob"})
    assert profile["presence"] == "online"
    await bob_a.request("presence.set", {"state": "away"})
    await alice_events.next("presence", username="bob", state="away")
    seen_on_b = await (await b.user("dave")).request("user.get", {"username": "bob"})
    assert seen_on_b["username"] == "bob"
    await bob_a.close()
    await barrier(bob_b)
    await barrier(alice)
    assert alice_events.pending("presence") == []
    alice_b = await b.user("alice", register=False)
    assert (await alice_b.request("user.get", {"username": "bob"}))["presence"] == "away"
    await bob_b.close()
    await alice_events.next("presence", username="bob", state="offline")


@pytest_twisted.ensureDeferred
async def test_a_ban_on_one_node_ends_sessions_on_the_other_and_broadcasts_reach_all(
        postgres, redis, make_server, tmp_path):
    """An admin on node A bans bob, whose only session is on node B: it ends with
    ``banned`` at once (not at the next credentials poll); an admin broadcast
    reaches carol on node B; admin.sessions lists both nodes' sessions."""
    a, b = await two_nodes(make_server, postgres, redis, tmp_path, credentials_poll=3600)
    admin = await with_roles(a, "root", ["admin"])
    bob, carol = await b.user("bob"), await b.user("carol")
    carol_events = EventLog(carol, "carol")
    sessions = await admin.request("admin.sessions", {"limit": 50})
    assert {(s["username"], s["node"]) for s in sessions["sessions"]} >= {
        ("root", a.service.fanout.node), ("bob", b.service.fanout.node),
        ("carol", b.service.fanout.node)}
    bob_events = EventLog(bob, "bob")
    await admin.request("admin.ban", {"username": "bob"})
    ended = await bob_events.next("session.ended")
    assert ended.data["reason"] == "banned"
    await wait_lost(bob)
    await admin.request("admin.broadcast", {"body": "fire drill at 3"})
    said = await carol_events.next("system")
    assert said.data["body"] == "fire drill at 3"
    await expect_error(b.user("bob", register=False), ErrorCode.BANNED)
