"""Two nodes of one cluster: one PostgreSQL database, one Redis (docs/deployment.md).

Each test starts two real servers in this process, sharing a fresh PostgreSQL
schema or one SQLite file, a data directory (the shared blob store and certificates) and a fresh
cluster name on the local Redis; clients connect over TLS to one node or the
other. Nothing is mocked: events really travel through Redis pub/sub.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from chatnet.errors import ChatError, ErrorCode
from tests.core.test_admin import with_roles
from tests.support.chat import create_room, expect_error, say
from tests.support.databases import postgres_url
from tests.support.events import EventLog, barrier, wait_lost, within
from tests.support.proxy import CuttableProxy
from tests.support.redis_server import RedisServer
from tests.support.server import PASSWORD


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (the reactor running) until ``condition()`` holds; fail after ``timeout``."""
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, f"timed out: {what}"
        await deferLater(reactor, 0.05, lambda: None)


async def health(server: Any) -> dict[str, Any]:
    """``GET /healthz`` of a server started with ``metrics_port=0``."""
    port = server.service.metrics_port.getHost().port
    response = await treq.get(f"http://127.0.0.1:{port}/healthz")
    return json.loads(await response.text())  # type: ignore[no-any-return]


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: Any) -> str:
    """The cluster's database: PostgreSQL (nodes on several machines), or one
    SQLite file in the shared data directory (workers on one machine)."""
    if request.param == "sqlite":
        return ""
    return postgres_url(request.getfixturevalue("postgres"))


async def two_nodes(make_server: Any, database: str, redis: dict[str, Any],
                    tmp_path: Path, **overrides: Any) -> tuple[Any, Any]:
    """Nodes A and B of one cluster."""
    shared = {"database": database, "data_dir": tmp_path / "shared", **redis, **overrides}
    return await make_server(**shared), await make_server(**shared)


@pytest_twisted.ensureDeferred
async def test_messages_typing_and_receipts_reach_members_on_the_other_node(
        database, redis, make_server, tmp_path):
    """alice on node A and bob on node B share a room: each one's messages, typing,
    reactions and read receipts reach the other, with the room's seqs in order."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
    assert a.service.fanout.node != b.service.fanout.node
    alice, bob = await a.user("alice"), await b.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    for n in range(5):
        await say(alice, rid, f"a{n}")
        await say(bob, rid, f"b{n}")
    for log in (alice_events, bob_events):
        for seq in range(1, 11):
            await log.next("msg", where=lambda d, seq=seq: d["message"]["seq"] == seq)
        # Sent through two nodes, they may arrive out of seq order; each once.
        seqs = [e.data["message"]["seq"] for e in log.seen if e.name == "msg"]
        assert sorted(seqs) == list(range(1, 11))
    bob.notify("msg.typing", {"room_id": rid, "typing": True})
    await alice_events.next("typing", username="bob")
    await alice.request("msg.read", {"room_id": rid, "seq": 10})
    await bob_events.next("msg.receipt", username="alice", seq=10)


@pytest_twisted.ensureDeferred
async def test_a_join_on_one_node_routes_the_next_message_on_the_other(
        database, redis, make_server, tmp_path):
    """carol joins through node B a room alice (node A) made: alice's next message,
    sent through node A, reaches carol; after carol leaves, the next one does not."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
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
async def test_presence_is_cluster_wide(database, redis, make_server, tmp_path):
    """bob's sessions on both nodes count as one presence: a second session on the
    other node announces nothing, closing one of two announces nothing, closing the
    last announces offline; an away set on one node is what the other node shows."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
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
        database, redis, make_server, tmp_path):
    """An admin on node A bans bob, whose only session is on node B: it ends with
    ``banned`` at once (not at the next credentials poll); an admin broadcast
    reaches carol on node B; admin.sessions lists both nodes' sessions."""
    a, b = await two_nodes(make_server, database, redis, tmp_path, credentials_poll=3600)
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


