"""Fixtures for the desktop client's suite: real GUI offscreen, real server over TLS.

Run it in its own process, without pytest-twisted (one reactor per process,
and here it is Qt's; TWISTED-NOTES.md 6)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -p no:twisted tests/gui

The QApplication is created at import and kept referenced for the whole
session (an unreferenced one is destroyed at once), ``qreactor`` is installed
over it, and ``reactor.runReturn()`` marks the reactor running: every wait of
pytest-qt spins Qt's event loop, which drives Twisted.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyqt6")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qtclient.qt import QApplication, QSettings, QStandardPaths

_app = QApplication.instance() or QApplication([])  # before qreactor; keep the reference
# Standard locations (Downloads, cache) under ~/.qttest: tests never touch the user's own.
QStandardPaths.setTestModeEnabled(True)
_app.setStyle("Fusion")  # type: ignore[union-attr]

import qreactor  # noqa: E402

qreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.logger import LogLevel, formatEvent, globalLogPublisher  # noqa: E402

from chatnet.client.connection import ChatConnection  # noqa: E402
from chatnet.server import ChatnetService  # noqa: E402
from qtclient.accounts import PasswordStore  # noqa: E402
from qtclient.app import ChatApp  # noqa: E402
from qtclient.settings import ClientSettings, LoginDefaults  # noqa: E402
from tests.support.server import PASSWORD, RunningServer, start_server, test_config  # noqa: E402

reactor.runReturn()  # type: ignore[attr-defined]

#: Reconnect quickly in tests (the defaults back off up to 15 s plus 2 s of jitter).
FAST_RECONNECT = {"retry_initial": 0.1, "retry_max": 0.5, "retry_jitter": 0.1}


def pytest_configure(config: pytest.Config) -> None:
    """The marker that changes the test server's configuration."""
    config.addinivalue_line(
        "markers", "server_config(**overrides): ServerConfig fields for the test's server "
        "(e.g. max_file_size=1000)")


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    """The one QApplication (pytest-qt uses this instead of making its own)."""
    assert isinstance(_app, QApplication)
    return _app


@pytest.fixture(scope="session", autouse=True)
def no_system_keyring() -> None:
    """The suite never touches the user's keyring: keyring's process-wide
    backend is its ``fail`` one (no keyring) unless a test sets another."""
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())


@pytest.fixture(scope="session", autouse=True)
def reactor_shutdown(qapp: QApplication) -> Iterator[None]:
    """Stop the reactor after the last test, running its shutdown triggers: the
    thread pool (used for name resolution) has non-daemon threads that would
    otherwise keep the process from exiting."""
    yield
    reactor.stop()  # type: ignore[attr-defined]
    # Let the shutdown triggers run (qreactor's runReturn() mode never reports
    # "stopped", so spin briefly rather than wait for that).
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.01)
    pool = getattr(reactor, "threadpool", None)
    if pool is not None and pool.started:
        pool.stop()


@pytest.fixture(autouse=True)
def log_errors(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """Fail the test if anything logged an error or a failure while it ran."""
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)
    if seen:
        details = []
        for event in seen:
            text = formatEvent(event)
            if "log_failure" in event:
                text += "\n" + event["log_failure"].getTraceback()
            details.append(text)
        pytest.fail("errors were logged:\n" + "\n".join(details))


