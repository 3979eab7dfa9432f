"""Logging in through the login window, and what it remembers."""

from __future__ import annotations

from typing import Any

from qtclient.qt import QSettings
from qtclient.settings import ClientSettings


def test_register_and_log_in_shows_the_main_window(make_client: Any) -> None:
    """A new account registers from the login window; the main window then shows
    the user and the connection as connected."""
    app = make_client("alice", register=True)
    assert not app.login_window.isVisible()
    assert app.controller.me == "alice"
    assert "alice" in app.main_window.me_label.text()
    assert app.main_window.connection_label.text() == "Connected"


def test_wrong_password_is_explained_and_the_form_stays(make_client: Any, server: Any,
                                                        qtbot: Any) -> None:
    """A wrong password leaves the login window open with a plain explanation."""
    server.user("bob")
    app = make_client("bob", register=False, login=False)
    form = app.login_window
    form.host.setText("localhost")
    form.port.setValue(server.port)
    form.ca_file.setText(str(server.ca))
    form.username.setText("bob")
    form.password.setText("not the password")
    form.login_button.click()
    qtbot.waitUntil(lambda: form.status.text() == "Wrong username or password.")
    assert form.login_button.isEnabled()
    assert not app.main_window.isVisible()


def test_the_login_form_is_remembered_but_not_the_password(make_client: Any,
                                                          server: Any) -> None:
    """Host, port, CA file and username persist in QSettings; the password never does."""
    app = make_client("carol")
    app.settings.sync()
    store = app.settings.store
    again = ClientSettings(QSettings(store.fileName(), QSettings.Format.IniFormat))
    remembered = again.login_defaults()
    assert (remembered.host, remembered.port, remembered.ca_file, remembered.username) == (
        "localhost", server.port, str(server.ca), "carol")
    with open(store.fileName(), encoding="utf-8") as ini:
        assert "correct horse" not in ini.read()


def test_closing_the_main_window_quits(make_client: Any, qtbot: Any) -> None:
    """Closing the last window ends the program (the reactor would not stop by itself)."""
    app = make_client("dave")
    app.window.close()
    qtbot.waitUntil(lambda: app.quits == [True])
    assert app.controller.session is None


def test_log_out_returns_to_the_login_window(make_client: Any, qtbot: Any) -> None:
    """"Log out" ends the session and shows the login window again, username kept."""
    app = make_client("erin")
    app.main_window.logout_action.trigger()
    qtbot.waitUntil(lambda: app.login_window.isVisible() and not app.main_window.isVisible())
    assert app.controller.session is None
    assert app.controller.rooms.rowCount() == 0
    assert app.login_window.username.text() == "erin"
    assert app.login_window.password.text() == ""


def test_an_untrusted_server_certificate_is_refused(make_client: Any, server: Any,
                                                    qtbot: Any, tmp_path: Any) -> None:
    """With a CA file that did not sign the server's certificate, the client
    refuses the connection and says it cannot connect securely."""
    from chatnet.wire.certs import make_ca

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca("someone else's CA").cert_pem())
    app = make_client("frank", login=False)
    form = app.login_window
    form.host.setText("localhost")
    form.port.setValue(server.port)
    form.ca_file.setText(str(other_ca))
    form.username.setText("frank")
    form.password.setText("whatever-password")
    form.register.setChecked(True)
    form.login_button.click()
    qtbot.waitUntil(lambda: form.status.text().startswith("Cannot connect securely"))
    assert not app.main_window.isVisible()
    assert app.controller.connection == "offline"
