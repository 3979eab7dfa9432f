"""ChatSession end to end: reconnect, resume, re-send, catch-up (real server, real TLS)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from chatnet.client.core import Event
from chatnet.client.reactions import Reactions
from chatnet.client.session import ChatSession, SessionState
from chatnet.errors import ChatError, ErrorCode
from tests.support.chat import room_with_members
from tests.support.server import PASSWORD, RunningServer, start_server, test_config


def make_session(server: RunningServer, username: str, password: str | None = PASSWORD,
                 **kw: Any) -> ChatSession:
    return ChatSession(reactor, "localhost", server.port, username, password, ca=server.ca,
                       retry_initial=0.05, retry_max=0.5, retry_jitter=0.05, **kw)


class Recorder:
    """Collects a session's events and states; ``wait_for`` fires on a match."""

    def __init__(self, session: ChatSession) -> None:
        self.events: list[Event] = []
        self.states: list[SessionState] = []
        self._waiters: list[tuple[Any, Deferred[Any]]] = []
        session.add_listener(self._event)
        session.add_state_listener(self._state)

    def _event(self, event: Event) -> None:
        self.events.append(event)
        self._check(event)

    def _state(self, state: SessionState) -> None:
        self.states.append(state)
        self._check(state)

    def _check(self, item: Any) -> None:
        for entry in list(self._waiters):
            match, d = entry
            if match(item):
                self._waiters.remove(entry)
                d.callback(item)

    def wait_for(self, match: Any, timeout: float = 10.0) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiters.append((match, d))
        d.addTimeout(timeout, reactor)
        return d

    def until_state(self, session: ChatSession, state: SessionState) -> Deferred[Any]:
        """Fires at once if the session is in ``state``, else when it gets there."""
        if session.state is state:
            d: Deferred[Any] = Deferred()
            d.callback(session.state)
            return d
        return self.wait_for(is_state(state))

    def until_authenticated(self, session: ChatSession) -> Deferred[Any]:
        """Fires at once if the session is authenticated, else when it becomes so."""
        return self.until_state(session, SessionState.AUTHENTICATED)

    def bodies(self, room_id: int) -> list[str]:
        return [e.data["message"]["body"] for e in self.events
                if e.name == "msg" and e.data["message"]["room_id"] == room_id]


def is_state(state: SessionState) -> Any:
    return lambda item: item is state


def msg_with(body: str) -> Any:
    return lambda item: (isinstance(item, Event) and item.name == "msg"
                         and item.data["message"]["body"] == body)


async def room_with(server: RunningServer, owner: Any, *members: Any) -> int:
    """A room of ``owner`` that ``members`` (sessions or connections) were invited to
    and joined."""
    return await room_with_members(owner, *members, name="team", visibility="public")


@pytest_twisted.ensureDeferred
async def test_start_with_wrong_password_fails_and_stays_stopped(server):
    """A wrong password fails start() with unauthenticated and does not retry."""
    await (await server.user("alice")).close()
    session = make_session(server, "alice", "wrong password!")
    with pytest.raises(ChatError) as caught:
        await session.start()
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    assert session.state is SessionState.DISCONNECTED


@pytest_twisted.ensureDeferred
async def test_start_unreachable_server_fails():
    """start() against a port where nothing listens fails instead of hanging."""
    session = ChatSession(reactor, "127.0.0.1", 1, "alice", PASSWORD, retry_initial=0.05)
    with pytest.raises(Exception):  # noqa: B017 - ConnectionRefusedError
        await session.start()
    assert session.state is SessionState.DISCONNECTED


@pytest_twisted.ensureDeferred
async def test_register_then_send_and_receive(server):
    """register=True creates the account; send_message resolves with the seq and the
    sender's own session receives the msg event."""
    session = make_session(server, "carol")
    recorder = Recorder(session)
    result = await session.start(register=True, display_name="Carol")
    assert result["username"] == "carol" and result["token"]
    room = await session.call("room.create", {"name": "x", "visibility": "private"})
    got = recorder.wait_for(msg_with("hello"))
    ack = await session.send_message(room["room_id"], "hello")
    assert ack["seq"] == 1
    await got
    await session.close(logout=True)
    assert session.state is SessionState.DISCONNECTED


