"""A development certificate authority, made with ``cryptography`` (PROTOCOL.md 1).

On first start without ``--tls-cert``, the server creates in ``<data-dir>/tls/``:

* ``ca.pem`` / ``ca.key`` — an EC P-256 CA (10 years), the file clients trust;
* ``server.pem`` / ``server.key`` — a server certificate (2 years) with
  subject alternative names ``localhost``, the machine's hostname (and its
  fully qualified name), ``127.0.0.1`` and ``::1``.

Later starts reuse them. Keys are PKCS#8 PEM files readable by the owner only.
The same functions make client certificates for mutual TLS and test PKIs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate, as colon-separated hex."""
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chatnet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str = "chatnet development CA", days: int = 3650) -> CertPair:
    """A self-signed EC P-256 CA certificate (may sign leaf certificates only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertPair(cert, key)


def make_leaf(ca: CertPair, common_name: str, *, hostnames: list[str] | None = None,
              addresses: list[str] | None = None, client: bool = False,
              days: int = 730) -> CertPair:
    """A certificate signed by ``ca``.

    Args:
        ca: the issuing CA.
        common_name: the subject CN (the username for client certificates).
        hostnames: DNS subject alternative names (servers).
        addresses: IP subject alternative names (servers).
        client: make a client (``CLIENT_AUTH``) certificate instead of a server one.
        days: validity.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames or ()]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses or ()]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return CertPair(builder.sign(ca.key, hashes.SHA256()), key)


def server_hostnames() -> list[str]:
    """``localhost`` plus this machine's hostname and fully qualified name."""
    names = ["localhost"]
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.strip().lower()
        if name and name not in names:
            names.append(name)
    return names


def _write(path: Path, data: bytes, private: bool) -> None:
    # Write to a temporary file and rename it, so a crash never leaves half a key.
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class DevPKI:
    """Paths of the development PKI in ``<data-dir>/tls`` and whether it was new."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca_fingerprint: str
    created: bool


def ensure_dev_pki(tls_dir: Path) -> DevPKI:
    """Create the development CA and server certificate unless they exist.

    Args:
        tls_dir: usually ``<data-dir>/tls``; created (mode 0700) if missing.

    Returns:
        the paths and the CA's SHA-256 fingerprint.
    """
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    server_cert, server_key = tls_dir / "server.pem", tls_dir / "server.key"
    created = False
    if not (ca_cert.exists() and ca_key.exists()):
        ca = make_ca()
        _write(ca_key, ca.key_pem(), private=True)
        _write(ca_cert, ca.cert_pem(), private=False)
        created = True
    else:
        key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ca = CertPair(x509.load_pem_x509_certificate(ca_cert.read_bytes()), key)
    if created or not (server_cert.exists() and server_key.exists()):
        leaf = make_leaf(ca, "chatnet server", hostnames=server_hostnames(),
                         addresses=["127.0.0.1", "::1"])
        _write(server_key, leaf.key_pem(), private=True)
        # The chain: the leaf, then the CA (clients trust the CA file itself).
        _write(server_cert, leaf.cert_pem() + ca.cert_pem(), private=False)
        created = True
    return DevPKI(ca_cert, server_cert, server_key, ca.fingerprint(), created)
