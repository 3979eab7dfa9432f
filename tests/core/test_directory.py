"""Directory (LDAP) login against a real OpenLDAP ``slapd`` on loopback (started
per test from a small LDIF, tests/support/slapd.py), spoken to by the server's
ldap3 client over TCP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from chatnet.cred.directory import DIRECTORY_HASH, DirectoryConfig
from chatnet.errors import ErrorCode
from tests.support.chat import expect_error
from tests.support.server import PASSWORD
from tests.support.slapd import Slapd, available

BASE = "dc=example,dc=com"
LDIF = f"""dn: {BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

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
"""


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A real slapd on loopback serving :data:`LDIF` (skipped without slapd unless
    ``CHATNET_REQUIRE_SERVICES=1``)."""
    if not available():
        if os.environ.get("CHATNET_REQUIRE_SERVICES") == "1":
            pytest.fail("slapd is not installed (scripts/test installs Debian's slapd)")
        pytest.skip("slapd is not installed (Debian package slapd)")
    server = Slapd(tmp_path / "slapd", BASE, LDIF).start()
    yield server
    server.stop()


@pytest.fixture
def directory(slapd: Slapd) -> int:
    """The slapd's port."""
    return slapd.port


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


@pytest_twisted.ensureDeferred
async def test_a_person_removed_from_the_directory_cannot_log_in(make_server, slapd):
    """Once the directory entry is gone (the person left), the password login is
    refused, and the old token does not resume either."""
    server = await make_server(directory=bind_dn_config(slapd.port), open_registration=False)
    dave = await server.connect()
    token = (await dave.login("dave", "dave's directory password"))["token"]
    slapd.delete("uid=dave,ou=people," + BASE)
    again = await server.connect()
    await expect_error(again.login("dave", "dave's directory password"),
                       ErrorCode.UNAUTHENTICATED)
    resumed = await server.connect()
    await expect_error(resumed.resume(token), ErrorCode.UNAUTHENTICATED)


@pytest_twisted.ensureDeferred
async def test_slapd_down_answers_unavailable_and_local_accounts_still_work(make_server,
                                                                         slapd):
    """With slapd stopped, directory logins answer unavailable while a local
    account still logs in."""
    server = await make_server(directory=bind_dn_config(slapd.port), open_registration=False)
    hasher = server.service.chat_services.accounts.hasher
    store = server.service.store
    await store.create_user(store.ids.next_id(), "root", "Root", await hasher.hash(PASSWORD),
                            ["admin"], 0)
    slapd.stop()
    attempt = await server.connect()
    await expect_error(attempt.login("carol", "carol's directory password"),
                       ErrorCode.UNAVAILABLE)
    local = await server.connect()
    assert (await local.login("root", PASSWORD))["username"] == "root"