@pytest_twisted.ensureDeferred
async def test_a_redis_restart_degrades_then_both_nodes_resume_by_themselves(
        redis, make_server, tmp_path):
    """With the cluster's Redis killed, each node keeps serving its own sessions
    (a message is stored and reaches the sender's node) and /healthz says
    degraded; Redis started again, empty: both nodes re-subscribe, write their
    presence again, /healthz says ok, and messages cross nodes again."""
    own = RedisServer(tmp_path / "redis").start()
    try:
        a, b = await two_nodes(make_server, "", {"redis": ("127.0.0.1", own.port, 0),
                                                 "cluster": redis["cluster"]},
                               tmp_path, metrics_port=0, node_expiry=3)
        alice, alice2, bob = await a.user("alice"), await a.user("ann"), await b.user("bob")
        rid = (await create_room(alice, alice2, bob))["room_id"]
        ann_events, bob_events = EventLog(alice2, "ann"), EventLog(bob, "bob")
        own.stop()
        await until(lambda: not a.service.fanout.healthy, "node A notices Redis is gone")
        assert (await health(a))["status"] == "degraded"
        await say(alice, rid, "while Redis is down")
        await ann_events.next(
            "msg", where=lambda d: d["message"]["body"] == "while Redis is down")
        own.start()
        for node in (a, b):
            await until(lambda node=node: node.service.fanout.healthy, "re-subscribed",
                        timeout=20)
        assert (await health(a))["status"] == "ok"
        alice_id = (await a.service.store.user_by_name("alice")).user_id
        await until(lambda: b.service.fanout.remote_presence(alice_id) == "online",
                    "node B sees alice online on node A again", timeout=10)
        await say(alice, rid, "Redis is back")
        arrived = await bob_events.next(
            "msg", where=lambda d: d["message"]["body"] == "Redis is back", timeout=10)
        assert arrived.data["message"]["sender"] == "alice"
        history = await bob.request("msg.history", {"room_id": rid, "after_seq": 0, "limit": 10})
        assert [m["body"] for m in history["messages"]] == ["while Redis is down", "Redis is back"]
    finally:
        own.stop()


# adbapi logs "Rollback failed" with a traceback for each pooled connection that
# died (twisted.enterprise.adbapi, TWISTED-NOTES.md 4): expected here.
@pytest.mark.expect_logged_errors
@pytest_twisted.ensureDeferred
async def test_while_postgresql_is_unreachable_requests_fail_unavailable_then_resume(
        postgres, make_server, tmp_path):
    """The network to PostgreSQL cut (every pooled connection dies, new ones are
    refused): msg.send answers ``unavailable`` and /healthz 503; restored: sends
    succeed again by themselves, and history holds every acknowledged message."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres)
    proxy = CuttableProxy(str(params.get("host", "127.0.0.1")), int(params.get("port", 5432)))
    via_proxy = postgres.replace(f"port={params.get('port', 5432)}", f"port={proxy.port}")
    if f"port={proxy.port}" not in via_proxy:
        via_proxy += f" port={proxy.port}"
    try:
        server = await make_server(database=postgres_url(via_proxy), metrics_port=0,
                                   db_busy_timeout=2)
        alice, bob = await server.user("alice"), await server.user("bob")
        rid = (await create_room(alice, bob))["room_id"]
        acked = [await say(alice, rid, "before")]
        await proxy.cut()
        await expect_error(say(alice, rid, "during"), ErrorCode.UNAVAILABLE)
        assert (await health(server))["status"] == "unavailable"
        proxy.restore()
        for attempt in range(20):  # each dead pooled connection fails one request
            try:
                acked.append(await say(alice, rid, f"after {attempt}"))
                break
            except ChatError as error:
                assert error.code is ErrorCode.UNAVAILABLE
        else:
            raise AssertionError("sends never succeeded again")
        assert (await health(server))["status"] == "ok"
        history = await bob.request("msg.history", {"room_id": rid, "after_seq": 0, "limit": 50})
        stored = {m["msg_id"] for m in history["messages"]}
        assert {a["msg_id"] for a in acked} <= stored
    finally:
        await proxy.close()


@pytest_twisted.ensureDeferred
async def test_a_call_between_nodes_rings_relays_audio_both_ways_and_ends(
        database, redis, make_server, tmp_path):
    """alice (node A) calls bob (node B): bob is rung, accepts through B (the
    answer names alice), audio goes both ways in order, a wrong request made
    through B gets the call node's refusal; carol (node B) joins, then her
    connection ends: A hears she left; bob hangs up through B: the call ends."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
    alice, bob, carol = await a.user("alice"), await b.user("bob"), await b.user("carol")
    rid = (await create_room(alice, bob, carol))["room_id"]
    # Joins made through node B reach node A's membership map a moment later.
    await until(lambda: len(a.service.fanout.members(rid)) == 3, "node A seeing the joins")
    logs = {name: EventLog(conn, name) for name, conn in
            (("alice", alice), ("bob", bob), ("carol", carol))}
    call_id = (await alice.request("call.start", {"room_id": rid}))["call_id"]
    await logs["bob"].next("call.ring", call_id=call_id)
    assert await bob.request("call.accept", {"call_id": call_id}) == {"participants": ["alice"]}
    await logs["alice"].next("call.accepted", username="bob")
    for seq in range(3):
        alice.notify("call.audio", {"call_id": call_id, "seq": seq, "data": b"A%d" % seq})
        bob.notify("call.audio", {"call_id": call_id, "seq": seq, "data": b"B%d" % seq})
    for listener, speaker, tag in (("bob", "alice", b"A"), ("alice", "bob", b"B")):
        got = [await logs[listener].next("call.audio") for _ in range(3)]
        assert [(e.data["from"], e.data["seq"], e.data["data"]) for e in got] == [
            (speaker, n, tag + b"%d" % n) for n in range(3)]
    await expect_error(bob.request("call.accept", {"call_id": call_id + 1}),
                       ErrorCode.NOT_FOUND)
    await carol.request("call.accept", {"call_id": call_id})
    await logs["alice"].next("call.accepted", username="carol")
    await carol.close()
    await logs["alice"].next("call.left", username="carol")
    await bob.request("call.hangup", {"call_id": call_id})
    await logs["alice"].next("call.left", username="bob")
    ended = await logs["alice"].next("call.ended", call_id=call_id)
    assert ended.data["reason"] == "hangup"
    await logs["bob"].next("call.ended", call_id=call_id)
    calls = a.service.chat_services.calls
    assert calls.calls == {} and calls._remote_minds == {}



