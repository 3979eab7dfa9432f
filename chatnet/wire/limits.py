"""Limits on what peers may ask of the server: rates, budgets, login attempts.

All of them run on an injected clock (STYLE.md habit 7), so tests move time by
hand. None of them blocks: a limit answers how long to wait, and the caller
refuses the request with ``rate_limited`` and ``retry_after_ms``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from chatnet.services import Clock


class TokenBucket:
    """A token-bucket rate limiter on an injected clock.

    Args:
        rate: tokens added per second.
        burst: bucket size (the most that can be spent at once).
        clock: provides ``seconds()``.
    """

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock.seconds()

    def take(self, cost: float) -> float:
        """Spend ``cost`` tokens if there are enough.

        Returns:
            0.0 if spent; otherwise the seconds until there would be enough
            (nothing is spent).
        """
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def charge(self, cost: float) -> float:
        """Spend ``cost`` tokens even if there are not enough (post-paid work:
        the bucket goes into debt and :meth:`take` refuses until it has refilled).

        Returns:
            the seconds until the bucket is out of debt (0.0 if it is not in debt).
        """
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate) - cost
        self.stamp = now
        return max(0.0, -self.tokens) / self.rate

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are there (0.0 if they are now); spends nothing."""
        now = self.clock.seconds()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        return max(0.0, cost - tokens) / self.rate

    def full_at(self) -> float:
        """The clock time at which the bucket will be full again."""
        return self.stamp + max(0.0, self.burst - self.tokens) / self.rate


class KeyedBuckets:
    """One :class:`TokenBucket` per key (a user id, a peer address), bounded in number.

    A bucket that has refilled completely is the same as a new one, so it is
    forgotten; when more than ``max_keys`` buckets exist the least recently
    used go first. Memory is therefore bounded whatever the keys.

    Args:
        rate: tokens per second for each key.
        burst: bucket size for each key.
        clock: provides ``seconds()``.
        max_keys: most buckets kept.
    """

    __slots__ = ("_buckets", "burst", "clock", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, clock: Clock, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: object) -> TokenBucket:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._prune()
            bucket = buckets[key] = TokenBucket(self.rate, self.burst, self.clock)
        else:
            buckets.move_to_end(key)
        return bucket

    def _prune(self) -> None:
        buckets = self._buckets
        now = self.clock.seconds()
        while buckets:
            oldest_key, oldest = next(iter(buckets.items()))
            if len(buckets) < self.max_keys and oldest.full_at() > now:
                break
            del buckets[oldest_key]

    def take(self, key: object, cost: float) -> float:
        """Spend ``cost`` from ``key``'s bucket; see :meth:`TokenBucket.take`.

        Returns:
            0.0 if spent, else the seconds to wait (nothing is spent).
        """
        return self._bucket(key).take(cost)

    def charge(self, key: object, cost: float) -> float:
        """Spend ``cost`` from ``key``'s bucket even into debt (:meth:`TokenBucket.charge`).

        Returns:
            the seconds until that bucket is out of debt.
        """
        return self._bucket(key).charge(cost)


@dataclass(frozen=True)
class Budget:
    """A per-user budget for a kind of work (docs/protocol.md "Limits").

    Attributes:
        name: what it limits, e.g. ``"expensive"``.
        rate: units per second, sustained.
        burst: units that may be spent at once.
    """

    name: str
    rate: float
    burst: float


#: Per-user budgets that ops draw on (``Op.budget`` in chatnet.wire.ops). They are
#: shared by all of a user's sessions (on every node), so opening more connections
#: buys nothing.
BUDGETS: dict[str, Budget] = {b.name: b for b in (
    # Every request after login, at its rate-limit cost: the per-connection rate
    # limit multiplied by more connections buys nothing.
    Budget("requests", rate=100.0, burst=500.0),
    # Changes to existing messages (reactions, edits, deletions): each is a
    # transaction and an event to every member; one a second is past any person.
    Budget("changes", rate=1.0, burst=10.0),
    # Rooms created and invitations sent: each is a transaction and events to
    # other people (two a minute, twenty at once).
    Budget("rooms", rate=1 / 30, burst=20.0),
    # Reads that scan or encode a lot: history, changes, search, lists. One unit
    # per request plus one per EXPENSIVE_UNIT_BYTES of result, charged after
    # the result is built.
    Budget("expensive", rate=100.0, burst=1000.0),
    # Feed posts: each goes to every contact of the author (two a minute, twenty
    # at once).
    Budget("posts", rate=1 / 30, burst=20.0),
    # Feed comments: a conversation under a post, at a person's pace.
    Budget("comments", rate=2.0, burst=30.0),
    # Uploads begun: 1 a second sustained, 30 at once.
    Budget("uploads", rate=1.0, burst=30.0),
    # Downloads begun (a download's first chunk): 2 a second, 120 at once.
    Budget("downloads", rate=2.0, burst=120.0),
    # Account-changing requests that hash a password (change_password).
    Budget("passwords", rate=0.2, burst=5.0),
    # Calls started: each rings every other member of a room (one a minute
    # sustained, five at once).
    Budget("calls", rate=1 / 60, burst=5.0),
)}
#: Result bytes that cost one more unit of the ``expensive`` budget.
EXPENSIVE_UNIT_BYTES = 16 * 1024


