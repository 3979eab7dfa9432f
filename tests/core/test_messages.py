"""Messages, edits, deletions, reactions, receipts, typing, history, search and expiry
(PROTOCOL.md 6), end to end over TLS."""

from __future__ import annotations

import pytest_twisted

from chatnet.errors import ErrorCode
from chatnet.reactions import MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER
from tests.support.chat import create_room, expect_error, say, unique
from tests.support.events import EventLog, barrier

#: Distinct emoji for reaction tests.
EMOJI = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆"]


async def room_of(server, *names):
    """Log in ``names`` (the first creates a public room, the rest join); returns
    (connections, room_id)."""
    conns = [await server.user(n) for n in names]
    room = await create_room(conns[0], *conns[1:])
    return conns, room["room_id"]


@pytest_twisted.ensureDeferred
async def test_msg_reaches_every_session_of_every_member_and_nobody_else(server):
    """The msg event goes to all sessions of all members, the sender's own included,
    and to no one outside the room."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    alice2 = await server.user("alice", register=False)
    carol = await server.user("carol")
    logs = {name: EventLog(conn, name) for name, conn in
            (("alice", alice), ("alice2", alice2), ("bob", bob), ("carol", carol))}
    ack = await alice.request("msg.send", {"room_id": rid, "body": "hello all",
                                           "client_msg_id": "hello-1"})
    assert set(ack) >= {"msg_id", "seq", "ts"} and ack["seq"] == 1
    for name in ("alice", "alice2", "bob"):
        message = (await logs[name].next("msg")).data["message"]
        assert {k: message[k] for k in ("room_id", "msg_id", "seq", "sender", "ts", "body",
                                        "client_msg_id")} == {
            "room_id": rid, "msg_id": ack["msg_id"], "seq": 1, "sender": "alice",
            "ts": ack["ts"], "body": "hello all", "client_msg_id": "hello-1"}
    await barrier(carol)
    assert logs["carol"].pending("msg") == []


@pytest_twisted.ensureDeferred
async def test_resending_a_client_msg_id_delivers_nothing_twice(server):
    """msg.send is idempotent on client_msg_id: the same ack, and no second msg event."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    bob_events = EventLog(bob, "bob")
    args = {"room_id": rid, "body": "only once", "client_msg_id": "dup"}
    first = await alice.request("msg.send", args)
    second = await alice.request("msg.send", {**args, "body": "changed on retry"})
    assert second == first
    await bob_events.next("msg")
    await barrier(bob)
    assert bob_events.pending("msg") == []
    history = await bob.request("msg.history", {"room_id": rid})
    assert [m["body"] for m in history["messages"]] == ["only once"]


