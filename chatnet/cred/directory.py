"""Directory login (LDAP / Active Directory) as a twisted.cred checker.

With ``--ldap-url``, a password login is checked against the company directory
with ``ldap3``, in the reactor's thread pool (never on the reactor thread):

- **bind-DN template** (``--ldap-bind-dn "uid={username},ou=people,dc=example,dc=com"``):
  the user's own DN is made from the name and bound with the password; or
- **search then bind** (``--ldap-search-base``, ``--ldap-search-filter``, a
  service account ``--ldap-service-dn`` whose password is in the environment
  variable named by ``--ldap-service-password-env``): the service account finds
  the one entry matching the name, then that entry's DN is bound with the
  password (Active Directory: ``(sAMAccountName={username})``).

A first successful login creates the chatnet account (display name from the
entry's ``displayName`` or ``cn``; its password hash is the marker
:data:`DIRECTORY_HASH`, which no password matches, so the account can only log
in through the directory). With ``--ldap-admin-group`` / ``--ldap-auditor-group``
(group DNs whose ``member`` or ``uniqueMember`` lists the user's DN) the server
roles follow the directory at each login. Local accounts (those with a real
password hash, e.g. a break-glass admin made with ``chatnet-admin``) keep
logging in with their local password. Empty passwords are refused before the
directory is asked (an LDAP bind with an empty password is an anonymous bind).

Failed logins count in the :class:`~chatnet.cred.checkers.LoginGuard` like
local ones; a directory that cannot be reached answers ``unavailable``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from chatnet.cred.checkers import password_login
from chatnet.cred.credentials import IToken
from chatnet.errors import ChatError, ErrorCode
from chatnet.services import Clock, ms
from chatnet.store import ChatStore
from chatnet.wire.ops import USERNAME_RE

#: The password hash of accounts the directory manages: no password matches it.
DIRECTORY_HASH = "directory:"
WRONG_CREDENTIALS = "wrong username or password"


@dataclass(frozen=True)
class DirectoryConfig:
    """How to reach and use the directory (the ``--ldap-*`` options).

    Attributes:
        url: ``ldap://host[:port]`` or ``ldaps://host[:port]``.
        bind_dn: a DN template with ``{username}`` (bind-DN mode), or None.
        search_base: where to search for the user (search-then-bind mode).
        search_filter: the search filter, with ``{username}``.
        service_dn: the service account that searches.
        service_password_env: the NAME of the environment variable holding its
            password.
        admin_group: a group DN whose members get the ``admin`` role.
        auditor_group: a group DN whose members get the ``auditor`` role.
        ca: a PEM CA file to trust for ``ldaps://`` (default: the system's).
        timeout: seconds for connecting and for each answer.
        only: ``--ldap-only``: local passwords are not accepted either; every
            password login goes to the directory.
    """

    url: str
    bind_dn: str | None = None
    search_base: str | None = None
    search_filter: str = "(uid={username})"
    service_dn: str | None = None
    service_password_env: str | None = None
    admin_group: str | None = None
    auditor_group: str | None = None
    ca: Path | None = None
    timeout: float = 10.0
    only: bool = False


@dataclass(frozen=True)
class DirectoryEntry:
    """What a successful directory login tells about the user."""

    display_name: str
    roles: tuple[str, ...]


class DirectoryUnavailable(Exception):
    """The directory could not be reached or answered with an error."""


def authenticate(config: DirectoryConfig, username: str,
                 password: str) -> DirectoryEntry | None:
    """Check ``username``/``password`` against the directory (blocking: run it in a
    thread).

    Returns:
        the entry's display name and roles, or None for wrong credentials (or a
        name the directory does not know).

    Raises:
        DirectoryUnavailable: the directory cannot be reached or refused the
            service account.
    """
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

    tls = None
    if config.url.startswith("ldaps://"):
        import ssl

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED,
                        ca_certs_file=str(config.ca) if config.ca else None)
    try:
        server = ldap3.Server(config.url, connect_timeout=config.timeout, tls=tls,
                              get_info=ldap3.NONE)
        if config.bind_dn is not None:
            user_dn = config.bind_dn.format(username=escape_rdn(username))
        else:
            service_password = os.environ.get(config.service_password_env or "", "")
            with ldap3.Connection(server, config.service_dn, service_password,
                                  receive_timeout=config.timeout) as service:
                if not service.bound:
                    raise DirectoryUnavailable("the service account was refused")
                service.search(config.search_base, config.search_filter.format(
                    username=escape_filter_chars(username)), attributes=[])
                found = [e.entry_dn for e in service.entries]
            if len(found) != 1:
                return None
            user_dn = found[0]
        user = ldap3.Connection(server, user_dn, password, receive_timeout=config.timeout)
        try:
            if not user.bind():
                return None
            user.search(user_dn, "(objectClass=*)", search_scope=ldap3.BASE,
                        attributes=["displayName", "cn"])
            attributes = user.entries[0].entry_attributes_as_dict if user.entries else {}
            names = attributes.get("displayName") or attributes.get("cn") or [username]
            roles = []
            for role, group in (("admin", config.admin_group),
                                ("auditor", config.auditor_group)):
                if group and user.search(
                        group, f"(|(member={escape_filter_chars(user_dn)})"
                        f"(uniqueMember={escape_filter_chars(user_dn)}))",
                        search_scope=ldap3.BASE, attributes=[]) and user.entries:
                    roles.append(role)
            return DirectoryEntry(str(names[0])[:64], tuple(roles))
        finally:
            user.unbind()
    except ldap_errors.LDAPException as exc:
        raise DirectoryUnavailable(str(exc) or type(exc).__name__) from exc


@implementer(ICredentialsChecker)
class DirectoryChecker:
    """Password logins through the directory, local accounts through ``local``
    (module docstring).

    Args:
        config: the directory settings.
        store: the chat store (accounts are made and kept in step here).
        local: the local password checker (accounts with a real password hash).
        guard: the login throttle shared with ``local``.
        reactor: its thread pool runs ``ldap3``.
        clock: time source.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, config: DirectoryConfig, store: ChatStore, local: Any, guard: Any,
                 reactor: Any, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.local = local
        self.guard = guard
        self.reactor = reactor
        self.clock = clock

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """The user id (bytes) for valid credentials.

        Raises (through the Deferred):
            UnauthorizedLogin: wrong name or password.
            ChatError: ``rate_limited`` while locked out, ``unavailable`` when the
                directory cannot be reached.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes:
        username, password, address = password_login(credentials)
        if not USERNAME_RE.fullmatch(username):
            raise UnauthorizedLogin(WRONG_CREDENTIALS)
        user = await self.store.user_by_name(username)
        if user is not None and user.password_hash != DIRECTORY_HASH and not self.config.only:
            local: bytes = await self.local.requestAvatarId(credentials)
            return local
        self.guard.check(username, address)
        if not password:
            await self.guard.failed(username, address)
            raise UnauthorizedLogin(WRONG_CREDENTIALS)
        try:
            entry = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                            authenticate, self.config, username, password)
        except DirectoryUnavailable as exc:
            self.log.warn("directory login for {user} failed: {error}", user=username,
                          error=str(exc))
            raise ChatError(ErrorCode.UNAVAILABLE, "the company directory cannot be reached; "
                            "try again later") from None
        if entry is None:
            await self.guard.failed(username, address)
            raise UnauthorizedLogin(WRONG_CREDENTIALS)
        self.guard.succeeded(username)
        roles = set(entry.roles) if (self.config.admin_group or self.config.auditor_group) \
            else None
        if user is None:
            user_id = self.store.ids.next_id()
            await self.store.create_user(user_id, username, entry.display_name, DIRECTORY_HASH,
                                         sorted(roles or ()), ms(self.clock))
            self.log.info("account {user} created from the directory", user=username)
            return str(user_id).encode()
        if roles is not None and set(user.roles) & _DIRECTORY_ROLES != roles:
            # The directory's groups decide these two roles; others (bot) stay.
            kept = set(user.roles) - _DIRECTORY_ROLES
            await self.store.set_roles(user.user_id, sorted(kept | roles))
        return str(user.user_id).encode()


#: The server roles directory groups give and take.
_DIRECTORY_ROLES = frozenset({"admin", "auditor"})


@implementer(ICredentialsChecker)
class DirectoryTokenChecker:
    """Resume tokens, except for accounts the directory manages: those log in with
    their password again (the client library does so by itself when a resume
    is refused), so that an account disabled or deleted in the directory stops
    at its next reconnect, not when its token expires.

    Args:
        tokens: the token checker (:class:`~chatnet.cred.checkers.TokenChecker`).
        store: the chat store.
    """

    credentialInterfaces = (IToken,)

    def __init__(self, tokens: Any, store: ChatStore) -> None:
        self.tokens = tokens
        self.store = store

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """The user id (bytes) for a valid token of a local account.

        Raises (through the Deferred):
            UnauthorizedLogin: an expired or revoked token, or a directory account.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> bytes:
        found: bytes = await self.tokens.requestAvatarId(credentials)
        user = await self.store.user_by_id(int(found))
        if user is not None and user.password_hash == DIRECTORY_HASH:
            raise UnauthorizedLogin("a directory account logs in with its password")
        return found