@pytest_twisted.ensureDeferred
async def test_reconnect_catches_up_missed_messages_in_order(server):
    """Messages sent while the connection is down arrive after the reconnect,
    in order, once each, marked catch_up."""
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room_id = await room_with(server, bob, alice)
    await alice.call("room.list")
    first = recorder.wait_for(msg_with("before"))
    await bob.request("msg.send", {"room_id": room_id, "body": "before", "client_msg_id": "b0"})
    await first
    # Cut the connection under the session, and send while it is away.
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.transport.abortConnection()
    await reconnecting
    for i in range(3):
        await bob.request("msg.send", {"room_id": room_id, "body": f"missed {i}",
                                       "client_msg_id": f"b{i + 1}"})
    await recorder.wait_for(is_state(SessionState.AUTHENTICATED))
    assert recorder.bodies(room_id) == ["before", "missed 0", "missed 1", "missed 2"]
    caught_up = [e for e in recorder.events if e.name == "msg" and e.data.get("catch_up")]
    assert len(caught_up) == 3
    live = recorder.wait_for(msg_with("after"))
    await bob.request("msg.send", {"room_id": room_id, "body": "after", "client_msg_id": "b9"})
    await live
    assert recorder.bodies(room_id)[-1] == "after"
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_send_whose_ack_was_lost_is_resent_and_stored_once(server):
    """The server commits a message but the answer never reaches the client:
    after the reconnect the session re-sends the same client_msg_id, gets the
    first result, and nobody sees the message twice."""
    bob = await server.user("bob")
    bob_events: list[Event] = []
    bob.add_listener(bob_events.append)
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room_id = await room_with(server, bob, alice)
    # Stop reading on alice's side so the answer stays unread in the socket.
    alice._connection.transport.pauseProducing()
    seen_by_bob: Deferred[None] = Deferred()
    bob.add_listener(lambda e: e.name == "msg" and not seen_by_bob.called
                     and seen_by_bob.callback(None))
    sent = alice.send_message(room_id, "exactly once", client_msg_id="once-1")
    await seen_by_bob.addTimeout(10, reactor)
    assert not sent.called
    alice._connection.transport.abortConnection()
    ack = await sent.addTimeout(10, reactor)
    assert ack["seq"] == 1
    history = await bob.request("msg.history", {"room_id": room_id})
    assert [m["body"] for m in history["messages"]] == ["exactly once"]
    await recorder.until_authenticated(alice)
    assert [e for e in bob_events if e.name == "msg"].__len__() == 1
    assert recorder.bodies(room_id) == ["exactly once"]
    assert alice.unacknowledged == 0
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_sends_while_disconnected_are_delivered_after_reconnect(server):
    """send_message while the session is reconnecting waits and is delivered."""
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room_id = await room_with(server, bob, alice)
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.transport.abortConnection()
    await reconnecting
    results = [alice.send_message(room_id, f"queued {i}") for i in range(5)]
    acks = [await d.addTimeout(10, reactor) for d in results]
    assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]
    history = await bob.request("msg.history", {"room_id": room_id})
    assert [m["body"] for m in history["messages"]] == [f"queued {i}" for i in range(5)]
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_server_restart_loses_nothing_and_sessions_come_back(tmp_path):
    """After a server stop (session.ended shutdown) and a restart on the same
    data dir, the session resumes by itself and every acknowledged message is there."""
    config = test_config(tmp_path / "data")
    server = await start_server(config)
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room = await alice.call("room.create", {"name": "r", "visibility": "public"})
    acks = [await alice.send_message(room["room_id"], f"m{i}") for i in range(20)]
    assert acks[-1]["seq"] == 20
    ended = recorder.wait_for(lambda e: isinstance(e, Event) and e.name == "session.ended")
    await server.stop()
    assert (await ended).data["reason"] == "shutdown"
    # Same port, same data: the session's reconnect loop finds it again.
    server = await start_server(test_config(tmp_path / "data", port=server.port))
    await recorder.wait_for(lambda s: s is SessionState.AUTHENTICATED and
                            recorder.states.count(SessionState.AUTHENTICATED) >= 2)
    history = await alice.call("msg.history", {"room_id": room["room_id"], "limit": 50})
    assert [m["body"] for m in history["messages"]] == [f"m{i}" for i in range(20)]
    await alice.close()
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_single_session_replaced_does_not_reconnect(tmp_path):
    """Under --single-session the older session gets session.ended {replaced},
    stops, and does not come back to evict the newer one."""
    server = await start_server(test_config(tmp_path / "data", single_session=True))
    await (await server.user("dave")).close()
    first = make_session(server, "dave")
    first_rec = Recorder(first)
    await first.start()
    replaced = first_rec.wait_for(lambda e: isinstance(e, Event) and e.name == "session.ended")
    second = make_session(server, "dave")
    await second.start()
    assert (await replaced).data["reason"] == "replaced"
    await first_rec.until_state(first, SessionState.DISCONNECTED)
    assert first.ended_reason == "replaced"
    # The newer session stays: it can still talk after the older one had time to retry.
    await second.call("session.ping")
    assert second.state is SessionState.AUTHENTICATED
    assert first.state is SessionState.DISCONNECTED
    await second.close()
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_revoked_token_falls_back_to_password(server):
    """A password change elsewhere ends the session (password_changed) and revokes
    its token; it reconnects and logs in with the password it still knows (here the
    password was "changed" to itself)."""
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    other = await server.user("alice", register=False)
    old_token = alice.token
    await other.request("auth.change_password", {"old_password": PASSWORD,
                                                  "new_password": PASSWORD})
    await recorder.wait_for(lambda s: s is SessionState.AUTHENTICATED and
                            recorder.states.count(SessionState.AUTHENTICATED) >= 2)
    assert alice.token != old_token
    await alice.close()
    await other.close()


