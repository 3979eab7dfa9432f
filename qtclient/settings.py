"""What the desktop client remembers between runs, kept with ``QSettings``."""

from __future__ import annotations

from dataclasses import dataclass

from qtclient.accounts import DEFAULT_PORT, Account
from qtclient.i18n import DEFAULT_LANGUAGE, LANGUAGES
from qtclient.qt import QSettings

#: Minutes without keyboard or mouse input before presence turns ``away``.
DEFAULT_IDLE_MINUTES = 5


@dataclass
class LoginDefaults:
    """The login form as it was last submitted (the password is never stored)."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    ca_file: str = ""
    username: str = ""


class ClientSettings:
    """Typed access to the client's ``QSettings``.

    Args:
        store: the QSettings to use; None means the per-user native store
            (organisation ``chatnet``, application ``chatnet-qt``). Tests and
            the screenshot script pass an INI file of their own so that they
            never touch the user's settings.
    """

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else QSettings("chatnet", "chatnet-qt")

    def _int(self, key: str, default: int) -> int:
        value = self.store.value(key, default)
        try:
            return int(value)
        except (TypeError, ValueError):
            return default

    def _str(self, key: str, default: str) -> str:
        value = self.store.value(key, default)
        return value if isinstance(value, str) else default

    @property
    def language(self) -> str:
        """The interface language code (one of :data:`~qtclient.i18n.LANGUAGES`)."""
        language = self._str("ui/language", DEFAULT_LANGUAGE)
        return language if language in LANGUAGES else DEFAULT_LANGUAGE

    @language.setter
    def language(self, value: str) -> None:
        self.store.setValue("ui/language", value)

    @property
    def idle_minutes(self) -> int:
        """Minutes of inactivity before presence turns ``away`` (0: never)."""
        return max(0, self._int("presence/idle_minutes", DEFAULT_IDLE_MINUTES))

    @idle_minutes.setter
    def idle_minutes(self, value: int) -> None:
        self.store.setValue("presence/idle_minutes", int(value))

    @property
    def notifications(self) -> bool:
        """Whether desktop notifications are shown."""
        return self._str("ui/notifications", "true") == "true"

    @notifications.setter
    def notifications(self, value: bool) -> None:
        self.store.setValue("ui/notifications", "true" if value else "false")

    @property
    def microphone(self) -> str:
        """The chosen microphone's device id (hex of ``QAudioDevice.id()``), or ''
        for the system's default."""
        return self._str("audio/microphone", "")

    @microphone.setter
    def microphone(self, value: str) -> None:
        self.store.setValue("audio/microphone", value)

    @property
    def speaker(self) -> str:
        """The chosen speaker's device id (hex), or '' for the system's default."""
        return self._str("audio/speaker", "")

    @speaker.setter
    def speaker(self, value: str) -> None:
        self.store.setValue("audio/speaker", value)

    def login_defaults(self) -> LoginDefaults:
        """The last login form, or the defaults."""
        return LoginDefaults(host=self._str("login/host", "localhost"),
                             port=self._int("login/port", DEFAULT_PORT),
                             ca_file=self._str("login/ca_file", ""),
                             username=self._str("login/username", ""))

    def remember_login(self, login: LoginDefaults) -> None:
        """Store the submitted login form (not the password)."""
        self.store.setValue("login/host", login.host)
        self.store.setValue("login/port", login.port)
        self.store.setValue("login/ca_file", login.ca_file)
        self.store.setValue("login/username", login.username)

    def accounts(self) -> list[Account]:
        """The accounts signed in to, in the account strip's order (no passwords)."""
        accounts: list[Account] = []
        count = self.store.beginReadArray("accounts")
        try:
            for i in range(count):
                self.store.setArrayIndex(i)
                account = Account(host=self._str("host", ""), port=self._int("port", DEFAULT_PORT),
                                  ca_file=self._str("ca_file", ""),
                                  username=self._str("username", ""),
                                  label=self._str("label", ""))
                if account.host and account.username and all(
                        a.key != account.key for a in accounts):
                    accounts.append(account)
        finally:
            self.store.endArray()
        return accounts

    def save_accounts(self, accounts: list[Account]) -> None:
        """Replace the remembered accounts with ``accounts`` (in this order)."""
        self.store.remove("accounts")
        self.store.beginWriteArray("accounts", len(accounts))
        for i, account in enumerate(accounts):
            self.store.setArrayIndex(i)
            self.store.setValue("host", account.host)
            self.store.setValue("port", account.port)
            self.store.setValue("ca_file", account.ca_file)
            self.store.setValue("username", account.username)
            self.store.setValue("label", account.label)
        self.store.endArray()

    @property
    def current_account(self) -> str:
        """The :attr:`~qtclient.accounts.Account.key` of the account shown last ("" = none)."""
        return self._str("ui/current_account", "")

    @current_account.setter
    def current_account(self, key: str) -> None:
        self.store.setValue("ui/current_account", key)

    def sync(self) -> None:
        """Write pending changes to disk now."""
        self.store.sync()
