"""A real OpenLDAP ``slapd`` on loopback for directory-login tests (Debian package
``slapd``, installed by ``scripts/test``): its own config file, an MDB database
loaded from an LDIF with ``slapadd``, run in the foreground as a subprocess.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMAS = ("core", "cosine", "inetorgperson")
ROOT_DN_PASSWORD = "directory-root-secret"


def available() -> bool:
    """Whether slapd is installed."""
    return os.access(SLAPD, os.X_OK) and os.access(SLAPADD, os.X_OK)


class Slapd:
    """One slapd serving ``suffix`` from ``ldif``.

    Args:
        work: a fresh directory for its config and database.
        suffix: the base DN, e.g. ``dc=example,dc=com``.
        ldif: the entries to load (the suffix's entry first).

    Attributes:
        port: the TCP port it listens on (127.0.0.1), once started.
        root_dn: the DN that may change anything (password :data:`ROOT_DN_PASSWORD`).
    """

    def __init__(self, work: Path, suffix: str, ldif: str) -> None:
        self.work = work
        self.suffix = suffix
        self.ldif = ldif
        self.root_dn = f"cn=admin,{suffix}"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Slapd:
        """Write the config, load the LDIF, start slapd and wait until it listens.

        Raises:
            RuntimeError: slapadd failed, or slapd exited or did not listen in time.
        """
        db = self.work / "db"
        db.mkdir(parents=True, exist_ok=True)
        conf = self.work / "slapd.conf"
        includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
        conf.write_text(f"""{includes}
pidfile {self.work}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{self.suffix}"
rootdn "{self.root_dn}"
rootpw {ROOT_DN_PASSWORD}
directory {db}
access to attrs=userPassword by self read by anonymous auth by * none
access to * by * read
""")
        data = self.work / "data.ldif"
        data.write_text(self.ldif)
        loaded = subprocess.run([SLAPADD, "-f", str(conf), "-l", str(data)],
                                capture_output=True, text=True, timeout=60)
        if loaded.returncode != 0:
            raise RuntimeError(f"slapadd failed: {loaded.stderr.strip()}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        log = open(self.work / "slapd.log", "wb")  # noqa: SIM115 (lives as long as slapd)
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{self.port}/", "-d", "0"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd exited: "
                                   + (self.work / "slapd.log").read_text(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not listen in time")

    def stop(self) -> None:
        """Stop slapd (if it runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def delete(self, dn: str) -> None:
        """Delete an entry as the root DN (a person leaving the company)."""
        import ldap3

        with ldap3.Connection(ldap3.Server(f"ldap://127.0.0.1:{self.port}"), self.root_dn,
                              ROOT_DN_PASSWORD, auto_bind=True) as root:
            if not root.delete(dn):
                raise RuntimeError(f"could not delete {dn}: {root.result}")


def which_slapd() -> str | None:
    """The slapd binary if installed (for skip messages)."""
    return shutil.which("slapd") or (SLAPD if available() else None)
