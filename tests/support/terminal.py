"""The terminal client ``chatnet`` in a pseudo-terminal, typed at like a person would.

:func:`terminal` starts it with pexpect; every byte it prints is also fed to a
pyte terminal emulator (:class:`Screen`), so a test can read what the person
sees on the screen after prompt_toolkit's redraws, not only the raw stream.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pyte

from tests.support.process import TwistdServer, command

PASSWORD = "open sesame 42"
COLUMNS, LINES = 140, 30
#: Every child :func:`terminal` started, so that a test's teardown can print
#: their screens (pytest shows them when the test failed).
SPAWNED: list[Any] = []


class Screen:
    """What the terminal shows: a pyte screen fed with everything the program printed.

    Args:
        columns: terminal width.
        lines: terminal height.
    """

    def __init__(self, columns: int = COLUMNS, lines: int = LINES) -> None:
        self.screen = pyte.HistoryScreen(columns, lines, history=2000)
        self.stream = pyte.Stream(self.screen)

    # pexpect writes what it reads to ``logfile_read``.
    def write(self, data: str) -> None:
        """Feed output to the emulator."""
        self.stream.feed(data)

    def flush(self) -> None:
        """(file protocol)"""

    def lines(self) -> list[str]:
        """Every line: those scrolled off the top, then the screen, right-stripped."""
        history = ["".join(ch.data for ch in (row[x] for x in sorted(row))).rstrip()
                   for row in self.screen.history.top]
        return history + [line.rstrip() for line in self.screen.display]

    def count(self, text: str) -> int:
        """Lines that contain ``text``."""
        return sum(text in line for line in self.lines())

    def text(self) -> str:
        """The lines joined by newlines (for assertion messages)."""
        return "\n".join(self.lines())


def terminal(server: TwistdServer, user: str, password: str | None = PASSWORD,
             state_dir: Path | None = None, extra: tuple[str, ...] = (),
             port: int | None = None, cwd: Path | None = None) -> Any:
    """``chatnet`` in a pseudo-terminal as ``user``, the password typed at its
    prompt (``password=None``: not typed). The child has ``.screen`` (a
    :class:`Screen`). ``state_dir`` is its ``XDG_STATE_HOME``."""
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    env.pop("CHATNET_PASSWORD", None)
    if state_dir is not None:
        env["XDG_STATE_HOME"] = str(state_dir)
    child = pexpect.spawn(command("chatnet"), ["--host", "localhost",
                                               "--port", str(port or server.port),
                                               "--ca", str(server.ca), "--user", user, *extra],
                          env=env, encoding="utf-8", timeout=20, dimensions=(LINES, COLUMNS),
                          cwd=str(cwd) if cwd else None)
    child.screen = Screen()
    child.logfile_read = child.screen
    child.user = user
    SPAWNED.append(child)
    if password is not None:
        child.expect("Password:")
        child.sendline(password)
    return child


def print_screens() -> None:
    """Print the screen of every child started since the last call, and forget them."""
    while SPAWNED:
        child = SPAWNED.pop(0)
        print(f"---- {child.user}'s screen ----")
        print(child.screen.text().rstrip())
        if child.isalive():
            child.terminate(force=True)


def send_cmd(server: TwistdServer, user: str, *args: str, password: str | None = PASSWORD,
             trust: tuple[str, ...] | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``chatnet ... send ARGS`` with the password in the environment; ``trust`` replaces
    ``--ca <the server's CA>`` (e.g. with ``--pin ...``); ``stdin`` is its input."""
    env = dict(os.environ)
    env.pop("CHATNET_PASSWORD", None)
    if password is not None:
        env["CHATNET_PASSWORD"] = password
    if trust is None:
        trust = ("--ca", str(server.ca))
    return subprocess.run([command("chatnet"), "--host", "localhost", "--port", str(server.port),
                           *trust, "--user", user, "send", *args],
                          capture_output=True, text=True, env=env, timeout=60,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def styled(*parts: str) -> str:
    """A pattern for ``parts`` printed in turn, with any terminal styling between."""
    return "(?:\x1b\\[[0-9;?]*[A-Za-z])*".join(re.escape(p) for p in parts)


def quit_cleanly(*children: Any) -> None:
    """/quit each child and wait for it to end."""
    for child in children:
        child.sendline("/quit")
        child.expect(pexpect.EOF)
