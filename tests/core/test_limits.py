"""Abuse limits (chatnet/wire/limits.py, chatnet/cred/checkers.py): login back-off per
username and per address, the bounded hashing queue, and per-user budgets.

Unit tests on a fake clock, then the same limits through the server protocol over
a real store (tests/support/harness.py), where time moves only when the test says.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from chatnet.errors import ChatError, ErrorCode
from chatnet.wire.limits import Budget, KeyedBuckets, LoginThrottle, UserBudgets
from tests.support.harness import build_harness, hello, send
from tests.support.server import PASSWORD

# -- units -------------------------------------------------------------------------------------


def test_throttle_doubles_the_lockout_after_the_free_failures():
    """The first ``free`` failures cost nothing; then 1 s, 2 s, 4 s ... up to the ceiling."""
    clock = Clock()
    throttle = LoginThrottle(clock, free=3, base=1.0, ceiling=8.0)
    assert [throttle.failed("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.wait("k") == 0.0
    lockouts = []
    for _ in range(5):
        lockouts.append(throttle.failed("k"))
        clock.advance(throttle.wait("k"))
    assert lockouts == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_throttle_reports_the_wait_and_forgets_after_a_quiet_hour():
    """While locked, wait() says how long; a success or forget_after of quiet clears it."""
    clock = Clock()
    throttle = LoginThrottle(clock, free=0, base=10.0, forget_after=60.0)
    throttle.failed("k")
    clock.advance(4)
    assert throttle.wait("k") == pytest.approx(6.0)
    clock.advance(60)
    assert throttle.wait("k") == 0.0
    assert throttle.failed("k") == 10.0  # counting starts again
    throttle.succeeded("k")
    assert throttle.wait("k") == 0.0


def test_throttle_and_buckets_keep_a_bounded_number_of_keys():
    """A flood of distinct keys (usernames, addresses) never grows memory past max_keys."""
    clock = Clock()
    throttle = LoginThrottle(clock, free=1, max_keys=100)
    buckets = KeyedBuckets(rate=1.0, burst=5.0, clock=clock, max_keys=100)
    for i in range(10_000):
        throttle.failed(f"user{i}")
        buckets.take(i, 1)
    assert len(throttle) == 100 and len(buckets) == 100


def test_buckets_forget_full_buckets():
    """A bucket that has refilled is the same as a new one and is dropped."""
    clock = Clock()
    buckets = KeyedBuckets(rate=1.0, burst=2.0, clock=clock)
    buckets.take("a", 2)
    clock.advance(10)
    buckets.take("b", 1)
    assert len(buckets) == 1


def test_post_paid_charges_put_a_budget_into_debt():
    """charge() spends past zero; take() then refuses until the debt is repaid."""
    clock = Clock()
    budgets = UserBudgets(clock, {"expensive": Budget("expensive", rate=10.0, burst=10.0)})
    assert budgets.take("expensive", 1, 1) == 0.0
    budgets.charge("expensive", 1, 29)  # 10 - 1 - 29 = -20
    assert budgets.take("expensive", 1, 1) == pytest.approx(2.1)
    assert budgets.take("expensive", 2, 1) == 0.0  # another user is not affected
    clock.advance(2.1)
    assert budgets.take("expensive", 1, 1) == 0.0


# -- through the server protocol ---------------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def harness(tmp_path):
    """The wire over a real store, with a fake clock."""
    h = await build_harness(tmp_path)
    yield h
    h.close()


async def login(harness, username: str, password: str, request_id: int = 2,
                connection=None) -> dict:
    """Try auth.login on a fresh (or the given) connection; returns the answer frame."""
    proto, transport = connection or harness.connect()
    if connection is None:
        hello(proto, transport)
    send(proto, {"id": request_id, "op": "auth.login",
                 "args": {"username": username, "password": password}})
    return await transport.answer(request_id)


def code(answer: dict) -> str:
    assert "error" in answer, answer
    return answer["error"]["code"]


@pytest_twisted.ensureDeferred
async def test_failed_logins_back_off_per_username_and_are_audited(harness):
    """After 5 wrong passwords for a name, the next wrong one locks it (1 s, then 2 s
    ...): attempts are refused with rate_limited + retry_after_ms without checking
    the password, even with the right one; once the lock passes the right password
    works. The lock-out is in the audit log."""
    await harness.services.accounts.create_user("alice", PASSWORD)
    for _ in range(6):
        assert code(await login(harness, "alice", "wrong password")) == "unauthenticated"
    refused = await login(harness, "alice", PASSWORD)
    assert code(refused) == "rate_limited"
    assert refused["error"]["details"]["retry_after_ms"] == 1000
    harness.clock.advance(1)
    assert code(await login(harness, "alice", "wrong again")) == "unauthenticated"
    assert (await login(harness, "alice", PASSWORD))["error"]["details"][
        "retry_after_ms"] == 2000
    harness.clock.advance(2)
    assert (await login(harness, "alice", PASSWORD))["result"]["username"] == "alice"
    entries = await harness.store.audit_entries("login.locked_out")
    assert [(e["username"], e["details"]["scope"]) for e in entries] == [
        ("alice", "username"), ("alice", "username")]
    assert entries[0]["peer"] == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_unknown_usernames_back_off_like_real_ones(harness):
    """A name that does not exist is locked out the same way: lock-outs reveal nothing."""
    for _ in range(6):
        assert code(await login(harness, "nobody", "guess")) == "unauthenticated"
    assert code(await login(harness, "nobody", "guess")) == "rate_limited"


@pytest_twisted.ensureDeferred
async def test_failed_logins_back_off_per_address(harness):
    """Twenty-one wrong passwords for different names from one address lock the address:
    a correct login of another user from it is refused too, until the lock passes."""
    await harness.services.accounts.create_user("bob", PASSWORD)
    for i in range(21):
        assert code(await login(harness, f"user{i}", "guess")) == "unauthenticated"
    assert code(await login(harness, "bob", PASSWORD)) == "rate_limited"
    harness.clock.advance(1)
    assert (await login(harness, "bob", PASSWORD))["result"]["username"] == "bob"


@pytest_twisted.ensureDeferred
async def test_a_full_hashing_queue_refuses_logins_with_unavailable(harness):
    """When as many password checks as the queue holds are running or waiting, a new
    login is refused at once with unavailable (it does not wait behind the flood)."""
    await harness.services.accounts.create_user("carol", PASSWORD)
    hasher = harness.services.accounts.hasher
    hasher.threads, hasher.max_queued = 1, 0
    first = harness.connect()
    hello(*first)
    # An impossible name skips the database and goes straight to a (dummy) hash.
    send(first[0], {"id": 2, "op": "auth.login",
                    "args": {"username": "No Such Name", "password": PASSWORD}})
    assert hasher.pending == 1
    busy = await login(harness, "Another Bad Name", PASSWORD)
    assert code(busy) == "unavailable"
    assert "retry_after_ms" in busy["error"]["details"]
    assert code(await first[1].answer(2)) == "unauthenticated"
    assert hasher.pending == 0
    assert "result" in await login(harness, "carol", PASSWORD)


@pytest_twisted.ensureDeferred
async def test_the_dummy_hash_is_not_made_on_the_calling_thread():
    """verify(None, ...) for an unknown user makes its dummy hash in the worker thread,
    not on the reactor thread that calls it (each hash takes tens of ms)."""
    import threading

    from twisted.internet import reactor

    from chatnet.cred.checkers import PasswordHasher

    hasher = PasswordHasher(reactor, time_cost=1, memory_kib=8)
    real = hasher._hasher
    threads = []

    class Recording:
        """The real argon2 hasher, recording which thread hashes."""

        def hash(self, password: str) -> str:
            threads.append(threading.get_ident())
            return real.hash(password)

        def verify(self, target: str, password: str) -> bool:
            return real.verify(target, password)

    hasher._hasher = Recording()  # type: ignore[assignment]
    try:
        assert await hasher.verify(None, "whatever") is False
        assert threads and threading.get_ident() not in threads
    finally:
        hasher.stop()


async def logged_in(harness, username: str) -> tuple:
    await harness.services.accounts.create_user(username, PASSWORD)
    proto, transport = harness.connect()
    hello(proto, transport)
    answer = await login(harness, username, PASSWORD, connection=(proto, transport))
    assert "result" in answer
    return proto, transport


@pytest_twisted.ensureDeferred
async def test_expensive_ops_draw_on_a_per_user_budget_shared_by_sessions(harness):
    """history/search/list ops spend the user's 'expensive' budget, shared by all of
    the user's connections; past it they are rate_limited naming the budget, other
    users are unaffected, and time restores it."""
    harness.factory.budgets = UserBudgets(harness.clock, {
        "expensive": Budget("expensive", rate=1.0, burst=3.0)})
    one = await logged_in(harness, "dora")
    proto2, transport2 = harness.connect()
    hello(proto2, transport2)
    assert "result" in await login(harness, "dora", PASSWORD, connection=(proto2, transport2))
    other = await logged_in(harness, "eve")
    for request_id, (proto, transport) in zip(range(10, 13), (one, (proto2, transport2), one),
                                              strict=True):
        send(proto, {"id": request_id, "op": "room.list", "args": {}})
        assert "result" in await transport.answer(request_id)
    send(proto2, {"id": 20, "op": "room.list", "args": {}})
    refused = await transport2.answer(20)
    assert code(refused) == "rate_limited"
    assert refused["error"]["details"]["budget"] == "expensive"
    send(other[0], {"id": 21, "op": "room.list", "args": {}})
    assert "result" in await other[1].answer(21)
    harness.clock.advance(1)
    send(proto2, {"id": 22, "op": "room.list", "args": {}})
    assert "result" in await transport2.answer(22)


@pytest_twisted.ensureDeferred
async def test_uploads_begun_draw_on_a_per_user_budget(harness):
    """file.upload.begin past the user's 'uploads' budget → rate_limited; other ops go on."""
    harness.factory.budgets = UserBudgets(harness.clock, {
        "uploads": Budget("uploads", rate=0.5, burst=2.0)})
    proto, transport = await logged_in(harness, "fred")
    answers = []
    for request_id in range(30, 33):
        send(proto, {"id": request_id, "op": "file.upload.begin",
                     "args": {"name": f"f{request_id}.txt", "size": 3,
                              "sha256": f"{request_id:064x}"}})
        answers.append(await transport.answer(request_id))
    assert ["result" in a for a in answers] == [True, True, False]
    assert code(answers[2]) == "rate_limited"
    assert answers[2]["error"]["details"]["retry_after_ms"] == 2000
    send(proto, {"id": 40, "op": "session.ping", "args": {}})
    assert "result" in await transport.answer(40)


