"""The accounts a desktop client signs in to, and where their passwords live.

An :class:`Account` says where and as whom (host, port, CA file, username),
never the password; :meth:`ClientSettings.accounts
<qtclient.settings.ClientSettings.accounts>` keeps the list in ``QSettings``,
in the order of the account strip. :class:`PasswordStore` keeps passwords in
the system keyring through the ``keyring`` package when a keyring backend is
available; without one (no Secret Service on the session bus, no macOS or
Windows keychain, ``keyring`` not installed) it stores nothing, and the login
window asks for the password at each start.

No Qt here: the data and the keyring only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

#: The keyring "service" under which passwords are kept (one entry per
#: account, named by :attr:`Account.key`).
KEYRING_SERVICE = "chatnet-qt"
#: PROTOCOL.md 1: the default port (not shown in an account's title).
DEFAULT_PORT = 5443


@dataclass(frozen=True)
class Account:
    """Where to connect and as whom.

    Attributes:
        host: the server's hostname or address (as its certificate names it).
        port: its TCP port.
        ca_file: PEM file of the CA to trust ("" = the system's CAs).
        username: the account's name on that server (lower case).
        label: what the account strip calls it ("" = :attr:`title`'s default).
    """

    host: str
    port: int
    ca_file: str
    username: str
    label: str = ""

    @property
    def key(self) -> str:
        """What identifies the account: ``username@host:port`` (one account
        per user and server; also the keyring entry's name)."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def title(self) -> str:
        """The label, or ``username@host`` (``:port`` unless the default one)."""
        if self.label:
            return self.label
        server = self.host if self.port == DEFAULT_PORT else f"{self.host}:{self.port}"
        return f"{self.username}@{server}"

    @property
    def initials(self) -> str:
        """Up to two letters for the account's button: those of the label's
        first two words ("Acme office" -> ``AO``), or without a label the
        username's first and the server's (``alice`` on ``chat.example.com``
        -> ``AC``)."""
        words = self.label.split()
        if words:
            second = words[1][:1] if len(words) > 1 else words[0][1:2]
            return (words[0][:1] + second).upper()
        return (self.username[:1] + self.host[:1]).upper()


class PasswordStore:
    """Passwords in the system keyring, when there is one.

    ``keyring`` is imported on first use, and only then: a missing package, its
    ``fail`` (or ``null``) backend, :class:`keyring.errors.NoKeyringError` or any
    other :class:`keyring.errors.KeyringError` all mean "no keyring": nothing
    is stored and :attr:`available` turns False for the rest of the run.

    Args:
        backend: a ``keyring.backend.KeyringBackend`` to use; None takes the one
            ``keyring`` chooses (``keyring.get_keyring()``; the user's
            configuration and environment decide). Tests pass one that keeps
            passwords in a dict.
        service: the keyring service name.
    """

    log = Logger()

    def __init__(self, backend: Any = None, service: str = KEYRING_SERVICE) -> None:
        self.service = service
        self._backend = backend
        self._looked = backend is not None

    def _keyring(self) -> Any:
        """The backend, or None without a usable keyring."""
        if not self._looked:
            self._looked = True
            self._backend = _system_keyring()
        if self._backend is not None and _is_no_keyring(self._backend):
            self._backend = None
        return self._backend

    @property
    def available(self) -> bool:
        """Whether passwords can be remembered."""
        return self._keyring() is not None

    def get(self, account: Account) -> str | None:
        """The remembered password of ``account``, or None (none stored, or no keyring)."""
        backend = self._keyring()
        if backend is None:
            return None
        try:
            password = backend.get_password(self.service, account.key)
        except Exception as error:  # keyring.errors.KeyringError, or the D-Bus failing
            self._give_up(error)
            return None
        return password if isinstance(password, str) and password else None

    def set(self, account: Account, password: str) -> bool:
        """Remember ``password`` for ``account``.

        Returns:
            whether it was stored (False without a keyring, or if it refused).
        """
        backend = self._keyring()
        if backend is None:
            return False
        try:
            backend.set_password(self.service, account.key, password)
        except Exception as error:
            self._give_up(error)
            return False
        return True

    def delete(self, account: Account) -> None:
        """Forget ``account``'s password (nothing happens if none is stored)."""
        backend = self._keyring()
        if backend is None:
            return
        try:
            backend.delete_password(self.service, account.key)
        except Exception as error:
            if not _is_missing_entry(error):
                self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        """A keyring that fails is treated as none for the rest of the run."""
        self.log.warn("the system keyring failed ({error}); passwords are not remembered",
                      error=f"{type(error).__name__}: {error}")
        self._backend = None


def _system_keyring() -> Any:
    """``keyring``'s chosen backend, or None (not installed, or none usable)."""
    try:
        import keyring

        return keyring.get_keyring()
    except Exception:  # ImportError, or a backend that fails while loading
        return None


def _is_no_keyring(backend: Any) -> bool:
    """Whether ``backend`` is keyring's stand-in for "none" (``fail`` or ``null``)."""
    try:
        from keyring.backends import fail, null
    except ImportError:
        return False
    return isinstance(backend, fail.Keyring | null.Keyring)


def _is_missing_entry(error: Exception) -> bool:
    """``delete_password`` of an entry that does not exist."""
    try:
        from keyring.errors import PasswordDeleteError
    except ImportError:
        return False
    return isinstance(error, PasswordDeleteError)
