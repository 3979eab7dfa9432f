"""The Administration window (docs/protocol.md 9), for accounts with the
``admin`` or ``auditor`` role.

Tabs: *Users* (``admin.users``; for admins Ban…, Unban, Reset password…,
Roles…, Create user…), *Rooms* (``admin.rooms``; for admins Ban room…,
Unban room), *Sessions* (``admin.sessions``), *Audit* (``admin.audit``, newest
first, filtered by action) and *Monitor* (``admin.monitor`` and the
``monitor.msg`` events, the last :data:`MONITOR_ROWS` kept) and *Export*
(``admin.export``, its file downloaded through the account's downloads).
*Broadcast…* (admins) sends ``admin.broadcast``.

Like every view it never touches the network: it is given ``request``
(:meth:`qtclient.controller.ChatController.admin`), which runs one ``admin.*``
op and calls back with its result or its error. An auditor sees the same
tabs without the write actions (the server would refuse them anyway); a
refused action shows the server's own sentence in the window's status line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from chatnet.errors import ChatError, ErrorCode
from qtclient.exporting import day_range
from qtclient.i18n import _, ngettext
from qtclient.models.transfers import CANCELLED, DONE, FAILED, TransfersModel
from qtclient.qt import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDate,
    QDateEdit,
    QDateTime,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QEvent,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QModelIndex,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStandardPaths,
    Qt,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTimer,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.views.delegates import role_text

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
#: ``download(file_id, name, dest, size)`` -> transfer id: the account's download
#: machinery (:meth:`qtclient.transfers.TransferManager.download`).
Download = Callable[[str, str, Path, int], int]
#: ``members(room_id, on_success, on_failure)`` -> whether it asked: every member
#: of a room the account is in (``room.members``); False for another room.
Members = Callable[[int, Callable[[list[dict[str, Any]]], None],
                    Callable[[BaseException], None]], bool]


def refusal(error: BaseException) -> str:
    """What the window says when a request fails: the server's own message when
    it gave one, else the client's usual sentence."""
    from qtclient.controller import describe_error

    if isinstance(error, ChatError) and error.message and error.code is not ErrorCode.INTERNAL:
        return _("The server refused it: {reason}").format(reason=error.message)
    return describe_error(error)


