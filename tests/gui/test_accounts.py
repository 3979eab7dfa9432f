"""Accounts remembered in QSettings, and their passwords in the system keyring
when there is one (without a server: storage only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from qtclient.accounts import KEYRING_SERVICE, Account, PasswordStore
from qtclient.qt import QSettings
from qtclient.settings import ClientSettings
from tests.gui.keyrings import DictKeyring

ALICE = Account("chat.example.com", 5443, "/etc/chatnet/ca.pem", "alice")
BOB = Account("localhost", 6000, "", "bob", label="Test server")


def _settings(path: Path) -> ClientSettings:
    return ClientSettings(QSettings(str(path), QSettings.Format.IniFormat))


def test_accounts_and_the_current_one_survive_a_restart(tmp_path: Path) -> None:
    """The accounts are written in order with the current one's key; a new
    QSettings on the same file reads them back; no password is in the file."""
    settings = _settings(tmp_path / "client.ini")
    assert settings.accounts() == []
    settings.save_accounts([ALICE, BOB])
    settings.current_account = BOB.key
    settings.sync()
    again = _settings(tmp_path / "client.ini")
    assert again.accounts() == [ALICE, BOB]
    assert again.current_account == "bob@localhost:6000"
    again.save_accounts([BOB])
    assert again.accounts() == [BOB]
    assert "password" not in (tmp_path / "client.ini").read_text().lower()


def test_an_account_is_named_by_user_and_server() -> None:
    """The key names user, host and port; the title leaves out the default
    port; a label replaces the title; the initials are the label's words', or
    else the user's and the server's first letters."""
    assert ALICE.key == "alice@chat.example.com:5443"
    assert ALICE.title == "alice@chat.example.com"
    assert Account("localhost", 6000, "", "bob").title == "bob@localhost:6000"
    assert BOB.title == "Test server"
    assert ALICE.initials == "AC"
    assert BOB.initials == "TS"
    assert Account("h", 1, "", "x", label="Acme").initials == "AC"


def test_passwords_go_to_the_keyring_under_the_accounts_key() -> None:
    """With a keyring, a password is stored, read back and deleted, under the
    service ``chatnet-qt`` and the account's key; deleting twice is harmless."""
    backend = DictKeyring()
    store = PasswordStore(backend)
    assert store.available
    assert store.get(ALICE) is None
    assert store.set(ALICE, "correct horse")
    assert backend.entries == {(KEYRING_SERVICE, ALICE.key): "correct horse"}
    assert store.get(ALICE) == "correct horse"
    assert store.get(BOB) is None
    store.delete(ALICE)
    store.delete(ALICE)
    assert store.get(ALICE) is None and backend.entries == {}


@pytest.fixture
def system_keyring() -> Iterator[None]:
    """Restore keyring's process-wide backend after the test."""
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def test_the_keyring_keyring_chose_is_used_by_default(system_keyring: None) -> None:
    """Without a backend given, the store uses the one ``keyring`` is set to."""
    backend = DictKeyring()
    keyring.set_keyring(backend)
    store = PasswordStore()
    assert store.available
    assert store.set(BOB, "s3cret")
    assert backend.entries[(KEYRING_SERVICE, BOB.key)] == "s3cret"


def test_no_keyring_means_nothing_is_stored(system_keyring: None) -> None:
    """keyring's ``fail`` backend (what it falls back to without any) means no
    keyring: not available, nothing stored, nothing found, no error."""
    keyring.set_keyring(fail.Keyring())
    store = PasswordStore()
    assert not store.available
    assert not store.set(ALICE, "correct horse")
    assert store.get(ALICE) is None
    store.delete(ALICE)
    assert not PasswordStore(fail.Keyring()).available


def test_a_failing_keyring_counts_as_none() -> None:
    """A keyring that raises a ``KeyringError`` (here: locked) is given up for
    the rest of the run: the password is not stored, and none is read."""
    backend = DictKeyring()
    store = PasswordStore(backend)
    backend.locked = True
    assert not store.set(ALICE, "correct horse")
    assert not store.available
    backend.locked = False
    assert store.get(ALICE) is None
