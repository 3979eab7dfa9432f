"""Client certificates tied to accounts (``--tls-client-cert-login``), over real mutual
TLS on loopback: the certificate's common name must be the user who logs in, resumes
or registers; the password is still checked. Without the option the client CA only
gates the network (any of its certificates may log in as anyone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python import usage

from chatnet.client.connection import ChatConnection, connect
from chatnet.client.core import TLSVerificationError
from chatnet.errors import ChatError, ErrorCode
from chatnet.tap import Options
from chatnet.wire.certs import make_ca
from tests.support.events import EventLog, barrier
from tests.support.pki import write_client_cert
from tests.support.server import PASSWORD, RunningServer

ANOTHER_USER = "this client certificate is for another user"


class Clients:
    """A client CA and certificates it issued, by username."""

    def __init__(self, directory: Path) -> None:
        self.ca = make_ca("client CA")
        self.ca_file = directory / "client-ca.pem"
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(self.ca.cert_pem())
        self.directory = directory
        self.files: dict[str, tuple[Path, Path]] = {}

    def cert(self, username: str) -> tuple[Path, Path]:
        if username not in self.files:
            self.files[username] = write_client_cert(self.directory, self.ca, username)
        return self.files[username]

    async def connect(self, server: RunningServer, as_user: str) -> ChatConnection:
        """A connection presenting ``as_user``'s certificate."""
        cert, key = self.cert(as_user)
        return await connect(reactor, "localhost", server.port, server.ca, cert, key)


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    return Clients(tmp_path / "clients")


async def registered(clients: Clients, server: RunningServer, *names: str) -> None:
    """Register each user over a connection with that user's own certificate."""
    for name in names:
        conn = await clients.connect(server, name)
        await conn.register(name, PASSWORD)
        await conn.close()


async def refused(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ChatError) as caught:
        await call
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    return caught.value.message


@pytest_twisted.ensureDeferred
async def test_own_certificate_logs_in_and_resumes(make_server, clients):
    """The right certificate with the right user and password logs in; its token
    resumes over another connection with the same certificate."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True)
    await registered(clients, server, "alice")
    conn = await clients.connect(server, "alice")
    result = await conn.login("Alice", PASSWORD)  # names are case-folded
    assert result["username"] == "alice"
    again = await clients.connect(server, "alice")
    assert (await again.resume(result["token"]))["username"] == "alice"
    await conn.close()
    await again.close()


@pytest_twisted.ensureDeferred
async def test_another_users_certificate_is_refused(make_server, clients):
    """A certificate from the right CA but made out to bob cannot log in as alice, even
    with alice's password; the message says the certificate is for another user."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True)
    await registered(clients, server, "alice", "bob")
    conn = await clients.connect(server, "bob")
    message = await refused(conn.login("alice", PASSWORD))
    assert message.startswith(f"{ANOTHER_USER} ('bob', not 'alice')")
    # The same answer with a wrong password: nothing is learnt about alice's password.
    assert await refused(conn.login("alice", "a wrong password")) == message
    # The connection may still log in as the certificate's user.
    assert (await conn.login("bob", PASSWORD))["username"] == "bob"
    await conn.close()


@pytest_twisted.ensureDeferred
async def test_password_is_still_checked(make_server, clients):
    """Certificate and password: the right certificate with a wrong password fails."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True)
    await registered(clients, server, "alice")
    conn = await clients.connect(server, "alice")
    assert await refused(conn.login("alice", "a wrong password")) == "wrong username or password"
    await conn.close()


@pytest_twisted.ensureDeferred
async def test_resume_with_another_users_certificate_is_refused_without_side_effects(
        make_server, clients):
    """alice's token over a connection with bob's certificate is refused, and under
    --single-session alice's own session is not ended by the attempt."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True,
                               single_session=True)
    await registered(clients, server, "alice", "bob")
    alice = await clients.connect(server, "alice")
    events = EventLog(alice)
    token = (await alice.login("alice", PASSWORD))["token"]
    thief = await clients.connect(server, "bob")
    message = await refused(thief.resume(token))
    assert message.startswith(f"{ANOTHER_USER} ('bob', not 'alice')")
    await barrier(alice)
    assert not events.pending("session.ended")
    await thief.close()
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_register_only_the_certificates_own_name(make_server, clients):
    """auth.register refuses a name other than the certificate's, and creates nothing."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True)
    conn = await clients.connect(server, "alice")
    message = await refused(conn.register("mallory", PASSWORD))
    assert message.startswith(f"{ANOTHER_USER} ('alice', not 'mallory')")
    mallory = await clients.connect(server, "mallory")
    assert await refused(mallory.login("mallory", PASSWORD)) == "wrong username or password"
    await mallory.register("mallory", PASSWORD)
    assert (await mallory.login("mallory", PASSWORD))["username"] == "mallory"
    await conn.close()
    await mallory.close()


@pytest_twisted.ensureDeferred
async def test_without_the_option_the_client_ca_is_only_a_network_gate(make_server, clients):
    """With --tls-client-ca alone (as before), any certificate from the CA may log in
    as any user who has the password."""
    server = await make_server(tls_client_ca=clients.ca_file)
    await registered(clients, server, "alice", "bob")
    conn = await clients.connect(server, "bob")
    assert (await conn.login("alice", PASSWORD))["username"] == "alice"
    await conn.close()


@pytest_twisted.ensureDeferred
async def test_no_or_foreign_client_certificate_is_refused_in_the_handshake(make_server,
                                                                           clients):
    """A client without a certificate, or with one from another CA, never reaches
    login; the message says the server wants one, or does not accept it."""
    server = await make_server(tls_client_ca=clients.ca_file, tls_client_cert_login=True)
    with pytest.raises(TLSVerificationError) as caught:
        await connect(reactor, "localhost", server.port, server.ca)
    assert "wants a client certificate" in caught.value.message
    strangers = Clients(clients.directory / "strangers")
    with pytest.raises(TLSVerificationError) as caught:
        await strangers.connect(server, "alice")
    assert "does not accept this client certificate" in caught.value.message


def test_option_needs_a_client_ca(tmp_path):
    """--tls-client-cert-login alone is a usage error naming both options."""
    with pytest.raises(usage.UsageError, match="--tls-client-cert-login needs --tls-client-ca"):
        Options().parseOptions(["--tls-client-cert-login", "--data-dir", str(tmp_path)])
    ca = tmp_path / "ca.pem"
    ca.write_bytes(make_ca().cert_pem())
    options = Options()
    options.parseOptions(["--tls-client-cert-login", "--tls-client-ca", str(ca),
                          "--data-dir", str(tmp_path)])
    assert options.config.tls_client_cert_login and options.config.tls_client_ca == ca
