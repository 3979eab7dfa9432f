"""TLS for both ends (PROTOCOL.md 1: TLS 1.2 minimum, verified peers).

Server: :class:`ServerTLS` holds the listening socket's settings, made by
:func:`server_tls_options` from *cryptography* objects (pyOpenSSL's own are
deprecated), and can swap in a renewed certificate while listening. The
settings follow Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only,
forward-secret AEAD suites only (in TLS 1.2: ECDHE with AES-GCM or
ChaCha20-Poly1305), the key-exchange groups X25519, P-256 and P-384, no
compression, no renegotiation, and the certificate chain served in full. With
a client CA it requires client certificates (mutual TLS).

Client: :class:`ClientTLS` checks the server's certificate chain against the
CA file (or the system's CAs), its dates and, through service_identity, its
hostname or IP address; optionally it also requires a pinned SHA-256
fingerprint (which, without a CA file, becomes the only trust anchor). A
refusal says what is wrong and what to do (:class:`CertificateRejected`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as X509VerificationError
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.application.internet import TimerService
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from chatnet.wire.certs import DevPKI, ensure_dev_pki, fingerprint_text, parse_pin

#: ALPN protocol name (optional for peers: a client without ALPN is accepted).
ALPN = b"chatnet/1"

#: TLS 1.2 cipher suites (OpenSSL names): Mozilla intermediate's ECDHE suites, all
#: AEAD (AES-GCM, ChaCha20-Poly1305) and forward-secret. Mozilla's DHE suites are
#: left out: they would need DH parameters and add nothing for our clients.
#: TLS 1.3 suites are all AEAD and forward-secret, so OpenSSL's defaults stay.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))
#: Key-exchange groups the server accepts, in its order of preference (Mozilla
#: intermediate). OpenSSL's default list adds X448 and P-521.
KEY_EXCHANGE_GROUPS = ("X25519", "prime256v1", "secp384r1")


def _set_groups(context: SSL.Context, groups: tuple[str, ...]) -> None:
    """Limit ``context``'s key-exchange groups to ``groups``.

    pyOpenSSL has no public call for a list of groups (only ``set_tmp_ecdh``,
    which allows exactly one curve), so this calls OpenSSL's
    ``SSL_CTX_set1_curves_list`` through cryptography's OpenSSL binding, which
    pyOpenSSL itself uses, on the context's handle. If either is missing (a
    future pyOpenSSL), it falls back to the public ``set_tmp_ecdh`` with P-256
    alone: still within the profile, at the cost of a HelloRetryRequest for
    clients that lead with X25519. tests/core/test_tls_server.py checks the
    result with sslyze.
    """
    try:
        from cryptography.hazmat.bindings.openssl.binding import Binding

        handle = context._context  # pyOpenSSL's SSL_CTX pointer (see above)
        set_list = Binding().lib.SSL_CTX_set1_curves_list
    except (ImportError, AttributeError):
        context.set_tmp_ecdh(ec.SECP256R1())
        return
    if set_list(handle, ":".join(groups).encode("ascii")) != 1:
        raise ValueError(f"OpenSSL refused the key-exchange groups {groups}")


#: OpenSSL's option refusing renegotiation (OpenSSL >= 1.1.0h; pyOpenSSL defines it
#: only where OpenSSL has it, and its type stubs not at all).
_NO_RENEGOTIATION: int = SSL.OP_NO_RENEGOTIATION  # type: ignore[attr-defined]


class HardenedCertificateOptions(ssl.CertificateOptions):
    """``CertificateOptions`` whose context also refuses renegotiation and offers
    only :data:`KEY_EXCHANGE_GROUPS`.

    Twisted makes the context once, on the first ``getContext`` call, and every
    connection is made from it; this override adjusts it at that moment, before
    any connection has used it (pyOpenSSL forbids changing a used context).
    """

    _hardened: SSL.Context | None = None

    def getContext(self) -> SSL.Context:
        """The (cached) OpenSSL context, restricted as the class says."""
        context = super().getContext()
        if context is not self._hardened:
            # OP_NO_RENEGOTIATION: no TLS 1.2 renegotiation, from either side
            # (OpenSSL still announces secure renegotiation, RFC 5746).
            context.set_options(_NO_RENEGOTIATION)
            _set_groups(context, KEY_EXCHANGE_GROUPS)
            self._hardened = context
        return context


def _load_cas(path: Path) -> Any:
    """A Twisted trust root of every certificate in a PEM file."""
    cas = [ssl.Certificate.loadPEM(c.public_bytes(Encoding.PEM))
           for c in x509.load_pem_x509_certificates(path.read_bytes())]
    return ssl.trustRootFromCertificates(cas)


def server_tls_options(cert_path: Path, key_path: Path,
                       client_ca_path: Path | None = None) -> HardenedCertificateOptions:
    """TLS options for the listening socket (the module docstring says which).

    Args:
        cert_path: PEM file: the server certificate first, then its chain
            (intermediates and, for the development CA, the CA itself); all
            of it is sent to clients.
        key_path: PEM private key of the certificate.
        client_ca_path: PEM CA certificate(s); when given, clients must present a
            certificate signed by one of them.

    Raises:
        ValueError: a file holds no certificate or an unreadable key.
    """
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    key = load_pem_private_key(key_path.read_bytes(), None)
    kwargs: dict[str, Any] = {}
    if client_ca_path is not None:
        kwargs["trustRoot"] = _load_cas(client_ca_path)
    # Twisted's annotations name pyOpenSSL types; it takes (and prefers)
    # cryptography objects at run time (TWISTED-NOTES.md section 2).
    return HardenedCertificateOptions(
        privateKey=key, certificate=chain[0], extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2, acceptableProtocols=[ALPN],
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
        **kwargs)


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The listening socket's TLS settings, re-readable while it listens.

    Give it to :class:`DirectTLSFactory`. :meth:`reload` reads the files again
    (a renewed certificate): connections made afterwards use the new
    certificate, open ones keep theirs.

    Args:
        cert_path: PEM certificate chain (see :func:`server_tls_options`).
        key_path: its PEM private key.
        client_ca_path: PEM CA(s) for client certificates, or None.

    Raises:
        ValueError: as :func:`server_tls_options`.
        OpenSSL.SSL.Error: the key does not belong to the certificate.
    """

    def __init__(self, cert_path: Path, key_path: Path,
                 client_ca_path: Path | None = None) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.client_ca_path = client_ca_path
        self.options = self._load()

    def _load(self) -> HardenedCertificateOptions:
        options = server_tls_options(self.cert_path, self.key_path, self.client_ca_path)
        # Make the OpenSSL context now: it checks that key and certificate belong
        # together here rather than at the next client's handshake.
        options.getContext()
        return options

    def reload(self) -> None:
        """Read the certificate, key and client CA files again.

        Raises:
            ValueError, OpenSSL.SSL.Error: a file is unreadable, or the key does
                not match; the old settings stay in use.
        """
        self.options = self._load()

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A server-side OpenSSL connection with the current settings."""
        return self.options.serverConnectionForTLS(tlsProtocol)


#: Seconds between two checks of the development server certificate.
RENEWAL_CHECK_INTERVAL = 24 * 3600.0


def log_dev_pki(log: Logger, pki: DevPKI) -> None:
    """Say what :func:`~chatnet.wire.certs.ensure_dev_pki` found or did, with the
    fingerprints (clients trust the CA file, or pin the CA's fingerprint)."""
    log.info("{what} development CA: clients should trust {ca} "
             "(SHA-256 fingerprint {fingerprint})",
             what="created" if pki.created else "using", ca=str(pki.ca_cert.resolve()),
             fingerprint=pki.ca_fingerprint)
    if pki.renewed:
        log.info("issued a new development server certificate because {reason}: valid "
                 "until {not_after:%Y-%m-%d %H:%M} UTC, SHA-256 fingerprint {fingerprint}",
                 reason=pki.renewed, not_after=pki.server_not_after,
                 fingerprint=pki.server_fingerprint)
    else:
        log.info("development server certificate valid until {not_after:%Y-%m-%d %H:%M} "
                 "UTC (SHA-256 fingerprint {fingerprint})",
                 not_after=pki.server_not_after, fingerprint=pki.server_fingerprint)


class DevCertificateRenewal(TimerService):
    """Checks the development server certificate every day and renews it in place.

    When :func:`~chatnet.wire.certs.ensure_dev_pki` issues a new certificate (it
    expires within ``RENEW_BEFORE_DAYS`` days...), the listener's :class:`ServerTLS`
    reloads it: new connections get the new certificate, open ones keep theirs,
    and nothing restarts. A failed check is logged and tried again next time.

    Args:
        tls_dir: the development PKI's directory (``<data-dir>/tls``).
        server_tls: the listener's TLS settings to reload.
        clock: drives the loop and tells the time (``seconds()``).
        interval: seconds between checks.

    Attributes:
        last: the :class:`~chatnet.wire.certs.DevPKI` of the last check, if any.
    """

    log = Logger()

    def __init__(self, tls_dir: Path, server_tls: ServerTLS, clock: Any,
                 interval: float = RENEWAL_CHECK_INTERVAL) -> None:
        super().__init__(interval, self.check)
        self.clock = clock  # TimerService drives its loop with it
        self.time_source = clock
        self.tls_dir = tls_dir
        self.server_tls = server_tls
        self.last: DevPKI | None = None

    def check(self) -> DevPKI | None:
        """Renew the certificate if it needs it and reload the listener's TLS settings.

        Returns:
            what was found or done, or None if the check failed (logged).
        """
        now = datetime.datetime.fromtimestamp(self.time_source.seconds(), datetime.UTC)
        try:
            pki = ensure_dev_pki(self.tls_dir, now)
            # Another process sharing the data directory (a worker) may have
            # renewed it: a certificate other than the last one seen is loaded too.
            changed = self.last is not None and (
                pki.server_fingerprint != self.last.server_fingerprint)
            if pki.renewed or pki.created or changed:
                self.server_tls.reload()
        except Exception:
            self.log.failure("could not renew the development server certificate")
            return None
        self.last = pki
        if pki.created:
            self.log.warn("the development CA was about to expire and was replaced: "
                          "clients must trust the new {ca}", ca=str(pki.ca_cert.resolve()))
        if pki.renewed:
            log_dev_pki(self.log, pki)
            self.log.info("new connections use the new development server certificate")
        return pki


class DirectTLSFactory(TLSMemoryBIOFactory):
    """TLS around a protocol factory, writing each ``write`` as it comes.

    Twisted's default TLS transport gathers small writes and schedules one
    flush per connection; chatnet's outbox already gathers a reactor turn's
    frames for all connections and flushes them with one scheduled call, so
    the per-connection gathering is skipped here.

    A wrapped factory may refuse a connection by building no protocol (None):
    then no TLS state is made for it at all, and Twisted closes the socket at
    once, which is the cheapest a refusal can be.
    """

    protocol = TLSMemoryBIOProtocol

    def buildProtocol(self, addr: Any) -> Any:
        """The TLS protocol around the wrapped factory's, or None if it refused."""
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


#: Connections the kernel may hold waiting for ``accept``. Twisted's default of
#: 50 drops connection attempts when hundreds of clients come back at once
#: (a reconnect storm, or unauthenticated connections cut by the login deadline
#: reconnecting together); the kernel caps it at ``net.core.somaxconn``.
LISTEN_BACKLOG = 1024


def listening_endpoint(reactor: Any, port: int, interface: str) -> Any:
    """A TCP server endpoint (IPv6 when ``interface`` contains ``:``) with a
    backlog of :data:`LISTEN_BACKLOG`; wrap the factory in
    :class:`DirectTLSFactory` before listening."""
    if ":" in interface:
        return endpoints.TCP6ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG,
                                            interface=interface)
    return endpoints.TCP4ServerEndpoint(reactor, port, backlog=LISTEN_BACKLOG,
                                        interface=interface)