@pytest_twisted.ensureDeferred
async def test_send_rules(server):
    """Non-members get not_found; an empty body is bad_request; reply_to and mentions
    travel with the message."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    carol = await server.user("carol")
    await expect_error(carol.request("msg.send", {"room_id": rid, "body": "let me in",
                                                  "client_msg_id": "x"}), ErrorCode.NOT_FOUND)
    error = await expect_error(alice.request("msg.send", {
        "room_id": rid, "body": "   ", "client_msg_id": "blank"}), ErrorCode.BAD_REQUEST)
    assert "body" in error.message
    first = await say(alice, rid, "question?")
    bob_events = EventLog(bob, "bob")
    await say(alice, rid, "@bob see above", reply_to=first["msg_id"], mentions=["Bob", "bob"])
    message = (await bob_events.next(
        "msg", where=lambda d: d["message"]["body"] == "@bob see above")).data["message"]
    assert message["reply_to"] == first["msg_id"]
    assert message["mentions"] == ["bob"]
    await expect_error(alice.request("msg.send", {
        "room_id": rid, "body": "see file", "client_msg_id": "att",
        "attachments": ["no-such-file"]}), ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_edit_sends_msg_edited_and_only_the_sender_may_edit(server):
    """msg.edit by the sender → members get msg.edited {room_id, msg_id, body,
    edited_ts} and history shows the new body; anyone else → forbidden."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    ack = await say(alice, rid, "teh typo")
    bob_events = EventLog(bob, "bob")
    assert await alice.request("msg.edit", {"room_id": rid, "msg_id": ack["msg_id"],
                                            "body": "the typo"}) == {}
    edited = (await bob_events.next("msg.edited")).data
    assert {k: edited[k] for k in ("room_id", "msg_id", "body")} == {
        "room_id": rid, "msg_id": ack["msg_id"], "body": "the typo"}
    assert isinstance(edited["edited_ts"], int)
    [message] = (await bob.request("msg.history", {"room_id": rid}))["messages"]
    assert (message["body"], message["edited_ts"]) == ("the typo", edited["edited_ts"])
    await expect_error(bob.request("msg.edit", {"room_id": rid, "msg_id": ack["msg_id"],
                                                "body": "bob was here"}), ErrorCode.FORBIDDEN)
    await expect_error(alice.request("msg.edit", {"room_id": rid, "msg_id": 999,
                                                  "body": "x"}), ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_delete_sends_ids_only_and_respects_roles(server):
    """msg.delete: the sender or a moderator may; others are forbidden; members get
    msg.deleted {room_id, msg_id} (no content) and the message leaves history."""
    (alice, bob, carol), rid = await room_of(server, "alice", "bob", "carol")
    by_bob = await say(bob, rid, "bob says")
    by_carol = await say(carol, rid, "carol says")
    await expect_error(carol.request("msg.delete", {"room_id": rid, "msg_id": by_bob["msg_id"]}),
                       ErrorCode.FORBIDDEN)
    carol_events = EventLog(carol, "carol")
    assert await bob.request("msg.delete", {"room_id": rid, "msg_id": by_bob["msg_id"]}) == {}
    assert (await carol_events.next("msg.deleted")).data == {"room_id": rid,
                                                             "msg_id": by_bob["msg_id"]}
    await alice.request("msg.delete", {"room_id": rid, "msg_id": by_carol["msg_id"]})
    await carol_events.next("msg.deleted", msg_id=by_carol["msg_id"])
    assert (await carol.request("msg.history", {"room_id": rid}))["messages"] == []


@pytest_twisted.ensureDeferred
async def test_reactions(server):
    """msg.react → members get msg.reaction {room_id, msg_id, emoji, username, on};
    history aggregates {emoji: [username]}; repeating a reaction sends nothing."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    ack = await say(alice, rid, "vote")
    alice_events = EventLog(alice, "alice")
    react = {"room_id": rid, "msg_id": ack["msg_id"], "emoji": "👍", "on": True}
    assert await bob.request("msg.react", react) == {}
    assert (await alice_events.next("msg.reaction")).data == {**{
        k: react[k] for k in ("room_id", "msg_id", "emoji", "on")}, "username": "bob"}
    await alice.request("msg.react", react)
    await bob.request("msg.react", react)
    [message] = (await alice.request("msg.history", {"room_id": rid}))["messages"]
    assert sorted(message["reactions"]["👍"]) == ["alice", "bob"]
    assert set(message["reactions"]) == {"👍"}
    await alice_events.next("msg.reaction", username="alice")
    await barrier(alice)
    assert alice_events.pending("msg.reaction") == []
    await bob.request("msg.react", {**react, "on": False})
    assert (await alice_events.next("msg.reaction")).data["on"] is False
    [message] = (await alice.request("msg.history", {"room_id": rid}))["messages"]
    assert message["reactions"] == {"👍": ["alice"]}


@pytest_twisted.ensureDeferred
async def test_react_refuses_non_emoji_and_caps_distinct_reactions(server):
    """msg.react with text, several emoji or nothing → bad_request naming emoji; past
    the per-user cap → conflict with details.limit, and no event; removing works."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    ack = await say(alice, rid, "vote")
    react = {"room_id": rid, "msg_id": ack["msg_id"], "on": True}
    for text in ("abc", "👍👍", "", "\x07"):
        error = await expect_error(bob.request("msg.react", {**react, "emoji": text}),
                                   ErrorCode.BAD_REQUEST)
        assert error.message.startswith("emoji "), error.message
    alice_events = EventLog(alice, "alice")
    for emoji in EMOJI[:MAX_REACTIONS_PER_USER]:
        await bob.request("msg.react", {**react, "emoji": emoji})
    error = await expect_error(bob.request("msg.react", {**react, "emoji": "🎉"}),
                               ErrorCode.CONFLICT)
    assert error.details == {"limit": MAX_REACTIONS_PER_USER, "per": "user"}
    await bob.request("msg.react", {**react, "emoji": EMOJI[0], "on": False})
    await barrier(alice)
    assert [e.data["emoji"] for e in alice_events.pending("msg.reaction")] == [
        *EMOJI[:MAX_REACTIONS_PER_USER], EMOJI[0]]


@pytest_twisted.ensureDeferred
async def test_read_receipts(server):
    """msg.read moves the reader's position: members get msg.receipt {room_id, username,
    seq}; reading backwards changes nothing and sends nothing."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    for n in range(3):
        await say(alice, rid, f"m{n}")
    alice_events = EventLog(alice, "alice")
    assert await bob.request("msg.read", {"room_id": rid, "seq": 2}) == {}
    assert (await alice_events.next("msg.receipt")).data == {"room_id": rid,
                                                             "username": "bob", "seq": 2}
    await bob.request("msg.read", {"room_id": rid, "seq": 1})
    await barrier(alice)
    assert alice_events.pending("msg.receipt") == []
    await bob.request("msg.read", {"room_id": rid, "seq": 100})
    assert (await alice_events.next("msg.receipt")).data["seq"] == 3


@pytest_twisted.ensureDeferred
async def test_typing_goes_to_others_but_not_the_typing_session(server):
    """A msg.typing notification reaches the other members and the typer's other
    sessions, never the session that typed; a non-member's typing reaches nobody."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    alice2 = await server.user("alice", register=False)
    carol = await server.user("carol")
    logs = {n: EventLog(c, n) for n, c in (("alice", alice), ("alice2", alice2), ("bob", bob))}
    alice.notify("msg.typing", {"room_id": rid, "typing": True})
    expected = {"room_id": rid, "username": "alice", "typing": True}
    assert (await logs["bob"].next("typing")).data == expected
    assert (await logs["alice2"].next("typing")).data == expected
    carol.notify("msg.typing", {"room_id": rid, "typing": True})
    await barrier(carol)  # carol's notification was handled before this answer
    for conn in (alice, bob):
        await barrier(conn)
    assert logs["alice"].pending("typing") == []
    assert logs["bob"].pending("typing") == []


@pytest_twisted.ensureDeferred
async def test_history_pages(server):
    """msg.history pages back with before_seq and forward with after_seq, oldest first,
    with has_more; limit is capped at 200; non-members get not_found."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    carol = await server.user("carol")
    for n in range(1, 8):
        await say(alice, rid, f"m{n}")

    async def page(**args):
        result = await bob.request("msg.history", {"room_id": rid, **args})
        return [m["body"] for m in result["messages"]], result["has_more"]

    assert await page(limit=3) == (["m5", "m6", "m7"], True)
    assert await page(limit=3, before_seq=5) == (["m2", "m3", "m4"], True)
    assert await page(limit=3, before_seq=2) == (["m1"], False)
    assert await page(after_seq=5) == (["m6", "m7"], False)
    assert await page(after_seq=0, limit=2) == (["m1", "m2"], True)
    error = await expect_error(bob.request("msg.history", {"room_id": rid, "limit": 201}),
                               ErrorCode.BAD_REQUEST)
    assert "limit" in error.message
    await expect_error(carol.request("msg.history", {"room_id": rid}), ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_search_only_finds_messages_in_own_rooms(server):
    """msg.search finds matching messages in the user's rooms only; asking for a
    room one is not in is not_found."""
    (alice, bob), shared = await room_of(server, "alice", "bob")
    carol = await server.user("carol")
    own = (await create_room(carol, name="carol's"))["room_id"]
    await say(alice, shared, "the release is Friday")
    await say(carol, own, "release notes draft")
    found = await bob.request("msg.search", {"query": "RELEASE"})
    assert [m["body"] for m in found["messages"]] == ["the release is Friday"]
    found = await carol.request("msg.search", {"query": "release"})
    assert [m["body"] for m in found["messages"]] == ["release notes draft"]
    by_sender = await bob.request("msg.search", {"query": "release", "sender": "carol"})
    assert by_sender["messages"] == []
    await expect_error(bob.request("msg.search", {"query": "release", "room_id": own}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_ttl_message_expires_for_everyone(server):
    """A message with ttl=1 is delivered, then msg.expired {room_id, msg_id} goes to the
    members and the message is gone from history."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    bob_events = EventLog(bob, "bob")
    ack = await say(alice, rid, "burn after reading", ttl=1)
    assert (await bob_events.next("msg")).data["message"]["ttl"] == 1
    expired = await bob_events.next("msg.expired", timeout=4.0)
    assert expired.data == {"room_id": rid, "msg_id": ack["msg_id"]}
    assert (await bob.request("msg.history", {"room_id": rid}))["messages"] == []
    assert (await bob.request("msg.search", {"query": "burn"}))["messages"] == []


@pytest_twisted.ensureDeferred
async def test_two_sessions_of_one_user_both_get_events(server):
    """Room events reach each of a user's sessions."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    bob2 = await server.user("bob", register=False)
    logs = [EventLog(bob, "bob#1"), EventLog(bob2, "bob#2")]
    body = unique("to both ")
    await say(alice, rid, body)
    await alice.request("room.update", {"room_id": rid, "topic": "t"})
    for log in logs:
        assert (await log.next("msg")).data["message"]["body"] == body
        assert (await log.next("room.updated")).data["room"]["topic"] == "t"


@pytest_twisted.ensureDeferred
async def test_a_flooded_message_leaves_history_and_changes_readable(server):
    """26,000 reactions on one message (20 users x 1,300 distinct 32-character
    "emoji", stored directly as the attack left them; 1.7 MB as lists of names):
    msg.history {limit: 1} and msg.changes from before it answer, with the message
    summarised (reaction_counts, my_reactions, reactions_summarised); live reactions
    to it still arrive as msg.reaction."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    ack = await say(alice, rid, "target")
    since = (await bob.request("session.ping"))["ts"] - 1
    store = server.service.store
    ids = [store.ids.next_id() for _ in range(20)]

    def flood(t):
        t.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                      "created_ts) VALUES (?, ?, ?, ?, ?)",
                      [(uid, f"flooder-{uid}", "F", "x", 0) for uid in ids])
        t.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
                      [(ack["msg_id"], uid, f"{u:02d}{i:04d}" + "x" * 26, i)
                       for u, uid in enumerate(ids) for i in range(1300)])

    await store.db.run_interaction("flood", flood)
    bob_events = EventLog(bob, "bob")
    [message] = (await bob.request("msg.history", {"room_id": rid, "limit": 1}))["messages"]
    assert message["msg_id"] == ack["msg_id"] and message["reactions_summarised"] is True
    assert len(message["reaction_counts"]) == MAX_EMOJI_PER_MESSAGE
    assert message["my_reactions"] == [] and "reactions" not in message
    await store.db.run_interaction("touch", lambda t: t.execute(
        "UPDATE messages SET changed_ts = ? WHERE msg_id = ?", (since + 1, ack["msg_id"])))
    changes = await bob.request("msg.changes", {"room_id": rid, "since_ts": since})
    assert [c["msg_id"] for c in changes["changes"]] == [ack["msg_id"]]
    assert changes["changes"][0]["reactions_summarised"] is True
    error = await expect_error(alice.request("msg.react", {
        "room_id": rid, "msg_id": ack["msg_id"], "emoji": "👍", "on": True}), ErrorCode.CONFLICT)
    assert error.details == {"limit": MAX_EMOJI_PER_MESSAGE, "per": "message"}
    await barrier(bob)
    assert bob_events.pending("msg.reaction") == []
    # Removing a reaction always works, and reaches members as usual.
    await store.db.run_interaction("a flooder reacted", lambda t: t.execute(
        "INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
        (ack["msg_id"], ids[0], "👍", 9)))
    await alice.request("msg.react", {"room_id": rid, "msg_id": ack["msg_id"],
                                      "emoji": "👍", "on": True})
    assert (await bob_events.next("msg.reaction")).data["on"] is True
    await alice.request("msg.react", {"room_id": rid, "msg_id": ack["msg_id"],
                                      "emoji": "👍", "on": False})
    assert (await bob_events.next("msg.reaction")).data["on"] is False


