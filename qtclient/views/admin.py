"""The Administration window (docs/protocol.md 9), for accounts with the
``admin`` or ``auditor`` role.

Tabs: *Users* (``admin.users``; for admins Ban…, Unban, Reset password…,
Roles…, Create user…), *Rooms* (``admin.rooms``; for admins Ban room…,
Unban room), *Sessions* (``admin.sessions``), *Audit* (``admin.audit``, newest
first, filtered by action) and *Monitor* (``admin.monitor`` and the
``monitor.msg`` events, the last :data:`MONITOR_ROWS` kept). *Broadcast…*
(admins) sends ``admin.broadcast``.

Like every view it never touches the network: it is given ``request``
(:meth:`qtclient.controller.ChatController.admin`), which runs one ``admin.*``
op and calls back with its result or its error. An auditor sees the same
tabs without the write actions (the server would refuse them anyway); a
refused action shows the server's own sentence in the window's status line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chatnet.errors import ChatError, ErrorCode
from qtclient.i18n import _, ngettext
from qtclient.qt import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateTime,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QEvent,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    Qt,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

#: ``request(op, args, on_success, on_failure)``: one admin op (the controller's).
Request = Callable[[str, dict[str, Any], Callable[[Any], None],
                    Callable[[BaseException], None]], Any]
#: Rows the Monitor tab keeps (older ones are dropped).
MONITOR_ROWS = 1000
#: Rows asked per page (users, rooms, audit entries, sessions).
PAGE_SIZE = 100
#: The actions of the audit log (docs/protocol.md 9), for the filter.
AUDIT_ACTIONS = (
    "login", "login.failed", "logout", "login.locked_out", "password.changed",
    "password.reset", "room.kicked", "room.deleted", "user.created", "role.changed",
    "user.banned", "user.unbanned", "room.banned", "room.unbanned", "broadcast",
    "monitor.started", "monitor.stopped", "export", "message.deleted", "message.edited",
    "message.expired",
)
#: Server roles an admin may give (``bot`` is kept as it is).
GIVEN_ROLES = ("admin", "auditor")


def refusal(error: BaseException) -> str:
    """What the window says when a request fails: the server's own message when
    it gave one, else the client's usual sentence."""
    from qtclient.controller import describe_error

    if isinstance(error, ChatError) and error.message and error.code is not ErrorCode.INTERNAL:
        return _("The server refused it: {reason}").format(reason=error.message)
    return describe_error(error)


def when(ts: Any) -> str:
    """A time in ms since the epoch, local, to the second ("" for none)."""
    if not ts:
        return ""
    return QDateTime.fromMSecsSinceEpoch(int(ts)).toString("yyyy-MM-dd HH:mm:ss")