@pytest_twisted.ensureDeferred
async def test_a_session_that_changes_its_password_keeps_going_with_the_new_token(server):
    """ChatSession.call("auth.change_password") adopts the fresh token and the new
    password: the session stays up, and after a network drop it resumes."""
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    old_token = alice.token
    result = await alice.call("auth.change_password", {"old_password": PASSWORD,
                                                        "new_password": "another passphrase"})
    assert alice.token == result["token"] != old_token
    assert alice.password == "another passphrase"
    alice._connection.transport.abortConnection()
    await recorder.wait_for(lambda s: s is SessionState.AUTHENTICATED and
                            recorder.states.count(SessionState.AUTHENTICATED) >= 2)
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_is_a_tls_verification_error(server, tmp_path):
    """A client that trusts another CA fails start() with TLSVerificationError, whose
    message names the CA it does not trust and what to do."""
    from chatnet.client.core import TLSVerificationError
    from chatnet.wire.certs import make_ca

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca("someone else's CA").cert_pem())
    session = ChatSession(reactor, "localhost", server.port, "alice", PASSWORD, ca=other_ca,
                          retry_initial=0.05)
    with pytest.raises(TLSVerificationError) as caught:
        await session.start()
    assert ("issued by 'chatnet development CA', which this client does not trust"
            in caught.value.message)
    assert "--ca" in caught.value.message
    assert caught.value.code is ErrorCode.UNAVAILABLE


@pytest_twisted.ensureDeferred
async def test_wrong_hostname_is_a_tls_verification_error(server):
    """A certificate from the trusted CA but for another name is refused too."""
    from twisted.internet import endpoints

    from chatnet.client.connection import ChatConnection
    from chatnet.client.core import TLSVerificationError
    from chatnet.wire.tls import client_tls_options

    endpoint = endpoints.wrapClientTLS(
        client_tls_options("chat.example.org", server.ca),
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port))
    conn = await endpoints.connectProtocol(endpoint, ChatConnection())
    with pytest.raises(TLSVerificationError):
        await conn.hello()


@pytest_twisted.ensureDeferred
async def test_chosen_presence_and_hello_survive_a_reconnect(server):
    """The session remembers presence.set and sets it again after a reconnect, so an
    invisible user never shows as online; hello_result is available."""
    watcher = await server.user("watcher")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    assert alice.hello_result is not None and alice.hello_result["registration"] is True
    await room_with(server, watcher, alice)
    await alice.call("presence.set", {"state": "busy"})
    assert alice.presence == "busy"
    states: list[str] = []
    watcher.add_listener(lambda e: e.name == "presence" and states.append(e.data["state"]))
    alice._connection.abort()
    await recorder.wait_for(lambda s: s is SessionState.AUTHENTICATED)
    members = await watcher.request("room.members", {"room_id": next(iter(alice.rooms))})
    assert {m["username"]: m["presence"] for m in members["members"]}["alice"] == "busy"
    assert "busy" in states
    await alice.close()
    await watcher.close()


