"""A development certificate authority, made with ``cryptography`` (PROTOCOL.md 1).

On first start without ``--tls-cert``, the server creates in ``<data-dir>/tls/``:

* ``ca.pem`` / ``ca.key`` — an EC P-256 CA (10 years), the file clients trust;
* ``server.pem`` / ``server.key`` — a server certificate (:data:`SERVER_CERT_DAYS`
  days, within the 366 that Mozilla's TLS profiles allow) with subject
  alternative names ``localhost``, the machine's hostname (and its fully
  qualified name), ``127.0.0.1`` and ``::1``, followed in ``server.pem`` by
  the CA certificate (the chain the server sends).

Later starts reuse them, but :func:`ensure_dev_pki` issues a new server
certificate when the old one expires within :data:`RENEW_BEFORE_DAYS` days, lives
longer than :data:`SERVER_CERT_DAYS`, names other hosts, or does not belong to
the CA or its key (and a new CA, which clients must then trust, when the CA
itself is about to expire). Keys are PKCS#8 PEM files readable by the owner
only. The same functions make client certificates for mutual TLS and test PKIs.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey

#: Days a development server certificate is valid (Mozilla's profiles: at most 366).
SERVER_CERT_DAYS = 365
#: A development server certificate (or CA) is renewed once it expires within this many days.
RENEW_BEFORE_DAYS = 30
#: Days the development CA is valid.
CA_DAYS = 3650
#: IP addresses every development server certificate names.
SERVER_ADDRESSES = ("127.0.0.1", "::1")
#: How far back a new certificate's validity starts, for clocks that run behind.
CLOCK_SKEW = datetime.timedelta(minutes=5)


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
        return fingerprint_text(self.cert.fingerprint(hashes.SHA256()))


def parse_pin(pin: str) -> bytes:
    """A SHA-256 certificate fingerprint from text.

    Args:
        pin: 64 hex digits, in any case, with or without colons (or spaces)
            between the bytes, e.g. as the server logs it.

    Returns:
        the 32-byte digest.

    Raises:
        ValueError: ``pin`` is not such a fingerprint (the message says so).
    """
    digits = pin.strip().replace(":", "").replace(" ", "")
    try:
        digest = bytes.fromhex(digits)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"pin must be a SHA-256 fingerprint: 64 hex digits, colons "
                         f"optional (e.g. as the server logs it), not {pin!r}")
    return digest


def fingerprint_text(digest: bytes) -> str:
    """A fingerprint as the server logs it: colon-separated upper-case hex."""
    return digest.hex(":").upper()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chatnet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _validity(not_before: datetime.datetime | None,
              days: float) -> tuple[datetime.datetime, datetime.datetime]:
    """(not valid before, not valid after): from ``not_before`` (default: now minus
    :data:`CLOCK_SKEW`) for ``days`` days."""
    start = not_before if not_before is not None else _now() - CLOCK_SKEW
    return start, start + datetime.timedelta(days=days)


def make_ca(common_name: str = "chatnet development CA", days: float = CA_DAYS, *,
            not_before: datetime.datetime | None = None) -> CertPair:
    """A self-signed EC P-256 CA certificate (may sign leaf certificates only).

    Args:
        common_name: the subject (and issuer) CN.
        days: validity, in days from ``not_before``.
        not_before: start of validity (aware datetime); default: a few minutes ago.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
              days: float = SERVER_CERT_DAYS,
              not_before: datetime.datetime | None = None) -> CertPair:
    """A certificate signed by ``ca``.

    Args:
        ca: the issuing CA.
        common_name: the subject CN (the username for client certificates).
        hostnames: DNS subject alternative names (servers).
        addresses: IP subject alternative names (servers).
        client: make a client (``CLIENT_AUTH``) certificate instead of a server one.
        days: validity, in days from ``not_before``.
        not_before: start of validity (aware datetime); default: a few minutes ago.
            Tests make expired certificates with a start in the past.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
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
    """The development PKI in ``<data-dir>/tls``, as :func:`ensure_dev_pki` left it.

    Attributes:
        ca_cert: the CA file clients trust.
        server_cert: the server's chain (its certificate, then the CA).
        server_key: the server certificate's key.
        ca_fingerprint: SHA-256 of the CA certificate, colon-separated hex.
        server_fingerprint: SHA-256 of the server certificate.
        server_not_after: when the server certificate expires (UTC).
        created: whether the CA was made now (clients must trust the new file).
        renewed: why a new server certificate was issued now, or None if the
            existing one was kept.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca_fingerprint: str
    server_fingerprint: str
    server_not_after: datetime.datetime
    created: bool
    renewed: str | None