async def fall_silent(node: Any) -> None:
    """Make ``node`` look to the others like a node killed with SIGKILL: its
    heartbeat stops and its Redis connections close, so it publishes and hears
    nothing more and its keys expire after ``--node-expiry`` seconds. (Its own
    clients stay connected to it; the tests ignore them.)"""
    fanout = node.service.fanout
    fanout._heartbeat.stop()
    await fanout.bus.stopService()


@pytest_twisted.ensureDeferred
async def test_when_the_node_holding_a_call_dies_the_others_end_it_for_their_users(
        database, redis, make_server, tmp_path):
    """alice (node A) calls bob and carol (node B); bob accepts, carol is only
    rung. Node A dies: once its keys expire, node B sends bob and carol
    ``call.ended {reason: failed}`` (once), forgets the call, and bob can start a
    new call in the room through node B (node A's claim on the room lapsed)."""
    a, b = await two_nodes(make_server, database, redis, tmp_path, node_expiry=2)
    alice, bob, carol = await a.user("alice"), await b.user("bob"), await b.user("carol")
    rid = (await create_room(alice, bob, carol))["room_id"]
    await until(lambda: len(a.service.fanout.members(rid)) == 3, "node A seeing the joins")
    bob_log, carol_log = EventLog(bob, "bob"), EventLog(carol, "carol")
    call_id = (await alice.request("call.start", {"room_id": rid}))["call_id"]
    await carol_log.next("call.ring", call_id=call_id)
    await bob.request("call.accept", {"call_id": call_id})
    await fall_silent(a)
    for log in (bob_log, carol_log):
        ended = await log.next("call.ended", call_id=call_id, timeout=15)
        assert ended.data["reason"] == "failed"
    calls = b.service.chat_services.calls
    assert calls._remote_calls == {} and calls._elsewhere == {}
    again = (await bob.request("call.start", {"room_id": rid}))["call_id"]
    await carol_log.next("call.ring", call_id=again)
    await barrier(bob)
    assert [e for e in bob_log.pending("call.ended")] == []


@pytest_twisted.ensureDeferred
async def test_when_a_participants_node_dies_the_call_node_lets_them_leave(
        database, redis, make_server, tmp_path):
    """alice and dave (node A) are in a call with bob (node B). Node B dies: once
    its keys expire, node A sends ``call.left {bob}`` as if bob's connection had
    ended, keeps nothing of bob's session, and the call goes on between alice and
    dave; when dave hangs up, fewer than two remain and it ends."""
    a, b = await two_nodes(make_server, database, redis, tmp_path, node_expiry=2)
    alice, dave, bob = await a.user("alice"), await a.user("dave"), await b.user("bob")
    rid = (await create_room(alice, dave, bob))["room_id"]
    await until(lambda: len(a.service.fanout.members(rid)) == 3, "node A seeing the joins")
    alice_log = EventLog(alice, "alice")
    call_id = (await alice.request("call.start", {"room_id": rid}))["call_id"]
    await bob.request("call.accept", {"call_id": call_id})
    await dave.request("call.accept", {"call_id": call_id})
    await alice_log.next("call.accepted", username="dave")
    await fall_silent(b)
    await alice_log.next("call.left", call_id=call_id, username="bob", timeout=15)
    calls = a.service.chat_services.calls
    assert calls._remote_minds == {}
    assert sorted(calls.calls[call_id].participants.values()) == ["alice", "dave"]
    await dave.request("call.hangup", {"call_id": call_id})
    ended = await alice_log.next("call.ended", call_id=call_id)
    assert ended.data["reason"] == "hangup"
    assert calls.calls == {}


