"""The main window: rooms on the left, the conversation in the centre, members on the right.

Layout (left to right)::

    +-------------+----------------------------------------+-------------+
    | me, status  | room name · topic  [Invite][Leave][Mem]| Members (n) |
    | [filter]    | (call bar: reserved, hidden)           |  ● Alice    |
    | Invitations | connection banner (when reconnecting)  |    @alice   |
    | # plans     |                                        |             |
    | [Join][Dec] |                                        |             |
    | # general 3 |                                        |  ● bob      |
    | ● bob       |   day separator / bubbles / reactions  |             |
    |             |   "alice is typing…"                   |             |
    | [+][⌕][@]   | uploads: name ▓▓▓░░ [Cancel] (if any)  |             |
    |             | [ composer                 ][📎][Send] |             |
    +-------------+----------------------------------------+-------------+
    | ● Connected                                      presence [Online] |

The invitations section (hidden while there are none) lists rooms the user
was invited to; Join accepts the selected one (or double-click), Decline
refuses it.

Files dropped on the message list or the composer, or chosen with 📎, are
uploaded and sent to the open room; the attachments strip lists those
uploads. The call bar is an empty, hidden slot where the voice-call feature
(its own issue) will go.

There is one MainWindow per account: :class:`~qtclient.views.app_window.AppWindow`
shows the current account's as a page beside the account strip (a QMainWindow
made a child widget keeps its status bar: the connection state is the
account's own). Its *Chat* menu goes into the AppWindow's menu bar while the
account is shown; closing and window activation are the AppWindow's.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtclient.i18n import _, ngettext
from qtclient.models.invites import InviteListModel
from qtclient.models.members import MemberListModel
from qtclient.models.presence import OWN_STATES, STATE_COLOURS, STATE_NAMES
from qtclient.models.rooms import RoomListModel
from qtclient.models.timeline import TimelineModel
from qtclient.models.transfers import RoomUploadsProxy
from qtclient.qt import (
    ID,
    QAbstractItemView,
    QAction,
    QComboBox,
    QContextMenuEvent,
    QDateTime,
    QDesktopServices,
    QEvent,
    QFileDialog,
    QFont,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QIcon,
    QItemSelectionModel,
    QKeySequence,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QModelIndex,
    QProgressDialog,
    QPushButton,
    QSize,
    QSplitter,
    QStackedWidget,
    QStandardPaths,
    Qt,
    QToolButton,
    QUrl,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.views.attachments import AttachmentsStrip, FileDropFilter
from qtclient.views.calls import CallBar, IncomingCall
from qtclient.views.conversation import BurnButton, Composer, TimelineView
from qtclient.views.delegates import (
    InviteDelegate,
    MemberDelegate,
    RoomDelegate,
    avatar_pixmap,
)
from qtclient.views.icons import app_icon, paperclip_icon
from qtclient.views.search import SearchPanel

if TYPE_CHECKING:
    from qtclient.controller import ChatController

_RR = RoomListModel.Roles
_MR = MemberListModel.Roles
_IR = InviteListModel.Roles
#: Invitation rows shown before the invitations list scrolls.
INVITE_ROWS = 3


def downloads_folder() -> Path:
    """The user's Downloads folder (their home folder if the system names none)."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DownloadLocation)
    return Path(folder) if folder else Path.home()


def ask_files_to_send(parent: QWidget) -> list[str]:
    """The attach button's file dialog: the files chosen (empty if cancelled)."""
    paths, _filter = QFileDialog.getOpenFileNames(parent, _("Send files"), str(Path.home()))
    return list(paths)


def ask_where_to_save(parent: QWidget, suggested: str) -> str:
    """The Download button's save dialog, starting at ``suggested``; "" if cancelled."""
    path, _filter = QFileDialog.getSaveFileName(parent, _("Save file"), suggested)
    return str(path)


