"""The realm: turns an authenticated avatar id into a session's avatar.

``portal.login(credentials, mind, IChatAvatar)`` fires with ``(IChatAvatar,
avatar, logout)``. For the anonymous id the avatar has only the ``accounts``
perspective (registration). For a user the realm loads the account, refuses
banned ones (and, with ``--tls-client-cert-login``, a client certificate made
out to someone else), applies the single-session policy, binds the mind (the
connection) to the avatar, attaches it to the fan-out and announces presence.
``logout`` undoes that exactly once, whether the client logs out or the
connection drops.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ANONYMOUS
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from chatnet.cred.checkers import check_certificate_user
from chatnet.errors import ChatError, ErrorCode
from chatnet.fanout import LocalFanout
from chatnet.interfaces import IChatAvatar, ISessionMind
from chatnet.services import Clock, Services, ms
from chatnet.services.admin import BROADCASTS_AT_LOGIN
from chatnet.store import UserRecord
from chatnet.store.faults import log_background_failure
from chatnet.wire.codec import event_frame

AvatarTuple = tuple[Any, Any, Callable[[], None]]


@implementer(IChatAvatar)
class AnonymousAvatar:
    """The avatar of a connection that has not logged in: it can only register.

    Args:
        services: the server's services.
        mind: the connection.
    """

    user_id = 0
    username = ""
    roles: tuple[str, ...] = ()

    def __init__(self, services: Services, mind: ISessionMind) -> None:
        self.mind = mind
        self._accounts = services.accounts.perspective(self)

    def perspective(self, name: str) -> object | None:
        """Only ``accounts`` (hello, register, login, resume)."""
        return self._accounts if name == "accounts" else None

    def login_result(self, token: str) -> dict[str, object]:
        """Anonymous avatars never log in."""
        raise ChatError(ErrorCode.UNAUTHENTICATED, "not logged in")


@implementer(IChatAvatar)
class ChatAvatar:
    """A logged-in session of a user.

    Args:
        user: the account as loaded at login (only what a session needs of it
            is kept: not its password hash).

    Attributes:
        user_id: the user's id.
        username: the user's name.
        display_name: the user's shown name at login.
        roles: server roles (``admin``).
        session_id: this session's id, unique on the node.
        since: login time, ms since epoch.
        mind: the connection.
        perspectives: the perspectives made so far, by name (:meth:`perspective`).
    """

    # One per logged-in session: slots keep an idle session small.
    __slots__ = ("_services", "display_name", "mind", "perspectives", "roles", "session_id",
                 "since", "user_id", "username")

    def __init__(self, user: UserRecord, mind: ISessionMind, services: Services,
                 session_id: str, since: int) -> None:
        self.user_id = user.user_id
        self.display_name = user.display_name
        self.username = user.username
        self.roles = user.roles
        self.session_id = session_id
        self.since = since
        self.mind = mind
        self._services = services
        # Made on first use: a session that never calls an area's op (an idle
        # one, most) does not hold its perspective.
        self.perspectives: dict[str, object] = {}

    def perspective(self, name: str) -> object | None:
        """The perspective the op registry calls ``name``, made on first use;
        None for a name :class:`~chatnet.services.Services` does not have."""
        found = self.perspectives.get(name)
        if found is None:
            found = self._services.perspective(name, self)
            if found is not None:
                self.perspectives[name] = found
        return found

    def login_result(self, token: str) -> dict[str, object]:
        """The ``auth.login`` result (PROTOCOL.md 3.4)."""
        return {"user_id": self.user_id, "username": self.username,
                "display_name": self.display_name, "session_id": self.session_id,
                "token": token, "roles": list(self.roles)}


@implementer(IRealm)
class ChatRealm:
    """Makes avatars for the portal.

    Args:
        services: the server's services.
        fanout: the session registry.
        clock: time source.
        single_session: end a user's other sessions (``replaced``) at each login.
        certificate_login: a session's client certificate must name the user it
            logs in as (``--tls-client-cert-login``; see
            :func:`~chatnet.cred.checkers.check_certificate_user`).
        max_sessions: live sessions one user may have, on every node of a cluster
            together (a login past it gets ``conflict`` with ``details.limit``);
            None for no limit.
    """

    log = Logger()

    def __init__(self, services: Services, fanout: LocalFanout, clock: Clock,
                 single_session: bool = False, certificate_login: bool = False,
                 max_sessions: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.services = services
        self.fanout = fanout
        self.clock = clock
        self.single_session = single_session
        self.certificate_login = certificate_login

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        """Return (or fire with) ``(IChatAvatar, avatar, logout)``.

        Raises:
            NotImplementedError: ``IChatAvatar`` was not asked for.
        """
        if IChatAvatar not in interfaces:
            raise NotImplementedError("chatnet only has IChatAvatar avatars")
        if avatarId is ANONYMOUS or avatarId == ANONYMOUS:
            return (IChatAvatar, AnonymousAvatar(self.services, mind), lambda: None)
        return Deferred.fromCoroutine(self._login(int(avatarId), mind))

    async def _login(self, user_id: int, mind: ISessionMind) -> AvatarTuple:
        user = await self.services.users.store.user_by_id(user_id)
        if user is None:
            raise UnauthorizedLogin("wrong username or password")
        if self.certificate_login:
            # Before anything happens for the user (single-session, presence).
            check_certificate_user(mind.certificate_user, user.username)
        if user.banned:
            store = self.services.users.store
            until = await store.ban_until(user_id)
            if until is None or until > ms(self.clock):
                raise ChatError(ErrorCode.BANNED, "this account is banned")
            await store.set_ban(user_id, False, None, None, ms(self.clock))  # it ran out
        if (self.max_sessions is not None and not self.single_session
                and self.fanout.session_count(user_id) >= self.max_sessions):
            # Each session has its own rate limit: more of them must not multiply it.
            raise ChatError(ErrorCode.CONFLICT, f"you have {self.max_sessions} sessions "
                            "already; log out of one first", {"limit": self.max_sessions})
        avatar = ChatAvatar(user, mind, self.services, secrets.token_hex(8), ms(self.clock))
        if self.single_session:
            self.fanout.end_sessions(user_id, "replaced")
        mind.bind(avatar)
        # Proven now, before the session is reachable: a credentials check running
        # while the login finishes (CredentialWatch) must not take it for older
        # than a password change it came after.
        mind.authenticated_ts = ms(self.clock)
        self.fanout.attach(mind)
        await self.services.users.session_started(avatar)
        # Admin broadcasts made since the user was last here (PROTOCOL.md 9).
        since = user.last_seen if user.last_seen is not None else user.created_ts
        for data in await self.services.users.store.broadcasts_since(since,
                                                                      BROADCASTS_AT_LOGIN):
            mind.send_frame(event_frame("system", data))
        self.log.info("{user} logged in (session {session}, {peer})", user=user.username,
                      session=avatar.session_id, peer=mind.peer)
        # Audited in the background: a storage fault must not keep anyone out.
        store = self.services.users.store
        audited = Deferred.fromCoroutine(store.audit(
            store.ids.next_id(), ms(self.clock), "login", user_id=user_id,
            username=user.username, peer=mind.peer or None,
            details={"session_id": avatar.session_id,
                     **({"client": mind.client} if getattr(mind, "client", "") else {})}))
        audited.addErrback(log_background_failure(self.log, "auditing a login failed"))
        return (IChatAvatar, avatar, self._logout_once(avatar))

    def _logout_once(self, avatar: ChatAvatar) -> Callable[[], None]:
        done = False

        def logout() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.fanout.detach(avatar.mind)
            self.services.calls.session_ended(avatar.mind)
            d = Deferred.fromCoroutine(self.services.users.session_ended(avatar))
            d.addErrback(log_background_failure(self.log, "presence update at logout failed"))
            self.log.info("{user} logged out (session {session})", user=avatar.username,
                          session=avatar.session_id)
            store = self.services.users.store
            audited = Deferred.fromCoroutine(store.audit(
                store.ids.next_id(), ms(self.clock), "logout", user_id=avatar.user_id,
                username=avatar.username, details={"session_id": avatar.session_id}))
            audited.addErrback(log_background_failure(self.log, "auditing a logout failed"))

        return logout