@pytest_twisted.ensureDeferred
async def test_two_call_starts_in_one_room_through_two_nodes_make_one_call(
        database, redis, make_server, tmp_path):
    """alice (node A) and bob (node B) send ``call.start`` for one room at the same
    moment, three times over: each time exactly one call starts and the other
    start gets ``conflict`` naming it, as on one node; once the winner hangs up
    the room is free again, whichever node held it."""

    async def outcome(d: Deferred[dict[str, Any]]) -> dict[str, Any] | ChatError:
        try:
            return await d
        except ChatError as error:
            return error

    a, b = await two_nodes(make_server, database, redis, tmp_path)
    alice, bob = await a.user("alice"), await b.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    await until(lambda: len(a.service.fanout.members(rid)) == 2, "node A seeing the join")
    logs = {alice: EventLog(alice, "alice"), bob: EventLog(bob, "bob")}
    for _ in range(3):
        starts = [Deferred.fromCoroutine(outcome(conn.request("call.start", {"room_id": rid})))
                  for conn in (alice, bob)]
        results = await within(gatherResults(starts), "both call.start answered")
        won = [(conn, r) for conn, r in zip((alice, bob), results, strict=True)
               if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, ChatError)]
        assert len(won) == 1 and len(lost) == 1, results
        winner, started = won[0]
        assert lost[0].code is ErrorCode.CONFLICT
        assert lost[0].details == {"call_id": started["call_id"]}
        # The claim in Redis names the call; lost (as in a Redis restart), the
        # heartbeat's refresh writes it again.
        fanout = (a if winner is alice else b).service.fanout
        key = fanout.bus.key("claim", f"call:{rid}")
        held = f"{fanout.node}:{started['call_id']}".encode()
        assert await fanout.bus.command("get", key) == held
        await fanout.bus.command("delete", [key])
        await fanout._refresh_claims()
        assert await fanout.bus.command("get", key) == held
        await winner.request("call.hangup", {"call_id": started["call_id"]})
        for log in logs.values():
            await log.next("call.ended", call_id=started["call_id"])
        assert await fanout.bus.command("get", key) is None


@pytest_twisted.ensureDeferred
async def test_the_client_library_delivers_messages_that_arrive_out_of_seq_order(
        database, redis, make_server, tmp_path):
    """carol's ChatSession on node A; alice sends through A, bob through B. With
    bob's message held up on its way to A, alice's next one (a higher seq) arrives
    first: the session passes on both, the late one too (it used to take it for a
    repeat and drop it)."""
    from chatnet.client.session import ChatSession

    a, b = await two_nodes(make_server, database, redis, tmp_path)
    alice, bob = await a.user("alice"), await b.user("bob")
    await (await a.user("carol")).close()
    rid = (await create_room(alice, bob))["room_id"]
    session = ChatSession(reactor, "localhost", a.port, "carol", PASSWORD, ca=a.ca)
    seen: list[int] = []
    done: Deferred[None] = Deferred()

    def on_event(event: Any) -> None:
        if event.name == "msg":
            seen.append(event.data["message"]["seq"])
            if len(set(seen)) == 3 and not done.called:
                done.callback(None)

    session.add_listener(on_event)
    await session.start()
    try:
        await session.call("room.join", {"room_id": rid})
        await say(alice, rid, "one")
        # Node A holds back what its Redis subscription brings: bob's message
        # (seq 2) waits while alice's (seq 3) is delivered. (Pausing the socket
        # does not hold: txredisapi pauses and resumes it by itself per reply.)
        bus = a.service.fanout.bus
        deliver, held = bus.on_message, []
        bus.on_message = held.append
        await say(bob, rid, "two")
        await say(alice, rid, "three")
        await until(lambda: 3 in seen, "seq 3 reaching carol")
        await until(lambda: len(held) >= 2, "bob's message reaching node A")
        bus.on_message = deliver
        for payload in held:
            deliver(payload)
        await within(done, "carol's session passing on seq 2")
        assert seen == [1, 3, 2]
    finally:
        await session.close()