class UserBudgets:
    """Every :data:`BUDGETS` budget, per user, shared by the user's sessions on
    every node of a cluster.

    In a cluster, what a user spends on one node is told to the other nodes
    (``fanout.send_all("spent", ...)``, batched with the turn's events) when the
    user has a session on another node, and charged there too: a user with
    sessions on two nodes spends one budget, not two. It is told rather than
    kept in Redis because a Redis round trip per request would add its latency
    to every request; the other nodes hear within a publish (milliseconds), so a
    burst spread over nodes at the same instant can exceed the burst once.

    Args:
        clock: provides ``seconds()``.
        budgets: budgets by name that replace those of :data:`BUDGETS` (the
            others keep their defaults).
        fanout: the fan-out (``remote_presence``, ``send_all``, ``node_handlers``
            in a cluster), or None: this process alone.
    """

    def __init__(self, clock: Clock, budgets: dict[str, Budget] | None = None,
                 fanout: Any = None) -> None:
        self.budgets = {**BUDGETS, **(budgets or {})}
        self._buckets = {name: KeyedBuckets(b.rate, b.burst, clock)
                         for name, b in self.budgets.items()}
        self.fanout = fanout
        handlers = getattr(fanout, "node_handlers", None)
        if handlers is not None:
            handlers["spent"] = self._spent_elsewhere

    def take(self, name: str, user_id: int, cost: float) -> float:
        """Spend ``cost`` units of budget ``name`` for ``user_id``.

        Returns:
            0.0 if spent, else the seconds to wait.
        """
        wait = self._buckets[name].take(user_id, cost)
        if not wait:
            self._tell(name, user_id, cost)
        return wait

    def charge(self, name: str, user_id: int, cost: float) -> float:
        """Spend ``cost`` units even into debt (work already done).

        Returns:
            the seconds until that budget is out of debt.
        """
        self._tell(name, user_id, cost)
        return self._buckets[name].charge(user_id, cost)

    def _tell(self, name: str, user_id: int, cost: float) -> None:
        fanout = self.fanout
        if cost and fanout is not None and fanout.remote_presence(user_id) is not None:
            fanout.send_all("spent", name, user_id, cost)

    def _spent_elsewhere(self, origin: int, name: str, user_id: int, cost: float) -> None:
        """Another node spent ``cost`` of ``user_id``'s budget ``name``: charge it here
        (only for a user with a session here: nobody else draws on it)."""
        buckets = self._buckets.get(name)
        if (buckets is not None and isinstance(cost, (int, float)) and 0 < cost < 1e9
                and self.fanout.sessions_of(user_id)):
            buckets.charge(user_id, float(cost))


@dataclass
class _Failures:
    count: int
    locked_until: float
    last: float


class LoginThrottle:
    """Exponential back-off after failed logins, per key (a username, a peer address).

    The first ``free`` failures of a key cost nothing; each one after that locks
    the key for ``base * 2**(n - free - 1)`` seconds (at most ``ceiling``).
    While a key is locked, attempts are refused *before* any password is
    checked, so guessing costs the server nothing. A key with no failure for
    ``forget_after`` seconds starts afresh; at most ``max_keys`` keys are kept
    (least recently failed go first), so memory is bounded.

    Args:
        clock: provides ``seconds()``.
        free: failures allowed before the first lock-out.
        base: the first lock-out, seconds.
        ceiling: the longest lock-out, seconds.
        forget_after: seconds after which a key's failures are forgotten.
        max_keys: most keys tracked.
    """

    def __init__(self, clock: Clock, free: int, base: float = 1.0, ceiling: float = 900.0,
                 forget_after: float = 3600.0, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.free = free
        self.base = base
        self.ceiling = ceiling
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._keys: OrderedDict[object, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def wait(self, key: object) -> float:
        """Seconds until ``key`` may try again (0.0: it may now)."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        now = self.clock.seconds()
        if now - entry.last >= self.forget_after:
            del self._keys[key]
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, key: object) -> float:
        """Record a failed attempt of ``key``.

        Returns:
            the lock-out this failure started, in seconds (0.0 for a free one).
        """
        now = self.clock.seconds()
        keys = self._keys
        entry = keys.get(key)
        if entry is None or now - entry.last >= self.forget_after:
            entry = _Failures(0, 0.0, now)
            keys[key] = entry
            while len(keys) > self.max_keys:
                keys.popitem(last=False)
        keys.move_to_end(key)
        entry.count += 1
        entry.last = now
        over = entry.count - self.free
        if over <= 0:
            return 0.0
        lockout: float = min(self.ceiling, self.base * 2.0 ** min(over - 1, 30))
        entry.locked_until = now + lockout
        return lockout

    def succeeded(self, key: object) -> None:
        """Forget ``key``'s failures (a correct login)."""
        self._keys.pop(key, None)


class ConnectionGate:
    """Counts unauthenticated connections, per peer address and in all.

    Args:
        per_address: most unauthenticated connections from one address.
        total: most unauthenticated connections in all.
    """

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_address: dict[str, int] = {}
        self.count = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address`` unless a cap is reached.

        Returns:
            whether it was admitted (and must later be :meth:`release`\\ d).
        """
        held = self._by_address.get(address, 0)
        if held >= self.per_address or self.count >= self.total:
            return False
        self._by_address[address] = held + 1
        self.count += 1
        return True

    def release(self, address: str) -> None:
        """An admitted connection logged in or closed."""
        held = self._by_address.get(address, 0)
        if held <= 1:
            self._by_address.pop(address, None)
        else:
            self._by_address[address] = held - 1
        self.count = max(0, self.count - 1)
