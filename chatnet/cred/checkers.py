"""Credential checkers: Argon2id passwords and resume tokens (PROTOCOL.md 3.4, 3.5).

Both produce the avatar id ``str(user_id).encode()``; the realm turns it into
an avatar. Wrong credentials fail with ``UnauthorizedLogin`` whose message is
the same whether the user exists or not, and an unknown user still costs one
hash verification so that timing does not tell either.

Guessing is throttled (:class:`LoginGuard`): failed logins back off
exponentially per username and per peer address, a locked key is refused with
``rate_limited`` before any hash is computed, and lock-outs go to the audit
log. Hashing itself runs in a small pool whose queue is bounded: when it is
full a login is refused at once with ``unavailable`` instead of waiting behind
a flood.
"""

from __future__ import annotations

import hashlib
from typing import Any

import argon2
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatnet.cred import credentials as _credentials
from chatnet.errors import ChatError, ErrorCode
from chatnet.services import Clock, ms
from chatnet.store import ChatStore, now_ms
from chatnet.store.faults import log_background_failure
from chatnet.wire.limits import LoginThrottle
from chatnet.wire.ops import USERNAME_RE

WRONG_CREDENTIALS = "wrong username or password"
#: Failed logins of one username before back-off starts.
FREE_FAILURES_PER_USER = 5
#: Failed logins (and resumes) from one address before back-off starts: higher,
#: because a whole office may sit behind one NAT address.
FREE_FAILURES_PER_ADDRESS = 20
#: The first lock-out and the longest one, seconds; each failure past the free
#: ones doubles it.
LOCKOUT_BASE = 1.0
LOCKOUT_CEILING = 15 * 60.0
#: Password checks that may wait for a hashing thread before logins are refused
#: with ``unavailable``.
MAX_QUEUED_HASHES = 32


def check_certificate_user(certificate_user: str | None, username: str) -> None:
    """With ``--tls-client-cert-login``: the client certificate must be the user's own.

    A client certificate from the ``--tls-client-ca`` CA only lets its holder log
    in (or resume, or register) as the user named by its subject common name;
    the password is still checked.

    Args:
        certificate_user: the certificate's CN, case-folded (None: no certificate
            or no CN).
        username: the user logging in (case-folded here like usernames are).

    Raises:
        ChatError: ``unauthenticated``, saying the certificate is for another user.
    """
    wanted = username.strip().casefold()
    if certificate_user is None:
        raise ChatError(ErrorCode.UNAUTHENTICATED,
                        "this server requires the client certificate of the user who logs "
                        "in, and this connection's certificate names no user")
    if certificate_user != wanted:
        raise ChatError(ErrorCode.UNAUTHENTICATED,
                        f"this client certificate is for another user ({certificate_user!r}, "
                        f"not {wanted!r}): log in as {certificate_user!r}, or connect with "
                        f"{wanted!r}'s own certificate")


