"""The client library's checks of the server's certificate (PROTOCOL.md 1), against real
TLS servers on loopback with certificates made by the test: an unknown CA, a wrong
host name and an expired certificate are refused with a message that says what is
wrong and what to do; an optional SHA-256 pin (of the server's certificate or its
CA's) is required in addition to the CA file, or replaces it."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor

from chatnet.client.connection import client_endpoint, connect
from chatnet.client.core import TLSVerificationError
from chatnet.client.session import ChatSession
from chatnet.errors import ErrorCode
from chatnet.wire.certs import CertPair, make_ca, make_leaf
from tests.support.pki import (
    PKI,
    dev_server_leaf,
    fingerprint,
    load_dev_ca,
    write_dev_leaf,
    write_pki,
)
from tests.support.server import PASSWORD, RunningServer


async def serve(make_server, pki: PKI) -> RunningServer:
    """A real chatnet server presenting ``pki``'s certificate chain."""
    return await make_server(tls_cert=pki.cert_file, tls_key=pki.key_file)


async def refused(server: RunningServer, host: str = "localhost", **kwargs: object) -> str:
    """Connect, expect TLSVerificationError (code unavailable), return its message."""
    with pytest.raises(TLSVerificationError) as caught:
        await connect(reactor, host, server.port, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.UNAVAILABLE
    return caught.value.message


async def accepted(server: RunningServer, host: str = "localhost", **kwargs: object) -> None:
    """Connect (session.hello answered), then close."""
    conn = await connect(reactor, host, server.port, **kwargs)  # type: ignore[arg-type]
    assert conn.hello_result is not None
    await conn.close()


# -- refusals with a clear message -----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unknown_ca_is_refused_naming_the_issuer(make_server, tmp_path):
    """A server certificate from a CA the client does not trust: the message names
    the issuer and says to trust its CA (--ca) or pin it (--pin)."""
    server = await serve(make_server, write_pki(tmp_path / "server"))
    other = write_pki(tmp_path / "other", ca=make_ca("someone else's CA"))
    message = await refused(server, ca=other.ca_file)
    assert message.startswith("the server's certificate was issued by 'test CA', which this "
                              "client does not trust (it is not in the CA file given)")
    assert "--ca" in message and "--pin" in message


@pytest_twisted.ensureDeferred
async def test_unknown_ca_against_the_system_store_says_so(make_server, tmp_path):
    """Without a CA file the system's CAs are used; the message says they lack it."""
    server = await serve(make_server, write_pki(tmp_path / "server"))
    message = await refused(server)
    assert "the system's CAs do not include it" in message


@pytest_twisted.ensureDeferred
async def test_wrong_host_name_is_refused_listing_the_certificate_names(make_server, tmp_path):
    """A certificate from the trusted CA but for other names: the message lists the
    names it is for and the name that was asked for."""
    pki = write_pki(tmp_path / "server", hostnames=("chat.example.org",), addresses=())
    server = await serve(make_server, pki)
    message = await refused(server, ca=pki.ca_file)
    assert message.startswith("the server's certificate is for chat.example.org, not "
                              "localhost; connect with that name")
    message = await refused(server, "127.0.0.1", ca=pki.ca_file)
    assert "is for chat.example.org, not 127.0.0.1" in message


@pytest_twisted.ensureDeferred
async def test_ip_address_must_be_in_the_certificate(make_server, tmp_path):
    """Connecting by address checks the certificate's IP addresses."""
    pki = write_pki(tmp_path / "server", hostnames=("localhost",), addresses=("127.0.0.1",))
    server = await serve(make_server, pki)
    await accepted(server, "127.0.0.1", ca=pki.ca_file)


@pytest_twisted.ensureDeferred
async def test_expired_certificate_is_refused_with_its_end_date(make_server, tmp_path):
    """An expired server certificate: the message says so, with the date it ended and
    what to do."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    pki = write_pki(tmp_path / "server", not_before=start, days=1)
    server = await serve(make_server, pki)
    message = await refused(server, ca=pki.ca_file)
    end = (start + datetime.timedelta(days=1)).strftime("%Y-%m-%d %H:%M UTC")
    assert message == (f"the server's certificate has expired (not valid after {end}); the "
                       "server's operator must renew it, or this computer's clock is wrong")


@pytest_twisted.ensureDeferred
async def test_expired_ca_is_refused_naming_the_ca(make_server, tmp_path):
    """An expired CA certificate is reported as the CA's, not the server's."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    ca = make_ca("old CA", days=1, not_before=start)
    pki = write_pki(tmp_path / "server", ca=ca)
    server = await serve(make_server, pki)
    message = await refused(server, ca=pki.ca_file)
    assert message.startswith("the certificate of the server's CA 'old CA' has expired")


@pytest_twisted.ensureDeferred
async def test_trusted_certificate_is_accepted(make_server, tmp_path):
    """The control case: the right CA, name and dates connect."""
    pki = write_pki(tmp_path / "server")
    await accepted(await serve(make_server, pki), ca=pki.ca_file)


# -- pinning -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_pin_with_a_ca_file_accepts_the_leaf_or_the_ca(make_server, tmp_path):
    """With a CA file, a pin of the server's certificate or of its CA (any case, colons
    optional) is accepted."""
    pki = write_pki(tmp_path / "server")
    server = await serve(make_server, pki)
    await accepted(server, ca=pki.ca_file, pin=fingerprint(pki.ca))
    await accepted(server, ca=pki.ca_file, pin=fingerprint(pki.leaf, colons=False))
    await accepted(server, ca=pki.ca_file, pin=fingerprint(pki.leaf).lower())


@pytest_twisted.ensureDeferred
async def test_wrong_pin_is_refused_showing_expected_and_seen(make_server, tmp_path):
    """A pin that matches none of the server's certificates is refused even though the
    CA is trusted; the message shows the pinned and the presented fingerprints."""
    pki = write_pki(tmp_path / "server")
    server = await serve(make_server, pki)
    wrong = fingerprint(make_ca("unrelated"))
    message = await refused(server, ca=pki.ca_file, pin=wrong)
    assert message.startswith("the server's certificates do not match the pinned SHA-256 "
                              f"fingerprint {wrong}")
    assert fingerprint(pki.leaf) in message and fingerprint(pki.ca) in message


@pytest_twisted.ensureDeferred
async def test_pin_without_a_ca_file_replaces_it(make_server, tmp_path):
    """Without a CA file the pinned CA is the trust anchor: the development-style chain
    connects with the CA's fingerprint alone (no system CA knows it); a wrong pin is
    refused."""
    pki = write_pki(tmp_path / "server")
    server = await serve(make_server, pki)
    await accepted(server, pin=fingerprint(pki.ca))
    await accepted(server, pin=fingerprint(pki.leaf))
    message = await refused(server, pin=fingerprint(make_ca("unrelated")))
    assert "do not match the pinned SHA-256 fingerprint" in message


@pytest_twisted.ensureDeferred
async def test_pin_without_a_ca_file_still_checks_name_and_dates(make_server, tmp_path):
    """Pinning the CA does not waive the other checks: another host name and an
    expired certificate are refused, with the same messages as with a CA file."""
    pki = write_pki(tmp_path / "named", hostnames=("chat.example.org",), addresses=())
    server = await serve(make_server, pki)
    message = await refused(server, pin=fingerprint(pki.ca))
    assert "is for chat.example.org, not localhost" in message
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    pki = write_pki(tmp_path / "expired", not_before=start, days=1)
    server = await serve(make_server, pki)
    message = await refused(server, pin=fingerprint(pki.ca))
    assert message.startswith("the server's certificate has expired")


@pytest_twisted.ensureDeferred
async def test_impostor_presenting_the_pinned_ca_is_refused(make_server, tmp_path):
    """A server that sends the genuine (public) CA certificate after its own leaf,
    signed by another key under the same CA name, does not pass a pin of that CA."""
    genuine = make_ca("test CA")
    impostor_ca = make_ca("test CA")  # same name, different key
    leaf = make_leaf(impostor_ca, "test server", hostnames=["localhost"])
    pki = write_pki(tmp_path / "impostor", ca=impostor_ca, leaf=leaf, chain=[genuine])
    server = await serve(make_server, pki)
    await refused(server, pin=fingerprint(genuine))
    # Also when it sends its own CA too.
    pki = write_pki(tmp_path / "impostor2", ca=impostor_ca, leaf=leaf,
                    chain=[impostor_ca, genuine])
    server = await serve(make_server, pki)
    await refused(server, pin=fingerprint(genuine))


def forged_leaf(genuine: CertPair, forger: CertPair) -> CertPair:
    """A server certificate that names ``genuine`` as its issuer (name and key id) but
    is signed with ``forger``'s key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test server")]))
            .issuer_name(genuine.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                genuine.key.public_key()), False)
            .sign(forger.key, hashes.SHA256()))
    return CertPair(cert, key)


@pytest_twisted.ensureDeferred
async def test_forged_certificate_under_the_pinned_ca_is_refused(make_server, tmp_path):
    """A certificate claiming the pinned CA as issuer but not signed by it is refused,
    with or without the CA file, and the message says it is forged."""
    genuine = make_ca("test CA")
    leaf = forged_leaf(genuine, make_ca("forger"))
    pki = write_pki(tmp_path / "forged", ca=genuine, leaf=leaf)
    server = await serve(make_server, pki)
    for kwargs in ({"pin": fingerprint(genuine)}, {"ca": pki.ca_file}):
        message = await refused(server, **kwargs)
        assert message.startswith("the server's certificate does not carry a valid signature "
                                  "of 'test CA'"), message


@pytest_twisted.ensureDeferred
async def test_pin_of_a_ca_the_server_does_not_send(make_server, tmp_path):
    """A server that sends only its own certificate: without a CA file a pin of its
    certificate works, a pin of the CA cannot be checked and is refused."""
    pki = write_pki(tmp_path / "server", chain=[])
    server = await serve(make_server, pki)
    await accepted(server, pin=fingerprint(pki.leaf))
    await refused(server, pin=fingerprint(pki.ca))
    # With the CA file the verified chain includes the CA, so its pin matches.
    await accepted(server, ca=pki.ca_file, pin=fingerprint(pki.ca))


@pytest_twisted.ensureDeferred
async def test_ca_pin_survives_the_renewal_of_the_development_leaf(server):
    """The CA fingerprint the server logs still works after the leaf is re-issued."""
    pki = server.service.cert_renewal.last
    assert pki is not None
    ca_pin = pki.ca_fingerprint
    await accepted(server, pin=ca_pin)
    # An old-style two-year leaf on disk makes the next check issue a new one.
    ca = load_dev_ca(server.ca.parent)
    write_dev_leaf(server.ca.parent, dev_server_leaf(ca, days=730), ca)
    renewed = server.service.cert_renewal.check()
    assert renewed is not None and renewed.renewed is not None
    assert renewed.server_fingerprint != pki.server_fingerprint
    await accepted(server, pin=ca_pin)
    await accepted(server, ca=server.ca, pin=renewed.server_fingerprint)


@pytest_twisted.ensureDeferred
async def test_chat_session_takes_a_pin(server):
    """ChatSession(pin=...) logs in with only the CA fingerprint, no CA file."""
    pki = server.service.cert_renewal.last
    assert pki is not None
    session = ChatSession(reactor, "localhost", server.port, "alice", PASSWORD,
                          pin=pki.ca_fingerprint)
    result = await session.start(register=True)
    assert result["username"] == "alice"
    await session.close()


@pytest.mark.parametrize("pin", ["", "AB:CD", "zz" * 32, "AB" * 33])
def test_malformed_pin_is_a_value_error(pin):
    """A pin that is not 64 hex digits is refused at once, saying what it must be."""
    with pytest.raises(ValueError, match="SHA-256 fingerprint: 64 hex digits"):
        client_endpoint(reactor, "localhost", 5443, pin=pin)
    with pytest.raises(ValueError, match="SHA-256 fingerprint"):
        ChatSession(reactor, "localhost", 5443, "alice", PASSWORD, pin=pin)
