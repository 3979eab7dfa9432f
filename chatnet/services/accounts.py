"""Accounts: registration, password change and resume tokens (PROTOCOL.md 3).

A password change or reset ends every other session of the user with
``session.ended {reason: password_changed}`` (PROTOCOL.md 3.8) and revokes
their resume tokens. The change is stamped in the store (``credentials_ts``),
and :class:`CredentialWatch` polls for stamps made elsewhere — another node,
or ``chatnet-admin reset-password`` run against the database — so those
sessions end too. :class:`TokenSweeper` deletes expired tokens.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from chatnet.cred.checkers import PasswordHasher, check_certificate_user, token_hash
from chatnet.cred.directory import DIRECTORY_HASH
from chatnet.errors import ChatError, ErrorCode, bad_request
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.periodic import PeriodicJob
from chatnet.store import ChatStore, UserRecord
from chatnet.wire.limits import KeyedBuckets
from chatnet.wire.ops import USERNAME_RE

#: Shortest password accepted for new passwords, in characters.
MIN_PASSWORD = 8
#: Server roles an account may hold: admin (everything of PROTOCOL.md 9), auditor
#: (its read-only ops), bot (an account a program runs, e.g. the assistant).
SERVER_ROLES = frozenset({"admin", "auditor", "bot"})


def check_new_password(password: str, field: str = "password") -> None:
    """Refuse passwords that are too short.

    Raises:
        ChatError: ``bad_request`` naming ``field``.
    """
    if len(password) < MIN_PASSWORD:
        raise bad_request(f"{field} must be at least {MIN_PASSWORD} characters")


class AccountService:
    """Creates accounts, changes passwords and issues resume tokens.

    Args:
        store: the chat store.
        hasher: Argon2id hashing off the reactor thread.
        clock: time source.
        open_registration: whether ``auth.register`` is allowed.
        token_lifetime: seconds a resume token lives.
        fanout: the sessions of this node (a password change ends the others).
        registrations_per_hour: accounts one peer address may create per hour.
        certificate_login: ``auth.register`` only creates the account that the
            connection's client certificate names (``--tls-client-cert-login``).
    """

    log = Logger()

    def __init__(self, store: ChatStore, hasher: PasswordHasher, clock: Clock,
                 open_registration: bool, token_lifetime: int, fanout: LocalFanout,
                 registrations_per_hour: int = 60, certificate_login: bool = False) -> None:
        self.fanout = fanout
        # A burst of an hour's worth, refilled evenly: one address cannot fill
        # the user table however fast it asks.
        self.registrations = KeyedBuckets(registrations_per_hour / 3600.0,
                                          float(registrations_per_hour), clock)
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.open_registration = open_registration
        self.token_lifetime = token_lifetime
        self.certificate_login = certificate_login

    def perspective(self, actor: Actor) -> AccountPerspective:
        """The account perspective of one session (anonymous or logged in)."""
        return AccountPerspective(self, actor)

    async def create_user(self, username: str, password: str, roles: Iterable[str] = (),
                          display_name: str | None = None) -> UserRecord:
        """Create an account.

        Args:
            username: case-folded, 1-32 chars of ``[a-z0-9._-]``.
            password: at least :data:`MIN_PASSWORD` characters.
            roles: server roles, from :data:`SERVER_ROLES`.
            display_name: shown name; defaults to the username.

        Returns:
            the new user.

        Raises:
            ChatError: ``bad_request`` (name, password or role invalid),
                ``conflict`` (name taken).
        """
        username = username.strip().casefold()
        if not USERNAME_RE.fullmatch(username):
            raise bad_request("username must be 1-32 characters of a-z 0-9 . _ -")
        check_new_password(password)
        roles = sorted(set(roles))
        unknown = set(roles) - SERVER_ROLES
        if unknown:
            raise bad_request(f"unknown role {sorted(unknown)[0]!r}")
        password_hash = await self.hasher.hash(password)
        user_id = self.store.ids.next_id()
        await self.store.create_user(user_id, username, display_name or username,
                                     password_hash, roles, ms(self.clock))
        user = await self.store.user_by_id(user_id)
        assert user is not None
        self.log.info("account {username} created", username=username)
        return user

    async def issue_token(self, user_id: int) -> str:
        """Create a resume token for a user (PROTOCOL.md 3.5); only its hash is stored."""
        token = secrets.token_urlsafe(32)
        now = ms(self.clock)
        await self.store.add_token(token_hash(token), user_id, now,
                                   now + self.token_lifetime * 1000)
        return token

    async def revoke_token(self, token: str) -> None:
        """Revoke one resume token (logout)."""
        await self.store.revoke_token(token_hash(token))

    async def set_password(self, user: UserRecord, password: str, *, by: str,
                           peer: str | None = None) -> int:
        """Give a user a new password: revoke their tokens and stamp the change, so
        that every session that authenticated before it is ended (here at once
        by the caller, on other nodes by :class:`CredentialWatch`).

        Args:
            user: the account.
            password: the new password (already checked).
            by: ``"user"`` (a change) or ``"admin"`` (a reset), for the audit log.
            peer: where the request came from.

        Returns:
            the change's time stamp, ms.

        Raises:
            ChatError: ``unavailable`` when the hashing queue is full.
        """
        password_hash = await self.hasher.hash(password)
        now = ms(self.clock)
        await self.store.set_password_hash(user.user_id, password_hash, revoke_tokens=True,
                                           credentials_ts=now)
        await self.store.audit(self.store.ids.next_id(), now,
                               "password.changed" if by == "user" else "password.reset",
                               user_id=user.user_id, username=user.username, peer=peer)
        return now


class AccountPerspective:
    """``auth.register`` and ``auth.change_password`` for one session."""

    __slots__ = ("actor", "service")

    def __init__(self, service: AccountService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    async def perspective_register(self, username: str, password: str,
                                   display_name: str | None) -> dict[str, Any]:
        """``auth.register`` (PROTOCOL.md 3.3) → ``{user_id, username}``.

        Raises:
            ChatError: ``forbidden`` when registration is closed, ``conflict``
                when the name is taken, ``bad_request`` for a short password,
                ``rate_limited`` when the address created too many accounts lately,
                ``unauthenticated`` when the client certificate names another
                user (``--tls-client-cert-login``).
        """
        if not self.service.open_registration:
            raise ChatError(ErrorCode.FORBIDDEN, "registration is closed on this server")
        if self.service.certificate_login:
            mind = getattr(self.actor, "mind", None)
            check_certificate_user(getattr(mind, "certificate_user", None), username)
        address = getattr(self.actor.mind, "peer_host", "")
        wait = self.service.registrations.take(address, 1)
        if wait:
            raise ChatError(ErrorCode.RATE_LIMITED, "too many accounts created from this "
                            "address; try again later",
                            {"retry_after_ms": max(1, int(wait * 1000 + 0.999))})
        user = await self.service.create_user(username, password, (), display_name)
        return {"user_id": user.user_id, "username": user.username}

    async def perspective_change_password(self, old_password: str,
                                          new_password: str) -> dict[str, Any]:
        """``auth.change_password`` (PROTOCOL.md 3.6) → ``{token}``: revokes every
        resume token and ends the user's other sessions with ``session.ended
        {password_changed}`` (PROTOCOL.md 3.8); this session stays, and ``token``
        (an extension) is its new resume token.

        Raises:
            ChatError: ``unauthenticated`` if the old password is wrong,
                ``bad_request`` if the new one is too short, ``unavailable``
                when the password checks are saturated, ``forbidden`` for an
                account the company directory manages (directory login).
        """
        service = self.service
        user = await service.store.user_by_id(self.actor.user_id)
        if user is not None and user.password_hash == DIRECTORY_HASH:
            raise ChatError(ErrorCode.FORBIDDEN, "your password is the company directory's: "
                            "change it there")
        if user is None or not await service.hasher.verify(user.password_hash, old_password):
            raise ChatError(ErrorCode.UNAUTHENTICATED, "old_password is wrong")
        check_new_password(new_password, "new_password")
        mind = self.actor.mind
        changed_ts = await service.set_password(user, new_password, by="user",
                                                peer=getattr(mind, "peer", None))
        # This session proved the old password: it stays, with a new token
        # (every token was revoked); the others end now.
        if mind is not None:
            mind.reauthenticated(changed_ts)
        service.fanout.end_sessions(user.user_id, "password_changed", keep=mind)
        service.log.info("{user} changed their password", user=user.username)
        return {"token": await service.issue_token(user.user_id)}


class CredentialWatch(PeriodicJob):
    """Ends sessions whose user's credentials changed elsewhere (PROTOCOL.md 3.8).

    Every ``interval`` seconds it asks the store which users' ``credentials_ts``
    moved since the last look, and ends each of their sessions on this node
    that authenticated before the change with ``session.ended
    {password_changed}`` (``{banned}`` when the change was a ban). That covers a
    reset or ban by ``chatnet-admin`` (which writes the database directly) and
    changes made through another node.

    Args:
        store: the chat store.
        fanout: this node's sessions.
        clock: time source (drives the loop).
        interval: seconds between looks.
    """

    log = Logger()
    failure_message = "checking for password changes failed"

    def __init__(self, store: ChatStore, fanout: LocalFanout, clock: Clock,
                 interval: float = 5.0) -> None:
        super().__init__(interval, clock)
        self.store = store
        self.fanout = fanout
        self._seen = ms(clock)

    async def run_once(self) -> int:
        """Look once (:meth:`check_now`)."""
        return await self.check_now()

    async def check_now(self) -> int:
        """Look once; returns how many sessions were ended."""
        ended = 0
        for user_id, changed_ts in await self.store.credentials_changed_since(self._seen):
            self._seen = max(self._seen, changed_ts)
            sessions = [s for s in self.fanout.sessions_of(user_id)
                        if getattr(s, "authenticated_ts", 0) < changed_ts]
            if not sessions:
                continue
            # A ban (chatnet-admin, another node) stamps the change too.
            user = await self.store.user_by_id(user_id)
            reason = "banned" if user is not None and user.banned else "password_changed"
            for session in sessions:
                session.end_session(reason)
                ended += 1
        if ended:
            self.log.info("ended {count} session(s) after password changes", count=ended)
        return ended


class TokenSweeper(PeriodicJob):
    """Deletes expired resume tokens every ``interval`` seconds (a
    :class:`~chatnet.services.periodic.PeriodicJob`).

    Args:
        store: the chat store.
        clock: time source (drives the loop).
        interval: seconds between sweeps.
    """

    log = Logger()
    failure_message = "sweeping expired tokens failed"

    def __init__(self, store: ChatStore, clock: Clock, interval: float = 3600.0) -> None:
        super().__init__(interval, clock)
        self.store = store

    async def run_once(self) -> int:
        """Sweep once (:meth:`sweep_now`)."""
        return await self.sweep_now()

    async def sweep_now(self) -> int:
        """Delete every expired token now; returns how many."""
        total = 0
        while True:
            deleted = await self.store.sweep_tokens(ms(self.time_source))
            total += deleted
            if deleted < 1000:
                return total
