"""Directory (LDAP) login against a real LDAP server on loopback: ldaptor's
in-memory directory served by its LDAPServer protocol, spoken to by the
server's ldap3 client over TCP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import ServerFactory
from twisted.python.components import registerAdapter

from chatnet.cred.directory import DIRECTORY_HASH, DirectoryConfig
from chatnet.errors import ErrorCode
from tests.support.chat import expect_error
from tests.support.server import PASSWORD

BASE = "dc=example,dc=com"
LDIF = f"""dn: {BASE}
objectClass: dcObject
dc: example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: uid=carol,ou=people,{BASE}
objectClass: inetOrgPerson
uid: carol
cn: Carol Diaz
displayName: Carol Díaz
sn: Diaz
userPassword: carol's directory password

dn: uid=dave,ou=people,{BASE}
objectClass: inetOrgPerson
uid: dave
cn: Dave Kim
sn: Kim
userPassword: dave's directory password

dn: uid=searcher,ou=people,{BASE}
objectClass: inetOrgPerson
uid: searcher
cn: Searcher
sn: Searcher
userPassword: service secret

dn: cn=chat-admins,{BASE}
objectClass: groupOfNames
cn: chat-admins
member: uid=carol,ou=people,{BASE}

""".encode()


class DirectoryFactory(ServerFactory):
    """Serves one in-memory directory tree over LDAP."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def buildProtocol(self, addr: Any) -> Any:
        from ldaptor.protocols.ldap.ldapserver import LDAPServer

        protocol = LDAPServer()
        protocol.factory = self
        return protocol


def _root_of(factory: DirectoryFactory) -> Any:
    return factory.root


@pytest_twisted.async_yield_fixture
async def directory() -> AsyncIterator[int]:
    """A real LDAP server on loopback; yields its port."""
    from ldaptor.inmemory import fromLDIFFile
    from ldaptor.interfaces import IConnectedLDAPEntry

    with contextlib.suppress(ValueError):  # registered by an earlier test
        registerAdapter(_root_of, DirectoryFactory, IConnectedLDAPEntry)
    root = await fromLDIFFile(BytesIO(LDIF))
    port = reactor.listenTCP(0, DirectoryFactory(root), interface="127.0.0.1")
    yield port.getHost().port
    await port.stopListening()


def bind_dn_config(port: int, **more: Any) -> DirectoryConfig:
    return DirectoryConfig(url=f"ldap://127.0.0.1:{port}",
                           bind_dn="uid={username},ou=people," + BASE, timeout=5, **more)


@pytest_twisted.ensureDeferred
async def test_directory_users_log_in_and_get_an_account(make_server, directory):
    """A directory user's first login creates their account (display name from
    displayName), later logins work; a wrong or empty password and an unknown name
    are refused; local accounts keep their own passwords; directory accounts cannot
    change their password here."""
    server = await make_server(directory=bind_dn_config(directory), open_registration=False)
    carol = await server.connect()
    result = await carol.login("carol", "carol's directory password")
    assert result["username"] == "carol" and result["display_name"] == "Carol Díaz"
    stored = await server.service.store.user_by_name("carol")
    assert stored.password_hash == DIRECTORY_HASH
    again = await server.connect()
    assert (await again.login("carol", "carol's directory password"))["username"] == "carol"
    for name, password in (("carol", "wrong"), ("nobody", "whatever")):
        attempt = await server.connect()
        await expect_error(attempt.login(name, password), ErrorCode.UNAUTHENTICATED)
    # An empty password (an anonymous bind to LDAP) never reaches the directory.
    empty = await server.connect()
    await expect_error(empty.login("carol", ""), ErrorCode.BAD_REQUEST)
    await expect_error(carol.request("auth.change_password", {
        "old_password": "carol's directory password", "new_password": "a new one 123"}),
        ErrorCode.FORBIDDEN)
    service_store = server.service.store
    local_id = service_store.ids.next_id()
    hasher = server.service.chat_services.accounts.hasher
    await service_store.create_user(local_id, "root", "Root", await hasher.hash(PASSWORD),
                                    ["admin"], 0)
    local = await server.connect()
    assert (await local.login("root", PASSWORD))["roles"] == ["admin"]


