"""The installed ``chatnet-qt`` program on a real X display, as someone uses it.

Everything else in this suite runs offscreen, which needs none of the X
libraries Qt's xcb platform plugin loads; this test is where a missing one
shows. A real ``twistd chatnet`` runs in a subprocess (accounts made with
``chatnet-admin``), ``Xvfb`` provides the display, and ``chatnet-qt`` logs in
from its command line (password in ``$CHATNET_PASSWORD``). It is then driven
with real key presses through the X server (XTEST): Ctrl+K, the room's name,
Enter, the message, Enter. A second client (the library, as bob) proves the
message arrived and is in the room's history, and a screenshot of the display
shows the client.

Skips only where Xvfb is not installed and ``CHATNET_REQUIRE_SERVICES`` is not
set; in CI (``CHATNET_REQUIRE_SERVICES=1``) a missing Xvfb fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor

from chatnet.client.connection import ChatConnection, connect
from qtclient.qt import QColor, QImage
from tests.gui.xdisplay import VirtualDisplay, XKeyboard, screenshot, xvfb_path
from tests.support.events import EventLog
from tests.support.process import TwistdServer, admin, command

PASSWORD = "a real display 42"
#: Seconds the program may take to start, log in or react to a key on Xvfb.
PROGRAM_TIMEOUT = 60
#: The main window's title with nothing unread; the quick switcher's title.
MAIN_TITLE, SWITCHER_TITLE = "chatnet", "Go to a conversation"


@pytest.fixture
def x_display(tmp_path: Path) -> Iterator[VirtualDisplay]:
    """A fresh Xvfb display. Skips without Xvfb, but fails instead when
    ``CHATNET_REQUIRE_SERVICES=1`` (CI must run this test)."""
    if xvfb_path() is None:
        reason = ("Xvfb is not installed (Debian package xvfb; scripts/test installs it): "
                  "the desktop client cannot be run on a real X display here")
        if os.environ.get("CHATNET_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (and CHATNET_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    display = VirtualDisplay(tmp_path / "xvfb.log").start()
    yield display
    display.stop()


@pytest.fixture
def twistd(tmp_path: Path) -> Iterator[TwistdServer]:
    """A real ``twistd chatnet`` with the accounts alice and bob."""
    server = TwistdServer(tmp_path / "data").start()
    try:
        for name in ("alice", "bob"):
            done = admin(server.data_dir, "create-user", name, "--password", PASSWORD)
            assert done.returncode == 0, done.stderr
        yield server
    finally:
        server.stop()


class Program:
    """``chatnet-qt`` running on a display, its output in a file."""

    def __init__(self, tmp_path: Path, display: VirtualDisplay, server: TwistdServer,
                 user: str) -> None:
        home = tmp_path / "home"
        home.mkdir()
        self.output = tmp_path / "chatnet-qt.log"
        env = {key: value for key, value in os.environ.items()
               if key not in ("WAYLAND_DISPLAY", "CHATNET_PASSWORD")}
        env.update(DISPLAY=display.name, QT_QPA_PLATFORM="xcb", HOME=str(home),
                   XDG_RUNTIME_DIR=str(home), CHATNET_PASSWORD=PASSWORD)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [command("chatnet-qt"), "--settings", str(tmp_path / "chatnet-qt.ini"),
                 "--language", "en", "--host", "localhost", "--port", str(server.port),
                 "--ca", str(server.ca), "--user", user],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        """What the program printed."""
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        """End it (SIGTERM) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


