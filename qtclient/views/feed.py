"""The Feed window of an account (PROTOCOL.md 10): write a post, read the team's.

Layout::

    +------------------------------------------------+
    | [ What's new? (composer)                     ] |
    | 📎 cat.png ✕        (files attached to it)     |
    | uploads: name ▓▓▓░░ [Cancel] (while uploading) |
    | [📎 Attach…]                          [Post]   |
    | the server's refusal, if any                   |
    +------------------------------------------------+
    | Bob (@bob) · Today 14:05             [Delete]  |
    | text of the post                               |
    | [image preview] [📎 report.pdf (1.2 MB)]       |
    | [Like] 3 likes   [2 comments]                  |
    |   Earlier comments (8)                         |
    |   Alice  nice!  14:07                          |
    |   [ Write a comment…                        ]  |
    | ...                                            |
    |                [Older posts]                   |
    +------------------------------------------------+

Like the other small windows it only emits intents; the account's
:class:`~qtclient.feed.FeedManager` keeps :class:`~qtclient.models.feed.FeedModel`
current, and this window follows the model (one :class:`PostCard` per row).
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtclient.feed import FEED_UPLOADS
from qtclient.i18n import _, ngettext
from qtclient.models.avatars import AvatarCache
from qtclient.models.feed import FeedModel, PostItem
from qtclient.models.thumbnails import FAILED, READY, is_image
from qtclient.models.transfers import ACTIVE_STATES, RoomUploadsProxy, TransfersModel
from qtclient.qt import (
    ID,
    QAction,
    QFrame,
    QHBoxLayout,
    QIcon,
    QKeyEvent,
    QLabel,
    QLineEdit,
    QMessageBox,
    QModelIndex,
    QPixmap,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.transfers import human_size
from qtclient.views.attachments import AttachmentsStrip, FileDropFilter
from qtclient.views.delegates import avatar_pixmap, clock_text, day_text, name_colour
from qtclient.views.dialogs import _Dialog
from qtclient.views.icons import paperclip_icon
from qtclient.views.main_window import (
    ask_files_to_send,
    ask_where_to_save,
    downloads_folder,
    open_with_system,
)

if TYPE_CHECKING:
    from qtclient.controller import ChatController

#: Characters a post and a comment may have (docs/protocol.md 10).
MAX_POST_CHARS = 16_000
MAX_COMMENT_CHARS = 2_000
#: Diameter of an author's picture on a post, in device-independent pixels.
POST_AVATAR = 32
#: Pixels from the bottom of the list at which the next older page is asked for.
OLDER_MARGIN = 80
_R = FeedModel.Roles


def when_text(ts: int) -> str:
    """When a post or comment was written: "Today 14:05", "Yesterday 09:12", or
    the long date and the time."""
    return f"{day_text(ts)} {clock_text(ts)}"


def ask_to_delete(parent: QWidget) -> bool:
    """Ask before a post is deleted (with its likes and comments)."""
    answer = QMessageBox.question(parent, _("Delete post"),
                                  _("Delete this post with its likes and comments?"))
    return answer == QMessageBox.StandardButton.Yes


class PostCard(QFrame):
    """One post: author and time, text, files (images as previews), likes and
    comments (shown when expanded), Delete for those who may.

    Args:
        post_id: the post shown.
        parent: the containing widget.

    Signals:
        like_clicked(post_id, on), delete_clicked(post_id),
        comment_submitted(post_id, text), earlier_comments_clicked(post_id),
        comment_delete_clicked(post_id, comment_id): *Delete comment* in a
            comment's right-click menu (offered to its author, the post's
            author and admins),
        file_clicked(file_id, name, mime, size): a file's button or preview.
    """

    like_clicked = pyqtSignal(ID, bool)
    delete_clicked = pyqtSignal(ID)
    comment_submitted = pyqtSignal(ID, str)
    earlier_comments_clicked = pyqtSignal(ID)
    comment_delete_clicked = pyqtSignal(ID, ID)
    file_clicked = pyqtSignal(str, str, str, ID)

    def __init__(self, post_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.post_id = post_id
        self.item: PostItem | None = None
        self.setObjectName("post_card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#post_card { background: #ffffff; border: 1px solid #dadce0; "
                           "border-radius: 6px; }")
        #: The author's picture (or initial), :meth:`show_avatar`.
        self.avatar_label = QLabel()
        self.avatar_label.setFixedSize(POST_AVATAR, POST_AVATAR)
        self.author_label = QLabel()
        self.author_label.setTextFormat(Qt.TextFormat.RichText)
        self.time_label = QLabel()
        self.time_label.setStyleSheet("color: #5f6368;")
        self.delete_button = QToolButton()
        self.delete_button.setAutoRaise(True)
        self.delete_button.clicked.connect(lambda: self.delete_clicked.emit(self.post_id))
        self.body_label = QLabel()
        self.body_label.setWordWrap(True)
        self.body_label.setTextFormat(Qt.TextFormat.PlainText)
        self.body_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.files_box = QWidget()
        self.files_layout = QHBoxLayout(self.files_box)
        self.files_layout.setContentsMargins(0, 0, 0, 0)
        #: file id -> its preview (images) or button (other files).
        self.file_widgets: dict[str, QToolButton] = {}
        self.like_button = QPushButton()
        self.like_button.setCheckable(True)
        self.like_button.clicked.connect(
            lambda checked: self.like_clicked.emit(self.post_id, bool(checked)))
        self.likes_label = QLabel()
        self.likes_label.setStyleSheet("color: #5f6368;")
        self.comments_button = QPushButton()
        self.comments_button.setCheckable(True)
        self.comments_button.toggled.connect(self._toggle_comments)
        self.comments_box = QWidget()
        self.comments_box.setObjectName("comments_box")
        self.earlier_button = QPushButton()
        self.earlier_button.setFlat(True)
        self.earlier_button.clicked.connect(
            lambda: self.earlier_comments_clicked.emit(self.post_id))
        self.comment_list = QVBoxLayout()
        self.comment_list.setContentsMargins(0, 0, 0, 0)
        self.comment_list.setSpacing(2)
        self.comment_labels: list[QLabel] = []
        self.comment_input = QLineEdit()
        self.comment_input.setMaxLength(MAX_COMMENT_CHARS)
        self.comment_input.returnPressed.connect(self._submit_comment)
        comments = QVBoxLayout(self.comments_box)
        comments.setContentsMargins(16, 0, 0, 0)
        comments.addWidget(self.earlier_button, 0, Qt.AlignmentFlag.AlignLeft)
        comments.addLayout(self.comment_list)
        comments.addWidget(self.comment_input)
        self.comments_box.hide()
        header = QHBoxLayout()
        header.addWidget(self.avatar_label)
        header.addWidget(self.author_label)
        header.addWidget(self.time_label)
        header.addStretch(1)
        header.addWidget(self.delete_button)
        actions = QHBoxLayout()
        actions.addWidget(self.like_button)
        actions.addWidget(self.likes_label)
        actions.addSpacing(12)
        actions.addWidget(self.comments_button)
        actions.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.body_label)
        layout.addWidget(self.files_box)
        layout.addLayout(actions)
        layout.addWidget(self.comments_box)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    @property
    def expanded(self) -> bool:
        """Whether the comments are shown."""
        return self.comments_button.isChecked()

    def _toggle_comments(self, on: bool) -> None:
        self.comments_box.setVisible(on)
        if on:
            self.comment_input.setFocus()

    def _submit_comment(self) -> None:
        text = self.comment_input.text().strip()
        if text:
            self.comment_submitted.emit(self.post_id, text)
            self.comment_input.clear()

    def show_avatar(self, avatars: AvatarCache | None, author_name: str) -> None:
        """Draw the author's picture (their initial until it is known)."""
        if self.item is None:
            return
        self.avatar_label.setPixmap(avatar_pixmap(
            avatars, self.item.author, author_name, POST_AVATAR, self.font(),
            ratio=self.devicePixelRatioF()))

    def show_post(self, item: PostItem, author_name: str, names: dict[str, str],
                  may_delete: bool, me: str) -> None:
        """Fill the card with ``item`` (and again whenever it changes).

        Args:
            item: the post.
            author_name: its author's display name.
            names: username -> display name (commenters).
            may_delete: the user may delete the post (and so any comment on it).
            me: the user's username (their own comments may be deleted).
        """
        self.item = item
        colour = name_colour(item.author).name()
        self.author_label.setText(
            f'<b style="color:{colour}">{html.escape(" ".join(author_name.split()))}</b> '
            f'<span style="color:#5f6368">@{html.escape(item.author)}</span>')
        self.time_label.setText(f"· {when_text(item.ts)}")
        self.body_label.setText(item.body)
        self.body_label.setVisible(bool(item.body))
        self.delete_button.setVisible(may_delete)
        self._show_files(item.attachments)
        self.like_button.setChecked(item.liked)
        self._show_comments(item, names, may_delete, me)
        self.retranslate()

    def _show_files(self, attachments: list[dict[str, Any]]) -> None:
        wanted = [str(a.get("file_id", "")) for a in attachments]
        if wanted == list(self.file_widgets):
            return
        for widget in self.file_widgets.values():
            self.files_layout.removeWidget(widget)
            widget.deleteLater()
        self.file_widgets = {}
        for attachment in attachments:
            file_id, name = str(attachment.get("file_id", "")), str(attachment.get("name", ""))
            mime, size = str(attachment.get("mime", "")), int(attachment.get("size", 0))
            button = QToolButton()
            button.setAutoRaise(True)
            button.setProperty("mime", mime)
            if is_image(mime):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                button.setObjectName("preview")
            else:
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
                button.setIcon(paperclip_icon())
                button.setText(f"{name} ({human_size(size)})")
                button.setObjectName("file")
            button.setToolTip(name)
            button.clicked.connect(lambda _c=False, f=file_id, n=name, m=mime, s=size:
                                   self.file_clicked.emit(f, n, m, s))
            self.files_layout.addWidget(button)
            self.file_widgets[file_id] = button
        self.files_layout.addStretch(1)
        self.files_box.setVisible(bool(attachments))

    def show_preview(self, file_id: str, state: str | None, pixmap: QPixmap | None) -> None:
        """The preview of an image of this post: the picture once it is there,
        a word while it loads or if it cannot be made."""
        button = self.file_widgets.get(file_id)
        if button is None or button.objectName() != "preview":
            return
        if state == READY and pixmap is not None:
            button.setIcon(QIcon(pixmap))
            button.setIconSize(pixmap.deviceIndependentSize().toSize())
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            button.setText("")
        else:
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setText(f"🖼 {button.toolTip()}" if state == FAILED
                           else _("Loading preview…"))

    def _show_comments(self, item: PostItem, names: dict[str, str], may_delete: bool,
                       me: str) -> None:
        for label in self.comment_labels:
            self.comment_list.removeWidget(label)
            label.deleteLater()
        self.comment_labels = []
        for comment in item.comments:
            author = str(comment.get("author", ""))
            name = " ".join(names.get(author, author).split())
            label = QLabel(
                f'<b style="color:{name_colour(author).name()}">{html.escape(name)}</b> '
                f'{html.escape(str(comment.get("body", "")), quote=False)} '
                f'<span style="color:#80868b">{html.escape(when_text(int(comment.get("ts", 0))))}'
                "</span>")
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            comment_id = int(comment.get("comment_id", 0))
            label.setProperty("comment_id", comment_id)
            if may_delete or author == me:
                delete = QAction(_("Delete comment"), label)
                delete.setObjectName("delete_comment")
                delete.triggered.connect(lambda _c=False, c=comment_id:
                                         self.comment_delete_clicked.emit(self.post_id, c))
                label.addAction(delete)
                label.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
            self.comment_list.addWidget(label)
            self.comment_labels.append(label)

    def retranslate(self) -> None:
        """Set every text in the current language."""
        item = self.item
        self.delete_button.setText(_("Delete"))
        self.comment_input.setPlaceholderText(_("Write a comment…"))
        if item is None:
            return
        self.like_button.setText(("♥ " + _("Liked")) if item.liked else ("♡ " + _("Like")))
        self.likes_label.setText(ngettext("{n} like", "{n} likes", item.likes_count)
                                 .format(n=item.likes_count) if item.likes_count else "")
        more = item.likes_count - len(item.likes)
        self.likes_label.setToolTip(", ".join(item.likes) + (
            " " + _("and {n} more").format(n=more) if more > 0 else ""))
        self.comments_button.setText(
            ngettext("💬 {n} comment", "💬 {n} comments", item.comments_count)
            .format(n=item.comments_count) if item.comments_count else "💬 " + _("Comment"))
        earlier = item.earlier_comments
        self.earlier_button.setText(_("Earlier comments ({n})").format(n=earlier))
        self.earlier_button.setVisible(earlier > 0)