@pytest_twisted.ensureDeferred
async def test_search_then_bind_and_group_roles(make_server, directory, monkeypatch):
    """Search-then-bind with a service account finds the user's DN; membership of
    the admin group gives the admin role, and the role follows the directory."""
    monkeypatch.setenv("CHAT_LDAP_SERVICE", "service secret")
    config = DirectoryConfig(
        url=f"ldap://127.0.0.1:{directory}", search_base="ou=people," + BASE,
        search_filter="(uid={username})", service_dn="uid=searcher,ou=people," + BASE,
        service_password_env="CHAT_LDAP_SERVICE", admin_group="cn=chat-admins," + BASE,
        timeout=5)
    server = await make_server(directory=config, open_registration=False)
    carol = await server.connect()
    assert (await carol.login("carol", "carol's directory password"))["roles"] == ["admin"]
    dave = await server.connect()
    assert (await dave.login("dave", "dave's directory password"))["roles"] == []
    monkeypatch.setenv("CHAT_LDAP_SERVICE", "not the secret")
    refused = await server.connect()
    await expect_error(refused.login("dave", "dave's directory password"),
                       ErrorCode.UNAVAILABLE)


@pytest_twisted.ensureDeferred
async def test_an_unreachable_directory_answers_unavailable(make_server):
    """A directory nobody listens on: login answers unavailable (try again), not
    wrong credentials, and the server goes on serving."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    server = await make_server(directory=bind_dn_config(free), open_registration=False)
    attempt = await server.connect()
    error = await expect_error(attempt.login("carol", "anything"), ErrorCode.UNAVAILABLE)
    assert "directory" in error.message
    assert (await attempt.request("session.ping"))["ts"] > 0


@pytest.mark.parametrize("options, message", [
    ({"ldap-url": "http://x"}, "ldap:// or ldaps://"),
    ({"ldap-url": "ldap://x"}, "either --ldap-bind-dn"),
    ({"ldap-url": "ldap://x", "ldap-bind-dn": "uid=fixed"}, "{username}"),
    ({"ldap-url": "ldap://x", "ldap-search-base": "dc=x"}, "--ldap-service-dn"),
])
def test_directory_options_are_checked(options, message):
    """Wrong --ldap-* combinations are refused with a message naming the fix."""
    from twisted.python import usage

    from chatnet.tap import Options

    args = [f"--{k}={v}" for k, v in options.items()]
    with pytest.raises(usage.UsageError) as caught:
        Options().parseOptions(args)
    assert message in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_directory_accounts_do_not_resume_and_ldap_only_refuses_local_passwords(
        make_server, directory):
    """A directory account's token does not resume (its next reconnect asks the
    directory again, so a disabled account stops then); local accounts resume as
    before. With --ldap-only a local password is not accepted either."""
    server = await make_server(directory=bind_dn_config(directory), open_registration=False)
    carol = await server.connect()
    token = (await carol.login("carol", "carol's directory password"))["token"]
    resumed = await server.connect()
    error = await expect_error(resumed.resume(token), ErrorCode.UNAUTHENTICATED)
    assert "password" in error.message
    hasher = server.service.chat_services.accounts.hasher
    store = server.service.store
    await store.create_user(store.ids.next_id(), "root", "Root", await hasher.hash(PASSWORD),
                            ["admin"], 0)
    local = await server.connect()
    local_token = (await local.login("root", PASSWORD))["token"]
    again = await server.connect()
    assert (await again.resume(local_token))["username"] == "root"
    strict = await make_server(directory=bind_dn_config(directory, only=True),
                               open_registration=False)
    strict_store = strict.service.store
    await strict_store.create_user(strict_store.ids.next_id(), "root", "Root",
                                   await hasher.hash(PASSWORD), ["admin"], 0)
    refused = await strict.connect()
    await expect_error(refused.login("root", PASSWORD), ErrorCode.UNAUTHENTICATED)
    allowed = await strict.connect()
    assert (await allowed.login("carol", "carol's directory password"))["username"] == "carol"