@pytest_twisted.ensureDeferred
async def test_pages_of_huge_messages_fit_the_frame_and_page_through(make_server):
    """With max_frame 256 KiB, a room of 30 messages of 16,000 Chinese characters
    (48 KB each): msg.history {limit: 200} ends early with has_more instead of failing,
    paging back returns every message once, and msg.search pages with next_cursor."""
    server = await make_server(max_frame=256 * 1024)
    (alice, bob), rid = await room_of(server, "alice", "bob")
    body = "汉字测试" * 4000
    for i in range(30):
        await say(alice, rid, f"{i:03d}{body[3:]}")
    first = await bob.request("msg.history", {"room_id": rid, "limit": 200})
    assert first["has_more"] is True and 1 < len(first["messages"]) < 30
    seen, before = [], None
    while True:
        args = {"room_id": rid, "limit": 200, **({"before_seq": before} if before else {})}
        page = await bob.request("msg.history", args)
        seen[:0] = [m["seq"] for m in page["messages"]]
        if not page["has_more"]:
            break
        before = page["messages"][0]["seq"]
    assert seen == list(range(1, 31))
    found, cursor = [], None
    while True:
        args = {"query": "汉字", "limit": 200, **({"cursor": cursor} if cursor else {})}
        page = await bob.request("msg.search", args)
        found += [m["seq"] for m in page["messages"]]
        assert ("next_cursor" in page) is page["has_more"]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert found == list(range(30, 0, -1))
    error = await expect_error(bob.request("msg.search", {"query": "x", "cursor": "nope"}),
                               ErrorCode.BAD_REQUEST)
    assert error.message.startswith("cursor ")


