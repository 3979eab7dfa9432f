"""Reaction caps and frame-sized pages in the store, against SQLite and PostgreSQL.

The engines and helpers are those of test_store.py (PostgreSQL runs several
pooled connections, so the races below are real there).
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList

from chatnet.errors import ErrorCode
from chatnet.reactions import MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER
from chatnet.store import ChatStore
from tests.core import test_store
from tests.core.test_store import T0, expect_error, new_room, new_user, send

# The engine-parametrised fixtures of test_store.py, shared.
engine = test_store.engine
store = test_store.store

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