def free_path(path: Path) -> Path:
    """``path``, or ``name (1).ext``, ``name (2).ext`` … beside it: the first that
    does not exist (an export never replaces a file)."""
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def ask_export_path(parent: QWidget, suggested: str) -> str:
    """The export's save dialog, starting at ``suggested``; "" if cancelled.
    (An existing file is never replaced: :func:`free_path` picks a free name.)"""
    path, _filter = QFileDialog.getSaveFileName(
        parent, _("Save the export"), suggested, _("JSON Lines (*.jsonl)"),
        options=QFileDialog.Option.DontConfirmOverwrite)
    return str(path)


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
    """``admin.rooms``: every room; for admins Ban room… and Unban room.

    Beside the table, the members of the room selected: read with
    ``room.members`` (``members``) when the account is a member of it; the
    server shows members to members only, so for another room the panel says
    so and gives the count ``admin.rooms`` has.
    """

    form_requested = pyqtSignal(str, dict)
    stretch_column = 1

    def __init__(self, request: Request, report: Callable[[str], None], writable: bool,
                 members: Members | None = None) -> None:
        super().__init__(request, "admin.rooms", "rooms", report)
        self.members = members
        self.ban_button = QPushButton()
        self.unban_button = QPushButton()
        for kind, button in (("ban_room", self.ban_button), ("unban_room", self.unban_button)):
            button.clicked.connect(lambda _c, k=kind: self._act(k))
            self.action_row.addWidget(button)
            button.setVisible(writable)
        self.action_row.addStretch(1)
        #: The room whose members are shown (or asked for), and its members.
        self.members_room: int | None = None
        self.member_items: list[dict[str, Any]] = []
        self._members_generation = 0
        self._members_state = "none"  # none | loading | shown | hidden | failed
        self._members_error = ""
        self.members_title = QLabel()
        self.members_title.setWordWrap(True)
        self.members_list = QListWidget()
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.members_title)
        column.addWidget(self.members_list, 1)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        index = layout.indexOf(self.table)
        layout.removeWidget(self.table)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(panel)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        layout.insertWidget(index, self.splitter, 1)
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
        room_id = int(room["room_id"]) if room is not None else None
        if room_id != self.members_room:
            self.show_members(room)
        else:
            self._members_text()  # the count may have changed with a reload

    def show_members(self, room: dict[str, Any] | None) -> None:
        """Show the members of ``room`` (an ``admin.rooms`` item; None: no room)."""
        self._members_generation += 1
        generation = self._members_generation
        self.members_room = int(room["room_id"]) if room is not None else None
        self.member_items = []
        self.members_list.clear()
        if room is None:
            self._members_state = "none"
        else:
            self._members_state = "loading"

            def got(members: list[dict[str, Any]]) -> None:
                if generation == self._members_generation:
                    self.member_items = list(members)
                    self._members_state = "shown"
                    self._fill_members()

            def failed(error: BaseException) -> None:
                if generation != self._members_generation:
                    return
                if isinstance(error, ChatError) and error.code in (ErrorCode.NOT_FOUND,
                                                                   ErrorCode.FORBIDDEN):
                    self._members_state = "hidden"  # left the room meanwhile
                else:
                    self._members_state, self._members_error = "failed", refusal(error)
                self._members_text()

            if self.members is None or not self.members(int(room["room_id"]), got, failed):
                self._members_state = "hidden"
        self._members_text()

    def _fill_members(self) -> None:
        self.members_list.clear()
        for member in self.member_items:
            username = str(member.get("username", ""))
            name = str(member.get("display_name") or "")
            text = f"@{username}" + (f" — {name}" if name and name != username else "")
            role = str(member.get("role") or "")
            if role and role != "member":
                text += f" ({role_text(role).lower()})"
            self.members_list.addItem(text)
        self._members_text()

    def _members_text(self) -> None:
        room = next((r for r in self.items if r.get("room_id") == self.members_room), None)
        label = f"#{room.get('name') or room.get('room_id')}" if room else ""
        count = int(room.get("members_count") or 0) if room else 0
        state = self._members_state
        if state == "none":
            text = _("Select a room to see its members.")
        elif state == "loading":
            text = _("Reading the members of {room}…").format(room=label)
        elif state == "shown":
            text = ngettext("{n} member of {room}:", "{n} members of {room}:",
                            len(self.member_items)).format(n=len(self.member_items), room=label)
        elif state == "hidden":
            text = ngettext(
                "{room} has {n} member. The server shows who they are to members of the "
                "room only, and you are not one.",
                "{room} has {n} members. The server shows who they are to members of the "
                "room only, and you are not one.", count).format(room=label, n=count)
        else:
            text = self._members_error
        self.members_list.setVisible(state == "shown")
        self.members_title.setText(text)

    def _act(self, kind: str) -> None:
        room = self.selected()
        if room is not None:
            self.form_requested.emit(kind, dict(room))

    def retranslate(self) -> None:
        super().retranslate()
        self.query.setPlaceholderText(_("Filter by room name"))
        self.ban_button.setText(_("Ban room…"))
        self.unban_button.setText(_("Unban room"))
        if hasattr(self, "members_title"):
            self._fill_members() if self._members_state == "shown" else self._members_text()


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
    listed (room, sender, time, text), the last :data:`MONITOR_ROWS` kept; the
    filter line shows only rows whose room, sender or text contain it (the
    others stay, hidden)."""

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
        self.filter = QLineEdit()
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(lambda _text: self._apply_filter())
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #5f6368;")
        top = QHBoxLayout()
        top.addWidget(self.watch)
        top.addStretch(1)
        top.addWidget(self.filter, 2)
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
        self.table.setRowHidden(row, not self._matches(row))
        while self.table.rowCount() > MONITOR_ROWS:
            self.table.removeRow(0)
        if at_bottom:
            self.table.scrollToBottom()

    def _matches(self, row: int) -> bool:
        wanted = self.filter.text().strip().casefold()
        if not wanted:
            return True
        return any(wanted in (self.table.item(row, c) or QTableWidgetItem()).text().casefold()
                   for c in (1, 2, 3))

    def _apply_filter(self) -> None:
        for row in range(self.table.rowCount()):
            self.table.setRowHidden(row, not self._matches(row))

    def visible_rows(self) -> list[list[str]]:
        """The texts of the rows the filter shows."""
        return [row for index, row in enumerate(self.rows())
                if not self.table.isRowHidden(index)]

    def rows(self) -> list[list[str]]:
        """The texts of every row (tests, and a copy for the user)."""
        return [[(self.table.item(r, c) or QTableWidgetItem()).text() for c in range(4)]
                for r in range(self.table.rowCount())]

    def retranslate(self) -> None:
        self.watch.setText(_("Watch every message sent in any room"))
        self.filter.setPlaceholderText(_("Show only rows with… (room, sender or text)"))
        self.clear_button.setText(_("Clear"))
        self.note.setText(_("Watching is recorded in the audit log. The last {n} messages "
                            "are kept here.").format(n=MONITOR_ROWS))
        self.table.setHorizontalHeaderLabels([_("Time"), _("Room"), _("Sender"), _("Message")])


class ExportTab(QWidget):
    """``admin.export``: the messages of a range of days (local time, both
    included), of every room or one, of every sender or one, as JSON Lines.

    *Export…* asks where to save (:attr:`choose_save_path`, replaceable by
    tests), runs the op, shows its ``admin.export.progress`` events
    (:meth:`progress`), then downloads the file the server made through the
    account's downloads (``download``, watched in ``transfers``) to the path
    chosen, or to ``name (1).jsonl`` … if that file exists.

    Signals:
        finished(path): the export is saved there ("" if it failed).
    """

    finished = pyqtSignal(str)

    def __init__(self, request: Request, report: Callable[[str, bool], None],
                 download: Download | None, transfers: TransfersModel | None) -> None:
        super().__init__()
        self.request = request
        self.report = report
        self.download = download
        self.transfers = transfers
        self.choose_save_path: Callable[[QWidget, str], str] = ask_export_path
        #: The rooms offered (room id, name), from ``admin.rooms``.
        self.rooms: list[tuple[int, str]] = []
        #: The file being written (while the export or its download runs).
        self.dest: Path | None = None
        self.transfer_id: int | None = None
        self.messages = 0
        today = QDate.currentDate()
        self.first = QDateEdit(today.addDays(-6))
        self.last = QDateEdit(today)
        for edit in (self.first, self.last):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.dateChanged.connect(self._validate)
        self.room_box = QComboBox()
        self.user = QLineEdit()
        self.start_button = QPushButton()
        self.start_button.clicked.connect(self.start)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.hide()
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.form = QFormLayout()
        self.first_label, self.last_label = QLabel(), QLabel()
        self.room_label, self.user_label = QLabel(), QLabel()
        self.form.addRow(self.first_label, self.first)
        self.form.addRow(self.last_label, self.last)
        self.form.addRow(self.room_label, self.room_box)
        self.form.addRow(self.user_label, self.user)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(self.form)
        layout.addLayout(row)
        layout.addWidget(self.bar)
        layout.addWidget(self.state)
        layout.addStretch(1)
        if transfers is not None:
            transfers.dataChanged.connect(self._transfer_changed)
        self.set_rooms([])
        self.retranslate()

    @property
    def running(self) -> bool:
        """Whether an export (or its download) is under way."""
        return self.dest is not None

    def set_rooms(self, rooms: list[dict[str, Any]]) -> None:
        """Offer these rooms (``admin.rooms`` items) besides "Every room"."""
        chosen = self.room_box.currentData()
        self.rooms = [(int(r["room_id"]), str(r.get("name") or f"#{r['room_id']}"))
                      for r in rooms if "room_id" in r]
        self.room_box.clear()
        self.room_box.addItem(_("Every room"), None)
        for room_id, name in self.rooms:
            self.room_box.addItem(f"#{name} ({room_id})", room_id)
        index = self.room_box.findData(chosen)
        self.room_box.setCurrentIndex(max(0, index))

    def choose_room(self, room_id: int | None) -> bool:
        """Export only ``room_id`` (None: every room); False if it is not offered."""
        index = self.room_box.findData(room_id)
        if index >= 0:
            self.room_box.setCurrentIndex(index)
        return index >= 0

    def args(self) -> dict[str, Any]:
        """The ``admin.export`` arguments of the form."""
        since, until = day_range(_day(self.first.date()), _day(self.last.date()))
        args: dict[str, Any] = {"since": since, "until": until}
        room_id = self.room_box.currentData()
        if room_id is not None:
            args["room_id"] = int(room_id)
        username = self.user.text().strip().lstrip("@")
        if username:
            args["username"] = username
        return args

    def _validate(self, *_args: Any) -> None:
        ordered = self.first.date() <= self.last.date()
        self.start_button.setEnabled(ordered and not self.running)
        if not ordered:
            self.state.setText(_("The first day is after the last one."))
        elif not self.running:
            self.state.setText("")

    def start(self) -> bool:
        """*Export…*: ask where to save, then run ``admin.export``.

        Returns:
            False if nothing started (cancelled, or an export runs).
        """
        if self.running or self.download is None:
            return False
        first, last = self.first.date().toString("yyyy-MM-dd"), self.last.date().toString(
            "yyyy-MM-dd")
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DownloadLocation)
        suggested = Path(folder or Path.home()) / f"chatnet-export-{first}-{last}.jsonl"
        chosen = self.choose_save_path(self, str(suggested))
        if not chosen:
            return False
        self.dest = free_path(Path(chosen))
        self.messages = 0
        self.bar.setRange(0, 0)
        self.bar.show()
        self.state.setText(_("Exporting…"))
        self._validate()
        self.request("admin.export", self.args(), self._exported, self._failed)
        return True

    def progress(self, data: dict[str, Any]) -> None:
        """An ``admin.export.progress {messages}`` event."""
        if self.running and self.transfer_id is None:
            self.messages = int(data.get("messages") or 0)
            self.state.setText(ngettext("Exporting… {n} message so far",
                                        "Exporting… {n} messages so far",
                                        self.messages).format(n=self.messages))

    def _exported(self, result: dict[str, Any]) -> None:
        dest = self.dest
        if dest is None or self.download is None:
            return
        self.messages = int(result.get("messages") or 0)
        size = int(result.get("size") or 0)
        dest = self.dest = free_path(dest)  # one may have appeared meanwhile
        self.bar.setRange(0, max(1, size))
        self.state.setText(ngettext("Downloading the export of {n} message…",
                                    "Downloading the export of {n} messages…",
                                    self.messages).format(n=self.messages))
        self.transfer_id = self.download(str(result["file_id"]), str(result.get("name") or
                                                                      dest.name), dest, size)

    def _failed(self, error: BaseException) -> None:
        self._end("")
        self.state.setText(_("Export failed: {reason}").format(reason=refusal(error)))
        self.report(refusal(error), True)

    def _transfer_changed(self, top_left: QModelIndex, *_args: Any) -> None:
        if self.transfer_id is None or self.transfers is None:
            return
        item = self.transfers.item(self.transfer_id)
        if item is None:
            return
        self.bar.setValue(item.done)
        if item.state == DONE and self.dest is not None:
            path = str(self.dest)
            self._end(path)
            text = ngettext("Exported {n} message to {path}.", "Exported {n} messages to {path}.",
                            self.messages).format(n=self.messages, path=path)
            self.state.setText(text)
            self.report(text, False)
        elif item.state in (FAILED, CANCELLED):
            reason = item.error or _("cancelled")
            self._end("")
            self.state.setText(_("Export failed: {reason}").format(reason=reason))

    def _end(self, path: str) -> None:
        self.dest = None
        self.transfer_id = None
        self.bar.hide()
        self._validate()
        self.finished.emit(path)

    def retranslate(self) -> None:
        """Read the texts again (after a language change)."""
        self.intro.setText(_(
            "Every message of the days chosen (local time, both included), of every room "
            "or one, of every sender or one, saved as JSON Lines: one message per line. "
            "An existing file is never replaced."))
        self.first_label.setText(_("From:"))
        self.last_label.setText(_("To:"))
        self.room_label.setText(_("Room:"))
        self.user_label.setText(_("Sender:"))
        self.user.setPlaceholderText(_("Every sender (or a username)"))
        self.room_box.setItemText(0, _("Every room"))
        self.start_button.setText(_("Export…"))


def _day(value: QDate) -> date:
    return date(value.year(), value.month(), value.day())


class AdminWindow(QDialog):
    """The Administration window of one account (not modal).

    Args:
        request: runs one admin op (``ChatController.admin``).
        account: the account's name, for the title.
        writable: the account is an ``admin`` (else an auditor: reading only).
        room_name: a room's name by id, for the monitor, when the account knows it.
        download: the account's downloads, for the export's file (no Export tab
            without it); transfers: where its progress shows.
        members: reads the members of a room the account is in (the Rooms tab).
    """

    def __init__(self, request: Request, account: str, writable: bool,
                 room_name: Callable[[int], str] | None = None,
                 parent: QWidget | None = None, download: Download | None = None,
                 transfers: TransfersModel | None = None,
                 members: Members | None = None) -> None:
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
        self.rooms = RoomsTab(request, self.report, writable, members)
        self.sessions = SessionsTab(request, self.report)
        self.audit = AuditTab(request, self.report)
        self.monitor = MonitorTab(request, self.report, self.room_name)
        self.export = ExportTab(request, self.report, download, transfers)
        for tab in (self.users, self.rooms, self.sessions, self.audit, self.monitor,
                    self.export):
            self.tabs.addTab(tab, "")
        self.tabs.setTabVisible(self.tabs.indexOf(self.export), download is not None)
        self.rooms.loaded.connect(lambda: self.export.set_rooms(self.rooms.items))
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
        if tab is self.export and not self.rooms.items and not self.rooms.loading:
            tab = self.rooms  # the export offers the rooms
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
                                       _("Monitor"), _("Export"))):
            self.tabs.setTabText(index, title)
        for tab in (self.users, self.rooms, self.sessions, self.audit):
            tab.retranslate()
        self.monitor.retranslate()
        self.export.retranslate()

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate the window."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def done(self, result: int) -> None:
        """Closing stops the monitor (the server would keep sending otherwise)."""
        self.monitor.stop()
        super().done(result)