@pytest_twisted.ensureDeferred
async def test_every_message_accepted_fits_a_page_alone_even_summarised(make_server):
    """With a small max_frame (8 KiB), msg.send and msg.edit refuse (too_large) a body
    that would leave no room for summarised reactions in a page; one that is accepted
    is still readable after thousands of reactions."""
    server = await make_server(max_frame=8 * 1024)
    (alice, bob), rid = await room_of(server, "alice", "bob")
    await expect_error(say(alice, rid, "x" * 6500), ErrorCode.TOO_LARGE)
    ack = await say(alice, rid, "y" * 4000)
    await expect_error(alice.request("msg.edit", {"room_id": rid, "msg_id": ack["msg_id"],
                                                  "body": "z" * 6500}), ErrorCode.TOO_LARGE)
    await alice.request("msg.edit", {"room_id": rid, "msg_id": ack["msg_id"],
                                     "body": "z" * 4500})
    store = server.service.store
    ids = [store.ids.next_id() for _ in range(200)]

    def flood(t):
        t.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                      "created_ts) VALUES (?, ?, 'F', 'x', 0)",
                      [(uid, f"{uid:032d}") for uid in ids])
        t.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
                      [(ack["msg_id"], uid, e, i) for uid in ids
                       for i, e in enumerate(EMOJI[:5])])

    await store.db.run_interaction("flood", flood)
    [message] = (await bob.request("msg.history", {"room_id": rid}))["messages"]
    assert message["body"] == "z" * 4500 and message["reactions_summarised"] is True


