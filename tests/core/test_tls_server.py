"""The server's TLS settings (PROTOCOL.md 1), checked from outside with sslyze against
Mozilla's "intermediate" profile, and the development certificate's renewal.

sslyze pins older cryptography and nassl releases than chatnet uses, so it lives in
a virtualenv of its own, ``.venv-sslyze`` (``scripts/test`` creates it), and runs as
a subprocess. ``CHATNET_SSLYZE`` may name another Python that has sslyze.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import formatEvent, globalLogPublisher

from chatnet.client.connection import ChatConnection
from chatnet.wire.certs import ensure_dev_pki, make_ca, make_leaf
from chatnet.wire.tls import DevCertificateRenewal
from tests.core.conftest import require_services
from tests.support.pki import dev_server_leaf, fingerprint, load_dev_ca, write_dev_leaf
from tests.support.server import RunningServer, start_server, test_config

ROOT = Path(__file__).resolve().parents[2]


def sslyze_python() -> str:
    """The Python that runs sslyze; skips (fails under CHATNET_REQUIRE_SERVICES=1)
    when there is none."""
    python = os.environ.get("CHATNET_SSLYZE") or str(ROOT / ".venv-sslyze" / "bin" / "python")
    if not Path(python).exists():
        reason = f"sslyze is not installed ({python} is missing; scripts/test installs it)"
        if require_services():
            pytest.fail(f"{reason} (and CHATNET_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return python


@pytest_twisted.ensureDeferred
async def test_server_complies_with_mozilla_intermediate(server, tmp_path):
    """sslyze finds the server compliant with Mozilla's intermediate profile (TLS 1.2+,
    ECDHE AEAD suites only, X25519/P-256/P-384 only, no compression, no client
    renegotiation, leaf lifetime within 366 days), trusting the development CA."""
    python = sslyze_python()
    report = tmp_path / "sslyze.json"
    out, err, code = await getProcessOutputAndValue(
        python, ["-m", "sslyze", "--mozilla_config=intermediate",
                 f"--certinfo_ca_file={server.ca}", f"--json_out={report}", "--quiet",
                 f"localhost:{server.port}"],
        env={**os.environ, "PYTHONWARNINGS": "ignore"}, reactor=reactor)
    text = out.decode(errors="replace")
    assert code == 0 and "OK - Compliant" in text, (text + err.decode(errors="replace"))

    scan = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]
    curves = {c["name"] for c in scan["elliptic_curves"]["result"]["supported_curves"]}
    assert curves == {"X25519", "secp256r1", "secp384r1"}
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert not scan[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"], old
    tls12 = {c["cipher_suite"]["name"]
             for c in scan["tls_1_2_cipher_suites"]["result"]["accepted_cipher_suites"]}
    assert tls12 and all(name.startswith("TLS_ECDHE_") and ("_GCM_" in name or "CHACHA20" in name)
                         for name in tls12), tls12
    assert scan["session_renegotiation"]["result"]["client_renegotiations_success_count"] == 0
    assert scan["tls_compression"]["result"]["supports_compression"] is False
    deployment = scan["certificate_info"]["result"]["certificate_deployments"][0]
    # The complete chain: the leaf, then the CA that signed it.
    assert len(deployment["received_certificate_chain"]) == 2


# -- the development certificate: lifetime and renewal --------------------------------------

def _utc(**delta: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(**delta)


def _leaf_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_dev_pki_is_made_once_with_a_leaf_of_at_most_365_days(tmp_path):
    """The first call makes the CA and a server certificate of at most 365 days
    (chained to the CA); a second call keeps both."""
    now = _utc()
    first = ensure_dev_pki(tmp_path, now)
    assert first.created and first.renewed is not None
    leaf = _leaf_of(first.server_cert)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=365)
    chain = x509.load_pem_x509_certificates(first.server_cert.read_bytes())
    assert [c.subject for c in chain] == [leaf.subject, load_dev_ca(tmp_path).cert.subject]
    again = ensure_dev_pki(tmp_path, now + datetime.timedelta(days=1))
    assert not again.created and again.renewed is None
    assert again.server_fingerprint == first.server_fingerprint
    assert again.ca_fingerprint == first.ca_fingerprint


def test_dev_leaf_is_renewed_30_days_before_it_expires_and_the_ca_stays(tmp_path):
    """Within 30 days of the leaf's expiry a new leaf is issued by the same CA; one
    day earlier nothing changes."""
    first = ensure_dev_pki(tmp_path, _utc())
    expiry = first.server_not_after
    early = ensure_dev_pki(tmp_path, expiry - datetime.timedelta(days=31))
    assert early.renewed is None and early.server_fingerprint == first.server_fingerprint
    late = ensure_dev_pki(tmp_path, expiry - datetime.timedelta(days=29))
    assert late.renewed is not None and "expires on" in late.renewed
    assert late.server_fingerprint != first.server_fingerprint
    assert late.server_not_after > expiry
    assert late.ca_fingerprint == first.ca_fingerprint and not late.created
    _leaf_of(late.server_cert).verify_directly_issued_by(load_dev_ca(tmp_path).cert)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda ca: dev_server_leaf(ca, days=730), "lifetime of 730 days is over 365"),
    (lambda ca: make_leaf(ca, "chatnet server", hostnames=["old-name"],
                          addresses=["127.0.0.1"]), "names 127.0.0.1, old-name"),
    (lambda ca: dev_server_leaf(ca, not_before=_utc(days=-400)), "expired on"),
    (lambda ca: dev_server_leaf(make_ca("another CA")), "not issued by the current CA"),
])
def test_unfit_dev_leaf_is_reissued(tmp_path, make, reason):
    """A leaf made with the old two-year lifetime, for other names, expired, or from
    another CA is replaced at once; the reason says which."""
    ensure_dev_pki(tmp_path, _utc())
    ca = load_dev_ca(tmp_path)
    write_dev_leaf(tmp_path, make(ca), ca)
    pki = ensure_dev_pki(tmp_path, _utc())
    assert pki.renewed is not None and reason in pki.renewed, pki.renewed
    assert not pki.created
    leaf = _leaf_of(pki.server_cert)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=365)
    assert ensure_dev_pki(tmp_path, _utc()).renewed is None


def test_dev_leaf_whose_key_file_does_not_match_is_reissued(tmp_path):
    """A server.key that does not belong to server.pem (a crash between the two
    writes) gets a new pair."""
    ensure_dev_pki(tmp_path, _utc())
    ca = load_dev_ca(tmp_path)
    (tmp_path / "server.key").write_bytes(dev_server_leaf(ca).key_pem())
    pki = ensure_dev_pki(tmp_path, _utc())
    assert pki.renewed == "its key file does not match it"


class _LogLines:
    """Formatted log lines of the test, for asserting what the server said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: dict[str, object]) -> None:
        self.lines.append(formatEvent(event))

    def __enter__(self) -> _LogLines:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)


