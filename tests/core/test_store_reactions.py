"""Reaction caps and frame-sized pages in the store, against SQLite and PostgreSQL.

The engines come from conftest.py, the helpers from test_store.py (PostgreSQL runs several
pooled connections, so the races below are real there).
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList

from chatnet.errors import ErrorCode
from chatnet.reactions import MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER
from chatnet.store import ChatStore
from chatnet.store.messages import DEFAULT_PAGE_BUDGET
from chatnet.wire.codec import pack
from tests.core.test_store import T0, expect_error, new_room, new_user, send

#: Distinct real emoji for the tests.
EMOJI = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘",
         "🥰", "😗", "😙", "🥲", "😚", "🙂", "🤗", "🤩", "🤔", "🫡", "🤨", "😐", "😑", "😶",
         "🫥", "🙄"]


def react(store: ChatStore, room_id: int, msg_id: int, user_id: int, emoji: str,
          on: bool = True) -> Deferred:
    """``store.react`` as a Deferred (so many can run at once)."""
    return Deferred.fromCoroutine(store.react(room_id, msg_id, user_id, emoji, on, T0, T0))


async def distinct_emoji(store: ChatStore, msg_id: int, user_id: int | None = None) -> int:
    """How many distinct emoji the message carries (of one user, if given)."""
    where, args = "msg_id = ?", [msg_id]
    if user_id is not None:
        where, args = where + " AND user_id = ?", [*args, user_id]
    return int(await store.db.run_interaction("count", lambda t: t.scalar(
        f"SELECT COUNT(DISTINCT emoji) FROM reactions WHERE {where}", args)))


# -- caps -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_one_user_gets_a_few_distinct_emoji_per_message(store):
    """Past MAX_REACTIONS_PER_USER distinct emoji on one message a user gets conflict
    with details {limit, per: user}; repeating one they have, removing, and reacting
    to another message still work."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    mid = (await send(store, room_id, alice)).message["msg_id"]
    other = (await send(store, room_id, alice)).message["msg_id"]
    for emoji in EMOJI[:MAX_REACTIONS_PER_USER]:
        assert await react(store, room_id, mid, alice.id, emoji) is True
    error = await expect_error(ErrorCode.CONFLICT,
                               react(store, room_id, mid, alice.id, EMOJI[-1]))
    assert error.details == {"limit": MAX_REACTIONS_PER_USER, "per": "user"}
    assert str(MAX_REACTIONS_PER_USER) in error.message
    assert await react(store, room_id, mid, alice.id, EMOJI[0]) is False
    assert await react(store, room_id, other, alice.id, EMOJI[-1]) is True
    assert await react(store, room_id, mid, alice.id, EMOJI[0], on=False) is True
    assert await react(store, room_id, mid, alice.id, EMOJI[-1]) is True
    assert await distinct_emoji(store, mid, alice.id) == MAX_REACTIONS_PER_USER


@pytest_twisted.ensureDeferred
async def test_a_message_carries_a_bounded_number_of_distinct_emoji(store):
    """Past MAX_EMOJI_PER_MESSAGE distinct emoji a *new* emoji gets conflict with
    details {limit, per: message}, while anyone may still add one already there."""
    users = [await new_user(store, f"u{i}") for i in range(MAX_EMOJI_PER_MESSAGE + 1)]
    room_id = await new_room(store, users[0], *users[1:])
    mid = (await send(store, room_id, users[0])).message["msg_id"]
    for user, emoji in zip(users, EMOJI[:MAX_EMOJI_PER_MESSAGE], strict=False):
        assert await react(store, room_id, mid, user.id, emoji) is True
    late = users[-1]
    error = await expect_error(ErrorCode.CONFLICT,
                               react(store, room_id, mid, late.id, EMOJI[-1]))
    assert error.details == {"limit": MAX_EMOJI_PER_MESSAGE, "per": "message"}
    assert await react(store, room_id, mid, late.id, EMOJI[0]) is True
    # Once an emoji is gone from the message, a new one fits again.
    assert await react(store, room_id, mid, users[1].id, EMOJI[1], on=False) is True
    assert await react(store, room_id, mid, late.id, EMOJI[-1]) is True
    assert await distinct_emoji(store, mid) == MAX_EMOJI_PER_MESSAGE