@pytest.fixture
def wait(qtbot: Any) -> Callable[..., Any]:
    """Block on a Deferred (or coroutine) by spinning Qt; return its result or raise."""
    def _wait(d: Any, timeout: int = 10000) -> Any:
        if not isinstance(d, Deferred):
            d = Deferred.fromCoroutine(d)
        box: list[Any] = []
        d.addBoth(box.append)
        qtbot.waitUntil(lambda: bool(box), timeout=timeout)
        result = box[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    return _wait


class ServerHandle:
    """The running server of a test, restartable on the same data and port.

    Args:
        clock: the reactor the server runs on, if not the global one (a test
            that needs messages of other days gives it a shifted clock).
    """

    def __init__(self, data_dir: Path, wait: Callable[..., Any], clock: Any = None,
                 **overrides: Any) -> None:
        self.data_dir = data_dir
        self.wait = wait
        self.clock = clock
        self.overrides = overrides
        self.running: RunningServer = wait(self._start(test_config(data_dir, **overrides)))
        self.port = self.running.port
        self.ca = self.running.ca
        self.connections: list[ChatConnection] = []

    def user(self, username: str, register: bool = True) -> ChatConnection:
        """A library connection logged in as ``username`` (registered first)."""
        conn: ChatConnection = self.wait(self.running.user(username, register=register))
        self.connections.append(conn)
        return conn

    def request(self, conn: ChatConnection, op: str, args: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """One request on a library connection, waited for."""
        result: dict[str, Any] = self.wait(conn.request(op, args))
        return result

    def stop(self) -> None:
        """Stop the server (its clients see ``session.ended {shutdown}``)."""
        self.wait(self.running.stop())

    def start(self) -> None:
        """Start it again on the same data directory and port."""
        self.running = self.wait(self._start(test_config(self.data_dir, port=self.port,
                                                         **self.overrides)))

    async def _start(self, config: Any) -> RunningServer:
        if self.clock is None:
            return await start_server(config)
        service = ChatnetService(config, self.clock)
        service.startService()
        port = await service.ready
        return RunningServer(service, port.getHost().port,
                             service.ca_path or config.data_dir / "tls" / "ca.pem")

    def close(self) -> None:
        for conn in self.connections:
            if not conn.lost.called:
                self.wait(conn.close())
        self.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path,
           wait: Callable[..., Any]) -> Iterator[ServerHandle]:
    """A real chatnet server on loopback: TLS, SQLite in ``tmp_path``, open
    registration (and the test's ``server_config`` marker, if any)."""
    marker = request.node.get_closest_marker("server_config")
    handle = ServerHandle(tmp_path / "data", wait, **(marker.kwargs if marker else {}))
    yield handle
    handle.close()


@pytest.fixture
def make_client(server: ServerHandle, tmp_path: Path, qtbot: Any,
                wait: Callable[..., Any]) -> Iterator[Callable[..., ChatApp]]:
    """Start desktop clients and log them in through the login window.

    ``make_client("alice")`` registers alice and returns her :class:`ChatApp`
    with the main window shown; ``login=False`` stops at the login window.
    Each client keeps image previews in its own folder under ``tmp_path``
    (``app.controller.cache_root``).
    """
    apps: list[ChatApp] = []

    def make(username: str, register: bool = True, login: bool = True,
             language: str = "en", password: str = PASSWORD,
             session_options: dict[str, Any] | None = None) -> ChatApp:
        store = QSettings(str(tmp_path / f"{username}-{len(apps)}.ini"),
                          QSettings.Format.IniFormat)
        settings = ClientSettings(store)
        settings.language = language
        quits: list[bool] = []
        app = ChatApp(reactor, settings, session_options=session_options or FAST_RECONNECT,
                      on_quit=lambda: quits.append(True),
                      cache_dir=tmp_path / f"cache-{username}-{len(apps)}")
        app.quits = quits  # type: ignore[attr-defined]
        apps.append(app)
        app.start()
        if login:
            form = app.login_window
            form.host.setText("localhost")
            form.port.setValue(server.port)
            form.ca_file.setText(str(server.ca))
            form.username.setText(username)
            form.password.setText(password)
            form.register.setChecked(register)
            form.login_button.click()
            qtbot.waitUntil(app.main_window.isVisible, timeout=10000)
        return app

    yield make
    for app in apps:
        app.quit()  # closes every account's connection
        qtbot.waitUntil(lambda a=app: a.quits == [True], timeout=5000)
        app.window.close()
        app.login_window.close()
        app.window.deleteLater()
        app.login_window.deleteLater()


@pytest.fixture
def other_server(tmp_path: Path, wait: Callable[..., Any]) -> Iterator[ServerHandle]:
    """A second chatnet server, on another port and its own data."""
    handle = ServerHandle(tmp_path / "data-other", wait)
    yield handle
    handle.close()


class Desktops:
    """Start desktop clients on a settings file and a password store of the
    test's choosing (a restart is a new ChatApp on the same two)."""

    def __init__(self, tmp_path: Path, qtbot: Any) -> None:
        self.tmp_path = tmp_path
        self.qtbot = qtbot
        self.apps: list[ChatApp] = []

    def start(self, passwords: PasswordStore, settings_name: str = "client.ini",
              login: LoginDefaults | None = None, password: str = "") -> ChatApp:
        store = QSettings(str(self.tmp_path / settings_name), QSettings.Format.IniFormat)
        settings = ClientSettings(store)
        settings.language = "en"
        quits: list[bool] = []
        app = ChatApp(reactor, settings, session_options=FAST_RECONNECT,
                      on_quit=lambda: quits.append(True),
                      cache_dir=self.tmp_path / f"cache-{len(self.apps)}", passwords=passwords)
        app.quits = quits  # type: ignore[attr-defined]
        self.apps.append(app)
        app.start(login, password)
        return app

    def quit(self, app: ChatApp) -> None:
        """Quit as the user does (the connections close; settings are written)."""
        app.quit()
        self.qtbot.waitUntil(lambda: app.quits == [True], timeout=5000)
        for window in (app.window, app.login_window):
            window.close()
            window.deleteLater()

    def close(self) -> None:
        for app in self.apps:
            if not app.quits:  # type: ignore[attr-defined]
                self.quit(app)


@pytest.fixture
def desktops(tmp_path: Path, qtbot: Any) -> Iterator[Desktops]:
    """Desktop clients started by the test, quit at its end."""
    made = Desktops(tmp_path, qtbot)
    yield made
    made.close()
