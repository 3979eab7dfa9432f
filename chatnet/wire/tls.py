"""TLS context options for both ends (PROTOCOL.md 1: TLS 1.2 minimum, verified peers).

The server builds ``CertificateOptions`` from *cryptography* objects (pyOpenSSL
objects are deprecated); with a client CA it requires client certificates
(mutual TLS). Clients use ``optionsForClientTLS``, which checks the server's
certificate chain and, through service_identity, its hostname or IP address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from twisted.internet import endpoints, ssl
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

#: ALPN protocol name (optional for peers: a client without ALPN is accepted).
ALPN = b"chatnet/1"


def server_tls_options(cert_path: Path, key_path: Path,
                       client_ca_path: Path | None = None) -> ssl.CertificateOptions:
    """TLS options for the listening socket.

    Args:
        cert_path: PEM file: the server certificate first, then any intermediates.
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
        cas = [ssl.Certificate.loadPEM(c.public_bytes(_pem()))
               for c in x509.load_pem_x509_certificates(client_ca_path.read_bytes())]
        kwargs["trustRoot"] = ssl.trustRootFromCertificates(cas)
    # Twisted's annotations name pyOpenSSL types; it takes (and prefers)
    # cryptography objects at run time (TWISTED-NOTES.md section 2).
    return ssl.CertificateOptions(
        privateKey=key, certificate=chain[0], extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2, acceptableProtocols=[ALPN], **kwargs)


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


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


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
        cas = [ssl.Certificate.loadPEM(c.public_bytes(_pem()))
               for c in x509.load_pem_x509_certificates(Path(ca_path).read_bytes())]
        trust = ssl.trustRootFromCertificates(cas)
    kwargs: dict[str, Any] = {}
    if client_cert is not None:
        pem = Path(client_cert).read_bytes()
        if client_key is not None and Path(client_key) != Path(client_cert):
            pem = Path(client_key).read_bytes() + b"\n" + pem
        kwargs["clientCertificate"] = ssl.PrivateCertificate.loadPEM(pem)
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, acceptableProtocols=[ALPN],
                                   **kwargs)