def test_hasher_refusal_is_a_chat_error():
    """The hasher's refusal is a ChatError(unavailable), so the wire answers it."""
    from twisted.internet import reactor

    from chatnet.cred.checkers import PasswordHasher

    hasher = PasswordHasher(reactor, time_cost=1, memory_kib=8, threads=1, max_queued=0)
    hasher.pending = 1
    with pytest.raises(ChatError) as caught:
        hasher.hash("x" * 10)
    assert caught.value.code is ErrorCode.UNAVAILABLE


@pytest_twisted.ensureDeferred
async def test_registrations_are_limited_per_address(tmp_path):
    """With open registration, one address may create registrations_per_hour accounts
    at once and then one more per hour/N: the next gets rate_limited."""
    harness = await build_harness(tmp_path, registrations_per_hour=2)
    try:
        answers = []
        for i in range(3):
            proto, transport = harness.connect()
            hello(proto, transport)
            send(proto, {"id": 2, "op": "auth.register",
                         "args": {"username": f"new{i}", "password": PASSWORD}})
            answers.append(await transport.answer(2))
        assert ["result" in a for a in answers] == [True, True, False]
        assert code(answers[2]) == "rate_limited"
        assert answers[2]["error"]["details"]["retry_after_ms"] == 1800 * 1000
    finally:
        harness.close()