def _day(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _load_pair(cert_path: Path, key_path: Path) -> CertPair | None:
    """The first certificate of ``cert_path`` and the EC key, or None if either is
    missing or unreadable."""
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError, IndexError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return CertPair(cert, key)


def _expiry_problem(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    if cert.not_valid_after_utc <= now:
        return f"it expired on {_day(cert.not_valid_after_utc)}"
    if cert.not_valid_after_utc - now < datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return f"it expires on {_day(cert.not_valid_after_utc)}"
    if cert.not_valid_before_utc > now + CLOCK_SKEW:
        return f"it is not valid before {_day(cert.not_valid_before_utc)}"
    return None


def _leaf_problem(leaf: CertPair | None, ca: CertPair, now: datetime.datetime,
                  hostnames: list[str]) -> str | None:
    """Why the development server certificate must be re-issued, or None if it is fine."""
    if leaf is None:
        return "there was none (or it could not be read)"
    cert = leaf.cert
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return "it was not issued by the current CA"
    if cert.public_key() != leaf.key.public_key():
        return "its key file does not match it"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if lifetime > datetime.timedelta(days=SERVER_CERT_DAYS):
        return f"its lifetime of {lifetime.days} days is over {SERVER_CERT_DAYS}"
    expiry = _expiry_problem(cert, now)
    if expiry:
        return expiry
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no hosts"
    have = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    have |= {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    want = set(hostnames) | set(SERVER_ADDRESSES)
    if have != want:
        return f"it names {', '.join(sorted(have))}, not {', '.join(sorted(want))}"
    return None


def ensure_dev_pki(tls_dir: Path, now: datetime.datetime | None = None) -> DevPKI:
    """Create the development CA and server certificate, or renew what needs it.

    The server certificate is re-issued when it is missing or unreadable, was not
    issued by the CA, does not match its key, lives longer than
    :data:`SERVER_CERT_DAYS` (e.g. the old two-year certificates), expires within
    :data:`RENEW_BEFORE_DAYS` days, or names other hosts than this machine's. The
    CA is replaced only when missing or within :data:`RENEW_BEFORE_DAYS` of its
    own expiry. Files are replaced atomically (written aside, then renamed).

    Several processes sharing the data directory (``--workers``) take turns: an
    exclusive lock on ``tls/.lock`` is held throughout, so the second to start
    finds and uses what the first made instead of making a CA of its own.

    Args:
        tls_dir: usually ``<data-dir>/tls``; created (mode 0700) if missing.
        now: the current time (aware datetime); default: the system clock.

    Returns:
        the paths, fingerprints and what was done (:class:`DevPKI`).
    """
    now = now if now is not None else _now()
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(tls_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _ensure_dev_pki(tls_dir, now)


def _ensure_dev_pki(tls_dir: Path, now: datetime.datetime) -> DevPKI:
    ca_cert, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    server_cert, server_key = tls_dir / "server.pem", tls_dir / "server.key"
    ca = _load_pair(ca_cert, ca_key)
    created = ca is None or (
        ca.cert.not_valid_after_utc - now < datetime.timedelta(days=RENEW_BEFORE_DAYS))
    if ca is None or created:
        ca = make_ca(not_before=now - CLOCK_SKEW)
        _write(ca_key, ca.key_pem(), private=True)
        _write(ca_cert, ca.cert_pem(), private=False)
    hostnames = server_hostnames()
    leaf = _load_pair(server_cert, server_key)
    renewed = _leaf_problem(leaf, ca, now, hostnames)
    if renewed is not None:
        leaf = make_leaf(ca, "chatnet server", hostnames=hostnames,
                         addresses=list(SERVER_ADDRESSES), not_before=now - CLOCK_SKEW)
        _write(server_key, leaf.key_pem(), private=True)
        # The chain: the leaf, then the CA (clients trust the CA file itself).
        _write(server_cert, leaf.cert_pem() + ca.cert_pem(), private=False)
    assert leaf is not None
    return DevPKI(ca_cert, server_cert, server_key, ca.fingerprint(), leaf.fingerprint(),
                  leaf.cert.not_valid_after_utc, created, renewed)