def adopted_endpoint(reactor: Any, fileno: int) -> Any:
    """A server endpoint accepting on an inherited listening socket (a worker of
    ``--workers``: the parent bound it); its address family is read off the socket."""
    import socket

    with socket.socket(fileno=os.dup(fileno)) as sock:
        family = sock.family
    return endpoints.AdoptedStreamServerEndpoint(reactor, fileno, family)


def peer_certificate_user(transport: Any) -> str | None:
    """The case-folded subject common name of the client certificate on a server-side
    TLS transport (mutual TLS), or None without a certificate or a CN.

    Call it once the handshake has completed (``IHandshakeListener``).
    """
    handle = transport.getHandle() if hasattr(transport, "getHandle") else None
    if not isinstance(handle, SSL.Connection):
        return None
    # pyOpenSSL >= 24.3 API; the installed types-pyOpenSSL stubs predate as_cryptography.
    connection: Any = handle
    cert: x509.Certificate | None = connection.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value).strip().casefold() if names else None


# -- client side -------------------------------------------------------------------------

#: OpenSSL verification errors that mean "the chain does not end at a CA this
#: client trusts" (x509_vfy.h: unable to get issuer, self-signed leaf, self-signed
#: CA in the chain, unable to get local issuer, unable to verify the leaf's
#: signature, untrusted).
_UNTRUSTED = frozenset({2, 18, 19, 20, 21, 27})
#: X509_V_ERR_CERT_SIGNATURE_FAILURE, X509_V_ERR_CERT_NOT_YET_VALID,
#: X509_V_ERR_CERT_HAS_EXPIRED.
_BAD_SIGNATURE, _NOT_YET_VALID, _EXPIRED = 7, 9, 10


