"""A real ``keyring`` backend for the tests: passwords in a dict, in this process.

It implements keyring's own backend API (``keyring.backend.KeyringBackend``),
so the client's :class:`~qtclient.accounts.PasswordStore` talks to it exactly
as to the Secret Service or the macOS keychain; tests hand it over either
directly or through ``keyring.set_keyring``. Its priority is below keyring's
``fail`` backend, so keyring never picks it by itself.
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class DictKeyring(KeyringBackend):
    """Passwords kept in :attr:`entries`, by (service, username).

    Attributes:
        locked: while True every call fails as a locked keyring does
            (``KeyringLocked``, a ``KeyringError``).
    """

    priority = -1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.locked = False

    def _check(self) -> None:
        if self.locked:
            raise KeyringLocked("the test keyring is locked")

    def get_password(self, service: str, username: str) -> str | None:
        self._check()
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._check()
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._check()
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")