@pytest_twisted.ensureDeferred
async def test_failed_logins_on_one_node_lock_the_name_out_on_the_other(
        database, redis, make_server, tmp_path):
    """Six wrong passwords for bob through node A lock the name out on node B too:
    the right password through B is refused with rate_limited."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
    await (await a.user("bob")).close()
    conn = await a.connect()
    for _ in range(6):
        await expect_error(conn.login("bob", "wrong password"), ErrorCode.UNAUTHENTICATED)
    await until(lambda: b.service.login_guard.users.wait("bob") > 0,
                "node B counting node A's failures")
    refused = await expect_error((await b.connect()).login("bob", PASSWORD),
                                 ErrorCode.RATE_LIMITED)
    assert refused.details["retry_after_ms"] > 0


@pytest_twisted.ensureDeferred
async def test_a_users_budget_is_one_budget_across_nodes(database, redis, make_server,
                                                         tmp_path):
    """alice has a session on each node: ten rooms made through node A and ten
    through node B use up the ``rooms`` budget (burst 20); the next one through B
    is refused with rate_limited, as it would be with both sessions on one node."""
    a, b = await two_nodes(make_server, database, redis, tmp_path)
    alice_a = await a.user("alice")
    (alice_id,) = a.service.fanout.online_users()
    alice_b = await b.user("alice", register=False)
    await until(lambda: None not in (a.service.fanout.remote_presence(alice_id),
                                     b.service.fanout.remote_presence(alice_id)),
                "each node seeing alice on the other")
    rooms = [await create_room(alice_a, name=f"a{n}") for n in range(10)]
    # Events published after the spends travel behind them on the one channel.
    events_b = EventLog(alice_b, "alice@B")
    await say(alice_a, rooms[-1]["room_id"], "after the spends")
    await events_b.next("msg")
    for n in range(10):
        await create_room(alice_b, name=f"b{n}")
    refused = await expect_error(alice_b.request("room.create", {"name": "one too many",
                                                           "visibility": "public"}),
                                 ErrorCode.RATE_LIMITED)
    assert refused.details["budget"] == "rooms"


@pytest_twisted.ensureDeferred
async def test_max_sessions_per_user_counts_the_sessions_on_every_node(
        database, redis, make_server, tmp_path):
    """--max-sessions-per-user 2: one session on node A and one on node B use it
    up; a third login through A is refused with conflict; once B's ends, it works."""
    a, b = await two_nodes(make_server, database, redis, tmp_path, max_sessions_per_user=2)
    await a.user("alice")
    (alice_id,) = a.service.fanout.online_users()
    on_b = await b.user("alice", register=False)
    await until(lambda: a.service.fanout.session_count(alice_id) == 2,
                "node A counting alice's session on node B")
    refused = await expect_error((await a.connect()).login("alice", PASSWORD),
                                 ErrorCode.CONFLICT)
    assert refused.details["limit"] == 2
    await on_b.close()
    await until(lambda: a.service.fanout.session_count(alice_id) == 1,
                "node A hearing that alice's session on node B ended")
    await (await a.connect()).login("alice", PASSWORD)


@pytest_twisted.ensureDeferred
async def test_an_upload_begun_on_one_node_resumes_and_finishes_on_the_other(
        database, redis, make_server, tmp_path):
    """The blob directory is shared: half an upload through node A, the rest
    through node B (begin again with the same sha256 answers the offset
    reached), the file downloads through node A, byte for byte."""
    chunk = 256 * 1024
    a, b = await two_nodes(make_server, database, redis, tmp_path)
    data = os.urandom(3 * chunk + 17)
    digest = hashlib.sha256(data).hexdigest()
    on_a = await a.user("alice")
    begin = await on_a.request("file.upload.begin", {"name": "report.bin", "size": len(data),
                                                     "sha256": digest})
    await on_a.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                             "data": data[:chunk]})
    await on_a.close()
    on_b = await b.user("alice", register=False)
    again = await on_b.request("file.upload.begin", {"name": "report.bin", "size": len(data),
                                                     "sha256": digest})
    assert (again["upload_id"], again["offset"]) == (begin["upload_id"], chunk)
    for offset in range(chunk, len(data), chunk):
        await on_b.request("file.upload.chunk", {"upload_id": again["upload_id"],
                                                 "offset": offset,
                                                 "data": data[offset:offset + chunk]})
    done = await on_b.request("file.upload.finish", {"upload_id": again["upload_id"]})
    assert done["sha256"] == digest
    back_on_a = await a.user("alice", register=False)
    received = b""
    while len(received) < len(data):
        page = await back_on_a.request("file.download", {
            "file_id": done["file_id"], "offset": len(received), "length": chunk})
        received += page["data"]
    assert received == data