class CertificateRejected(Exception):
    """The client refused the server's certificate during the TLS handshake.

    ``str(error)`` says what is wrong and what to do; the client library raises it
    as :class:`chatnet.client.core.TLSVerificationError`.
    """


def _sha256(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _who(name: x509.Name) -> str:
    """A certificate name for people: its common name, else the whole name."""
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return repr(str(common[0].value)) if common else repr(name.rfc4514_string())


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([str(n) for n in san.get_values_for_type(x509.DNSName)]
            + [str(a) for a in san.get_values_for_type(x509.IPAddress)])


_TRUST_HINT = ("trust its CA with ca= (--ca FILE; a development server's CA is "
               "<data-dir>/tls/ca.pem) or pin its fingerprint with pin= (--pin)")


def _describe_openssl_error(err: int, depth: int, cert: x509.Certificate,
                            system_store: bool) -> str:
    """What OpenSSL's verification error ``err`` at ``depth`` means, and what to do."""
    whose = ("the server's certificate" if depth == 0
             else f"the certificate of the server's CA {_who(cert.subject)}")
    if err == _EXPIRED:
        return (f"{whose} has expired (not valid after {_when(cert.not_valid_after_utc)}); "
                "the server's operator must renew it, or this computer's clock is wrong")
    if err == _NOT_YET_VALID:
        return (f"{whose} is not valid yet (not before {_when(cert.not_valid_before_utc)}); "
                "check this computer's clock (and the server's)")
    if err == _BAD_SIGNATURE:
        return (f"{whose} does not carry a valid signature of {_who(cert.issuer)}, the CA it "
                "names: it is forged or damaged; do not use this server until its operator "
                "has checked it")
    if err in _UNTRUSTED:
        where = "the system's CAs do not include it" if system_store else (
            "it is not in the CA file given")
        if err == 18:
            return (f"the server's certificate is self-signed ({_who(cert.subject)}) and "
                    f"{where}; {_TRUST_HINT}")
        issuer = cert.subject if err == 19 else cert.issuer
        return (f"the server's certificate was issued by {_who(issuer)}, which this client "
                f"does not trust ({where}); {_TRUST_HINT}")
    return f"OpenSSL refused {whose} (verification error {err})"


def _check_name(cert: x509.Certificate, hostname: str) -> str | None:
    """Why ``cert`` is not valid for ``hostname`` (service_identity), or None."""
    try:
        if _is_ip(hostname):
            verify_certificate_ip_address(cert, hostname)
        else:
            verify_certificate_hostname(cert, hostname)
    except (VerificationError, CertificateError):
        names = _san_names(cert)
        if not names:
            return ("the server's certificate names no host (it has no subject "
                    "alternative name); the server's operator must replace it")
        which = "that name" if len(names) == 1 else "one of those names"
        return (f"the server's certificate is for {', '.join(names)}, not {hostname}; "
                f"connect with {which}, or have the server's operator add {hostname} "
                f"to its certificate")
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _ServerCheck:
    """The certificate verification of one client connection (an OpenSSL verify
    callback): chain trust, dates, host name, and the pin.

    OpenSSL calls it for each certificate of the chain it built, from the top
    down to the server's own (depth 0), once per error and once more when a
    certificate passes; the server's passing call decides. A refusal records a
    :class:`CertificateRejected` on the TLS protocol (``failVerification``) and
    fails the handshake, before any application data is sent.
    """

    log = Logger()

    def __init__(self, settings: ClientTLS, tls_protocol: TLSMemoryBIOProtocol) -> None:
        self.settings = settings
        self.tls_protocol: TLSMemoryBIOProtocol | None = tls_protocol
        self.chain: dict[int, x509.Certificate] = {}

    def __call__(self, connection: SSL.Connection, cert: Any, err: int, depth: int,
                 ok: int) -> bool:
        try:
            current = cert.to_cryptography()
            self.chain[depth] = current
            settings = self.settings
            if not ok:
                if settings.pin_only and err in _UNTRUSTED:
                    return True  # trust comes from the pin, checked at depth 0
                return self._refuse(_describe_openssl_error(
                    err, depth, current, settings.trust is None))
            if depth > 0:
                return True
            problem = _check_name(current, settings.hostname) or self._check_pin(current)
            if problem:
                return self._refuse(problem)
            self.tls_protocol = None  # verified; no reference cycle is left behind
            return True
        except Exception:
            # An exception inside an OpenSSL callback would be lost: log it, refuse.
            self.log.failure("while verifying the server's certificate")
            return self._refuse("the server's certificate could not be checked "
                                "(an error in the client; see its log)")

    def _check_pin(self, leaf: x509.Certificate) -> str | None:
        pin = self.settings.pin
        if pin is None:
            return None
        chain = [self.chain[d] for d in sorted(self.chain)]
        anchor = next((c for c in chain if _sha256(c) == pin), None)
        if anchor is None:
            seen = ", ".join(fingerprint_text(_sha256(c)) for c in chain)
            return (f"the server's certificates do not match the pinned SHA-256 fingerprint "
                    f"{fingerprint_text(pin)} (its certificate chain has {seen}); if its "
                    f"certificate or CA was replaced on purpose, pin the new fingerprint "
                    f"(the server logs its CA's at start)")
        if not self.settings.pin_only:
            return None  # OpenSSL verified the chain against the trusted CAs
        # Pin without a CA file: the pinned certificate is the only trust anchor;
        # cryptography's X.509 path validation checks the chain up to it.
        host = self.settings.hostname
        subject: Any = (x509.IPAddress(ipaddress.ip_address(host)) if _is_ip(host)
                        else x509.DNSName(host))
        verifier = (PolicyBuilder().store(Store([anchor]))
                    .time(datetime.datetime.now(datetime.UTC))
                    .build_server_verifier(subject))
        try:
            verifier.verify(leaf, [c for c in chain[1:] if c is not anchor])
        except X509VerificationError as exc:
            return (f"the server's certificate does not lead to the pinned certificate "
                    f"{_who(anchor.subject)}: {exc}")
        return None

    def _refuse(self, message: str) -> bool:
        protocol, self.tls_protocol = self.tls_protocol, None
        if protocol is not None:
            protocol.failVerification(Failure(CertificateRejected(message)))
        return False


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Client TLS settings that verify the server and explain a refusal.

    The server's chain must lead to a trusted CA (``ca_path``, else the system's
    CAs), be within its dates, and name ``hostname`` (service_identity).
    With a ``pin``, one certificate of the verified chain (the server's own or its
    CA's) must also have that SHA-256 fingerprint. With a pin and no ``ca_path``,
    the pinned certificate replaces the CA file: the chain must lead to it (it is
    the only trust anchor), and dates and name are still checked; the system's
    CAs play no part. A refusal fails the handshake with a
    :class:`CertificateRejected` that says what is wrong.

    Args:
        hostname: the name (or IP address) the server's certificate must match.
        ca_path: PEM file of the CA(s) to trust; None: the system's CAs, or the pin.
        client_cert: PEM client certificate for servers that require one (it may
            hold the key too, and CA certificates after it).
        client_key: its PEM private key, when not in ``client_cert``.
        pin: a SHA-256 fingerprint (:func:`parse_pin`'s forms).

    Raises:
        ValueError: a bad pin, or a file without a certificate or key.
    """

    def __init__(self, hostname: str, ca_path: str | Path | None = None,
                 client_cert: str | Path | None = None,
                 client_key: str | Path | None = None, pin: str | None = None) -> None:
        self.hostname = hostname
        self.pin = parse_pin(pin) if pin is not None else None
        self.trust = _load_cas(Path(ca_path)) if ca_path is not None else None
        self.pin_only = self.pin is not None and self.trust is None
        kwargs: dict[str, Any] = {}
        if client_cert is not None:
            pem = Path(client_cert).read_bytes()
            chain = x509.load_pem_x509_certificates(pem)
            key_pem = Path(client_key).read_bytes() if client_key is not None else pem
            kwargs.update(certificate=chain[0], extraCertChain=chain[1:],
                          privateKey=load_pem_private_key(key_pem, None))
        self._options = ssl.CertificateOptions(
            trustRoot=self.trust or ssl.platformTrust(), acceptableProtocols=[ALPN],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2, **kwargs)
        # Server Name Indication carries DNS names only, never addresses.
        self._sni = None if _is_ip(hostname) else hostname.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A client OpenSSL connection that checks the server (class docstring)."""
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                              _ServerCheck(self, tlsProtocol))
        return connection


def client_tls_options(hostname: str, ca_path: str | Path | None = None,
                       client_cert: str | Path | None = None,
                       client_key: str | Path | None = None,
                       pin: str | None = None) -> ClientTLS:
    """TLS settings for a client connection that verifies the server (:class:`ClientTLS`).

    Args:
        hostname: the name (or IP address) the server's certificate must match.
        ca_path: PEM file of the CA(s) to trust; None uses the system store (or,
            with ``pin``, the pinned certificate alone).
        client_cert: PEM client certificate for servers that require one.
        client_key: its PEM private key (may be the same file as ``client_cert``).
        pin: SHA-256 fingerprint of the server's certificate or of its CA.

    Raises:
        ValueError: a bad pin or an unreadable file.
    """
    return ClientTLS(hostname, ca_path, client_cert, client_key, pin)