class AdminForm(QDialog):
    """A small form (ban, password, roles, new user, broadcast, room ban):
    fields added by key; OK emits :attr:`submitted` with their values, and is
    enabled only while the required ones are filled in (and ``check`` agrees).

    Signals:
        submitted(values): key -> str (lines, texts), bool (boxes), int or None
        (an "until" time in ms, None when not limited).
    """

    submitted = pyqtSignal(dict)

    def __init__(self, title: str, intro: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle(title)
        self.fields: dict[str, Any] = {}
        self.required: list[str] = []
        #: Extra validation: returns "" when fine, else why not (shown in the form).
        self.check: Callable[[dict[str, Any]], str] = lambda _v: ""
        self.form = QFormLayout()
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b3261e;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if intro:
            label = QLabel(intro)
            label.setWordWrap(True)
            layout.addWidget(label)
        layout.addLayout(self.form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(380)

    @property
    def ok_button(self) -> QPushButton:
        button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        assert button is not None
        return button

    def line(self, key: str, label: str, *, password: bool = False,
             required: bool = False) -> QLineEdit:
        edit = QLineEdit()
        if password:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        edit.textChanged.connect(self._validate)
        self._add(key, label, edit, required)
        return edit

    def text(self, key: str, label: str, *, required: bool = False) -> QPlainTextEdit:
        edit = QPlainTextEdit()
        edit.setMinimumHeight(90)
        edit.textChanged.connect(self._validate)
        self._add(key, label, edit, required)
        return edit

    def box(self, key: str, label: str, checked: bool = False) -> QCheckBox:
        box = QCheckBox(label)
        box.setChecked(checked)
        box.toggled.connect(self._validate)
        self.fields[key] = box
        self.form.addRow("", box)
        return box

    def until(self, key: str, label: str) -> tuple[QCheckBox, QDateTimeEdit]:
        """A box "until" and a date and time (tomorrow by default), off by default."""
        box = QCheckBox(label)
        edit = QDateTimeEdit(QDateTime.currentDateTime().addDays(1))
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        edit.setMinimumDateTime(QDateTime.currentDateTime())
        edit.setEnabled(False)
        box.toggled.connect(edit.setEnabled)
        row = QHBoxLayout()
        row.addWidget(box)
        row.addWidget(edit, 1)
        self.fields[key] = (box, edit)
        self.form.addRow(row)
        return box, edit

    def _add(self, key: str, label: str, widget: QWidget, required: bool) -> None:
        self.fields[key] = widget
        if required:
            self.required.append(key)
        self.form.addRow(label, widget)
        self._validate()

    def values(self) -> dict[str, Any]:
        """The fields' values by key."""
        result: dict[str, Any] = {}
        for key, field in self.fields.items():
            if isinstance(field, QLineEdit):
                result[key] = field.text()
            elif isinstance(field, QPlainTextEdit):
                result[key] = field.toPlainText()
            elif isinstance(field, QCheckBox):
                result[key] = field.isChecked()
            else:
                box, edit = field
                result[key] = edit.dateTime().toMSecsSinceEpoch() if box.isChecked() else None
        return result

    def _validate(self, *_args: Any) -> None:
        values = self.values()
        why = self.check(values)
        self.problem.setText(why)
        self.ok_button.setEnabled(not why and all(str(values[k]).strip() for k in self.required))

    def accept(self) -> None:
        """OK: emit the values and close."""
        self._validate()
        if not self.ok_button.isEnabled():
            return
        self.submitted.emit(self.values())
        super().accept()


class PagedTab(QWidget):
    """A table filled from a paged list op: the first page on :meth:`reload`,
    the next with *Load more* (``next_cursor``).

    Args:
        request: runs an admin op (see :data:`Request`).
        op: the list op (``admin.users`` …); key: its list's field.
        report: shows a sentence in the window's status line.
    """

    #: The table was filled again or grew.
    loaded = pyqtSignal()
    #: The column that takes the width left (-1: the last).
    stretch_column = -1

    def __init__(self, request: Request, op: str, key: str,
                 report: Callable[[str], None]) -> None:
        super().__init__()
        self.request = request
        self.op, self.key = op, key
        self.report = report
        self.items: list[dict[str, Any]] = []
        self.next_cursor: str | None = None
        self.generation = 0
        self.loading = False
        self.table = QTableWidget(0, len(self.columns()))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        if self.stretch_column < 0:
            header.setStretchLastSection(True)
        else:
            header.setSectionResizeMode(self.stretch_column, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self.update_actions)
        self.top = QHBoxLayout()
        self.refresh_button = QPushButton()
        self.refresh_button.clicked.connect(self.reload)
        self.count_label = QLabel()
        self.count_label.setStyleSheet("color: #5f6368;")
        self.more_button = QPushButton()
        self.more_button.clicked.connect(self.load_more)
        self.more_button.setEnabled(False)
        self.action_row = QHBoxLayout()
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.more_button)
        layout = QVBoxLayout(self)
        layout.addLayout(self.top)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        layout.addLayout(self.action_row)

    # -- to override -------------------------------------------------------------------------

    def columns(self) -> list[str]:
        """The translated column titles."""
        return []

    def args(self) -> dict[str, Any]:
        """The op's arguments besides the cursor and the limit (the filter)."""
        return {}

    def cells(self, item: dict[str, Any]) -> list[str]:
        """One row's texts."""
        return []

    def update_actions(self) -> None:
        """Enable the action buttons for the row selected."""

    # -- loading -----------------------------------------------------------------------------

    def reload(self) -> None:
        """Fetch the first page again (the filter may have changed)."""
        self._fetch(None)

    def load_more(self) -> None:
        """Fetch the next page, appended."""
        if self.next_cursor is not None:
            self._fetch(self.next_cursor)

    def _fetch(self, cursor: str | None) -> None:
        self.generation += 1
        generation = self.generation
        args = {**self.args(), "limit": PAGE_SIZE}
        if cursor is not None:
            args["cursor"] = cursor
        self.loading = True
        self.more_button.setEnabled(False)

        def got(result: dict[str, Any]) -> None:
            if generation != self.generation:
                return
            self.loading = False
            self._show(list(result.get(self.key) or []), result.get("next_cursor"),
                       append=cursor is not None)

        def failed(error: BaseException) -> None:
            if generation == self.generation:
                self.loading = False
                self.more_button.setEnabled(self.next_cursor is not None)
                self.report(refusal(error))

        self.request(self.op, args, got, failed)

    def _show(self, items: list[dict[str, Any]], cursor: str | None, append: bool) -> None:
        selected = self.selected()
        if not append:
            self.items = []
            self.table.setRowCount(0)
        for item in items:
            row = self.table.rowCount()
            self.table.insertRow(row)
            for column, text in enumerate(self.cells(item)):
                cell = QTableWidgetItem(text)
                cell.setToolTip(text)
                self.table.setItem(row, column, cell)
            self.items.append(item)
        self.next_cursor = str(cursor) if cursor else None
        self.more_button.setEnabled(self.next_cursor is not None)
        if not append and selected is not None:
            self.select_where(lambda item: self.same(item, selected))
        self.retranslate_count()
        self.update_actions()
        self.loaded.emit()

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Whether two items are the same thing (kept selected across a reload)."""
        return a == b

    def select_where(self, test: Callable[[dict[str, Any]], bool]) -> bool:
        """Select the first row whose item passes ``test``."""
        for row, item in enumerate(self.items):
            if test(item):
                self.table.selectRow(row)
                return True
        return False

    def selected(self) -> dict[str, Any] | None:
        """The item of the row selected, if any."""
        rows = self.table.selectionModel()
        if rows is None:
            return None
        chosen = rows.selectedRows()
        if not chosen or chosen[0].row() >= len(self.items):
            return None
        return self.items[chosen[0].row()]

    def retranslate(self) -> None:
        self.table.setHorizontalHeaderLabels(self.columns())
        self.refresh_button.setText(_("Refresh"))
        self.more_button.setText(_("Load more"))
        self.retranslate_count()

    def retranslate_count(self) -> None:
        n = len(self.items)
        text = ngettext("{n} shown", "{n} shown", n).format(n=n)
        if self.next_cursor is not None:
            text += " " + _("(more on the server)")
        self.count_label.setText(text)


class FilterTab(PagedTab):
    """A paged table with a filter line (``query``), searched on Enter or when
    typing pauses."""

    def __init__(self, request: Request, op: str, key: str,
                 report: Callable[[str], None]) -> None:
        super().__init__(request, op, key, report)
        self.query = QLineEdit()
        self.query.setClearButtonEnabled(True)
        self.pause = QTimer(self)
        self.pause.setSingleShot(True)
        self.pause.setInterval(400)
        self.pause.timeout.connect(self.reload)
        self.query.textEdited.connect(lambda _t: self.pause.start())
        self.query.returnPressed.connect(self.reload)
        self.top.addWidget(self.query, 1)
        self.top.addWidget(self.refresh_button)

    def args(self) -> dict[str, Any]:
        query = self.query.text().strip()
        return {"query": query} if query else {}


class UsersTab(FilterTab):
    """``admin.users``: username, display name, roles, banned, sessions; for
    admins the actions on the user selected."""

    #: An action wants its form: (kind, the user's item or {} for "create").
    form_requested = pyqtSignal(str, dict)
    stretch_column = 1

    def __init__(self, request: Request, report: Callable[[str], None], writable: bool) -> None:
        super().__init__(request, "admin.users", "users", report)
        self.writable = writable
        self.create_button = QPushButton()
        self.ban_button = QPushButton()
        self.unban_button = QPushButton()
        self.password_button = QPushButton()
        self.roles_button = QPushButton()
        for kind, button in (("create", self.create_button), ("ban", self.ban_button),
                             ("unban", self.unban_button), ("password", self.password_button),
                             ("roles", self.roles_button)):
            button.clicked.connect(lambda _c, k=kind: self._act(k))
            self.action_row.addWidget(button)
            button.setVisible(writable)
        self.action_row.addStretch(1)
        self.table.doubleClicked.connect(lambda _i: self._act("roles") if writable else None)
        self.retranslate()

    def columns(self) -> list[str]:
        return [_("Username"), _("Display name"), _("Roles"), _("Banned"), _("Sessions")]

    def cells(self, item: dict[str, Any]) -> list[str]:
        return [str(item.get("username", "")), str(item.get("display_name") or ""),
                ", ".join(sorted(item.get("roles") or [])),
                _("yes") if item.get("banned") else "",
                str(item.get("sessions", 0))]

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return bool(a.get("username") == b.get("username"))

    def update_actions(self) -> None:
        user = self.selected()
        self.ban_button.setEnabled(user is not None and not user.get("banned"))
        self.unban_button.setEnabled(user is not None and bool(user.get("banned")))
        self.password_button.setEnabled(user is not None)
        self.roles_button.setEnabled(user is not None)

    def _act(self, kind: str) -> None:
        user = self.selected()
        if kind == "create" or user is not None:
            self.form_requested.emit(kind, dict(user or {}))

    def retranslate(self) -> None:
        super().retranslate()
        self.query.setPlaceholderText(_("Filter by username or display name"))
        self.create_button.setText(_("Create user…"))
        self.ban_button.setText(_("Ban…"))
        self.unban_button.setText(_("Unban"))
        self.password_button.setText(_("Reset password…"))
        self.roles_button.setText(_("Roles…"))


class RoomsTab(FilterTab):
    """``admin.rooms``: every room; for admins Ban room… and Unban room."""

    form_requested = pyqtSignal(str, dict)
    stretch_column = 1

    def __init__(self, request: Request, report: Callable[[str], None], writable: bool) -> None:
        super().__init__(request, "admin.rooms", "rooms", report)
        self.ban_button = QPushButton()
        self.unban_button = QPushButton()
        for kind, button in (("ban_room", self.ban_button), ("unban_room", self.unban_button)):
            button.clicked.connect(lambda _c, k=kind: self._act(k))
            self.action_row.addWidget(button)
            button.setVisible(writable)
        self.action_row.addStretch(1)
        self.retranslate()

    def columns(self) -> list[str]:
        return [_("Id"), _("Name"), _("Kind"), _("Owner"), _("Members"), _("Banned")]

    def cells(self, item: dict[str, Any]) -> list[str]:
        kind = _("direct") if item.get("kind") == "direct" else (
            _("public") if item.get("visibility") == "public" else _("private"))
        return [str(item.get("room_id", "")), str(item.get("name") or ""), kind,
                str(item.get("owner") or ""), str(item.get("members_count", "")),
                _("yes") if item.get("banned") else ""]

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return bool(a.get("room_id") == b.get("room_id"))

    def update_actions(self) -> None:
        room = self.selected()
        self.ban_button.setEnabled(room is not None and not room.get("banned"))
        self.unban_button.setEnabled(room is not None and bool(room.get("banned")))

    def _act(self, kind: str) -> None:
        room = self.selected()
        if room is not None:
            self.form_requested.emit(kind, dict(room))

    def retranslate(self) -> None:
        super().retranslate()
        self.query.setPlaceholderText(_("Filter by room name"))
        self.ban_button.setText(_("Ban room…"))
        self.unban_button.setText(_("Unban room"))


class SessionsTab(PagedTab):
    """``admin.sessions``: this node's live sessions."""

    stretch_column = 3

    def __init__(self, request: Request, report: Callable[[str], None]) -> None:
        super().__init__(request, "admin.sessions", "sessions", report)
        self.top.addStretch(1)
        self.top.addWidget(self.refresh_button)
        self.retranslate()

    def columns(self) -> list[str]:
        return [_("User"), _("Since"), _("Address"), _("Program"), _("Session")]

    def cells(self, item: dict[str, Any]) -> list[str]:
        return [str(item.get("username", "")), when(item.get("since")),
                str(item.get("peer") or ""), str(item.get("client") or ""),
                str(item.get("session_id", ""))]


class AuditTab(PagedTab):
    """``admin.audit``, newest first, with a filter on the action."""

    def __init__(self, request: Request, report: Callable[[str], None]) -> None:
        super().__init__(request, "admin.audit", "entries", report)
        self.action = QComboBox()
        self.action.addItem("", "")
        for action in AUDIT_ACTIONS:
            self.action.addItem(action, action)
        self.action.currentIndexChanged.connect(lambda _i: self.reload())
        self.action_label = QLabel()
        self.top.addWidget(self.action_label)
        self.top.addWidget(self.action)
        self.top.addStretch(1)
        self.top.addWidget(self.refresh_button)
        self.retranslate()

    def columns(self) -> list[str]:
        return [_("Time"), _("Action"), _("User"), _("Address"), _("Details")]

    def args(self) -> dict[str, Any]:
        action = str(self.action.currentData() or "")
        return {"action": action} if action else {}

    def cells(self, item: dict[str, Any]) -> list[str]:
        details = item.get("details")
        return [when(item.get("ts")), str(item.get("action", "")),
                str(item.get("username") or ""), str(item.get("peer") or ""),
                json.dumps(details, ensure_ascii=False, sort_keys=True) if details else ""]

    def actions_shown(self) -> list[str]:
        """The actions of the entries shown, top (newest) first."""
        return [str(item.get("action", "")) for item in self.items]

    def retranslate(self) -> None:
        super().retranslate()
        self.action_label.setText(_("Action:"))
        self.action.setItemText(0, _("All actions"))


class MonitorTab(QWidget):
    """``admin.monitor``: while *Watch* is on, every message sent in any room is
    listed (room, sender, time, text), the last :data:`MONITOR_ROWS` kept."""

    def __init__(self, request: Request, report: Callable[[str], None],
                 room_name: Callable[[int], str]) -> None:
        super().__init__()
        self.request = request
        self.report = report
        self.room_name = room_name
        self.on = False
        self.watch = QCheckBox()
        self.watch.toggled.connect(self._toggled)
        self.clear_button = QPushButton()
        self.table = QTableWidget(0, 4)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        header = self.table.horizontalHeader()
        assert header is not None
        header.setStretchLastSection(True)
        self.clear_button.clicked.connect(lambda: self.table.setRowCount(0))
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #5f6368;")
        top = QHBoxLayout()
        top.addWidget(self.watch)
        top.addStretch(1)
        top.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        self.retranslate()

    def _toggled(self, on: bool) -> None:
        def done(_result: Any) -> None:
            self.on = on

        def failed(error: BaseException) -> None:
            self.watch.blockSignals(True)
            self.watch.setChecked(self.on)
            self.watch.blockSignals(False)
            self.report(refusal(error))

        if on != self.on:
            self.request("admin.monitor", {"on": on}, done, failed)

    def resume(self) -> None:
        """The connection is back: a new session is not watching, so ask again."""
        if self.on:
            self.request("admin.monitor", {"on": True}, lambda _r: None,
                         lambda e: self.report(refusal(e)))

    def stop(self) -> None:
        """Stop watching (the window closes)."""
        if self.on:
            self.on = False
            self.request("admin.monitor", {"on": False}, lambda _r: None, lambda _e: None)

    def add_message(self, message: dict[str, Any]) -> None:
        """A ``monitor.msg``: one more row at the bottom (the oldest dropped past the bound)."""
        if not self.on:
            return
        bar = self.table.verticalScrollBar()
        at_bottom = bar is None or bar.value() >= bar.maximum() - 2
        row = self.table.rowCount()
        self.table.insertRow(row)
        room_id = int(message.get("room_id") or 0)
        texts = [when(message.get("ts")), self.room_name(room_id),
                 str(message.get("sender") or ""), str(message.get("body") or "")]
        for column, text in enumerate(texts):
            cell = QTableWidgetItem(text)
            cell.setToolTip(text)
            self.table.setItem(row, column, cell)
        while self.table.rowCount() > MONITOR_ROWS:
            self.table.removeRow(0)
        if at_bottom:
            self.table.scrollToBottom()

    def rows(self) -> list[list[str]]:
        """The texts of every row (tests, and a copy for the user)."""
        return [[(self.table.item(r, c) or QTableWidgetItem()).text() for c in range(4)]
                for r in range(self.table.rowCount())]

    def retranslate(self) -> None:
        self.watch.setText(_("Watch every message sent in any room"))
        self.clear_button.setText(_("Clear"))
        self.note.setText(_("Watching is recorded in the audit log. The last {n} messages "
                            "are kept here.").format(n=MONITOR_ROWS))
        self.table.setHorizontalHeaderLabels([_("Time"), _("Room"), _("Sender"), _("Message")])


class AdminWindow(QDialog):
    """The Administration window of one account (not modal).

    Args:
        request: runs one admin op (``ChatController.admin``).
        account: the account's name, for the title.
        writable: the account is an ``admin`` (else an auditor: reading only).
        room_name: a room's name by id, for the monitor, when the account knows it.
    """

    def __init__(self, request: Request, account: str, writable: bool,
                 room_name: Callable[[int], str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.request = request
        self.account = account
        self.writable = writable
        self._room_name = room_name
        #: The form open (ban, password …), if any.
        self.form: AdminForm | None = None
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.broadcast_button = QPushButton()
        self.broadcast_button.setVisible(writable)
        self.broadcast_button.clicked.connect(self.open_broadcast)
        self.tabs = QTabWidget()
        self.users = UsersTab(request, self.report, writable)
        self.rooms = RoomsTab(request, self.report, writable)
        self.sessions = SessionsTab(request, self.report)
        self.audit = AuditTab(request, self.report)
        self.monitor = MonitorTab(request, self.report, self.room_name)
        for tab in (self.users, self.rooms, self.sessions, self.audit, self.monitor):
            self.tabs.addTab(tab, "")
        self.users.form_requested.connect(self.open_form)
        self.rooms.form_requested.connect(self.open_form)
        self.tabs.currentChanged.connect(self._tab_shown)
        # The monitor names rooms from the Rooms tab (the admin is in few of them).
        self.monitor.watch.toggled.connect(
            lambda on: self.rooms.reload() if on and not self.rooms.items else None)
        self.role_label = QLabel()
        self.role_label.setStyleSheet("color: #5f6368;")
        top = QHBoxLayout()
        top.addWidget(self.role_label, 1)
        top.addWidget(self.broadcast_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.resize(860, 560)
        self.retranslate()
        self.users.reload()

    def room_name(self, room_id: int) -> str:
        for room in self.rooms.items:
            if room.get("room_id") == room_id and room.get("name"):
                return f"#{room['name']}"
        label = self._room_name(room_id) if self._room_name is not None else ""
        if label and label != "?":
            return label.replace("# ", "#", 1)
        return f"#{room_id}"

    def connection_changed(self, view: str) -> None:
        """The account's connection state: back online, the monitor resumes."""
        if view == "online":
            self.monitor.resume()

    def _tab_shown(self, index: int) -> None:
        tab = self.tabs.widget(index)
        if isinstance(tab, PagedTab) and not tab.items and not tab.loading:
            tab.reload()

    def report(self, text: str, error: bool = True) -> None:
        """A sentence in the status line under the tabs (red for a refusal)."""
        self.status.setStyleSheet("color: #b3261e;" if error else "color: #1e7e34;")
        self.status.setText(text)

    # -- the write actions (admins) ----------------------------------------------------------

    def open_form(self, kind: str, item: dict[str, Any]) -> AdminForm | None:
        """The form of an action (``ban``, ``unban``, ``password``, ``roles``,
        ``create``, ``ban_room``, ``unban_room``); unban and unban_room need no
        form and are sent at once."""
        name = str(item.get("username", ""))
        room = str(item.get("name") or item.get("room_id", ""))
        if kind == "unban":
            self._send("admin.unban", {"username": name}, _("@{name} may sign in again.")
                       .format(name=name), self.users)
            return None
        if kind == "unban_room":
            self._send("admin.unban_room", {"room_id": item["room_id"]},
                       _("#{room} is open again.").format(room=room), self.rooms)
            return None
        form: AdminForm
        if kind == "ban":
            form = AdminForm(_("Ban @{name}").format(name=name), _(
                "Their sessions end at once and they cannot sign in until the ban "
                "ends or they are unbanned."), self)
            form.line("reason", _("Reason:"))
            form.until("until", _("Until"))
            form.submitted.connect(lambda v: self._send("admin.ban", {
                "username": name, **({"reason": v["reason"].strip()} if v["reason"].strip()
                                     else {}),
                **({"until": v["until"]} if v["until"] is not None else {})},
                _("@{name} is banned.").format(name=name), self.users))
        elif kind == "password":
            form = AdminForm(_("Reset the password of @{name}").format(name=name), _(
                "Their sessions end and they must sign in with the new password."), self)
            form.line("password", _("New password:"), password=True, required=True)
            form.line("again", _("Again:"), password=True, required=True)
            form.check = lambda v: (_("The two passwords differ.")
                                    if v["again"] and v["password"] != v["again"] else "")
            form.submitted.connect(lambda v: self._send(
                "admin.reset_password", {"username": name, "password": v["password"]},
                _("The password of @{name} was reset.").format(name=name), self.users))
        elif kind == "roles":
            held = set(item.get("roles") or [])
            form = AdminForm(_("Roles of @{name}").format(name=name), "", self)
            form.box("admin", _("admin: may do everything here"), "admin" in held)
            form.box("auditor", _("auditor: may read users, rooms, sessions, the audit log "
                                  "and watch messages"), "auditor" in held)
            kept = sorted(held - set(GIVEN_ROLES))
            form.submitted.connect(lambda v: self._send("admin.set_role", {
                "username": name,
                "roles": sorted(kept + [r for r in GIVEN_ROLES if v[r]])},
                _("The roles of @{name} were changed.").format(name=name), self.users))
        elif kind == "create":
            form = AdminForm(_("Create a user"), "", self)
            form.line("username", _("Username:"), required=True)
            form.line("password", _("Password:"), password=True, required=True)
            form.box("admin", _("admin"))
            form.box("auditor", _("auditor"))
            form.submitted.connect(lambda v: self._send("admin.create_user", {
                "username": v["username"].strip(), "password": v["password"],
                "roles": [r for r in GIVEN_ROLES if v[r]]},
                _("@{name} was created.").format(name=v["username"].strip()), self.users))
        elif kind == "ban_room":
            form = AdminForm(_("Ban #{room}").format(room=room), _(
                "Nobody can send or join there until it is unbanned; the history stays "
                "readable."), self)
            form.line("reason", _("Reason:"))
            form.submitted.connect(lambda v: self._send("admin.ban_room", {
                "room_id": item["room_id"],
                **({"reason": v["reason"].strip()} if v["reason"].strip() else {})},
                _("#{room} is banned.").format(room=room), self.rooms))
        else:
            raise ValueError(kind)
        return self._show_form(form)

    def open_broadcast(self) -> AdminForm:
        """*Broadcast…*: a text every signed-in user gets as an announcement."""
        form = AdminForm(_("Broadcast an announcement"), _(
            "Everyone signed in sees it now; others when they next sign in."), self)
        form.text("body", _("Text:"), required=True)
        form.submitted.connect(lambda v: self._send(
            "admin.broadcast", {"body": v["body"].strip()}, _("The announcement was sent."),
            None))
        return self._show_form(form)

    def _show_form(self, form: AdminForm) -> AdminForm:
        if self.form is not None:
            self.form.close()
        self.form = form
        form.destroyed.connect(lambda _o=None, f=form: self._form_gone(f))
        form.open()
        return form

    def _form_gone(self, form: AdminForm) -> None:
        if self.form is form:
            self.form = None

    def _send(self, op: str, args: dict[str, Any], done: str, refresh: PagedTab | None) -> None:
        def succeeded(_result: Any) -> None:
            self.report(done, error=False)
            if refresh is not None:
                refresh.reload()
            if self.audit.items:
                self.audit.reload()

        self.report(_("Working…"), error=False)
        self.request(op, args, succeeded, lambda e: self.report(refusal(e)))

    # -- window ------------------------------------------------------------------------------

    def retranslate(self) -> None:
        self.setWindowTitle(_("Administration — {account}").format(account=self.account))
        self.role_label.setText(
            _("You are an administrator: you may change users and rooms.") if self.writable
            else _("You are an auditor: you may read everything here but change nothing."))
        self.broadcast_button.setText(_("Broadcast…"))
        for index, title in enumerate((_("Users"), _("Rooms"), _("Sessions"), _("Audit log"),
                                       _("Monitor"))):
            self.tabs.setTabText(index, title)
        for tab in (self.users, self.rooms, self.sessions, self.audit):
            tab.retranslate()
        self.monitor.retranslate()

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate the window."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def done(self, result: int) -> None:
        """Closing stops the monitor (the server would keep sending otherwise)."""
        self.monitor.stop()
        super().done(result)