@pytest_twisted.ensureDeferred
async def test_nodes_log_in_to_a_redis_that_asks_for_a_password(redis, make_server, tmp_path):
    """--redis redis://:PASSWORD@host:port: both nodes authenticate and exchange
    events; the URL's parts are parsed (a password with URL escapes included), and a
    wrong URL is refused naming the option, without echoing the password."""
    from chatnet.config import ConfigError, redis_address, redis_password

    own = RedisServer(tmp_path / "redis", password="s3cret/pw").start()
    try:
        url = f"redis://:s3cret%2Fpw@127.0.0.1:{own.port}/2"
        assert redis_address(url) == ("127.0.0.1", own.port, 2)
        assert redis_password(url) == "s3cret/pw"
        with pytest.raises(ConfigError, match="--redis") as refused:
            redis_address("http://:s3cret@127.0.0.1:6379")
        assert "s3cret" not in str(refused.value)
        a, b = await two_nodes(make_server, "", {"redis": ("127.0.0.1", own.port, 0),
                                                 "redis_password": "s3cret/pw",
                                                 "cluster": redis["cluster"]}, tmp_path)
        alice, bob = await a.user("alice"), await b.user("bob")
        rid = (await create_room(alice, bob))["room_id"]
        bob_events = EventLog(bob, "bob")
        await say(alice, rid, "through an authenticated Redis")
        await bob_events.next("msg")
    finally:
        own.stop()


@pytest_twisted.ensureDeferred
async def test_two_nodes_erasing_expired_messages_at_once_erase_each_once(
        postgres, redis, make_server, tmp_path):
    """Every node runs the expiry job; on PostgreSQL two of them can erase at the
    same moment. Run side by side on 100 due messages, each message is erased
    (and so announced, and copied to the compliance log) by exactly one node."""
    a, b = await two_nodes(make_server, postgres_url(postgres), redis, tmp_path, jobs=False)
    alice = await a.user("alice")
    rid = (await create_room(alice))["room_id"]
    acks = await gatherResults([Deferred.fromCoroutine(say(alice, rid, f"m{n}", ttl=60))
                                for n in range(100)])
    later = max(ack["ts"] for ack in acks) + 120_000
    erased_a, erased_b = await gatherResults([
        Deferred.fromCoroutine(a.service.store.expire_due(later)),
        Deferred.fromCoroutine(b.service.store.expire_due(later))])
    erased = [msg_id for _room, msg_id in erased_a + erased_b]
    assert sorted(erased) == sorted(ack["msg_id"] for ack in acks)


@pytest_twisted.ensureDeferred
async def test_single_session_replaces_a_session_on_the_other_node(
        database, redis, make_server, tmp_path):
    """With --single-session, bob logging in through node B ends his session on
    node A with ``replaced``; the new one works."""
    a, b = await two_nodes(make_server, database, redis, tmp_path, single_session=True)
    first = await a.user("bob")
    first_events = EventLog(first, "bob on A")
    second = await b.user("bob", register=False)
    ended = await first_events.next("session.ended")
    assert ended.data["reason"] == "replaced"
    await wait_lost(first)
    assert "ts" in await second.request("session.ping")


@pytest_twisted.ensureDeferred
async def test_two_nodes_writing_one_sqlite_file_at_once_lose_nothing(
        redis, make_server, tmp_path):
    """Workers share one SQLite file: alice (node A) and bob (node B) each pipeline
    120 sends into one room at the same time. Every send is acknowledged (none
    refused with 'database is locked'), the room's seqs are 1..240 without a gap,
    and history agrees."""
    a, b = await two_nodes(make_server, "", redis, tmp_path)
    alice, bob = await a.user("alice"), await b.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    sends = [Deferred.fromCoroutine(say(conn, rid, f"{name} {n}"))
             for n in range(120) for conn, name in ((alice, "alice"), (bob, "bob"))]
    acks = await within(gatherResults(sends), "240 concurrent sends", timeout=60)
    assert sorted(ack["seq"] for ack in acks) == list(range(1, 241))
    seqs = []
    for after in (0, 200):
        page = await bob.request("msg.history", {"room_id": rid, "after_seq": after,
                                                 "limit": 200})
        seqs += [m["seq"] for m in page["messages"]]
    assert seqs == list(range(1, 241))


