"""A Redis server of the test's own on loopback (Debian package ``redis-server``,
installed by ``scripts/test``), for tests that stop and restart Redis: the
machine's shared Redis must keep running for everything else.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` in the foreground, keeping nothing on disk.

    Args:
        work: a directory for its working files.
        password: what it asks clients for (``requirepass``), or None.

    Attributes:
        port: its port; the same after :meth:`restart`.
    """

    def __init__(self, work: Path, password: str | None = None) -> None:
        self.work = work
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start and wait until it answers PING.

        Raises:
            RuntimeError: it exited or did not answer in time.
        """
        self.work.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    # With a password it answers NOAUTH: up all the same.
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """SIGKILL (everything it held is lost, as in a crash) and reap."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Stop, then start empty on the same port."""
        self.stop()
        self.start()
