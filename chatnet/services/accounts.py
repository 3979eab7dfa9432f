"""Accounts: registration, password change and resume tokens (PROTOCOL.md 3)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from chatnet.cred.checkers import PasswordHasher, check_certificate_user, token_hash
from chatnet.errors import ChatError, ErrorCode, bad_request
from chatnet.services import Actor, Clock, ms
from chatnet.store import ChatStore, UserRecord
from chatnet.wire.ops import USERNAME_RE

#: Shortest password accepted for new passwords, in characters.
MIN_PASSWORD = 8
#: Server roles an account may hold.
SERVER_ROLES = frozenset({"admin"})


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
        certificate_login: ``auth.register`` only creates the account that the
            connection's client certificate names (``--tls-client-cert-login``).
    """

    log = Logger()

    def __init__(self, store: ChatStore, hasher: PasswordHasher, clock: Clock,
                 open_registration: bool, token_lifetime: int,
                 certificate_login: bool = False) -> None:
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
                ``unauthenticated`` when the client certificate names another
                user (``--tls-client-cert-login``).
        """
        if not self.service.open_registration:
            raise ChatError(ErrorCode.FORBIDDEN, "registration is closed on this server")
        if self.service.certificate_login:
            mind = getattr(self.actor, "mind", None)
            check_certificate_user(getattr(mind, "certificate_user", None), username)
        user = await self.service.create_user(username, password, (), display_name)
        return {"user_id": user.user_id, "username": user.username}

    async def perspective_change_password(self, old_password: str,
                                          new_password: str) -> dict[str, Any]:
        """``auth.change_password`` (PROTOCOL.md 3.6) → ``{}``; revokes all resume tokens.

        Raises:
            ChatError: ``unauthenticated`` if the old password is wrong,
                ``bad_request`` if the new one is too short.
        """
        service = self.service
        user = await service.store.user_by_id(self.actor.user_id)
        if user is None or not await service.hasher.verify(user.password_hash, old_password):
            raise ChatError(ErrorCode.UNAUTHENTICATED, "old_password is wrong")
        check_new_password(new_password, "new_password")
        await service.store.set_password_hash(user.user_id,
                                              await service.hasher.hash(new_password),
                                              revoke_tokens=True)
        return {}