@pytest_twisted.ensureDeferred
async def test_garbage_on_the_cluster_channel_is_dropped_and_delivery_goes_on(
        redis, make_server, tmp_path):
    """Something else publishing on the cluster's channel (undecodable bytes, an
    unknown kind of event, events of the wrong shape, not an array) is dropped with
    a warning; events keep flowing."""
    a, b = await two_nodes(make_server, "", redis, tmp_path)
    alice, bob = await a.user("alice"), await b.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    bob_events = EventLog(bob, "bob")
    bus = a.service.fanout.bus
    assert bus.publish(b"\x03\xff" + b"\xc1 not msgpack")
    assert bus.publish(b"\x03\xff" + msgpack.packb([["no such kind", 1], 7, ["r"]]))
    assert bus.publish(b"\x03\xff" + msgpack.packb({"not": "an array"}))
    assert bus.publish(b"\x01")
    await say(alice, rid, "still here")
    arrived = await bob_events.next("msg")
    assert arrived.data["message"]["body"] == "still here"


async def _hgetall_calls(fanout: Any) -> int:
    """HGETALLs Redis has run (all clients), from ``INFO commandstats``."""
    stats = await fanout.bus.command("info", "commandstats")  # parsed into a dict
    entry = stats.get("cmdstat_hgetall", "calls=0,")
    return int(entry.split("calls=")[1].split(",")[0])


@pytest_twisted.ensureDeferred
async def test_the_heartbeat_reads_no_presence_hash_of_a_node_it_hears_from(
        redis, make_server, tmp_path):
    """Presence arrives as events: a heartbeat does not read a known node's whole
    presence hash again (at thousands of users that took a busy node past the
    Redis reply timeout). A node that got its subscription back tells the others
    (``R``) to read its hash, which mends what they missed."""
    a, b = await two_nodes(make_server, "", redis, tmp_path)
    await b.user("bob")
    (bob_id,) = b.service.fanout.online_users()
    fanout_a, node_b = a.service.fanout, b.service.fanout.node
    await until(lambda: bob_id in fanout_a._remote.get(node_b, {}), "node A hearing of bob")
    before = await _hgetall_calls(fanout_a)
    await fanout_a._refresh()
    await fanout_a._refresh()
    assert await _hgetall_calls(fanout_a) == before
    # A missed event: node A forgets bob; node B's re-subscription mends it.
    del fanout_a._remote[node_b][bob_id]
    b.service.fanout.resubscribed()
    await until(lambda: bob_id in fanout_a._remote.get(node_b, {}),
                "node A reading node B's presence again")


@pytest_twisted.ensureDeferred
async def test_a_heartbeat_stuck_on_redis_does_not_stop_the_next_ones(redis, make_server,
                                                                      tmp_path):
    """While one heartbeat's refresh waits (here: its read of the other nodes never
    answers), the next heartbeats still extend this node's keys; otherwise the
    other nodes would count a merely busy node as dead."""
    node = await make_server(**redis, node_expiry=3, data_dir=tmp_path / "node")
    fanout = node.service.fanout
    gate: Deferred[None] = Deferred()
    waiting: list[bool] = []

    async def stuck(full: bool = True) -> None:
        waiting.append(True)
        await gate

    fanout._read_nodes = stuck
    await until(lambda: bool(waiting), "a heartbeat waiting", timeout=5)
    alive = fanout.bus.key("alive", fanout.node)
    await fanout.bus.command("expire", alive, 1)  # would be gone within a second
    ttls: list[int] = []

    async def extended() -> None:
        ttls.append(await fanout.bus.command("ttl", alive))

    deadline = reactor.seconds() + 5
    while not ttls or ttls[-1] < 2:
        assert reactor.seconds() < deadline, f"the alive key was not extended: {ttls}"
        await extended()
        await deferLater(reactor, 0.1, lambda: None)
    gate.callback(None)


@pytest_twisted.ensureDeferred
async def test_the_subscription_hands_over_every_message_read_at_once(redis, make_server,
                                                                     tmp_path):
    """Messages that arrive in one read of the subscription are all handed over in
    that same call. txredisapi's own parser gives each element of a reply a reactor
    turn of its own (three per published message), and a subscription busy with
    thousands of connections closing fell megabytes behind; with ``hiredis``
    installed it parses whole replies."""
    node = await make_server(**redis, data_dir=tmp_path / "node")
    bus = node.service.fanout.bus
    await until(lambda: bus.subscribed, "the subscription")
    got: list[bytes] = []
    bus.on_message = got.append
    payloads = [b"\x00\x07first", b"\x00\x07second", b"\x00\x07third"]
    channel = bus.channel
    raw = b"".join(
        b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
        % (len(channel), channel, len(p), p) for p in payloads)
    bus._subscriber.pool[0].dataReceived(raw)
    assert got == payloads


