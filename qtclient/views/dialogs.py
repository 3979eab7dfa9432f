"""Small windows: create a room, browse the directory, find a person, invite,
settings, the quick switcher (Ctrl+K), go to a date, and export one's
conversations.

Each is opened without blocking the event loop (``open()``, never
``exec()``), so the reactor keeps running while it is shown, and reports
what the user chose with a signal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from qtclient.i18n import LANGUAGES, _, ngettext
from qtclient.models.rooms import RoomListModel, RoomSortProxy
from qtclient.qt import (
    ID,
    QAbstractItemView,
    QCalendarWidget,
    QCheckBox,
    QComboBox,
    QDate,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QEvent,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QItemSelectionModel,
    QKeyEvent,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QModelIndex,
    QObject,
    QPushButton,
    QSpinBox,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.views.delegates import RoomDelegate

_DATA = Qt.ItemDataRole.UserRole


class _Dialog(QDialog):
    """A dialog that re-reads its texts on a language switch."""

    def __init__(self, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def retranslate(self) -> None:
        """Set every text in the current language."""

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate the dialog."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)


class CreateRoomDialog(_Dialog):
    """Name, topic and visibility of a new room.

    Signals:
        create_requested(name, topic, public)
    """

    create_requested = pyqtSignal(str, str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QLineEdit()
        self.name.setMaxLength(100)
        self.topic = QLineEdit()
        self.public = QCheckBox()
        self.public.setChecked(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self.labels = [QLabel(), QLabel()]
        form = QFormLayout()
        form.addRow(self.labels[0], self.name)
        form.addRow(self.labels[1], self.topic)
        form.addRow("", self.public)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(380)
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("New room"))
        self.labels[0].setText(_("Name"))
        self.labels[1].setText(_("Topic"))
        self.public.setText(_("Public: anyone can find and join it"))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setText(_("Create"))

    def _accept(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.name.setFocus()
            return
        self.create_requested.emit(name, self.topic.text().strip(), self.public.isChecked())
        self.accept()


class _SearchDialog(_Dialog):
    """A search field over a list of results, with one action button."""

    #: Milliseconds of no typing before a search is sent.
    DEBOUNCE_MS = 250

    search_requested = pyqtSignal(str)

    def __init__(self, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.query = QLineEdit()
        self.results = QListWidget()
        self.results.itemDoubleClicked.connect(lambda _item: self._chosen())
        self.action = QPushButton()
        self.action.setDefault(True)
        self.action.clicked.connect(self._chosen)
        self.close_button = QPushButton()
        self.close_button.clicked.connect(self.reject)
        self.note = QLabel()
        buttons = QDialogButtonBox()
        buttons.addButton(self.action, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.RejectRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.query)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.setMinimumSize(420, 380)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: self.search_requested.emit(self.query.text().strip()))
        self.query.textChanged.connect(lambda _t: self._timer.start())

    def _chosen(self) -> None:
        item = self.results.currentItem()
        if item is None and self.results.count() == 1:
            item = self.results.item(0)
        if item is not None:
            self.choose(item.data(_DATA))
            self.accept()

    def choose(self, value: Any) -> None:
        """The user picked the item whose data is ``value``."""
        raise NotImplementedError


class DirectoryDialog(_SearchDialog):
    """The public rooms; join one.

    Signals:
        search_requested(query): look up rooms (``room.directory``).
        join_requested(room_id)
    """

    join_requested = pyqtSignal(ID)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._count = 0
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Browse rooms"))
        self.query.setPlaceholderText(_("Search public rooms"))
        self.action.setText(_("Join"))
        self.close_button.setText(_("Close"))
        self.note.setText(ngettext("{n} room", "{n} rooms", self._count).format(n=self._count))

    def show_rooms(self, rooms: list[dict[str, Any]]) -> None:
        """Fill the list with ``room.directory``'s rooms."""
        self.results.clear()
        for room in rooms:
            members = int(room.get("members_count", 0))
            text = ngettext("{name} — {n} member", "{name} — {n} members", members).format(
                name=room.get("name", ""), n=members)
            if room.get("topic"):
                # One line: a second one would be cut where fallback (CJK) fonts
                # are taller than the list's font; the full topic is the tooltip.
                text += f" · {room['topic']}"
            item = QListWidgetItem(text)
            item.setToolTip(str(room.get("topic") or room.get("name", "")))
            item.setData(_DATA, int(room["room_id"]))
            self.results.addItem(item)
        self._count = len(rooms)
        self.retranslate()

    def choose(self, value: Any) -> None:
        """Join the chosen room."""
        self.join_requested.emit(int(value))