@pytest_twisted.ensureDeferred
async def test_concurrent_reactions_do_not_race_past_the_caps(store):
    """Many reactions to one message at once (PostgreSQL: on several connections)
    never leave a user with more than MAX_REACTIONS_PER_USER emoji, nor the message
    with more than MAX_EMOJI_PER_MESSAGE; exactly the allowed number succeed."""
    users = [await new_user(store, f"u{i}") for i in range(6)]
    room_id = await new_room(store, users[0], *users[1:])
    mid = (await send(store, room_id, users[0])).message["msg_id"]
    # One user, every emoji at once: exactly the cap succeeds.
    results = await DeferredList(
        [react(store, room_id, mid, users[0].id, e) for e in EMOJI], consumeErrors=True)
    assert sum(1 for ok, _ in results if ok) == MAX_REACTIONS_PER_USER
    assert {r.value.code for ok, r in results if not ok} == {ErrorCode.CONFLICT}
    assert await distinct_emoji(store, mid, users[0].id) == MAX_REACTIONS_PER_USER
    # Five more users, each with five new emoji at once: the message fills up to its cap.
    results = await DeferredList(
        [react(store, room_id, mid, user.id, EMOJI[(i * 5 + j) % len(EMOJI)])
         for i, user in enumerate(users[1:]) for j in range(5)], consumeErrors=True)
    assert {r.value.code for ok, r in results if not ok} <= {ErrorCode.CONFLICT}
    assert await distinct_emoji(store, mid) == MAX_EMOJI_PER_MESSAGE
    for user in users:
        assert await distinct_emoji(store, mid, user.id) <= MAX_REACTIONS_PER_USER


@pytest_twisted.ensureDeferred
async def test_concurrent_identical_reactions_store_one(store):
    """The same reaction sent many times at once is stored once and reported as a
    change exactly once (no integrity error escapes)."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    mid = (await send(store, room_id, alice)).message["msg_id"]
    results = await DeferredList([react(store, room_id, mid, alice.id, "👍")
                                  for _ in range(20)], consumeErrors=True)
    assert all(ok for ok, _ in results), results
    assert sum(1 for _ok, changed in results if changed) == 1
    assert await distinct_emoji(store, mid) == 1


# -- pages that fit a frame -------------------------------------------------------------------


async def flood(store: ChatStore, msg_id: int, users: int, emoji: list[str]) -> list[int]:
    """Store ``users`` x ``len(emoji)`` reactions on one message directly (as the
    attack left them, before there were caps); returns the users' ids."""
    ids = [store.ids.next_id() for _ in range(users)]

    def txn(t) -> None:
        t.executemany("INSERT INTO users (user_id, username, display_name, password_hash, "
                      "created_ts) VALUES (?, ?, ?, ?, ?)",
                      [(uid, f"flooder-{uid}", "F", "x", T0) for uid in ids])
        t.executemany("INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
                      [(msg_id, uid, e, T0 + i) for uid in ids for i, e in enumerate(emoji)])
        t.execute("UPDATE messages SET changed_ts = ? WHERE msg_id = ?", (T0 + 5, msg_id))

    await store.db.run_interaction("flood", txn)
    return ids


def encoded(items: list[dict]) -> int:
    """Bytes of a page's items as the wire carries them."""
    return len(pack({"messages": items}))