def token_hash(token: str) -> str:
    """The stored form of a resume token: hex SHA-256 (tokens are random, no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class PasswordHasher:
    """Argon2id hashing run off the reactor thread, in a small pool of its own.

    Each hash holds ``memory_kib`` of memory while it runs, and the C allocator
    keeps what a thread used; a dedicated pool of ``threads`` threads bounds
    that memory and keeps a burst of logins from occupying the reactor's
    shared thread pool (disk and other work).

    Args:
        reactor: the reactor (``IReactorThreads``, ``IReactorCore``).
        time_cost: Argon2 iterations.
        memory_kib: Argon2 memory in KiB.
        threads: hashes computed at once.
    """

    def __init__(self, reactor: Any, time_cost: int = 2, memory_kib: int = 19456,
                 threads: int = 2, max_queued: int = MAX_QUEUED_HASHES) -> None:
        self._reactor = reactor
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                             parallelism=1, type=argon2.Type.ID)
        self._dummy: str | None = None
        self._threads = ThreadPool(minthreads=0, maxthreads=threads, name="argon2")
        self.threads = threads
        self.max_queued = max_queued
        #: Hashes running or waiting for a thread.
        self.pending = 0

    def _pool(self) -> ThreadPool:
        if not self._threads.started:
            self._threads.start()
        return self._threads

    def stop(self) -> None:
        """Stop the hashing threads (waits for hashes in progress)."""
        if self._threads.started:
            self._threads.stop()

    def hash_now(self, password: str) -> str:
        """Hash synchronously (for the admin command line, not the reactor thread)."""
        return self._hasher.hash(password)

    def _run(self, fn: Any, *args: Any) -> Deferred[Any]:
        """Run ``fn`` in the hashing pool unless too many wait already.

        Raises:
            ChatError: ``unavailable`` when ``threads + max_queued`` hashes are
                running or waiting (a login flood must not delay everyone).
        """
        if self.pending >= self.threads + self.max_queued:
            raise ChatError(ErrorCode.UNAVAILABLE, "the server is busy checking passwords; "
                            "try again in a moment", {"retry_after_ms": 1000})
        self.pending += 1

        def done(result: Any) -> Any:
            self.pending -= 1
            return result

        d = deferToThreadPool(self._reactor, self._pool(), fn, *args)
        d.addBoth(done)
        return d

    def hash(self, password: str) -> Deferred[str]:
        """Hash a password in a worker thread; fires with the PHC string.

        Raises:
            ChatError: ``unavailable`` when the hashing queue is full.
        """
        return self._run(self._hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> Deferred[bool]:
        """Check a password in a worker thread.

        Args:
            password_hash: the stored hash, or None for an unknown user (a dummy
                hash is verified instead, to spend the same time; it is made
                once, in the worker thread too).

        Returns:
            a Deferred firing True only if the password matches a real hash.

        Raises:
            ChatError: ``unavailable`` when the hashing queue is full.
        """
        real = password_hash is not None

        def check() -> bool:
            target = password_hash
            if target is None:
                if self._dummy is None:
                    self._dummy = self._hasher.hash("chatnet-dummy-password")
                target = self._dummy
            try:
                return self._hasher.verify(target, password) and real
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return self._run(check)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash uses weaker parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True


class LoginGuard:
    """Back-off after failed logins, per username and per peer address (PROTOCOL.md 3.4).

    A username (whether or not it exists, so that lock-outs reveal nothing)
    and an address each get :data:`FREE_FAILURES_PER_USER` /
    :data:`FREE_FAILURES_PER_ADDRESS` free failures; each one after that locks
    the key out for twice as long as the last, from :data:`LOCKOUT_BASE` up to
    :data:`LOCKOUT_CEILING` seconds. A correct password clears the username's
    failures but not the address's (else one valid account would let an
    address guess at others forever). Resume tokens are not throttled by
    username: a user whose name is under attack keeps the sessions they have.

    In a cluster every failure and success is told to the other nodes (through
    the fan-out's bus), which count it too: a guesser spreading attempts over
    the nodes behind a load balancer meets the same lock-outs as on one node.
    (A node that joins later starts without the counts made before it.)

    Args:
        store: where lock-outs are written to the audit log.
        clock: time source.
        fanout: the node's fan-out; in a cluster, it carries the counts to the
            other nodes and theirs here.
    """

    log = Logger()

    def __init__(self, store: ChatStore, clock: Clock, fanout: Any = None) -> None:
        self.store = store
        self.clock = clock
        self.fanout = fanout
        self.users = LoginThrottle(clock, FREE_FAILURES_PER_USER, LOCKOUT_BASE, LOCKOUT_CEILING)
        self.addresses = LoginThrottle(clock, FREE_FAILURES_PER_ADDRESS, LOCKOUT_BASE,
                                       LOCKOUT_CEILING)
        handlers = getattr(fanout, "node_handlers", None)
        if handlers is not None:
            handlers["login"] = self._elsewhere

    def _elsewhere(self, origin: int, scope: str, key: str, failed: bool) -> None:
        """Another node counted a failure (or a success) of a username or address."""
        throttle = self.users if scope == "user" else self.addresses
        if failed:
            throttle.failed(key)
        else:
            throttle.succeeded(key)

    def check(self, username: str | None, address: str) -> None:
        """Refuse an attempt while its username or address is locked out.

        Raises:
            ChatError: ``rate_limited`` with ``retry_after_ms``.
        """
        wait = self.addresses.wait(address) if address else 0.0
        if username is not None:
            wait = max(wait, self.users.wait(username))
        if wait > 0:
            raise ChatError(ErrorCode.RATE_LIMITED,
                            "too many failed logins; wait before trying again",
                            {"retry_after_ms": max(1, int(wait * 1000 + 0.999))})

    async def failed(self, username: str | None, address: str) -> None:
        """Count a failed attempt (audited as ``login.failed``); a lock-out it starts
        is logged and audited too."""
        # In the background: a storage fault must not turn a refusal into an error.
        audited = Deferred.fromCoroutine(self.store.audit(
            self.store.ids.next_id(), ms(self.clock), "login.failed", username=username,
            peer=address or None))
        audited.addErrback(log_background_failure(self.log, "auditing a failed login failed"))
        lockouts = []
        if username is not None:
            seconds = self.users.failed(username)
            self._tell_others("user", username, True)
            if seconds:
                lockouts.append(("username", seconds))
        if address:
            seconds = self.addresses.failed(address)
            self._tell_others("address", address, True)
            if seconds:
                lockouts.append(("address", seconds))
        for scope, seconds in lockouts:
            self.log.warn("login back-off: {scope} locked for {seconds:.0f} s "
                          "(user {user}, from {peer})", scope=scope, seconds=seconds,
                          user=username or "-", peer=address or "-")
            await self.store.audit(self.store.ids.next_id(), ms(self.clock), "login.locked_out",
                                   username=username, peer=address or None,
                                   details={"scope": scope, "seconds": seconds})

    def succeeded(self, username: str) -> None:
        """A correct password: forget the username's failures."""
        self.users.succeeded(username)
        self._tell_others("user", username, False)

    def _tell_others(self, scope: str, key: str, failed: bool) -> None:
        if self.fanout is not None:
            self.fanout.send_all("login", scope, key, failed)


def password_login(credentials: Any) -> tuple[str, str, str]:
    """The parts of an ``IUsernamePassword`` login as checkers compare them.

    Returns:
        ``(username, password, address)``: the username stripped and case-folded,
        both decoded from UTF-8 if bytes (undecodable bytes replaced), and the
        peer's host ("" if unknown).
    """
    raw = credentials.username
    username = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    password = credentials.password
    if isinstance(password, bytes):
        password = password.decode("utf-8", "replace")
    return username.strip().casefold(), password, getattr(credentials, "peer_host", "")


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Checks ``IUsernamePassword`` against the Argon2id hashes in the store.

    Args:
        store: the chat store.
        hasher: the password hasher.
        guard: throttles failed logins; None checks every attempt (tools).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, store: ChatStore, hasher: PasswordHasher,
                 guard: LoginGuard | None = None) -> None:
        self.store = store
        self.hasher = hasher
        self.guard = guard

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """Fire with ``str(user_id).encode()``, or fail with ``UnauthorizedLogin``
        (or ``ChatError``: ``rate_limited`` while locked out, ``unavailable``
        when the hashing queue is full)."""
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes | tuple[()]:
        username, password, address = password_login(credentials)
        valid_name = USERNAME_RE.fullmatch(username) is not None
        guard = self.guard
        if guard is not None:
            guard.check(username if valid_name else None, address)
        user = await self.store.user_by_name(username) if valid_name else None
        ok = await self.hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            if guard is not None:
                await guard.failed(username if valid_name else None, address)
            raise UnauthorizedLogin(WRONG_CREDENTIALS)
        if guard is not None:
            guard.succeeded(username)
        if self.hasher.needs_rehash(user.password_hash):
            await self.store.set_password_hash(user.user_id, await self.hasher.hash(password),
                                               revoke_tokens=False)
        return str(user.user_id).encode()


@implementer(ICredentialsChecker)
class TokenChecker:
    """Checks :class:`~chatnet.cred.credentials.IToken` resume tokens against the store.

    Args:
        store: the chat store.
        clock: provides ``seconds()`` (expiry).
    """

    credentialInterfaces = (_credentials.IToken,)

    def __init__(self, store: ChatStore, clock: Any) -> None:
        self.store = store
        self.clock = clock

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """Fire with ``str(user_id).encode()``, or fail with ``UnauthorizedLogin``.

        Failed resumes are not throttled like passwords: a token is 256 random
        bits, so guessing is hopeless, and a crowd of clients with expired
        tokens behind one address must not lock that address out of logging
        in. The per-connection rate limit bounds the lookups.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes | tuple[()]:
        user_id = await self.store.token_user(token_hash(credentials.token),
                                              now_ms(self.clock.seconds()))
        if user_id is None:
            raise UnauthorizedLogin("token expired or revoked; log in again")
        return str(user_id).encode()