def test_the_program_logs_in_and_sends_a_message_on_a_real_x_display(
        tmp_path: Path, x_display: VirtualDisplay, twistd: TwistdServer, qtbot: Any,
        wait: Callable[..., Any]) -> None:
    """``chatnet-qt --host … --user alice`` with ``$CHATNET_PASSWORD`` on Xvfb
    (``QT_QPA_PLATFORM=xcb``) logs in by itself; Ctrl+K, "general", Enter opens
    the room; the typed message sent with Enter reaches bob and is in the
    room's history; Ctrl+K works with a draft in the composer too, and Escape
    gives the keyboard back to the main window. The screen is not blank."""
    bob: ChatConnection = wait(connect(reactor, "localhost", twistd.port, twistd.ca))
    wait(bob.login("bob", PASSWORD))
    room = wait(bob.request("room.create", {"name": "general", "visibility": "public",
                                            "members": ["alice"]}))
    room_id = int(room["room_id"])
    alice_elsewhere: ChatConnection = wait(connect(reactor, "localhost", twistd.port, twistd.ca))
    wait(alice_elsewhere.login("alice", PASSWORD))
    wait(alice_elsewhere.request("room.join", {"room_id": room_id}))
    wait(alice_elsewhere.close())
    bob_events = EventLog(bob, "bob")

    program = Program(tmp_path, x_display, twistd, "alice")
    keyboard = XKeyboard(x_display.name)
    try:
        def until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
            """Wait for ``condition``, failing at once (with the program's output)
            if the program exits, e.g. because Qt cannot load its xcb plugin; a
            timeout leaves a picture of the screen in ``timeout.png``."""
            try:
                qtbot.waitUntil(lambda: condition() or program.process.poll() is not None,
                                timeout=PROGRAM_TIMEOUT * 1000)
            except Exception:
                screenshot(x_display.name, tmp_path / "timeout.png")
                raise AssertionError(f"timed out waiting for {what()} (screen: "
                                     f"{tmp_path / 'timeout.png'}); chatnet-qt printed:\n"
                                     f"{program.text()}") from None
            if program.process.poll() is not None:
                pytest.fail(f"chatnet-qt exited ({program.process.returncode}) while "
                            f"waiting for {what()}:\n{program.text()}")

        def focus_on(title: str) -> None:
            until(lambda: keyboard.focus_name() == title,
                  lambda: f"the window {title!r} to have the keyboard (it has "
                          f"{keyboard.focus_name()!r})")

        focus_on(MAIN_TITLE)  # logged in: the main window replaced the login window
        keyboard.press("k", "Control_L")
        focus_on(SWITCHER_TITLE)
        keyboard.type("general")
        keyboard.press("Return")
        focus_on(MAIN_TITLE)
        keyboard.type("hello from a real x display")
        keyboard.press("Return")

        def from_alice(data: dict[str, Any]) -> bool:
            return bool(data["message"]["sender"] == "alice")

        box: list[Any] = []
        bob_events.next("msg", where=from_alice, timeout=PROGRAM_TIMEOUT).addBoth(box.append)
        until(lambda: bool(box), lambda: "bob to receive alice's message")
        if not hasattr(box[0], "data"):
            box[0].raiseException()
        assert box[0].data["message"]["body"] == "hello from a real x display"
        assert box[0].data["message"]["room_id"] == room_id
        history = wait(bob.request("msg.history", {"room_id": room_id}))["messages"]
        assert [(m["sender"], m["body"]) for m in history] == [
            ("alice", "hello from a real x display")]

        keyboard.type("draft")
        keyboard.press("k", "Control_L")
        focus_on(SWITCHER_TITLE)
        keyboard.press("Escape")
        focus_on(MAIN_TITLE)

        picture = tmp_path / "screen.png"
        screenshot(x_display.name, picture)
        image = QImage(str(picture))
        assert not image.isNull() and (image.width(), image.height()) == (1280, 800)
        colours = {image.pixel(x, y) for x in range(0, 1280, 8) for y in range(0, 800, 8)}
        black = QColor(0, 0, 0).rgb()
        # An empty Xvfb screen is one colour; the client's window has many.
        assert len(colours) > 20, f"the screen looks blank ({len(colours)} colours)"
        covered = sum(1 for x in range(0, 1280, 8) for y in range(0, 800, 8)
                      if image.pixel(x, y) != black)
        assert covered > 0.3 * (160 * 100), "the client's window covers little of the screen"
        assert program.process.poll() is None, program.text()
    finally:
        keyboard.close()
        program.stop()
        wait(bob.close())