async def _served_leaf(server: RunningServer) -> tuple[x509.Certificate, ChatConnection]:
    conn = await server.connect()
    cert = conn.transport.getHandle().get_peer_certificate(as_cryptography=True)
    return cert, conn


@pytest_twisted.ensureDeferred
async def test_start_replaces_an_old_two_year_dev_leaf_and_logs_it(tmp_path):
    """A data dir from before (a 730-day leaf) gets a new leaf at start; the CA, and so
    what clients trust, stays; the log says why, with the new fingerprint."""
    tls_dir = tmp_path / "data" / "tls"
    ensure_dev_pki(tls_dir, _utc())
    ca = load_dev_ca(tls_dir)
    old = dev_server_leaf(ca, days=730)
    write_dev_leaf(tls_dir, old, ca)
    with _LogLines() as log:
        server = await start_server(test_config(tmp_path / "data"))
    try:
        served, conn = await _served_leaf(server)
        assert served.fingerprint(hashes.SHA256()) != old.cert.fingerprint(hashes.SHA256())
        lifetime = served.not_valid_after_utc - served.not_valid_before_utc
        assert lifetime <= datetime.timedelta(days=365)
        said = "\n".join(log.lines)
        assert "because its lifetime of 730 days is over 365" in said
        assert fingerprint(served) in said
        assert f"using development CA: clients should trust {server.ca.resolve()}" in said
        await conn.close()
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_daily_check_renews_the_leaf_and_new_connections_get_it(server):
    """The daily check (fake clock) leaves a leaf alone while it has more than 30 days
    left, renews it on the first check within 30 days, and the listening server
    hands the new one to new connections without a restart; an open connection
    keeps working."""
    tls_dir = server.ca.parent
    first, before = await _served_leaf(server)
    # Time passes: the certificate on disk now has 31.5 days left at clock start.
    ca = load_dev_ca(tls_dir)
    aging = dev_server_leaf(ca, not_before=_utc(days=-335.5))
    write_dev_leaf(tls_dir, aging, ca)
    clock = Clock()
    clock.advance((_utc(days=-2) - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC))
                  .total_seconds())
    renewal = DevCertificateRenewal(tls_dir, server.service.tls, clock)
    with _LogLines() as log:
        renewal.startService()  # checks at once
        try:
            assert renewal.last is not None and renewal.last.renewed is None
            clock.advance(24 * 3600)
            assert renewal.last.renewed is None  # 30.5 days left
            assert fingerprint(_leaf_of(tls_dir / "server.pem")) == fingerprint(aging.cert)
            clock.advance(24 * 3600)
            renewed = renewal.last
            assert renewed.renewed is not None and "expires on" in renewed.renewed
        finally:
            await renewal.stopService()
    served, after = await _served_leaf(server)
    assert fingerprint(served) == renewed.server_fingerprint
    assert renewed.server_fingerprint not in (fingerprint(first), fingerprint(aging.cert))
    said = "\n".join(log.lines)
    assert renewed.server_fingerprint in said and "new connections use" in said
    assert "ts" in await before.request("session.ping")
    await before.close()
    await after.close()


