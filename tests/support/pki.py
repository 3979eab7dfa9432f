"""Certificates made by tests: small PKIs for TLS servers and clients on loopback, and
hands-on changes to a server's development PKI (``<data-dir>/tls``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatnet.wire.certs import SERVER_ADDRESSES, CertPair, make_ca, make_leaf, server_hostnames


@dataclass
class PKI:
    """A CA file and a server certificate chain written for one test server."""

    ca: CertPair
    ca_file: Path
    cert_file: Path
    key_file: Path
    leaf: CertPair


def write_pki(directory: Path, *, ca: CertPair | None = None, leaf: CertPair | None = None,
              chain: list[CertPair] | None = None, hostnames: tuple[str, ...] = ("localhost",),
              addresses: tuple[str, ...] = ("127.0.0.1",), **leaf_args: object) -> PKI:
    """Write ``ca.pem``, ``server.pem`` (the leaf, then ``chain``, default: the CA) and
    ``server.key`` into ``directory``; ``leaf_args`` go to ``make_leaf``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca("test CA")
    leaf = leaf or make_leaf(ca, "test server", hostnames=list(hostnames),
                             addresses=list(addresses), **leaf_args)  # type: ignore[arg-type]
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "server.pem", "server.key"))
    ca_file.write_bytes(ca.cert_pem())
    chain = [ca] if chain is None else chain
    cert_file.write_bytes(leaf.cert_pem() + b"".join(c.cert_pem() for c in chain))
    key_file.write_bytes(leaf.key_pem())
    return PKI(ca, ca_file, cert_file, key_file, leaf)


def write_client_cert(directory: Path, ca: CertPair, username: str) -> tuple[Path, Path]:
    """A client certificate for ``username`` (its CN) from ``ca``: (cert file, key file)."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = make_leaf(ca, username, client=True)
    cert, key = directory / f"{username}.pem", directory / f"{username}.key"
    cert.write_bytes(pair.cert_pem())
    key.write_bytes(pair.key_pem())
    return cert, key


def fingerprint(cert: CertPair | x509.Certificate, colons: bool = True) -> str:
    """SHA-256 fingerprint as hex: upper case with colons (as the server logs it) or
    lower case without."""
    certificate = cert.cert if isinstance(cert, CertPair) else cert
    digest = certificate.fingerprint(hashes.SHA256())
    return digest.hex(":").upper() if colons else digest.hex()


def load_dev_ca(tls_dir: Path) -> CertPair:
    """The development CA of a data dir's ``tls`` directory."""
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return CertPair(x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes()), key)


def dev_server_leaf(ca: CertPair, **kwargs: object) -> CertPair:
    """A server certificate like the development one (this machine's names)."""
    return make_leaf(ca, "chatnet server", hostnames=server_hostnames(),
                     addresses=list(SERVER_ADDRESSES), **kwargs)  # type: ignore[arg-type]


def write_dev_leaf(tls_dir: Path, leaf: CertPair, ca: CertPair) -> None:
    """Put ``leaf`` in place of the development server certificate."""
    (tls_dir / "server.key").write_bytes(leaf.key_pem())
    (tls_dir / "server.pem").write_bytes(leaf.cert_pem() + ca.cert_pem())