@pytest_twisted.ensureDeferred
async def test_history_around_a_message_or_a_moment(server):
    """msg.history {around_seq} and {around_ts} (a search result, a date): the page
    holds the anchor with about half the limit on each side, says whether more lies
    before and after, and names the anchor; a moment after the newest message gives
    the newest; two anchors at once are refused."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    acks = [await say(alice, rid, f"message {i}") for i in range(1, 31)]
    page = await bob.request("msg.history", {"room_id": rid, "around_seq": 15, "limit": 10})
    assert [m["seq"] for m in page["messages"]] == list(range(10, 20))
    assert page["anchor_seq"] == 15
    assert page["has_more_before"] is True and page["has_more_after"] is True
    moment = acks[2]["ts"]
    page = await bob.request("msg.history", {"room_id": rid, "around_ts": moment, "limit": 10})
    assert page["anchor_seq"] == min(a["seq"] for a in acks if a["ts"] >= moment)
    assert page["messages"][0]["seq"] == 1 and page["has_more_before"] is False
    assert page["anchor_seq"] in [m["seq"] for m in page["messages"]]
    later = await bob.request("msg.history", {"room_id": rid, "around_ts": acks[-1]["ts"] + 1,
                                              "limit": 6})
    assert later["anchor_seq"] == 30 and later["has_more_after"] is False
    assert [m["seq"] for m in later["messages"]] == [27, 28, 29, 30]
    error = await expect_error(bob.request("msg.history", {"room_id": rid, "around_seq": 3,
                                                            "before_seq": 9}),
                               ErrorCode.BAD_REQUEST)
    assert "before_seq" in error.message and "around_seq" in error.message


@pytest_twisted.ensureDeferred
async def test_the_server_runs_the_search_indexer(server):
    """The server runs the SearchIndexer with its other timers; a run moves what a
    send queued (SQLite) into the index, and the message is found before and after."""
    (alice, bob), rid = await room_of(server, "alice", "bob")
    indexer = server.service.search_indexer
    assert indexer in server.service._timers() and indexer.running
    await say(alice, rid, "platypus spotted near the lake")
    found = await bob.request("msg.search", {"query": "platypus"})
    assert [m["body"] for m in found["messages"]] == ["platypus spotted near the lake"]
    await indexer.run_once()
    queued = await server.service.store.db.run_interaction(
        "queued", lambda t: int(t.scalar("SELECT COUNT(*) FROM search_queue")))
    assert queued == 0
    found = await bob.request("msg.search", {"query": "platypus"})
    assert [m["body"] for m in found["messages"]] == ["platypus spotted near the lake"]