@pytest_twisted.ensureDeferred
async def test_a_renewal_made_by_another_process_is_picked_up(server):
    """Workers share the data directory: when another process renews the
    certificate on disk, this one's daily check notices the new file and serves
    it to new connections (it did not renew anything itself)."""
    tls_dir = server.ca.parent
    clock = Clock()
    clock.advance(_utc().timestamp())
    renewal = DevCertificateRenewal(tls_dir, server.service.tls, clock)
    renewal.startService()
    try:
        first = renewal.last
        assert first is not None
        ca = load_dev_ca(tls_dir)
        write_dev_leaf(tls_dir, dev_server_leaf(ca, not_before=_utc(days=-360)), ca)
        elsewhere = ensure_dev_pki(tls_dir, _utc())  # the other process renews
        assert elsewhere.renewed is not None
        clock.advance(24 * 3600)
        assert renewal.last is not None and renewal.last.renewed is None
    finally:
        await renewal.stopService()
    served, conn = await _served_leaf(server)
    assert fingerprint(served) == elsewhere.server_fingerprint != first.server_fingerprint
    await conn.close()


def _make_pki(tls_dir: str, start: Any, results: Any) -> None:
    start.wait()  # every process is imported and waiting: all go at once
    results.put(ensure_dev_pki(Path(tls_dir)).ca_fingerprint)


def test_processes_starting_together_make_one_development_ca(tmp_path):
    """Four processes (workers starting at once) create the development PKI in one
    fresh directory at the same moment: all end up with the same CA, the one on
    disk, and the server certificate on disk was issued by it."""
    import multiprocessing

    tls_dir = tmp_path / "tls"
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(4, timeout=30), spawn.Queue()
    processes = [spawn.Process(target=_make_pki, args=(str(tls_dir), start, results))
                 for _ in range(4)]
    for process in processes:
        process.start()
    fingerprints = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(10)
    assert len(set(fingerprints)) == 1
    ca = load_dev_ca(tls_dir)
    assert fingerprint(ca.cert) == fingerprints[0]
    assert ensure_dev_pki(tls_dir).renewed is None  # the leaf matches that CA


def test_reload_with_a_mismatched_key_keeps_the_old_settings(tmp_path):
    """ServerTLS.reload checks the new key against the new certificate at once; on
    failure it raises and the listener keeps the settings it had."""
    from OpenSSL import SSL

    from chatnet.wire.tls import ServerTLS

    pki = ensure_dev_pki(tmp_path, _utc())
    tls = ServerTLS(pki.server_cert, pki.server_key)
    before = tls.options
    ca = load_dev_ca(tmp_path)
    (tmp_path / "server.key").write_bytes(dev_server_leaf(ca).key_pem())
    with pytest.raises(SSL.Error):
        tls.reload()
    assert tls.options is before