def open_with_system(path: str) -> None:
    """Open a file with the program the desktop associates with it."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(path))


class MembersView(QListView):
    """The members list; right click for a direct message or to remove someone.

    Signals:
        direct_requested(username), kick_requested(username),
        profile_requested(username): show their profile card.
    """

    direct_requested = pyqtSignal(str)
    kick_requested = pyqtSignal(str)
    profile_requested = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.delegate = MemberDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setUniformItemSizes(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.me = ""
        #: The user's role in the room shown (decides who they may remove).
        self.my_role = "member"
        self.doubleClicked.connect(self._double_clicked)

    def _double_clicked(self, index: QModelIndex) -> None:
        username = index.data(_MR.Username)
        if username and username != self.me:
            self.direct_requested.emit(str(username))

    def member_actions(self, index: QModelIndex, menu: QMenu) -> list[QAction]:
        """Fill ``menu`` with what can be done to the member at ``index``
        (``objectName``: ``message``, ``profile``, ``kick``)."""
        username = index.data(_MR.Username) if index.isValid() else None
        if not username or username == self.me:
            return []
        actions = []
        message = QAction(_("Send a direct message"), menu)
        message.setObjectName("message")
        message.triggered.connect(lambda: self.direct_requested.emit(str(username)))
        actions.append(message)
        profile = QAction(_("Profile…"), menu)
        profile.setObjectName("profile")
        profile.triggered.connect(lambda: self.profile_requested.emit(str(username)))
        actions.append(profile)
        if self.may_remove(str(index.data(_MR.Role))):
            kick = QAction(_("Remove from the room"), menu)
            kick.setObjectName("kick")
            kick.triggered.connect(lambda: self.kick_requested.emit(str(username)))
            actions.append(kick)
        for action in actions:
            menu.addAction(action)
        return actions

    def may_remove(self, role: str) -> bool:
        """Whether the user may remove a member with ``role`` (docs/protocol.md 5:
        owners remove anyone else, moderators only plain members)."""
        if self.my_role == "owner":
            return role != "owner"
        return self.my_role == "moderator" and role == "member"

    def contextMenuEvent(self, e: QContextMenuEvent | None) -> None:
        """Right click on a member: its menu."""
        if e is None:
            return
        menu = QMenu(self)
        if self.member_actions(self.indexAt(e.pos()), menu):
            menu.exec(e.globalPos())


class MainWindow(QMainWindow):
    """The window people live in. It reads the controller's models and state and
    emits intents; :mod:`qtclient.app` connects those to the controller.

    Args:
        state: the controller, read only (models, current room, connection).

    Attributes:
        choose_files: asks which files to send (the attach button); returns
            paths. Tests replace it (and the two below) instead of driving a
            native dialog.
        choose_save_path: asks where to save a download, given the suggested
            path (in the Downloads folder); returns "" if the user cancels.
        open_file: opens a downloaded file (the system's default program).
    """

    room_selected = pyqtSignal(ID)
    older_requested = pyqtSignal(ID)
    newer_requested = pyqtSignal(ID)
    #: words, room id (-1: all conversations), order (relevance | recent)
    search_requested = pyqtSignal(str, ID, str)
    search_more_requested = pyqtSignal()
    #: room id, seq: open that message (a search result)
    message_requested = pyqtSignal(ID, ID)
    #: room id: "Go to date…" for that conversation
    date_dialog_requested = pyqtSignal(ID)
    export_dialog_requested = pyqtSignal()
    #: Cancel in the export's progress window.
    export_cancel_requested = pyqtSignal()
    #: text, msg_id replied to (-1: none), ttl in seconds (0: not burn after reading)
    send_requested = pyqtSignal(str, ID, ID)
    edit_requested = pyqtSignal(ID, ID, str)
    delete_requested = pyqtSignal(ID, ID)
    react_requested = pyqtSignal(ID, ID, str, bool)
    composer_changed = pyqtSignal(str)
    create_room_requested = pyqtSignal()
    directory_requested = pyqtSignal()
    message_someone_requested = pyqtSignal()
    contacts_requested = pyqtSignal()
    feed_requested = pyqtSignal()
    profile_requested = pyqtSignal(str)
    #: *Edit profile…* (or a click on one's own picture).
    profile_editor_requested = pyqtSignal()
    switcher_requested = pyqtSignal()
    invite_dialog_requested = pyqtSignal(ID)
    #: room id of an invitation the user accepts / declines
    invite_accepted = pyqtSignal(ID)
    invite_declined = pyqtSignal(ID)
    direct_requested = pyqtSignal(str)
    leave_requested = pyqtSignal(ID)
    kick_requested = pyqtSignal(ID, str)
    presence_chosen = pyqtSignal(str)
    status_text_changed = pyqtSignal(str)
    settings_requested = pyqtSignal()
    #: *Administration…* (accounts with the admin or auditor role).
    admin_requested = pyqtSignal()
    logout_requested = pyqtSignal()
    quit_requested = pyqtSignal()
    #: "Sign in…" on the page of an account that is not signed in.
    sign_in_requested = pyqtSignal()
    user_input = pyqtSignal()
    #: room id, local paths (files or folders) to send there
    attach_requested = pyqtSignal(ID, list)
    #: file id, name, destination path, mime, size
    download_requested = pyqtSignal(str, str, str, str, ID)
    #: transfer ids
    transfer_cancel_requested = pyqtSignal(int)
    transfer_retry_requested = pyqtSignal(int)
    transfer_remove_requested = pyqtSignal(int)
    #: file id, mime, size: an image on screen needs its preview
    thumbnail_wanted = pyqtSignal(str, str, ID)

    def __init__(self, state: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.choose_files: Callable[[QWidget], list[str]] = ask_files_to_send
        self.choose_save_path: Callable[[QWidget, str], str] = ask_where_to_save
        self.open_file: Callable[[str], None] = open_with_system
        self.room_id: int | None = None
        #: ("reply" | "edit", msg_id) while the composer replies to or edits a message.
        self.compose_mode: tuple[str, int] | None = None
        #: The personal export's progress window, while an export runs, and its
        #: Cancel button.
        self.export_progress: QProgressDialog | None = None
        self.export_cancel_button: QPushButton | None = None
        self.setWindowIcon(app_icon())
        self.resize(1100, 720)
        self._build_menu()
        self._build_left()
        self._build_centre()
        self._build_members()
        self._build_search()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.left)
        splitter.addWidget(self.centre_box)
        splitter.addWidget(self.members_panel)
        splitter.addWidget(self.search_panel)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setStretchFactor(3, 0)
        splitter.setSizes([260, 640, 220, 320])
        splitter.setChildrenCollapsible(False)
        self.splitter = splitter
        self.setCentralWidget(splitter)
        self._build_status()
        self.members_panel.hide()
        self.search_panel.hide()
        self.retranslate()
        self.show_room(None)
        state.connection_changed.connect(self.show_connection)
        state.typing_changed.connect(self._typing_changed)
        state.own_presence_changed.connect(self.show_own_presence)
        state.members.modelReset.connect(self._update_members_title)
        state.members.rowsInserted.connect(self._update_members_title)
        state.members.rowsRemoved.connect(self._update_members_title)
        state.rooms.dataChanged.connect(self._room_data_changed)
        state.call_ringing.connect(self._call_ringing)
        state.ring_stopped.connect(self._ring_stopped)
        state.call_changed.connect(self._update_room_header)
        state.call_ended.connect(self._call_ended)
        state.message_shown.connect(self.reveal_message)
        state.export_progress.connect(self.export_progressed)
        state.export_finished.connect(self.export_ended)
        self._show_avatars()

    # -- construction --------------------------------------------------------------------------

    def _build_menu(self) -> None:
        """The Chat menu (shown in the AppWindow's menu bar while this account is)."""
        self.chat_menu = QMenu(self)
        self.new_room_action = QAction(self)
        self.new_room_action.setShortcut(QKeySequence("Ctrl+N"))
        self.new_room_action.triggered.connect(self.create_room_requested)
        self.browse_action = QAction(self)
        self.browse_action.triggered.connect(self.directory_requested)
        self.message_action = QAction(self)
        self.message_action.triggered.connect(self.message_someone_requested)
        self.contacts_action = QAction(self)
        self.contacts_action.triggered.connect(self.contacts_requested)
        self.profile_action = QAction(self)
        self.profile_action.triggered.connect(self.profile_editor_requested)
        self.feed_action = QAction(self)
        self.feed_action.triggered.connect(self.feed_requested)
        self.switcher_action = QAction(self)
        self.switcher_action.setShortcut(QKeySequence("Ctrl+K"))
        self.switcher_action.triggered.connect(self.switcher_requested)
        self.find_action = QAction(self)
        self.find_action.setShortcut(QKeySequence("Ctrl+F"))
        self.find_action.triggered.connect(lambda: self.open_search(here=True))
        self.find_all_action = QAction(self)
        self.find_all_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.find_all_action.triggered.connect(lambda: self.open_search(here=False))
        self.date_action = QAction(self)
        self.date_action.triggered.connect(self._date_clicked)
        self.export_action = QAction(self)
        self.export_action.triggered.connect(self.export_dialog_requested)
        self.settings_action = QAction(self)
        self.settings_action.triggered.connect(self.settings_requested)
        self.admin_action = QAction(self)
        self.admin_action.triggered.connect(self.admin_requested)
        self.admin_action.setVisible(False)
        self.logout_action = QAction(self)
        self.logout_action.triggered.connect(self.logout_requested)
        self.quit_action = QAction(self)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.triggered.connect(self.quit_requested)
        for action in (self.switcher_action, self.new_room_action, self.browse_action,
                       self.message_action, self.contacts_action, self.feed_action,
                       self.profile_action):
            self.chat_menu.addAction(action)
        self.chat_menu.addSeparator()
        for action in (self.find_action, self.find_all_action, self.date_action,
                       self.export_action):
            self.chat_menu.addAction(action)
        self.chat_menu.addSeparator()
        for action in (self.admin_action, self.settings_action, self.logout_action,
                       self.quit_action):
            self.chat_menu.addAction(action)

    def _build_left(self) -> None:
        self.left = QWidget()
        self.left.setMinimumWidth(220)
        self.me_label = QLabel()
        font = QFont(self.me_label.font())
        font.setBold(True)
        self.me_label.setFont(font)
        self.me_avatar = QToolButton()
        self.me_avatar.setAutoRaise(True)
        self.me_avatar.setIconSize(QSize(36, 36))
        self.me_avatar.clicked.connect(self.profile_editor_requested)
        self.status_text = QLineEdit()
        self.status_text.setMaxLength(140)
        self.status_text.editingFinished.connect(
            lambda: self.status_text_changed.emit(self.status_text.text().strip()))
        self.filter = QLineEdit()
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.state.room_proxy.setFilterFixedString)
        self._build_invites()
        self.room_list = QListView()
        self.room_list.setModel(self.state.room_proxy)
        self.room_delegate = RoomDelegate(self.room_list)
        self.room_list.setItemDelegate(self.room_delegate)
        self.room_list.setUniformItemSizes(True)
        self.room_list.setMouseTracking(True)
        self.room_list.setFrameShape(QListView.Shape.NoFrame)
        self.room_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        selection = self.room_list.selectionModel()
        assert selection is not None
        selection.currentChanged.connect(self._room_clicked)
        self.new_room_button = QPushButton()
        self.new_room_button.clicked.connect(self.create_room_requested)
        self.browse_button = QPushButton()
        self.browse_button.clicked.connect(self.directory_requested)
        self.message_button = QPushButton()
        self.message_button.clicked.connect(self.message_someone_requested)
        buttons = QVBoxLayout()
        buttons.setSpacing(4)
        for button in (self.new_room_button, self.browse_button, self.message_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self.left)
        layout.setContentsMargins(8, 8, 4, 8)
        me = QGridLayout()
        me.setHorizontalSpacing(6)
        me.setVerticalSpacing(2)
        me.addWidget(self.me_avatar, 0, 0, 2, 1)
        me.addWidget(self.me_label, 0, 1)
        me.addWidget(self.status_text, 1, 1)
        layout.addLayout(me)
        layout.addWidget(self.filter)
        layout.addWidget(self.invites_panel)
        layout.addWidget(self.room_list, 1)
        layout.addLayout(buttons)

    def _build_invites(self) -> None:
        """The invitations section: title, list, Join and Decline (hidden when empty)."""
        invites = self.state.invites
        self.invites_panel = QWidget()
        self.invites_title = QLabel()
        font = QFont(self.invites_title.font())
        font.setBold(True)
        self.invites_title.setFont(font)
        self.invite_list = QListView()
        self.invite_list.setModel(invites)
        self.invite_list.setItemDelegate(InviteDelegate(self.invite_list))
        self.invite_list.setUniformItemSizes(True)
        self.invite_list.setFrameShape(QListView.Shape.NoFrame)
        self.invite_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.invite_list.doubleClicked.connect(
            lambda index: self.invite_accepted.emit(int(index.data(_IR.RoomId))))
        self.accept_invite_button = QPushButton()
        self.accept_invite_button.clicked.connect(lambda: self._answer_invite(True))
        self.decline_invite_button = QPushButton()
        self.decline_invite_button.clicked.connect(lambda: self._answer_invite(False))
        answers = QHBoxLayout()
        answers.addWidget(self.accept_invite_button)
        answers.addWidget(self.decline_invite_button)
        layout = QVBoxLayout(self.invites_panel)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.setSpacing(2)
        layout.addWidget(self.invites_title)
        layout.addWidget(self.invite_list)
        layout.addLayout(answers)
        for signal in (invites.modelReset, invites.rowsInserted, invites.rowsRemoved):
            signal.connect(self._invites_changed)
        self._invites_changed()

    def _invites_changed(self, *_args: Any) -> None:
        """Show the section only with invitations; keep one selected; fit its height."""
        count = self.state.invites.rowCount()
        self.invites_panel.setVisible(count > 0)
        self.invites_title.setText(ngettext("Invitation ({n})", "Invitations ({n})",
                                            count).format(n=count))
        if count == 0:
            return
        selection = self.invite_list.selectionModel()
        if selection is not None and not selection.currentIndex().isValid():
            selection.setCurrentIndex(self.state.invites.index(0),
                                      QItemSelectionModel.SelectionFlag.ClearAndSelect)
        row_h = self.invite_list.sizeHintForRow(0)
        self.invite_list.setFixedHeight(max(1, row_h) * min(count, INVITE_ROWS) + 2)

    def _answer_invite(self, accept: bool) -> None:
        """Join or Decline: answer the selected invitation."""
        index = self.invite_list.currentIndex()
        if not index.isValid():
            return
        room_id = int(index.data(_IR.RoomId))
        (self.invite_accepted if accept else self.invite_declined).emit(room_id)

    def _build_centre(self) -> None:
        self.centre = QStackedWidget()
        self.empty_page = QLabel()
        self.empty_page.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_page.setWordWrap(True)
        self.centre.addWidget(self.empty_page)
        self._build_signed_out()
        page = QWidget()
        self.room_title = QLabel()
        title_font = QFont(self.room_title.font())
        title_font.setBold(True)
        title_font.setPointSizeF(title_font.pointSizeF() * 1.2)
        self.room_title.setFont(title_font)
        self.room_topic = QLabel()
        self.room_topic.setStyleSheet("color: #5f6368;")
        self.invite_button = QPushButton()
        self.invite_button.clicked.connect(self._invite_clicked)
        self.leave_button = QPushButton()
        self.leave_button.clicked.connect(self._leave_clicked)
        self.members_button = QPushButton()
        self.members_button.setCheckable(True)
        self.members_button.toggled.connect(self.members_panel_visible)
        header = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self.room_title)
        titles.addWidget(self.room_topic)
        header.addLayout(titles, 1)
        for button in (self.invite_button, self.leave_button, self.members_button):
            header.addWidget(button)
        self.call_button = QPushButton()
        self.call_button.clicked.connect(self._call_clicked)
        header.addWidget(self.call_button)
        self.call_bar = CallBar(self.state)
        #: call_id -> the window announcing it, while it rings.
        self.incoming: dict[int, IncomingCall] = {}
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fef7e0; color: #7a4f01; padding: 6px;"
                                  "border-radius: 4px;")
        self.banner.hide()
        self.timeline = TimelineView()
        self.timeline.older_requested.connect(self._older)
        self.timeline.newer_requested.connect(self._newer)
        self.timeline.reply_requested.connect(lambda m: self.start_compose("reply", m))
        self.timeline.edit_requested.connect(lambda m: self.start_compose("edit", m))
        self.timeline.delete_requested.connect(self._delete)
        self.timeline.react_requested.connect(self._react)
        self.typing_label = QLabel()
        self.typing_label.setStyleSheet("color: #5f6368;")
        small = QFont(self.typing_label.font())
        small.setItalic(True)
        self.typing_label.setFont(small)
        self.typing_label.setMinimumHeight(self.typing_label.fontMetrics().height() + 2)
        self.compose_bar = QWidget()
        self.compose_label = QLabel()
        self.compose_cancel = QToolButton()
        self.compose_cancel.setText("✕")
        self.compose_cancel.clicked.connect(self.cancel_compose)
        bar = QHBoxLayout(self.compose_bar)
        bar.setContentsMargins(6, 2, 6, 2)
        bar.addWidget(self.compose_label, 1)
        bar.addWidget(self.compose_cancel)
        self.compose_bar.setStyleSheet("background: #e8f0fe; border-radius: 4px;")
        self.compose_bar.hide()
        self.timeline.show_files(self.state.files.transfers, self.state.files.thumbnails)
        self.timeline.file_clicked.connect(self._file_clicked)
        self.timeline.thumbnail_wanted.connect(self.thumbnail_wanted)
        # The open room's uploads (hidden while there are none).
        self.uploads = RoomUploadsProxy(self)
        self.uploads.setSourceModel(self.state.files.transfers)
        self.attachments_strip = AttachmentsStrip()
        self.attachments_strip.set_model(self.uploads)
        self.attachments_strip.cancel_requested.connect(self.transfer_cancel_requested)
        self.attachments_strip.retry_requested.connect(self.transfer_retry_requested)
        self.attachments_strip.remove_requested.connect(self.transfer_remove_requested)
        self.composer = Composer()
        self.composer.submitted.connect(self.submit)
        self.composer.cancelled.connect(self.cancel_compose)
        self.composer.edit_last_requested.connect(self.edit_last)
        self.composer.textChanged.connect(self._composer_changed)
        self.attach_button = QToolButton()
        self.attach_button.setIcon(paperclip_icon(20))
        self.attach_button.setIconSize(QSize(20, 20))
        self.attach_button.setObjectName("attach_button")
        self.attach_button.clicked.connect(self._attach_clicked)
        self.send_button = QPushButton()
        self.send_button.clicked.connect(self.submit)
        self.burn_button = BurnButton()
        self.burn_button.setFixedHeight(self.send_button.sizeHint().height())
        self.attach_button.setFixedSize(self.send_button.sizeHint().height() + 6,
                                        self.send_button.sizeHint().height())
        # Files dropped on the conversation (the message list or the composer).
        self.drops = FileDropFilter(self)
        for target in (self.timeline.viewport(), self.composer.viewport(),
                       self.attachments_strip):
            if target is not None:
                self.drops.watch(target)
        self.drops.files_dropped.connect(self._files_given)
        composer_row = QHBoxLayout()
        composer_row.addWidget(self.composer, 1)
        composer_row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        composer_row.addWidget(self.burn_button, 0, Qt.AlignmentFlag.AlignBottom)
        composer_row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 8, 4, 8)
        layout.addLayout(header)
        layout.addWidget(self.call_bar)
        layout.addWidget(self.banner)
        layout.addWidget(self.timeline, 1)
        layout.addWidget(self.typing_label)
        layout.addWidget(self.compose_bar)
        layout.addWidget(self.attachments_strip)
        layout.addLayout(composer_row)
        self.room_page = page
        self.centre.addWidget(page)

        # Announcements (``system`` events) above whatever the centre shows.
        self.announcement = QFrame()
        self.announcement.setObjectName("announcement")
        self.announcement.setStyleSheet(
            "QFrame#announcement { background: #e8f0fe; border: 1px solid #aecbfa;"
            " border-radius: 4px; } QLabel { color: #174ea6; }")
        self.announcement_label = QLabel()
        self.announcement_label.setWordWrap(True)
        self.announcement_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        self.announcement_close = QToolButton()
        self.announcement_close.setText("✕")
        self.announcement_close.setAutoRaise(True)
        self.announcement_close.clicked.connect(self.announcement.hide)
        row = QHBoxLayout(self.announcement)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.announcement_label, 1)
        row.addWidget(self.announcement_close, 0, Qt.AlignmentFlag.AlignTop)
        self.announcement.hide()
        #: The announcements shown in the bar (newest last), as (body, by, ts).
        self.announcements: list[tuple[str, str, int]] = []
        self.centre_box = QWidget()
        box = QVBoxLayout(self.centre_box)
        box.setContentsMargins(4, 4, 4, 0)
        box.setSpacing(0)
        box.addWidget(self.announcement)
        box.addWidget(self.centre, 1)

    def show_announcement(self, body: str, by: str, ts: int) -> None:
        """A ``system`` event: shown in the bar above the conversation (the last
        three, newest at the bottom) until closed with ✕."""
        if self.announcement.isHidden():
            self.announcements = []
        self.announcements = [*self.announcements, (body, by, ts)][-3:]
        self._update_announcement()
        self.announcement.show()

    def _update_announcement(self) -> None:
        lines = []
        for body, by, ts in self.announcements:
            stamp = QDateTime.fromMSecsSinceEpoch(ts).toString("HH:mm") if ts else ""
            head = (_("Announcement from @{name}").format(name=by) if by
                    else _("Announcement"))
            lines.append(f"<b>{html.escape(head)}</b> "
                         f"<span style='color:#5f6368'>{html.escape(stamp)}</span><br>"
                         f"{html.escape(body).replace(chr(10), '<br>')}")
        self.announcement_label.setText("<br>".join(lines))
        self.announcement_close.setToolTip(_("Close"))

    def _build_signed_out(self) -> None:
        """The page of an account that is not signed in: why, and "Sign in…"."""
        self.signed_in = True
        self.signed_out_page = QWidget()
        self.signed_out_label = QLabel()
        self.signed_out_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.signed_out_label.setWordWrap(True)
        self.sign_in_button = QPushButton()
        self.sign_in_button.clicked.connect(self.sign_in_requested)
        layout = QVBoxLayout(self.signed_out_page)
        layout.addStretch(1)
        layout.addWidget(self.signed_out_label)
        layout.addWidget(self.sign_in_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        self._signed_out_reason: Callable[[], str] = lambda: ""
        self.centre.addWidget(self.signed_out_page)

    def show_signed_out(self, reason: Callable[[], str] | None = None) -> None:
        """The account is not signed in (yet, or any more): say so, and why
        (``reason`` returns the translated sentence, so a language switch
        re-reads it), and offer "Sign in…"."""
        self.signed_in = False
        self._signed_out_reason = reason or (lambda: "")
        self.show_room(None)
        self._update_signed_out()

    def _update_signed_out(self) -> None:
        reason = self._signed_out_reason()
        text = _("You are not signed in to this account.")
        self.signed_out_label.setText(f"{reason}\n\n{text}" if reason else text)
        self.sign_in_button.setText(_("Sign in…"))

    def _build_members(self) -> None:
        self.members_panel = QWidget()
        self.members_panel.setMinimumWidth(200)
        self.members_title = QLabel()
        font = QFont(self.members_title.font())
        font.setBold(True)
        self.members_title.setFont(font)
        self.members_view = MembersView()
        self.members_view.setModel(self.state.members)
        self.members_view.direct_requested.connect(self.direct_requested)
        self.members_view.kick_requested.connect(self._kick)
        self.members_view.profile_requested.connect(self.profile_requested)
        layout = QVBoxLayout(self.members_panel)
        layout.setContentsMargins(4, 8, 8, 8)
        layout.addWidget(self.members_title)
        layout.addWidget(self.members_view, 1)

    def _build_search(self) -> None:
        """The search panel (hidden until Ctrl+F / Ctrl+Shift+F)."""
        self.search_panel = SearchPanel(self.state.search_results)
        self.search_panel.search_requested.connect(self.search_requested)
        self.search_panel.more_requested.connect(self.search_more_requested)
        self.search_panel.result_chosen.connect(self.message_requested)
        self.search_panel.close_requested.connect(self.close_search)

    def open_search(self, here: bool) -> None:
        """Show the search panel, for the conversation shown (``here``, Ctrl+F)
        or for all of them (Ctrl+Shift+F); it takes the members panel's place."""
        self.members_panel_visible(False)
        self.search_panel.show()
        self.search_panel.start(here)

    def close_search(self) -> None:
        """Hide the search panel (its results stay for the next time)."""
        self.search_panel.hide()
        if self.room_id is not None:
            self.composer.setFocus()

    def reveal_message(self, room_id: int, seq: int) -> None:
        """The controller loaded the history around a message (a search result,
        a date): scroll to it and highlight it, if its room is shown."""
        if room_id == self.room_id:
            self.timeline.reveal(seq)

    def show_export_progress(self) -> QProgressDialog:
        """The export's progress window (conversations read; Cancel stops it)."""
        self.export_ended(False)
        dialog = QProgressDialog(self)
        dialog.setWindowTitle(_("Exporting your conversations"))
        dialog.setLabelText(_("Reading the list of your conversations…"))
        self.export_cancel_button = QPushButton(_("Cancel"))
        dialog.setCancelButton(self.export_cancel_button)
        dialog.setRange(0, 0)
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        # Not modal: an export of a long range takes a while, and the
        # conversations (of this account and the others) stay usable.
        dialog.setWindowModality(Qt.WindowModality.NonModal)
        dialog.canceled.connect(self.export_cancel_requested)
        self.export_progress = dialog
        dialog.show()
        return dialog

    def export_progressed(self, done: int, total: int, messages: int) -> None:
        """The export read ``done`` of ``total`` conversations, ``messages`` kept."""
        dialog = self.export_progress
        if dialog is None:
            return
        dialog.setRange(0, max(1, total))
        dialog.setValue(min(done, max(1, total)))
        dialog.setLabelText(ngettext(
            "{n} message so far, {done} of {total} conversations read",
            "{n} messages so far, {done} of {total} conversations read",
            messages).format(n=messages, done=done, total=total))

    def export_ended(self, _written: bool = False) -> None:
        """Close the export's progress window (the status bar says how it went)."""
        dialog, self.export_progress = self.export_progress, None
        if dialog is not None:
            dialog.canceled.disconnect(self.export_cancel_requested)
            dialog.close()
            dialog.deleteLater()

    def _date_clicked(self) -> None:
        if self.room_id is not None:
            self.date_dialog_requested.emit(self.room_id)

    def _build_status(self) -> None:
        status = self.statusBar()
        assert status is not None
        self.connection_dot = QLabel()
        self.connection_label = QLabel()
        self.presence_box = QComboBox()
        for state in OWN_STATES:
            self.presence_box.addItem("", state)
        self.presence_box.activated.connect(
            lambda i: self.presence_chosen.emit(str(self.presence_box.itemData(i))))
        # Permanent widgets: a temporary status message never hides them, so
        # the connection state stays visible at all times.
        status.addPermanentWidget(self.connection_dot)
        status.addPermanentWidget(self.connection_label)
        status.addPermanentWidget(self.presence_box)

    # -- language ------------------------------------------------------------------------------

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.chat_menu.setTitle(_("&Chat"))
        self.new_room_action.setText(_("New room…"))
        self.browse_action.setText(_("Browse rooms…"))
        self.message_action.setText(_("Message someone…"))
        self.contacts_action.setText(_("Contacts…"))
        self.profile_action.setText(_("Edit profile…"))
        self.me_avatar.setToolTip(_("Edit profile…"))
        self.feed_action.setText(_("Feed…"))
        self.switcher_action.setText(_("Go to a conversation…"))
        self.find_action.setText(_("Search in this conversation…"))
        self.find_all_action.setText(_("Search all conversations…"))
        self.date_action.setText(_("Go to date…"))
        self.export_action.setText(_("Export my conversations…"))
        self.settings_action.setText(_("Settings…"))
        self.admin_action.setText(_("Administration…"))
        self._update_announcement()
        self.logout_action.setText(_("Log out"))
        self.quit_action.setText(_("Quit"))
        self.status_text.setPlaceholderText(_("Set a status message"))
        self.filter.setPlaceholderText(_("Filter conversations"))
        self.new_room_button.setText(_("New room"))
        self.browse_button.setText(_("Browse rooms"))
        self.message_button.setText(_("Message someone"))
        self.accept_invite_button.setText(_("Join"))
        self.decline_invite_button.setText(_("Decline"))
        self._invites_changed()
        self.empty_page.setText(_("Choose a conversation on the left, or start one."))
        self._update_signed_out()
        self.invite_button.setText(_("Invite…"))
        self.leave_button.setText(_("Leave"))
        self.members_button.setText(_("Members"))
        self.call_button.setText(_("Call"))
        self.call_bar.retranslate()
        self.composer.setPlaceholderText(
            _("Write a message — Enter sends, Shift+Enter starts a new line"))
        self.send_button.setText(_("Send"))
        self.attach_button.setToolTip(_("Send files… (or drop them on the conversation)"))
        self.compose_cancel.setToolTip(_("Cancel"))
        for i in range(self.presence_box.count()):
            state = str(self.presence_box.itemData(i))
            self.presence_box.setItemText(i, _(STATE_NAMES[state]))
        self.presence_box.setToolTip(_("Your presence"))
        self.show_connection(self.state.connection)
        self._update_me()
        self._update_members_title()
        self._update_compose_bar()
        if self.room_id is not None:
            self._typing_changed(self.room_id)
        for view in (self.room_list, self.members_view, self.invite_list):
            viewport = view.viewport()
            if viewport is not None:
                viewport.update()

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate (activation is the AppWindow's)."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    # -- showing state -------------------------------------------------------------------------

    def _update_me(self) -> None:
        me = self.state.me
        name = self.state.display_names.get(me, me)
        self.me_label.setText(f"{name}  (@{me})" if name != me else f"@{me}")
        if not self.status_text.hasFocus():
            self.status_text.setText(self.state.status_text)
        self.me_avatar.setIcon(QIcon(avatar_pixmap(
            self.state.avatars, me, name, 36, self.me_label.font(),
            ratio=self.devicePixelRatioF())))
        self.me_avatar.setVisible(bool(me))

    def _show_avatars(self) -> None:
        """People are drawn with their pictures: the timeline, the room list (direct
        rooms), the members panel and the user's own, beside their name."""
        avatars = self.state.avatars
        self.timeline.message_delegate.avatars = avatars
        self.room_delegate.avatars = avatars
        self.members_view.delegate.avatars = avatars
        avatars.changed.connect(self._avatars_changed)
        self.state.own_profile_changed.connect(self._update_me)

    def _avatars_changed(self, username: str) -> None:
        """Someone's picture arrived or changed ("" everyone's): repaint."""
        for view in (self.timeline, self.room_list, self.members_view):
            viewport = view.viewport()
            if viewport is not None:
                viewport.update()
        if username in ("", self.state.me):
            self._update_me()

    def logged_in(self) -> None:
        """Fill in the user's own name and status after login."""
        self.signed_in = True
        self.admin_action.setVisible(self.state.can_administer)
        self._update_me()
        self.show_own_presence(self.state.own_presence)
        self.show_room(None)

    def connection_text(self, view: str) -> str:
        """What the status bar says for a connection state."""
        texts = {"online": _("Connected"), "connecting": _("Connecting…"),
                 "reconnecting": _("Connection lost — reconnecting…"), "offline": _("Offline")}
        return texts.get(view, view)

    def show_connection(self, view: str) -> None:
        """Show the connection state (always visible in the status bar)."""
        colours = {"online": STATE_COLOURS["online"], "connecting": STATE_COLOURS["away"],
                   "reconnecting": STATE_COLOURS["away"], "offline": STATE_COLOURS["offline"]}
        self.connection_dot.setText("●")
        self.connection_dot.setStyleSheet(f"color: {colours.get(view, '#9aa0a6')};")
        self.connection_label.setText(self.connection_text(view))
        # One's own presence is greyed out too while the server cannot see it.
        self.presence_box.setEnabled(view == "online")
        if view == "reconnecting":
            self.banner.setText(_("The connection to the server was lost. Reconnecting… "
                                  "Messages you send now are delivered when it is back."))
            self.banner.show()
        else:
            self.banner.hide()

    def show_own_presence(self, state: str) -> None:
        """Select the user's presence in the status bar."""
        index = self.presence_box.findData(state)
        if index >= 0:
            self.presence_box.setCurrentIndex(index)

    def show_room(self, room_id: int | None) -> None:
        """Show ``room_id``'s conversation (None: the "choose a conversation" page)."""
        if room_id is not None and room_id < 0:
            room_id = None
        if room_id != self.room_id:
            self.cancel_compose()
        self.room_id = room_id
        entry = self.state.rooms.room(room_id) if room_id is not None else None
        self.uploads.set_room(room_id if entry is not None else None)
        self.date_action.setEnabled(entry is not None)
        self.search_panel.set_room(room_id if entry is not None else None,
                                   self.state.room_label(room_id)
                                   if room_id is not None and entry is not None else "")
        if room_id is None or entry is None:
            self.room_id = None
            self.timeline.setModel(None)
            self.centre.setCurrentWidget(self.empty_page if self.signed_in
                                         else self.signed_out_page)
            self.members_panel_visible(False)
            return
        self.centre.setCurrentWidget(self.room_page)
        model: TimelineModel = self.state.timeline(room_id)
        if self.timeline.model() is not model:
            self.timeline.setModel(model)
        self._select_room_row(room_id)
        self._update_room_header()
        self._typing_changed(room_id)
        self.composer.setFocus()

    def _select_room_row(self, room_id: int) -> None:
        row = self.state.rooms.row_of(room_id)
        source = self.state.rooms.index(row)
        index = self.state.room_proxy.mapFromSource(source)
        selection = self.room_list.selectionModel()
        if selection is not None and index.isValid() and selection.currentIndex() != index:
            selection.blockSignals(True)
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            selection.blockSignals(False)
            viewport = self.room_list.viewport()
            if viewport is not None:
                viewport.update()

    def _update_room_header(self) -> None:
        if self.room_id is None:
            return
        entry = self.state.rooms.room(self.room_id)
        if entry is None:
            return
        self.room_title.setText(entry.label if entry.is_direct else f"# {entry.label}")
        self.room_topic.setText(entry.topic)
        self.room_topic.setVisible(bool(entry.topic))
        manage = self.state.can_manage(self.room_id)
        self.invite_button.setVisible(manage)
        self.leave_button.setVisible(not entry.is_direct)
        self.call_button.setEnabled(self.state.call is None)
        self.timeline.can_moderate = manage
        self.members_view.me = self.state.me
        self.members_view.my_role = "member" if entry.is_direct else entry.role

    def _room_data_changed(self, *_args: Any) -> None:
        self._update_room_header()

    def _room_clicked(self, current: QModelIndex, _previous: QModelIndex) -> None:
        room_id = current.data(_RR.RoomId)
        if room_id is not None and room_id != self.room_id:
            self.room_selected.emit(int(room_id))

    def members_panel_visible(self, visible: bool) -> None:
        """Show or hide the members panel (it takes the search panel's place)."""
        if visible and self.room_id is not None:
            self.search_panel.hide()
        self.members_panel.setVisible(visible and self.room_id is not None)
        if self.members_button.isChecked() != visible:
            self.members_button.setChecked(visible)

    def _update_members_title(self, *_args: Any) -> None:
        count = self.state.members.rowCount()
        self.members_title.setText(ngettext("{n} member", "{n} members", count).format(n=count))

    def _typing_changed(self, room_id: int) -> None:
        if room_id != self.room_id:
            return
        people = self.state.typing_in(room_id)
        if not people:
            text = ""
        elif len(people) == 1:
            text = _("{name} is typing…").format(name=people[0])
        elif len(people) == 2:
            text = _("{first} and {second} are typing…").format(first=people[0],
                                                               second=people[1])
        else:
            text = ngettext("{n} person is typing…", "{n} people are typing…",
                            len(people)).format(n=len(people))
        self.typing_label.setText(text)

    # -- intents about the open room (each needs the room's id) --------------------------------

    def _older(self) -> None:
        if self.room_id is not None:
            self.older_requested.emit(self.room_id)

    def _newer(self) -> None:
        if self.room_id is not None:
            self.newer_requested.emit(self.room_id)

    # -- voice calls ---------------------------------------------------------------------------

    def _call_clicked(self) -> None:
        if self.room_id is not None:
            self.state.start_call(self.room_id)

    def _call_ringing(self, call_id: int, room_id: int, caller: str) -> None:
        entry = self.state.rooms.room(room_id)
        window = IncomingCall(self.state, call_id, self.state.display_names.get(caller, caller),
                              entry.label if entry is not None else "", self)
        self.incoming[call_id] = window
        window.finished.connect(lambda _result, c=call_id: self.incoming.pop(c, None))
        window.show()

    def _ring_stopped(self, call_id: int) -> None:
        window = self.incoming.pop(call_id, None)
        if window is not None:
            window.close()

    def _call_ended(self, reason: str) -> None:
        texts = {"no_answer": _("Nobody answered the call."),
                 "rejected": _("The call was declined."),
                 "failed": _("The call was cut off: the server holding it stopped."),
                 "hangup": _("The call ended.")}
        self.statusBar().showMessage(texts.get(reason, texts["hangup"]), 5000)  # type: ignore[union-attr]
        self._update_room_header()

    def _invite_clicked(self) -> None:
        if self.room_id is not None:
            self.invite_dialog_requested.emit(self.room_id)

    def _leave_clicked(self) -> None:
        if self.room_id is not None:
            self.leave_requested.emit(self.room_id)

    def _delete(self, msg_id: int) -> None:
        if self.room_id is not None:
            self.delete_requested.emit(self.room_id, msg_id)

    def _react(self, msg_id: int, emoji: str, on: bool) -> None:
        if self.room_id is not None:
            self.react_requested.emit(self.room_id, msg_id, emoji, on)

    def _kick(self, username: str) -> None:
        if self.room_id is not None:
            self.kick_requested.emit(self.room_id, username)

    # -- files ---------------------------------------------------------------------------------

    def _attach_clicked(self) -> None:
        if self.room_id is not None:
            self._files_given(self.choose_files(self))

    def _files_given(self, paths: list[str]) -> None:
        """Files dropped or chosen: send them to the open room."""
        if self.room_id is not None and paths:
            self.attach_requested.emit(self.room_id, list(paths))

    def _file_clicked(self, action: str, file_id: str, name: str, mime: str, size: int) -> None:
        """A file's button (or preview) in a bubble was clicked."""
        download = self.state.files.transfers.download_for(file_id)
        if action == "download":
            dest = self.choose_save_path(self, str(downloads_folder() / name))
            if dest:
                self.download_requested.emit(file_id, name, dest, mime, size)
        elif action == "cancel" and download is not None:
            self.transfer_cancel_requested.emit(download.transfer_id)
        elif action == "retry" and download is not None:
            self.transfer_retry_requested.emit(download.transfer_id)
        elif action == "open" and download is not None:
            self.open_file(download.path)
        elif action == "preview":
            local = (download.path if download is not None and download.state == "done"
                     else self.state.files.thumbnails.path(file_id))
            if local:
                self.open_file(local)

    # -- composing -----------------------------------------------------------------------------

    def start_compose(self, mode: str, msg_id: int) -> None:
        """Reply to (``reply``) or edit (``edit``) the message ``msg_id``."""
        self.compose_mode = (mode, msg_id)
        if mode == "edit":
            model = self.timeline.timeline()
            row = model.row_of_msg(msg_id) if model is not None else -1
            if model is not None and row >= 0:
                self.composer.setPlainText(model.item(row).body)
                cursor = self.composer.textCursor()
                cursor.movePosition(cursor.MoveOperation.End)
                self.composer.setTextCursor(cursor)
        self._update_compose_bar()
        self.composer.setFocus()

    def edit_last(self) -> None:
        """Up in the empty composer: edit the user's newest message in this
        conversation (nothing happens while replying, or with none to edit)."""
        model = self.timeline.timeline()
        if self.compose_mode is not None or model is None:
            return
        msg_id = model.last_own_message()
        if msg_id is not None:
            self.start_compose("edit", msg_id)
            row = model.row_of_msg(msg_id)
            self.timeline.scrollTo(model.index(row, 0))

    def cancel_compose(self) -> None:
        """Stop replying or editing (an edit's text is discarded)."""
        if self.compose_mode is not None and self.compose_mode[0] == "edit":
            self.composer.clear()
        self.compose_mode = None
        self._update_compose_bar()

    def _update_compose_bar(self) -> None:
        if self.compose_mode is None:
            self.compose_bar.hide()
            return
        mode, msg_id = self.compose_mode
        model = self.timeline.timeline()
        row = model.row_of_msg(msg_id) if model is not None else -1
        sender = model.item(row).sender if model is not None and row >= 0 else ""
        excerpt = " ".join(model.item(row).summary.split())[:80] if model and row >= 0 else ""
        if mode == "edit":
            text = _("Editing your message")
        else:
            text = _("Replying to {user}: {text}").format(user=sender, text=excerpt)
        self.compose_label.setText(text)
        self.compose_bar.show()

    def _composer_changed(self) -> None:
        self.user_input.emit()
        if self.compose_mode is None or self.compose_mode[0] != "edit":
            self.composer_changed.emit(self.composer.toPlainText())

    def submit(self) -> None:
        """Send the composer's text (or save the edit)."""
        text = self.composer.toPlainText().strip()
        if not text or self.room_id is None:
            return
        if self.compose_mode is not None and self.compose_mode[0] == "edit":
            self.edit_requested.emit(self.room_id, self.compose_mode[1], text)
        else:
            reply_to = self.compose_mode[1] if self.compose_mode is not None else -1
            self.send_requested.emit(text, reply_to, self.burn_button.ttl or 0)
            # One's own message shows at the bottom, even when scrolled up.
            self.timeline.show_newest()
        self.compose_mode = None
        self.composer.clear()
        self._update_compose_bar()