@pytest_twisted.ensureDeferred
async def test_26000_reactions_on_one_message_leave_history_and_changes_readable(store):
    """The attack of the hardening issue: 26,000 reactions (20 users x 1,300 distinct
    32-character "emoji" each, 1.7 MB as lists of names) on one message. msg.history
    with limit 1 and msg.changes from before it still fit a frame; the message comes
    summarised: counts of its 20 most used emoji and the reader's own, without names."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    before = (await send(store, room_id, alice, "before")).message
    target = (await send(store, room_id, alice, "target")).message["msg_id"]
    after = (await send(store, room_id, alice, "after")).message
    junk = [[f"{u:02d}{i:04d}" + "x" * 26 for i in range(1300)] for u in range(20)]
    for own in junk:
        await flood(store, target, 1, own)
    # A new emoji no longer fits such a message; one already there does.
    await expect_error(ErrorCode.CONFLICT, store.react(room_id, target, bob.id, "👍", True,
                                                       T0 + 9, T0))
    await store.react(room_id, target, bob.id, junk[3][7], True, T0 + 9, T0)

    [message], more = await store.history(room_id, after["seq"], None, 1, T0, viewer_id=bob.id)
    assert more is True and message["msg_id"] == target
    assert encoded([message]) <= DEFAULT_PAGE_BUDGET
    assert "reactions" not in message and message["reactions_summarised"] is True
    counts = message["reaction_counts"]
    assert len(counts) == MAX_EMOJI_PER_MESSAGE and counts[junk[3][7]] == 2
    assert sorted(counts.values()) == [1] * (MAX_EMOJI_PER_MESSAGE - 1) + [2]
    assert message["my_reactions"] == [junk[3][7]]

    page, more = await store.history(room_id, None, None, 50, T0, viewer_id=bob.id)
    assert [m["msg_id"] for m in page] == [before["msg_id"], target, after["msg_id"]]
    assert more is False and encoded(page) <= DEFAULT_PAGE_BUDGET

    changes, more = await store.changes(room_id, T0, 0, 100, T0, viewer_id=bob.id)
    assert [c["msg_id"] for c in changes] == [target] and more is False
    assert changes[0]["reactions_summarised"] is True
    assert len(pack({"changes": changes})) <= DEFAULT_PAGE_BUDGET


@pytest_twisted.ensureDeferred
async def test_a_message_with_many_reactors_is_summarised_with_the_readers_own(store):
    """Within the caps (20 emoji x 1,300 users = 26,000 reactions) a message with more
    than MAX_LISTED_REACTIONS reactions comes as reaction_counts {emoji: n} and
    my_reactions, flagged reactions_summarised; with few it keeps its names."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    busy = (await send(store, room_id, alice, "busy")).message["msg_id"]
    quiet = (await send(store, room_id, alice, "quiet")).message["msg_id"]
    await flood(store, busy, 1300, EMOJI[:MAX_EMOJI_PER_MESSAGE])
    await store.react(room_id, busy, bob.id, EMOJI[3], True, T0 + 9, T0)
    await store.react(room_id, quiet, bob.id, "👍", True, T0 + 9, T0)

    page, _ = await store.history(room_id, None, None, 10, T0, viewer_id=bob.id)
    by_id = {m["msg_id"]: m for m in page}
    summarised = by_id[busy]
    assert summarised["reactions_summarised"] is True and "reactions" not in summarised
    assert summarised["reaction_counts"] == {
        e: 1300 + (e == EMOJI[3]) for e in EMOJI[:MAX_EMOJI_PER_MESSAGE]}
    assert list(summarised["reaction_counts"]) == EMOJI[:MAX_EMOJI_PER_MESSAGE]  # first used first
    assert summarised["my_reactions"] == [EMOJI[3]]
    assert by_id[quiet]["reactions"] == {"👍": ["bob"]}
    assert "reactions_summarised" not in by_id[quiet]
    # Few reactions but more distinct emoji than the cap (stored before it): summarised,
    # with the 20 first used.
    legacy = (await send(store, room_id, alice, "legacy")).message["msg_id"]
    await flood(store, legacy, 1, EMOJI)
    await store.db.run_interaction("bob's", lambda t: t.execute(
        "INSERT INTO reactions (msg_id, user_id, emoji, ts) VALUES (?, ?, ?, ?)",
        (legacy, bob.id, EMOJI[25], T0 + 99)))
    [old] = [m for m in (await store.history(room_id, None, None, 10, T0, viewer_id=bob.id))[0]
             if m["msg_id"] == legacy]
    assert old["reactions_summarised"] is True and "reactions" not in old
    assert list(old["reaction_counts"]) == [*EMOJI[:19], EMOJI[25]]
    assert old["reaction_counts"][EMOJI[25]] == 2 and old["my_reactions"] == [EMOJI[25]]
    alone = await store.message(room_id, busy, T0, viewer_id=alice.id)
    assert alone["my_reactions"] == [] and alone["reactions_summarised"] is True
    # A listed message that would not fit a page alone goes out summarised.
    listed = (await send(store, room_id, alice, "x" * 2000)).message["msg_id"]
    await flood(store, listed, 40, ["🎉"])
    full, _ = await store.history(room_id, None, None, 1, T0, viewer_id=bob.id)
    assert len(full[0]["reactions"]["🎉"]) == 40
    budget = encoded(full) - 100
    [small], _more = await store.history(room_id, None, None, 1, T0, viewer_id=bob.id,
                                        budget=budget)
    assert small["reaction_counts"] == {"🎉": 40} and small["my_reactions"] == []
    await expect_error(ErrorCode.TOO_LARGE, store.history(room_id, None, None, 1, T0,
                                                          budget=1000))