class FeedWindow(_Dialog):
    """An account's feed: the composer on top, the posts below, newest first.

    Args:
        state: the account's controller (read only: its ``feed``, ``files``,
            ``display_names``).
        parent: the main window.

    Attributes:
        choose_files: asks which files to attach; tests replace it (and the two
            below) instead of driving a native dialog.
        choose_save_path: asks where to save a file, given a suggested path.
        confirm_delete: asks before a post is deleted.
        open_file: opens a local file (a preview clicked).
        cards: the post cards, in the model's order.

    Signals:
        post_requested(text), attach_requested(paths), detach_requested(file_id),
        like_requested(post_id, on), comment_requested(post_id, text),
        delete_requested(post_id), comment_delete_requested(post_id, comment_id),
        older_requested(),
        earlier_comments_requested(post_id),
        download_requested(file_id, name, dest, mime, size),
        thumbnail_wanted(file_id, mime, size),
        transfer_cancel_requested(id), transfer_retry_requested(id),
        transfer_remove_requested(id)
    """

    post_requested = pyqtSignal(str)
    attach_requested = pyqtSignal(list)
    detach_requested = pyqtSignal(str)
    like_requested = pyqtSignal(ID, bool)
    comment_requested = pyqtSignal(ID, str)
    delete_requested = pyqtSignal(ID)
    comment_delete_requested = pyqtSignal(ID, ID)
    older_requested = pyqtSignal()
    earlier_comments_requested = pyqtSignal(ID)
    download_requested = pyqtSignal(str, str, str, str, ID)
    thumbnail_wanted = pyqtSignal(str, str, ID)
    transfer_cancel_requested = pyqtSignal(int)
    transfer_retry_requested = pyqtSignal(int)
    transfer_remove_requested = pyqtSignal(int)

    def __init__(self, state: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model: FeedModel = state.feed.posts
        self.choose_files: Callable[[QWidget], list[str]] = ask_files_to_send
        self.choose_save_path: Callable[[QWidget, str], str] = ask_where_to_save
        self.confirm_delete: Callable[[QWidget], bool] = ask_to_delete
        self.open_file: Callable[[str], None] = open_with_system
        self.cards: list[PostCard] = []
        #: A post was sent and has no answer yet (Post waits for it).
        self.posting = False
        self.resize(600, 760)
        self._build_composer()
        self._build_list()
        layout = QVBoxLayout(self)
        layout.addWidget(self.composer_box)
        layout.addWidget(self.scroller, 1)
        self._follow()
        self.retranslate()
        self._rebuild()

    # -- construction --------------------------------------------------------------------------

    def _build_composer(self) -> None:
        self.composer_box = QWidget()
        self.composer = QPlainTextEdit()
        self.composer.setMaximumHeight(90)
        self.composer.textChanged.connect(self._update_post_button)
        self.attached_box = QWidget()
        self.attached_layout = QHBoxLayout(self.attached_box)
        self.attached_layout.setContentsMargins(0, 0, 0, 0)
        self.attached_buttons: list[QToolButton] = []
        self.uploads = RoomUploadsProxy(self)
        self.uploads.setSourceModel(self.state.files.transfers)
        self.uploads.set_room(FEED_UPLOADS)
        self.strip = AttachmentsStrip()
        self.strip.set_model(self.uploads)
        self.strip.cancel_requested.connect(self.transfer_cancel_requested)
        self.strip.retry_requested.connect(self.transfer_retry_requested)
        self.strip.remove_requested.connect(self.transfer_remove_requested)
        self.attach_button = QPushButton()
        self.attach_button.setIcon(paperclip_icon())
        self.attach_button.setAutoDefault(False)
        self.attach_button.clicked.connect(self._attach_clicked)
        self.post_button = QPushButton()
        self.post_button.setDefault(False)
        self.post_button.setAutoDefault(False)
        self.post_button.clicked.connect(self.submit)
        self.error_label = QLabel()
        self.error_label.setObjectName("feed_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d93025;")
        self.error_label.hide()
        drops = FileDropFilter(self)
        drops.watch(self.composer.viewport() or self.composer)
        drops.files_dropped.connect(self.attach_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        buttons.addWidget(self.post_button)
        layout = QVBoxLayout(self.composer_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.composer)
        layout.addWidget(self.attached_box)
        layout.addWidget(self.strip)
        layout.addLayout(buttons)
        layout.addWidget(self.error_label)

    def _build_list(self) -> None:
        self.list_widget = QWidget()
        self.list_widget.setObjectName("feed_list")
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setSpacing(8)
        self.empty_label = QLabel()
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #5f6368; padding: 24px;")
        self.older_button = QPushButton()
        self.older_button.clicked.connect(self._older)
        self.end_label = QLabel()
        self.end_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.end_label.setStyleSheet("color: #80868b;")
        self.list_layout.addWidget(self.empty_label)
        self.list_layout.addWidget(self.older_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.list_layout.addWidget(self.end_label)
        self.list_layout.addStretch(1)
        self.scroller = QScrollArea()
        self.scroller.setWidgetResizable(True)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroller.setWidget(self.list_widget)
        bar = self.scroller.verticalScrollBar()
        if bar is not None:
            bar.valueChanged.connect(self._scrolled)

    def _follow(self) -> None:
        """Follow the model, the composer's files, the previews and the errors
        (until the window closes)."""
        model, feed, thumbnails = self.model, self.state.feed, self.state.files.thumbnails
        self._links: list[tuple[Any, Callable[..., None]]] = [
            (model.modelReset, self._rebuild),
            (model.rowsInserted, self._inserted),
            (model.rowsRemoved, self._removed),
            (model.dataChanged, self._data_changed),
            (model.paging_changed, self._update_footer),
            (feed.attached_changed, self._show_attached),
            (feed.error, self.show_error),
            (feed.posted, self._posted),
            (thumbnails.ready, self._preview_ready),
            (self.state.avatars.changed, self._avatar_changed),
        ]
        for signal, slot in self._links:
            signal.connect(slot)
        for signal in (self.uploads.rowsInserted, self.uploads.rowsRemoved,
                       self.uploads.dataChanged, self.uploads.modelReset):
            signal.connect(self._update_post_button)
        self.finished.connect(self._stop_following)

    def _stop_following(self, _result: int) -> None:
        for signal, slot in self._links:
            with contextlib.suppress(TypeError, RuntimeError):
                signal.disconnect(slot)

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Feed"))
        self.composer.setPlaceholderText(
            _("What's new? Your contacts see your posts. (Ctrl+Enter posts)"))
        self.attach_button.setText(_("Attach…"))
        self.post_button.setText(_("Post"))
        self.empty_label.setText(_("Nothing here yet. Write the first post: your contacts "
                                   "see it, and you see theirs."))
        self.older_button.setText(_("Older posts"))
        self.end_label.setText(_("No older posts."))
        for row, card in enumerate(self.cards):
            self._fill(card, row)
        self._show_attached()
        self._update_footer()

    # -- the composer --------------------------------------------------------------------------

    def _attach_clicked(self) -> None:
        paths = self.choose_files(self)
        if paths:
            self.attach_requested.emit(list(paths))

    def _show_attached(self) -> None:
        for button in self.attached_buttons:
            self.attached_layout.removeWidget(button)
            button.deleteLater()
        self.attached_buttons = []
        for file in self.state.feed.attached:
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setIcon(paperclip_icon())
            button.setText(f"{file.get('name', '')}  ✕")
            button.setToolTip(_("Remove from the post"))
            button.setProperty("file_id", str(file["file_id"]))
            button.clicked.connect(lambda _c=False, f=str(file["file_id"]):
                                   self.detach_requested.emit(f))
            self.attached_layout.insertWidget(len(self.attached_buttons), button)
            self.attached_buttons.append(button)
        if self.attached_layout.count() == len(self.attached_buttons):
            self.attached_layout.addStretch(1)
        self.attached_box.setVisible(bool(self.attached_buttons))
        self._update_post_button()

    def uploading(self) -> bool:
        """Whether files for the post are still on their way to the server."""
        roles = TransfersModel.Roles
        return any(self.uploads.index(r, 0).data(roles.State) in ACTIVE_STATES
                   for r in range(self.uploads.rowCount()))

    def _update_post_button(self, *_args: object) -> None:
        has_content = bool(self.composer.toPlainText().strip() or self.state.feed.attached)
        self.post_button.setEnabled(has_content and not self.posting and not self.uploading()
                                    and len(self.composer.toPlainText()) <= MAX_POST_CHARS)

    def submit(self) -> None:
        """Post what the composer holds (Post, or Ctrl+Enter)."""
        if not self.post_button.isEnabled():
            return
        self.show_error("")
        self.posting = True
        self._update_post_button()
        self.post_requested.emit(self.composer.toPlainText())

    def _posted(self, _post_id: int) -> None:
        self.posting = False
        self.composer.clear()
        self.scroller.verticalScrollBar().setValue(0)  # type: ignore[union-attr]

    def keyPressEvent(self, e: QKeyEvent | None) -> None:
        """Ctrl+Enter in the window posts; a plain Enter (a comment sent) presses
        no button, as QDialog's default button would."""
        if e is not None and e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if e.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.submit()
            return
        super().keyPressEvent(e)

    def show_error(self, text: str) -> None:
        """Show a refusal (the server's reason) under the composer ("" hides it)."""
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
        if text and self.posting:
            self.posting = False  # refused (or another request was): Post again
            self._update_post_button()

    # -- the posts -----------------------------------------------------------------------------

    def _new_card(self, row: int) -> PostCard:
        card = PostCard(int(self.model.index(row).data(_R.PostId)), self.list_widget)
        card.like_clicked.connect(self._like)
        card.delete_clicked.connect(self._delete)
        card.comment_submitted.connect(self.comment_requested)
        card.earlier_comments_clicked.connect(self.earlier_comments_requested)
        card.comment_delete_clicked.connect(self.comment_delete_requested)
        card.file_clicked.connect(self._file_clicked)
        self._fill(card, row)
        return card

    def _fill(self, card: PostCard, row: int) -> None:
        item = self.model.posts()[row]
        feed = self.state.feed
        author_name = str(self.model.index(row).data(_R.AuthorName))
        card.show_post(item, author_name, dict(self.state.display_names),
                       feed.may_delete(item.author), self.model.me)
        card.show_avatar(self.state.avatars, author_name)
        thumbnails = self.state.files.thumbnails
        for attachment in item.attachments:
            file_id, mime = str(attachment.get("file_id", "")), str(attachment.get("mime", ""))
            if not is_image(mime):
                continue
            if thumbnails.state(file_id) is None:
                self.thumbnail_wanted.emit(file_id, mime, int(attachment.get("size", 0)))
            card.show_preview(file_id, thumbnails.state(file_id), thumbnails.pixmap(file_id))

    def _rebuild(self) -> None:
        expanded = {c.post_id for c in self.cards if c.expanded}
        for card in self.cards:
            self.list_layout.removeWidget(card)
            card.deleteLater()
        self.cards = []
        self._inserted(QModelIndex(), 0, self.model.rowCount() - 1)
        for card in self.cards:
            if card.post_id in expanded:
                card.comments_button.setChecked(True)
        self._update_footer()

    def _inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        for row in range(first, last + 1):
            card = self._new_card(row)
            self.list_layout.insertWidget(row, card)
            self.cards.insert(row, card)
        self._update_footer()

    def _removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        for card in self.cards[first:last + 1]:
            self.list_layout.removeWidget(card)
            card.deleteLater()
        del self.cards[first:last + 1]
        self._update_footer()

    def _data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex,
                      *_roles: object) -> None:
        for row in range(top_left.row(), bottom_right.row() + 1):
            if 0 <= row < len(self.cards):
                self._fill(self.cards[row], row)

    def _update_footer(self) -> None:
        model = self.model
        self.empty_label.setVisible(model.loaded and model.rowCount() == 0)
        self.older_button.setVisible(model.loaded and model.has_more)
        self.end_label.setVisible(model.loaded and not model.has_more and model.rowCount() > 0)

    def card(self, post_id: int) -> PostCard | None:
        """The card of ``post_id`` (tests, and scrolling to it)."""
        return next((c for c in self.cards if c.post_id == post_id), None)

    def _avatar_changed(self, username: str) -> None:
        for row, card in enumerate(self.cards):
            if card.item is not None and card.item.author == username:
                card.show_avatar(self.state.avatars,
                                 str(self.model.index(row).data(_R.AuthorName)))

    def _preview_ready(self, file_id: str) -> None:
        thumbnails = self.state.files.thumbnails
        for card in self.cards:
            if file_id in card.file_widgets:
                card.show_preview(file_id, thumbnails.state(file_id),
                                  thumbnails.pixmap(file_id))

    def _scrolled(self, value: int) -> None:
        bar = self.scroller.verticalScrollBar()
        if bar is not None and value >= bar.maximum() - OLDER_MARGIN and bar.maximum() > 0:
            self._older()

    def _older(self) -> None:
        if self.model.loaded and self.model.has_more and not self.model.loading:
            self.older_requested.emit()

    def _like(self, post_id: int, on: bool) -> None:
        card = self.card(post_id)
        if card is not None and card.item is not None:
            card.like_button.setChecked(card.item.liked)  # until the event says so
        self.like_requested.emit(post_id, on)

    def _delete(self, post_id: int) -> None:
        if self.confirm_delete(self):
            self.delete_requested.emit(post_id)

    def _file_clicked(self, file_id: str, name: str, mime: str, size: int) -> None:
        local = self.state.files.thumbnails.path(file_id)
        if is_image(mime) and local:
            self.open_file(local)
            return
        dest = self.choose_save_path(self, str(downloads_folder() / name))
        if dest:
            self.download_requested.emit(file_id, name, dest, mime, size)