@pytest_twisted.ensureDeferred
async def test_edits_deletions_and_reactions_while_away_are_caught_up(server):
    """While the connection is down, a message is edited, another deleted and a
    third reacted to: after the reconnect the session passes on msg.updated (the
    whole current message) and msg.deleted, marked catch_up."""
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room_id = await room_with(server, bob, alice)
    last = recorder.wait_for(msg_with("m2"))
    sent = []
    for i in range(3):
        sent.append(await bob.request("msg.send", {"room_id": room_id, "body": f"m{i}",
                                                   "client_msg_id": f"c{i}"}))
    await last
    await alice.call("session.ping")  # a sync point after the messages
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.abort()
    await reconnecting
    await bob.request("msg.edit", {"room_id": room_id, "msg_id": sent[0]["msg_id"],
                                   "body": "m0, edited"})
    await bob.request("msg.delete", {"room_id": room_id, "msg_id": sent[1]["msg_id"]})
    await bob.request("msg.react", {"room_id": room_id, "msg_id": sent[2]["msg_id"],
                                    "emoji": "👍", "on": True})
    await recorder.wait_for(lambda s: s is SessionState.AUTHENTICATED)
    updated = {e.data["message"]["msg_id"]: e.data["message"] for e in recorder.events
               if e.name == "msg.updated"}
    deleted = [e.data["msg_id"] for e in recorder.events if e.name == "msg.deleted"]
    assert updated[sent[0]["msg_id"]]["body"] == "m0, edited"
    assert updated[sent[0]["msg_id"]]["edited_ts"] > 0
    assert updated[sent[2]["msg_id"]]["reactions"] == {"👍": ["bob"]}
    assert deleted == [sent[1]["msg_id"]]
    assert all(e.data.get("catch_up") for e in recorder.events
               if e.name in ("msg.updated", "msg.deleted"))
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_msg_changes_pages_in_change_order_and_needs_membership(server):
    """msg.changes lists changes after a point in (changed_ts, msg_id) order, pages
    with has_more, and answers not_found to non-members."""
    alice, eve = await server.user("alice"), await server.user("eve")
    room = await alice.request("room.create", {"name": "c", "visibility": "private"})
    rid = room["room_id"]
    ids = []
    for i in range(5):
        ids.append((await alice.request("msg.send", {"room_id": rid, "body": f"b{i}",
                                                     "client_msg_id": f"x{i}"}))["msg_id"])
    start = (await alice.request("session.ping"))["ts"] - 1
    for msg_id in ids:
        await alice.request("msg.edit", {"room_id": rid, "msg_id": msg_id, "body": "new"})
    seen, cursor = [], {"since_ts": start, "since_msg_id": 0}
    while True:
        page = await alice.request("msg.changes", {"room_id": rid, "limit": 2, **cursor})
        seen += [c["msg_id"] for c in page["changes"]]
        if not page["has_more"]:
            break
        last = page["changes"][-1]
        cursor = {"since_ts": last["changed_ts"], "since_msg_id": last["msg_id"]}
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    with pytest.raises(ChatError) as caught:
        await eve.request("msg.changes", {"room_id": rid, "since_ts": 0})
    assert caught.value.code is ErrorCode.NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_a_send_refused_as_unavailable_is_retried_until_the_storage_is_back(server):
    """While the server's storage refuses writes (``unavailable``), send_message keeps
    the message and retries with back-off instead of failing; once the storage is
    back it is acknowledged, and stored exactly once."""
    from twisted.logger import LogLevel, globalLogPublisher

    alice = make_session(server, "alice")
    await alice.start(register=True)
    room = await alice.call("room.create", {"name": "r", "visibility": "private"})
    store = server.service.store
    refused: Deferred[None] = Deferred()

    def observe(event: dict[str, Any]) -> None:
        if (event.get("log_level") is LogLevel.warn and not refused.called
                and str(event.get("log_format", "")).startswith("storage unavailable")):
            refused.callback(None)

    globalLogPublisher.addObserver(observe)
    try:
        await store.db.run_interaction("test", lambda t: t.scalar("PRAGMA query_only = 1"))
        sent = alice.send_message(room["room_id"], "kept", client_msg_id="kept-1")
        await refused
        assert not sent.called and alice.unacknowledged == 1
        await store.db.run_interaction("test", lambda t: t.scalar("PRAGMA query_only = 0"))
        ack = await sent
    finally:
        globalLogPublisher.removeObserver(observe)
    history = await alice.call("msg.history", {"room_id": room["room_id"], "after_seq": 0})
    assert [(m["seq"], m["body"]) for m in history["messages"]] == [(ack["seq"], "kept")]
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_catch_up_pages_through_room_list(make_server):
    """A user in more rooms than one room.list page holds (here: than fit in the
    frame) gets every room in session.rooms, and messages missed in a room of the
    last page are caught up after a reconnect."""
    server = await make_server(max_frame=4096)
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    rooms = []
    for n in range(9):
        room = await bob.request("room.create", {"name": f"r{n}", "topic": "t" * 500,
                                                 "visibility": "public"})
        await alice.call("room.join", {"room_id": room["room_id"]})
        rooms.append(room["room_id"])
    last = max(rooms)
    first_page = await alice.call("room.list")
    assert "next_cursor" in first_page and last not in {r["room_id"]
                                                       for r in first_page["rooms"]}
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.transport.abortConnection()
    await reconnecting
    await bob.request("msg.send", {"room_id": last, "body": "on the last page",
                                   "client_msg_id": "p1"})
    await recorder.until_authenticated(alice)
    assert set(alice.rooms) == set(rooms)
    assert recorder.bodies(last) == ["on the last page"]
    assert [r["room_id"] for r in await alice.call_all("room.list", "rooms",
                                                       {"limit": 2})] == sorted(rooms)
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_session_keeps_invitations(server):
    """session.invites holds pending invitations to group rooms: those made while
    offline (room.invites at start) and those arriving live (room.invited); joining
    (here or on another device) turns one into a room, declining removes it; a
    direct room someone opens is a room, not an invitation."""
    bob = await server.user("bob")
    await (await server.user("alice")).close()
    early = await bob.request("room.create", {"name": "early", "visibility": "private",
                                              "members": ["alice"]})
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start()
    assert set(alice.invites) == {early["room_id"]}
    assert alice.invites[early["room_id"]]["by"] == "bob"
    assert alice.rooms == {}
    live = recorder.wait_for(lambda e: isinstance(e, Event) and e.name == "room.invited")
    later = await bob.request("room.create", {"name": "later", "visibility": "private",
                                              "members": ["alice"]})
    await live
    assert set(alice.invites) == {early["room_id"], later["room_id"]}
    await alice.call("room.decline", {"room_id": early["room_id"]})
    assert set(alice.invites) == {later["room_id"]}
    elsewhere = await server.user("alice", register=False)
    joined = recorder.wait_for(lambda e: isinstance(e, Event) and e.name == "room.member")
    await elsewhere.request("room.join", {"room_id": later["room_id"]})
    await joined
    assert alice.invites == {} and set(alice.rooms) == {later["room_id"]}
    opened = recorder.wait_for(lambda e: isinstance(e, Event) and e.name == "room.invited")
    direct = await bob.request("dm.open", {"username": "alice"})
    await opened
    assert alice.invites == {} and set(alice.rooms) == {later["room_id"], direct["room_id"]}
    await elsewhere.close()
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_a_message_flooded_while_away_is_caught_up_summarised(server):
    """While the connection is down a message gets 26,000 reactions (stored directly,
    as before the caps): the session still comes back, and passes the message on as
    msg.updated with its reactions summarised, which the client library reads."""
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    room_id = await room_with(server, bob, alice)
    seen = recorder.wait_for(msg_with("popular"))
    sent = await bob.request("msg.send", {"room_id": room_id, "body": "popular",
                                          "client_msg_id": "p"})
    await seen
    await alice.call("session.ping")  # a sync point after the message
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.abort()
    await reconnecting
    store = server.service.store
    ids = [store.ids.next_id() for _ in range(20)]

    def flood(t: Any) -> None:
        t.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                      "created_ts) VALUES (?, ?, 'F', 'x', 0)",
                      [(uid, f"flooder-{uid}") for uid in ids])
        t.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
                      [(sent["msg_id"], uid, f"{u:02d}{i:04d}" + "x" * 26, i)
                       for u, uid in enumerate(ids) for i in range(1300)])

    await store.db.run_interaction("flood", flood)
    await store.db.run_interaction("touch", lambda t: t.execute(
        "UPDATE messages SET changed_ts = ? WHERE msg_id = ?",
        (int(reactor.seconds() * 1000), sent["msg_id"])))
    await recorder.wait_for(is_state(SessionState.AUTHENTICATED))
    [updated] = [e.data["message"] for e in recorder.events if e.name == "msg.updated"]
    assert updated["msg_id"] == sent["msg_id"] and updated["reactions_summarised"] is True
    reactions = Reactions.from_message(updated, "alice")
    assert reactions.summarised and len(reactions) == 20 and reactions.mine() == set()
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_catch_up_waits_out_rate_limits_instead_of_failing(server):
    """A user in more rooms than the 'expensive' budget allows requests for at once
    still catches up after a reconnect: rate_limited answers are waited out (each
    retry_after_ms), not turned into a failed login and a reconnect loop."""
    from chatnet.wire.limits import BUDGETS, Budget, UserBudgets

    server.service.factory.budgets = UserBudgets(reactor, {
        **BUDGETS, "expensive": Budget("expensive", rate=40.0, burst=4.0)})
    bob = await server.user("bob")
    alice = make_session(server, "alice")
    recorder = Recorder(alice)
    await alice.start(register=True)
    rooms = [await room_with(server, bob, alice) for _ in range(12)]
    await alice.call("session.ping")
    reconnecting = recorder.wait_for(is_state(SessionState.CONNECTING))
    alice._connection.transport.abortConnection()
    await reconnecting
    for n, room_id in enumerate(rooms):
        await bob.request("msg.send", {"room_id": room_id, "body": f"missed {n}",
                                       "client_msg_id": f"m{n}"})
    await recorder.until_authenticated(alice)
    assert [recorder.bodies(room_id) for room_id in rooms] == [[f"missed {n}"]
                                                               for n in range(12)]
    assert recorder.states.count(SessionState.AUTHENTICATED) == 2  # no failed attempt
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_a_closed_connection_is_not_kept_in_memory(make_server):
    """connect() then close: nothing keeps the ChatConnection alive afterwards.
    (Twisted's endpoints.connectProtocol makes a factory class per call, which
    zope.interface's adapter cache keeps for good, and the connection with it.)"""
    import gc
    import weakref

    server = await make_server()
    conn = await server.connect()
    await conn.close()
    await conn.when_lost()
    gone = weakref.ref(conn)
    del conn
    await deferLater(reactor, 0.1, lambda: None)  # the transports' own clean-up
    gc.collect()
    assert gone() is None


