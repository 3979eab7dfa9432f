"""The login window: server, CA file, account, language."""

from __future__ import annotations

from collections.abc import Callable

from qtclient.i18n import LANGUAGES, _
from qtclient.qt import (
    QCheckBox,
    QCloseEvent,
    QComboBox,
    QEvent,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QKeyEvent,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    Qt,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.settings import LoginDefaults
from qtclient.views.icons import app_icon


class LoginWindow(QWidget):
    """Asks where to connect and as whom.

    The same form serves three purposes: the window shown at start (closing
    it quits the program), *adding* an account from the main window (a dialog
    with Cancel; closing it only cancels), and signing in again to a
    remembered account (:meth:`for_account`: server and username fixed).

    Args:
        defaults: what the form starts with.
        language: the interface language shown in the language box.
        parent: the main window, for the dialog kinds.
        adding: a dialog over the main window (Cancel, no language box).
        keyring: whether passwords can be remembered; without one the
            "Remember the password" box is unchecked and disabled, and its
            tooltip says why.

    Attributes:
        target: what the app is logging in with this form (the app's business).

    Signals:
        login_requested(host, port, ca_file, username, password, register, remember):
            the user pressed "Log in" with a complete form.
        language_chosen(code): the user picked another interface language.
        close_requested(): the start window was closed (the program should quit).
        cancelled(): a dialog form was closed or cancelled.
    """

    login_requested = pyqtSignal(str, int, str, str, str, bool, bool)
    language_chosen = pyqtSignal(str)
    close_requested = pyqtSignal()
    cancelled = pyqtSignal()

    def __init__(self, defaults: LoginDefaults, language: str,
                 parent: QWidget | None = None, *, adding: bool = False,
                 keyring: bool = True) -> None:
        super().__init__(parent)
        # What the status line says, as a function so a language switch re-reads it.
        self._status_source: Callable[[], str] | None = None
        self.adding = adding
        self.keyring = keyring
        #: The account signed in again (:meth:`for_account`), by its title.
        self.account_title = ""
        self.target: object = None
        if adding:
            self.setWindowFlag(Qt.WindowType.Dialog)
            self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(440)
        self.heading = QLabel()
        heading_font = self.heading.font()
        heading_font.setPointSizeF(heading_font.pointSizeF() * 1.5)
        heading_font.setBold(True)
        self.heading.setFont(heading_font)
        self.host = QLineEdit(defaults.host)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(defaults.port)
        self.ca_file = QLineEdit(defaults.ca_file)
        self.browse = QPushButton()
        self.browse.clicked.connect(self._browse)
        self.username = QLineEdit(defaults.username)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.register = QCheckBox()
        self.remember = QCheckBox()
        self.remember.setChecked(keyring)
        self.remember.setEnabled(keyring)
        self.language = QComboBox()
        for code, name in LANGUAGES.items():
            self.language.addItem(name, code)
        self.language.setCurrentIndex(max(0, self.language.findData(language)))
        self.language.currentIndexChanged.connect(
            lambda _i: self.language_chosen.emit(str(self.language.currentData())))
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.login_button = QPushButton()
        self.login_button.setDefault(True)
        self.login_button.clicked.connect(self.submit)
        self.cancel_button = QPushButton()
        self.cancel_button.clicked.connect(self.close)
        self.cancel_button.setVisible(adding)
        for field in (self.host, self.ca_file, self.username, self.password):
            field.returnPressed.connect(self.submit)

        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_file, 1)
        ca_row.addWidget(self.browse)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._labels = [QLabel() for _ in range(6)]
        self.form.addRow(self._labels[0], self.host)
        self.form.addRow(self._labels[1], self.port)
        self.form.addRow(self._labels[2], ca_row)
        self.form.addRow(self._labels[3], self.username)
        self.form.addRow(self._labels[4], self.password)
        self.form.addRow("", self.register)
        self.form.addRow("", self.remember)
        self.form.addRow(self._labels[5], self.language)
        if adding:
            self.form.setRowVisible(self.language, False)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.login_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(12)
        layout.addWidget(self.heading)
        layout.addLayout(self.form)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.retranslate()
        (self.password if defaults.username else self.username).setFocus()

    def retranslate(self) -> None:
        """Re-read every text (after a language switch)."""
        if self.account_title:
            self.setWindowTitle(_("chatnet — Sign in"))
            self.heading.setText(_("Sign in to {account}").format(account=self.account_title))
        elif self.adding:
            self.setWindowTitle(_("chatnet — Add an account"))
            self.heading.setText(_("Add an account"))
        else:
            self.setWindowTitle(_("chatnet — Log in"))
            self.heading.setText(_("Log in to chatnet"))
        for label, text in zip(self._labels, (_("Server"), _("Port"), _("CA certificate"),
                                              _("Username"), _("Password"), _("Language")),
                               strict=True):
            label.setText(text)
        self.ca_file.setPlaceholderText(_("The system's certificates"))
        self.browse.setText(_("Browse…"))
        self.register.setText(_("Create this account (if the server allows it)"))
        self.remember.setText(_("Remember the password (in the system keyring)"))
        self.remember.setToolTip("" if self.keyring else _(
            "No system keyring was found (such as GNOME Keyring, KWallet or the macOS "
            "keychain), so the password cannot be remembered: it is asked for at each start."))
        self.login_button.setText(_("Log in"))
        self.cancel_button.setText(_("Cancel"))
        if self._status_source is not None:
            self.status.setText(self._status_source())

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate the window."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def keyPressEvent(self, event: QKeyEvent | None) -> None:
        """Escape cancels a dialog; it does not close the start window (the
        application's only window then)."""
        if event is not None and event.key() == Qt.Key.Key_Escape:
            if self.adding:
                self.close()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Closing the start window quits the program (the app hides it instead
        when it hands over to the main window); closing a dialog cancels it."""
        if self.adding:
            self.cancelled.emit()
        else:
            self.close_requested.emit()
        super().closeEvent(event)

    def _browse(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, _("Choose the server's CA certificate"), self.ca_file.text(),
            _("PEM certificates (*.pem *.crt);;All files (*)"))
        if path:
            self.ca_file.setText(path)

    def for_account(self, login: LoginDefaults, title: str) -> None:
        """Sign in again to a remembered account: its server, port and
        username are filled in and fixed; the CA file may still change."""
        self.fill(login)
        self.account_title = title
        for field in (self.host, self.username):
            field.setReadOnly(True)
        self.port.setReadOnly(True)
        self.register.setChecked(False)
        self.register.hide()
        self.retranslate()

    def fill(self, login: LoginDefaults) -> None:
        """Put ``login``'s server, port, CA file and username in the form."""
        self.host.setText(login.host)
        self.port.setValue(login.port)
        self.ca_file.setText(login.ca_file)
        self.username.setText(login.username)
        (self.password if login.username else self.username).setFocus()

    def submit(self) -> None:
        """Check the form; emit :attr:`login_requested` when it is complete."""
        host, username = self.host.text().strip(), self.username.text().strip().lower()
        if not host or not username or not self.password.text():
            self.show_error(_("Enter the server, your username and your password."))
            return
        self.set_busy(True)
        self.login_requested.emit(host, self.port.value(), self.ca_file.text().strip(),
                                  username, self.password.text(), self.register.isChecked(),
                                  self.remember.isChecked() and self.keyring)

    def set_busy(self, busy: bool) -> None:
        """While connecting: disable the form and say so."""
        for widget in (self.host, self.port, self.ca_file, self.browse, self.username,
                       self.password, self.register, self.login_button):
            widget.setEnabled(not busy)
        self.remember.setEnabled(self.keyring and not busy)
        if busy:
            self._set_status(lambda: _("Connecting…"), error=False)

    def show_error(self, text: str) -> None:
        """Show why the login failed (already translated) and enable the form."""
        self.set_busy(False)
        self._set_status(lambda: text, error=True)

    def show_message(self, text: str) -> None:
        """A neutral note, e.g. why the last session ended."""
        self._set_status(lambda: text, error=False)

    def _set_status(self, source: Callable[[], str], error: bool) -> None:
        self._status_source = source
        self.status.setStyleSheet("color: #d93025;" if error else "color: #5f6368;")
        self.status.setText(source())