async def node_b_behind_a_cut(make_server: Any, redis: dict[str, Any], tmp_path: Path,
                              ) -> tuple[Any, Any, CuttableProxy]:
    """Nodes A and B of one cluster on SQLite, B reaching Redis through a proxy
    that a test cuts and restores. Nodes count as dead only after 60 s, so a
    short cut is an outage, not a death."""
    host, port, _db = redis["redis"]
    proxy = CuttableProxy(host, port)
    shared = {"database": "", "data_dir": tmp_path / "shared", "node_expiry": 60,
              "cluster": redis["cluster"]}
    a = await make_server(redis=(host, port, 0), **shared)
    b = await make_server(redis=("127.0.0.1", proxy.port, 0), **shared)
    return a, b, proxy


async def outage(node: Any, proxy: CuttableProxy, meanwhile: Callable[[], Any]) -> None:
    """Cut ``node`` off Redis, run ``meanwhile`` (awaited), give Redis back, and
    wait until the node has its subscription again."""
    await proxy.cut()
    await until(lambda: not node.service.fanout.healthy, "the node noticing the cut")
    await meanwhile()
    proxy.restore()
    await until(lambda: node.service.fanout.healthy, "the node back on Redis", timeout=20)


@pytest.mark.parametrize("holder", ["the other node", "the node cut off"])
@pytest_twisted.ensureDeferred
async def test_a_participant_who_left_while_a_node_was_cut_off_leaves_the_call(
        holder, redis, make_server, tmp_path):
    """alice and dave are in a call with bob, who is on the other node than the
    call's. Node B loses Redis, and bob's connection ends meanwhile: his node
    cannot tell the call's. Once B is back, the call's node asks bob's about his
    session (when B holds the call, because B itself came back; else because B
    announced it is back), hears it is gone, and alice gets ``call.left {bob}``;
    the call goes on between alice and dave."""
    a, b, proxy = await node_b_behind_a_cut(make_server, redis, tmp_path)
    home, away = (a, b) if holder == "the other node" else (b, a)
    try:
        alice, dave, bob = (await home.user("alice"), await home.user("dave"),
                            await away.user("bob"))
        rid = (await create_room(alice, dave, bob))["room_id"]
        for node in (a, b):
            await until(lambda node=node: len(node.service.fanout.members(rid)) == 3,
                        "both nodes seeing the joins")
        alice_log = EventLog(alice, "alice")
        call_id = (await alice.request("call.start", {"room_id": rid}))["call_id"]
        await bob.request("call.accept", {"call_id": call_id})
        await dave.request("call.accept", {"call_id": call_id})
        await alice_log.next("call.accepted", username="bob")

        async def bob_leaves() -> None:
            await bob.close()
            await until(lambda: not away.service.fanout.all_sessions(), "bob's session ending")

        await outage(b, proxy, bob_leaves)
        await alice_log.next("call.left", username="bob", timeout=15)
        calls = home.service.chat_services.calls
        assert call_id in calls.calls and calls._remote_minds == {}
        assert alice_log.pending("call.ended") == []
    finally:
        await proxy.close()


@pytest_twisted.ensureDeferred
async def test_a_call_that_ended_while_a_node_was_cut_off_ends_there_too(
        redis, make_server, tmp_path):
    """alice (node A) calls bob and carol (node B); bob accepts, carol is still
    rung. Node B loses Redis; alice hangs up meanwhile, and neither the end nor
    the ``call.ended`` events reach B. Once B is back, A tells it which calls it
    holds (none): bob and carol get ``call.ended {reason: failed}`` and node B
    forgets the call."""
    a, b, proxy = await node_b_behind_a_cut(make_server, redis, tmp_path)
    try:
        alice, bob, carol = await a.user("alice"), await b.user("bob"), await b.user("carol")
        rid = (await create_room(alice, bob, carol))["room_id"]
        await until(lambda: len(a.service.fanout.members(rid)) == 3, "node A seeing the joins")
        bob_log, carol_log = EventLog(bob, "bob"), EventLog(carol, "carol")
        call_id = (await alice.request("call.start", {"room_id": rid}))["call_id"]
        await carol_log.next("call.ring", call_id=call_id)
        await bob.request("call.accept", {"call_id": call_id})

        async def alice_hangs_up() -> None:
            await alice.request("call.hangup", {"call_id": call_id})

        await outage(b, proxy, alice_hangs_up)
        for log in (bob_log, carol_log):
            ended = await log.next("call.ended", call_id=call_id, timeout=15)
            assert ended.data["reason"] == "failed"
        calls = b.service.chat_services.calls
        assert calls._elsewhere == {} and calls._remote_calls == {}
    finally:
        await proxy.close()

