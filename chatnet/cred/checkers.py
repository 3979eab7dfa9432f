"""Credential checkers: Argon2id passwords and resume tokens (PROTOCOL.md 3.4, 3.5).

Both produce the avatar id ``str(user_id).encode()``; the realm turns it into
an avatar. Wrong credentials fail with ``UnauthorizedLogin`` whose message is
the same whether the user exists or not, and an unknown user still costs one
hash verification so that timing does not tell either.
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
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatnet.cred import credentials as _credentials
from chatnet.errors import ChatError, ErrorCode
from chatnet.store import ChatStore, now_ms
from chatnet.wire.ops import USERNAME_RE

WRONG_CREDENTIALS = "wrong username or password"


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
                 threads: int = 2) -> None:
        self._reactor = reactor
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                             parallelism=1, type=argon2.Type.ID)
        self._dummy: str | None = None
        self._threads = ThreadPool(minthreads=0, maxthreads=threads, name="argon2")

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

    def hash(self, password: str) -> Deferred[str]:
        """Hash a password in a worker thread; fires with the PHC string."""
        return deferToThreadPool(self._reactor, self._pool(), self._hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> Deferred[bool]:
        """Check a password in a worker thread.

        Args:
            password_hash: the stored hash, or None for an unknown user (a dummy
                hash is verified instead, to spend the same time).

        Returns:
            a Deferred firing True only if the password matches a real hash.
        """
        if self._dummy is None:
            self._dummy = self._hasher.hash("chatnet-dummy-password")
        target = password_hash or self._dummy
        real = password_hash is not None

        def check() -> bool:
            try:
                return self._hasher.verify(target, password) and real
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return deferToThreadPool(self._reactor, self._pool(), check)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash uses weaker parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True


@implementer(ICredentialsChecker)
class PasswordChecker:
    """Checks ``IUsernamePassword`` against the Argon2id hashes in the store.

    Args:
        store: the chat store.
        hasher: the password hasher.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, store: ChatStore, hasher: PasswordHasher) -> None:
        self.store = store
        self.hasher = hasher

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """Fire with ``str(user_id).encode()``, or fail with ``UnauthorizedLogin``."""
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes | tuple[()]:
        raw = credentials.username
        username = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        username = username.strip().casefold()
        password = credentials.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        user = await self.store.user_by_name(username) if USERNAME_RE.fullmatch(username) else None
        ok = await self.hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            raise UnauthorizedLogin(WRONG_CREDENTIALS)
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
        """Fire with ``str(user_id).encode()``, or fail with ``UnauthorizedLogin``."""
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes | tuple[()]:
        user_id = await self.store.token_user(token_hash(credentials.token),
                                              now_ms(self.clock.seconds()))
        if user_id is None:
            raise UnauthorizedLogin("token expired or revoked; log in again")
        return str(user_id).encode()
