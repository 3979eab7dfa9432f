"""TLS for both ends (PROTOCOL.md 1: TLS 1.2 minimum, verified peers).

Server: :class:`ServerTLS` holds the listening socket's settings, made by
:func:`server_tls_options` from *cryptography* objects (pyOpenSSL's own are
deprecated), and can swap in a renewed certificate while listening. The
settings follow Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only,
forward-secret AEAD suites only (in TLS 1.2: ECDHE with AES-GCM or
ChaCha20-Poly1305), the key-exchange groups X25519, P-256 and P-384, no
compression, no renegotiation, and the certificate chain served in full. With
a client CA it requires client certificates (mutual TLS).

Clients use ``optionsForClientTLS``, which checks the server's certificate
chain and, through service_identity, its hostname or IP address.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL
from twisted.application.internet import TimerService
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from chatnet.wire.certs import DevPKI, ensure_dev_pki

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
    """

    log = Logger()

    def __init__(self, cert_path: Path, key_path: Path,
                 client_ca_path: Path | None = None) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.client_ca_path = client_ca_path
        self.options = server_tls_options(cert_path, key_path, client_ca_path)

    def reload(self) -> None:
        """Read the certificate, key and client CA files again.

        Raises:
            ValueError: a file is unreadable; the old settings stay in use.
        """
        self.options = server_tls_options(self.cert_path, self.key_path, self.client_ca_path)

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
            if pki.renewed or pki.created:
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
    """

    protocol = TLSMemoryBIOProtocol


def listening_endpoint(reactor: Any, port: int, interface: str) -> Any:
    """A TCP server endpoint (IPv6 when ``interface`` contains ``:``); wrap the
    factory in :class:`DirectTLSFactory` before listening."""
    if ":" in interface:
        return endpoints.TCP6ServerEndpoint(reactor, port, interface=interface)
    return endpoints.TCP4ServerEndpoint(reactor, port, interface=interface)


def client_tls_options(hostname: str, ca_path: str | Path | None = None,
                       client_cert: str | Path | None = None,
                       client_key: str | Path | None = None) -> Any:
    """TLS options for a client connection that verifies the server.

    Args:
        hostname: the name (or IP address) the server's certificate must match.
        ca_path: PEM file of the CA(s) to trust; None uses the system store.
        client_cert: PEM client certificate for servers that require one.
        client_key: its PEM private key (may be the same file as ``client_cert``).

    Returns:
        an ``IOpenSSLClientConnectionCreator``.
    """
    trust: Any = None
    if ca_path is not None:
        trust = _load_cas(Path(ca_path))
    kwargs: dict[str, Any] = {}
    if client_cert is not None:
        pem = Path(client_cert).read_bytes()
        if client_key is not None and Path(client_key) != Path(client_cert):
            pem = Path(client_key).read_bytes() + b"\n" + pem
        kwargs["clientCertificate"] = ssl.PrivateCertificate.loadPEM(pem)
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, acceptableProtocols=[ALPN],
                                   **kwargs)
