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

    Signals:
        login_requested(host, port, ca_file, username, password, register):
            the user pressed "Log in" with a complete form.
        language_chosen(code): the user picked another interface language.
        close_requested(): the window was closed (the program should quit).
    """

    login_requested = pyqtSignal(str, int, str, str, str, bool)
    language_chosen = pyqtSignal(str)
    close_requested = pyqtSignal()

    def __init__(self, defaults: LoginDefaults, language: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # What the status line says, as a function so a language switch re-reads it.
        self._status_source: Callable[[], str] | None = None
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
        self.form.addRow(self._labels[5], self.language)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
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
        self.setWindowTitle(_("chatnet — Log in"))
        self.heading.setText(_("Log in to chatnet"))
        for label, text in zip(self._labels, (_("Server"), _("Port"), _("CA certificate"),
                                              _("Username"), _("Password"), _("Language")),
                               strict=True):
            label.setText(text)
        self.ca_file.setPlaceholderText(_("The system's certificates"))
        self.browse.setText(_("Browse…"))
        self.register.setText(_("Create this account (if the server allows it)"))
        self.login_button.setText(_("Log in"))
        if self._status_source is not None:
            self.status.setText(self._status_source())

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate the window."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def keyPressEvent(self, event: QKeyEvent | None) -> None:
        """Escape does not close the window (it is the application's only window)."""
        if event is not None and event.key() == Qt.Key.Key_Escape:
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Closing the login window quits the program (the app hides it instead
        when it hands over to the main window)."""
        self.close_requested.emit()
        super().closeEvent(event)

    def _browse(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, _("Choose the server's CA certificate"), self.ca_file.text(),
            _("PEM certificates (*.pem *.crt);;All files (*)"))
        if path:
            self.ca_file.setText(path)

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
                                  username, self.password.text(), self.register.isChecked())

    def set_busy(self, busy: bool) -> None:
        """While connecting: disable the form and say so."""
        for widget in (self.host, self.port, self.ca_file, self.browse, self.username,
                       self.password, self.register, self.login_button):
            widget.setEnabled(not busy)
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
