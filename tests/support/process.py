"""The real programs as subprocesses: ``twistd chatnet``, ``chatnet-admin``, ``chatnet``.

Used by tests that check what an operator or a user sees from the installed
commands (no reactor needed in the test process).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
_LISTENING = re.compile(r"chatnet listening on [^:]+:(\d+)")


def command(name: str) -> str:
    """The path of an installed console script of this environment."""
    return str(BIN / name)


class TwistdServer:
    """``twistd -n chatnet`` in a subprocess, on a free loopback port.

    Args:
        data_dir: the server's data directory.
        extra: more ``twistd chatnet`` options.

    Attributes:
        port: the port it listens on once started; set it before :meth:`start`
            to listen on that port (a restart on the same port), else a free one.
        twistd_options: options for ``twistd`` itself (before ``chatnet``).
    """

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.port = 0
        self.twistd_options: tuple[str, ...] = ()
        self.log = data_dir.parent / f"{data_dir.name}-twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        """The development CA the server generated."""
        return self.data_dir / "tls" / "ca.pem"

    def start(self, timeout: float = 30.0) -> TwistdServer:
        """Start and wait until it listens (reads the port from its log)."""
        self.log.write_bytes(b"")
        self.process = subprocess.Popen(
            [command("twistd"), "--nodaemon", "--pidfile=", f"--logfile={self.log}",
             *self.twistd_options, "chatnet", "--port", str(self.port),
             "--interface", "127.0.0.1", "--data-dir", str(self.data_dir), *self.extra],
            cwd=self.data_dir.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"twistd exited {self.process.returncode}:\n{self.text()}")
            time.sleep(0.05)
        self.kill()  # never left running behind a failed test
        raise RuntimeError(f"twistd did not start listening:\n{self.text()}")

    def text(self) -> str:
        """Everything the server logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout)
        self.process = None
        return status

    def kill(self) -> int:
        """SIGKILL (no shutdown at all, as in a crash) and reap; returns the status."""
        if self.process is None:
            return 0
        self.process.kill()
        status = self.process.wait()
        self.process = None
        return status

    def __enter__(self) -> TwistdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def admin(data_dir: Path, *args: str,
          password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``chatnet-admin --data-dir DATA_DIR ARGS`` and return what it did."""
    env = dict(os.environ)
    env.pop("CHATNET_PASSWORD", None)
    if password is not None:
        env["CHATNET_PASSWORD"] = password
    return subprocess.run([command("chatnet-admin"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)