@pytest_twisted.ensureDeferred
async def test_pages_of_huge_messages_end_early_and_page_through_everything(store):
    """200 messages of 16,000 Chinese characters (48 KB each): a page of 200 ends early
    with has_more and fits the frame; paging back, forward, through msg.changes and
    through search returns every message exactly once."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    body = "汉字测试" * 4000
    for i in range(200):
        await send(store, room_id, alice, f"{i:03d}{body[3:]}", ts=T0 + i)
    await store.db.run_interaction("touch", lambda t: t.execute(
        "UPDATE messages SET changed_ts = ts WHERE room_id = ?", (room_id,)))

    page, more = await store.history(room_id, None, None, 200, T0)
    assert more is True and 10 < len(page) < 200
    assert encoded(page) <= DEFAULT_PAGE_BUDGET
    assert [m["seq"] for m in page] == list(range(201 - len(page), 201))

    seen: list[int] = []
    before = None
    while True:
        page, more = await store.history(room_id, before, None, 200, T0)
        assert encoded(page) <= DEFAULT_PAGE_BUDGET
        seen[:0] = [m["seq"] for m in page]
        if not more:
            break
        before = page[0]["seq"]
    assert seen == list(range(1, 201))

    seen, after = [], 0
    while True:
        page, more = await store.history(room_id, None, after, 200, T0)
        seen += [m["seq"] for m in page]
        if not more:
            break
        after = page[-1]["seq"]
    assert seen == list(range(1, 201))

    seen, since = [], (0, 0)
    while True:
        changes, more = await store.changes(room_id, since[0], since[1], 200, T0)
        assert len(pack({"changes": changes})) <= DEFAULT_PAGE_BUDGET
        seen += [c["seq"] for c in changes]
        if not more:
            break
        since = (changes[-1]["changed_ts"], changes[-1]["msg_id"])
    assert seen == list(range(1, 201))

    seen, cursor = [], None
    while True:
        found, more = await store.search(alice.id, "汉字", None, None, None, None, 200, T0,
                                         before=cursor)
        assert encoded(found) <= DEFAULT_PAGE_BUDGET
        seen += [m["seq"] for m in found]
        if not more:
            break
        cursor = (found[-1]["ts"], found[-1]["msg_id"])
    assert seen == list(range(200, 0, -1))


@pytest_twisted.ensureDeferred
async def test_small_messages_then_huge_ones_page_through_exactly_once(store):
    """150 short messages then 50 of 48 KB: reading forward, pages take the short ones
    in growing batches and stop within the budget at the huge ones; every message
    comes exactly once, forward and back."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    for i in range(150):
        await send(store, room_id, alice, f"short {i}")
    for i in range(50):
        await send(store, room_id, alice, f"{i:03d}" + "汉" * 15_997)
    seen, after, sizes = [], 0, []
    while True:
        page, more = await store.history(room_id, None, after, 200, T0)
        assert encoded(page) <= DEFAULT_PAGE_BUDGET
        seen += [m["seq"] for m in page]
        sizes.append(len(page))
        if not more:
            break
        after = page[-1]["seq"]
    assert seen == list(range(1, 201))
    assert 150 < sizes[0] < 200
    seen, before = [], None
    while True:
        page, more = await store.history(room_id, before, None, 200, T0)
        seen[:0] = [m["seq"] for m in page]
        if not more:
            break
        before = page[0]["seq"]
    assert seen == list(range(1, 201))