class UserSearchDialog(_SearchDialog):
    """Find a person and start a direct conversation (or invite them).

    Args:
        purpose: ``message`` (start a conversation) or ``invite`` (to a room).

    Signals:
        search_requested(query): look up people (``user.search``).
        user_chosen(username)
    """

    user_chosen = pyqtSignal(str)

    def __init__(self, purpose: str = "message", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.purpose = purpose
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        if self.purpose == "invite":
            self.setWindowTitle(_("Invite someone"))
            self.action.setText(_("Invite"))
        else:
            self.setWindowTitle(_("Message someone"))
            self.action.setText(_("Message"))
        self.query.setPlaceholderText(_("Search by name"))
        self.close_button.setText(_("Close"))

    def show_users(self, users: list[dict[str, Any]]) -> None:
        """Fill the list with ``user.search``'s profiles."""
        self.results.clear()
        for user in users:
            name = user.get("display_name") or user["username"]
            item = QListWidgetItem(f"{name} (@{user['username']})")
            item.setData(_DATA, str(user["username"]))
            self.results.addItem(item)

    def choose(self, value: Any) -> None:
        """Report the chosen username."""
        self.user_chosen.emit(str(value))


class SettingsDialog(_Dialog):
    """Language (applied at once), away-after-idle minutes, notifications, and the
    microphone and speaker calls use.

    Signals:
        language_chosen(code), idle_minutes_changed(minutes),
        notifications_changed(on), microphone_chosen(device id hex, '' = default),
        speaker_chosen(device id hex)
    """

    language_chosen = pyqtSignal(str)
    idle_minutes_changed = pyqtSignal(int)
    notifications_changed = pyqtSignal(bool)
    microphone_chosen = pyqtSignal(str)
    speaker_chosen = pyqtSignal(str)

    def __init__(self, language: str, idle_minutes: int, notifications: bool,
                 parent: QWidget | None = None, microphone: str = "", speaker: str = "",
                 inputs: list[tuple[str, str]] | None = None,
                 outputs: list[tuple[str, str]] | None = None) -> None:
        super().__init__(parent)
        self.language = QComboBox()
        for code, name in LANGUAGES.items():
            self.language.addItem(name, code)
        self.language.setCurrentIndex(max(0, self.language.findData(language)))
        self.language.currentIndexChanged.connect(
            lambda _i: self.language_chosen.emit(str(self.language.currentData())))
        self.idle = QSpinBox()
        self.idle.setRange(0, 240)
        self.idle.setValue(idle_minutes)
        self.idle.valueChanged.connect(self.idle_minutes_changed)
        self.notifications = QCheckBox()
        self.notifications.setChecked(notifications)
        self.notifications.toggled.connect(self.notifications_changed)
        self.microphone = self._device_box(inputs or [], microphone, self.microphone_chosen)
        self.speaker = self._device_box(outputs or [], speaker, self.speaker_chosen)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.labels = [QLabel(), QLabel(), QLabel(), QLabel()]
        form = QFormLayout()
        form.addRow(self.labels[0], self.language)
        form.addRow(self.labels[1], self.idle)
        form.addRow("", self.notifications)
        form.addRow(self.labels[2], self.microphone)
        form.addRow(self.labels[3], self.speaker)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(400)
        self.retranslate()

    @staticmethod
    def _device_box(found: list[tuple[str, str]], chosen: str, signal: Any) -> QComboBox:
        box = QComboBox()
        box.addItem("", "")  # the system's default; named in retranslate
        for device_id, description in found:
            box.addItem(description, device_id)
        box.setCurrentIndex(max(0, box.findData(chosen)))
        box.currentIndexChanged.connect(lambda _i: signal.emit(str(box.currentData())))
        return box

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Settings"))
        self.labels[0].setText(_("Language"))
        self.labels[1].setText(_("Away after"))
        self.labels[2].setText(_("Microphone"))
        self.labels[3].setText(_("Speaker"))
        for box in (self.microphone, self.speaker):
            box.setItemText(0, _("System default"))
        self.idle.setSuffix(" " + _("min"))
        self.idle.setSpecialValueText(_("Never"))
        self.notifications.setText(_("Desktop notifications for direct messages and mentions"))
        close = self.buttons.button(QDialogButtonBox.StandardButton.Close)
        if close is not None:
            close.setText(_("Close"))


class QuickSwitcher(_Dialog):
    """Ctrl+K: a filter line over the user's conversations; Enter opens the
    highlighted one.

    The list is the room list (same order: most recent activity first),
    filtered by name as the user types; the first match is highlighted, Up and
    Down move the highlight without leaving the filter line, Enter or a click
    opens it, Escape closes the window.

    Args:
        rooms: the controller's room list model (read only).

    Signals:
        room_chosen(room_id)
    """

    room_chosen = pyqtSignal(ID)

    def __init__(self, rooms: RoomListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.proxy = RoomSortProxy(self)
        self.proxy.setSourceModel(rooms)
        self.query = QLineEdit()
        self.query.setClearButtonEnabled(True)
        self.query.installEventFilter(self)
        self.query.textChanged.connect(self._filter)
        self.results = QListView()
        self.results.setModel(self.proxy)
        self.results.setItemDelegate(RoomDelegate(self.results))
        self.results.setUniformItemSizes(True)
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.results.clicked.connect(self._chosen)
        self.results.activated.connect(self._chosen)
        self.note = QLabel()
        self.note.setStyleSheet("color: #5f6368;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.query)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.note)
        self.setMinimumSize(380, 340)
        self.retranslate()
        self._filter("")
        self.query.setFocus()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Go to a conversation"))
        self.query.setPlaceholderText(_("Type a room or a person"))
        self.note.setText(_("↑ ↓ to choose, Enter to open, Esc to close"))

    def _filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        self._highlight(0)

    def _highlight(self, row: int) -> None:
        count = self.proxy.rowCount()
        selection = self.results.selectionModel()
        if selection is None:
            return
        if count == 0:
            selection.clear()
            return
        index = self.proxy.index(max(0, min(row, count - 1)), 0)
        selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.results.scrollTo(index)

    def current_room(self) -> int | None:
        """The highlighted conversation's room id (None when nothing matches)."""
        index = self.results.currentIndex()
        if not index.isValid():
            return None
        return int(index.data(RoomListModel.Roles.RoomId))

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        """Up, Down, Page Up/Down and Enter in the filter line act on the list."""
        if watched is self.query and isinstance(event, QKeyEvent) \
                and event.type() == QEvent.Type.KeyPress:
            key, row = event.key(), self.results.currentIndex().row()
            viewport = self.results.viewport()
            height = viewport.height() if viewport is not None else 0
            page = max(1, height // RoomDelegate.ROW_HEIGHT)
            moves = {Qt.Key.Key_Down: row + 1, Qt.Key.Key_Up: row - 1,
                     Qt.Key.Key_PageDown: row + page, Qt.Key.Key_PageUp: row - page}
            if key in moves:
                self._highlight(moves[Qt.Key(key)])
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._chosen(self.results.currentIndex())
                return True
        return super().eventFilter(watched, event)

    def _chosen(self, index: QModelIndex) -> None:
        if index.isValid():
            self.room_chosen.emit(int(index.data(RoomListModel.Roles.RoomId)))
            self.accept()


def to_date(day: QDate) -> date:
    """A ``QDate`` as a ``datetime.date``."""
    return date(day.year(), day.month(), day.day())


class DateDialog(_Dialog):
    """"Go to date…": a calendar; OK shows the conversation from that day.

    Args:
        room_name: the conversation's name, for the title.
        today: the day selected at first, and the last one that can be chosen.

    Signals:
        date_chosen(year, month, day)
    """

    date_chosen = pyqtSignal(int, int, int)

    def __init__(self, room_name: str, today: QDate, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.room_name = room_name
        self.calendar = QCalendarWidget()
        self.calendar.setGridVisible(True)
        self.calendar.setMaximumDate(today)
        self.calendar.setSelectedDate(today)
        self.calendar.activated.connect(lambda _day: self._accept())
        self.label = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.calendar)
        layout.addWidget(self.buttons)
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Go to date"))
        self.label.setText(_("Show {room} from the first message of the day:").format(
            room=self.room_name))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setText(_("Go"))

    def _accept(self) -> None:
        day = self.calendar.selectedDate()
        self.date_chosen.emit(day.year(), day.month(), day.day())
        self.accept()


def ask_export_name(parent: QWidget, suggested: str) -> str:
    """The export dialog's "Choose…" button: a save dialog; "" if cancelled."""
    path, _filter = QFileDialog.getSaveFileName(parent, _("Export to"), suggested)
    return str(path)


class ExportDialog(_Dialog):
    """"Export my conversations…": a date range and a file name.

    NAME.jsonl (one message per line, JSON) and NAME.txt (readable) are
    written; an existing file is never replaced (the export then takes
    "NAME (1)", "NAME (2)" …).

    Args:
        today: the last day offered (and the range's default end).
        folder: where the file name starts (the Documents folder).

    Attributes:
        choose_path: asks for a file name, given the one suggested; tests
            replace it instead of driving a native dialog.

    Signals:
        export_requested(first_day, last_day, name): both days included
            (``datetime.date``), the path without extension.
    """

    export_requested = pyqtSignal(object, object, str)

    def __init__(self, today: QDate, folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choose_path: Callable[[QWidget, str], str] = ask_export_name
        self.first = QDateEdit(today.addDays(-30))
        self.last = QDateEdit(today)
        for edit in (self.first, self.last):
            edit.setCalendarPopup(True)
            edit.setMaximumDate(today)
        self.name = QLineEdit(str(folder / f"chatnet-export-{today.toString('yyyy-MM-dd')}"))
        self.browse = QPushButton()
        self.browse.clicked.connect(self._browse)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #d93025;")
        self.problem.setWordWrap(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #5f6368;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self.labels = [QLabel(), QLabel(), QLabel()]
        name_row = QHBoxLayout()
        name_row.addWidget(self.name, 1)
        name_row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow(self.labels[0], self.first)
        form.addRow(self.labels[1], self.last)
        form.addRow(self.labels[2], name_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(480)
        self.retranslate()

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Export my conversations"))
        self.labels[0].setText(_("From"))
        self.labels[1].setText(_("To (included)"))
        self.labels[2].setText(_("File name"))
        self.browse.setText(_("Choose…"))
        self.note.setText(_("Every conversation's messages of those days are written to "
                            "NAME.jsonl (one message per line, for programs) and NAME.txt "
                            "(to read). No file is replaced."))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if ok is not None:
            ok.setText(_("Export"))

    def _browse(self) -> None:
        path = self.choose_path(self, self.name.text())
        if path:
            self.name.setText(str(Path(path).with_suffix("")
                                  if Path(path).suffix in (".jsonl", ".txt") else path))

    def _accept(self) -> None:
        first, last = to_date(self.first.date()), to_date(self.last.date())
        name = self.name.text().strip()
        if last < first:
            self.problem.setText(_("The last day is before the first."))
            return
        if not name:
            self.problem.setText(_("Give a file name."))
            self.name.setFocus()
            return
        path = Path(name).expanduser()
        if path.is_dir():
            self.problem.setText(_("That is a folder; give a file name in it."))
            return
        if not path.parent.is_dir():
            self.problem.setText(_("The folder {folder} does not exist.").format(
                folder=str(path.parent)))
            return
        self.export_requested.emit(first, last, str(path))
        self.accept()