@pytest_twisted.ensureDeferred
async def test_a_port_where_nothing_answers_fails_with_a_deadline(server):
    """Something that accepts TCP connections and never answers (a Redis port, say):
    start() and connect() fail with ``unavailable`` naming the deadline instead of
    waiting for ever, and the connection is closed."""
    from twisted.internet import endpoints
    from twisted.internet.protocol import Factory, Protocol

    from chatnet.client.connection import connect

    class Silent(Protocol):
        def connectionMade(self) -> None:
            self.gone: Deferred[None] = Deferred()
            accepted.append(self)

        def connectionLost(self, reason: Any = None) -> None:
            self.gone.callback(None)

    accepted: list[Silent] = []
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Silent))
    try:
        number = port.getHost().port
        session = ChatSession(reactor, "localhost", number, "alice", PASSWORD, ca=server.ca,
                              retry_initial=0.05, connect_timeout=0.5)
        started = reactor.seconds()
        with pytest.raises(ChatError) as caught:  # without a deadline: TimeoutError
            await session.start().addTimeout(5, reactor)
        assert caught.value.code is ErrorCode.UNAVAILABLE
        assert "no chatnet server answered" in caught.value.message
        assert "within 0.5 s" in caught.value.message
        assert reactor.seconds() - started < 5
        assert session.state is SessionState.DISCONNECTED
        with pytest.raises(ChatError) as direct:
            await Deferred.fromCoroutine(connect(reactor, "localhost", number, server.ca,
                                                 timeout=0.5)).addTimeout(5, reactor)
        assert "no chatnet server answered" in direct.value.message
        assert len(accepted) == 2
        for silent in accepted:  # the client closed both (else this times out)
            await silent.gone.addTimeout(5, reactor)
    finally:
        await port.stopListening()
