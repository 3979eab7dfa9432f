"""The conversation's widgets: the message list with scroll-back, and the composer."""

from __future__ import annotations

import contextlib
from typing import Any

from chatnet.reactions import MAX_EMOJI_PER_MESSAGE, MAX_REACTIONS_PER_USER
from qtclient.i18n import N_, _
from qtclient.models.thumbnails import ThumbnailCache
from qtclient.models.timeline import SENT, TimelineModel
from qtclient.models.transfers import DOWNLOAD, TransfersModel
from qtclient.qt import (
    ID,
    QAbstractItemModel,
    QAbstractItemView,
    QAction,
    QContextMenuEvent,
    QEvent,
    QGuiApplication,
    QKeyEvent,
    QListView,
    QMenu,
    QModelIndex,
    QPlainTextEdit,
    QRect,
    QResizeEvent,
    QStyleOptionViewItem,
    Qt,
    QTimer,
    QToolButton,
    QWidget,
    pyqtSignal,
)
from qtclient.views.delegates import MessageDelegate

_TR = TimelineModel.Roles
#: Reactions offered in the message menu (any emoji arriving from others is shown).
#: Each is one emoji in the fully qualified form the server stores
#: (``chatnet.reactions.canonical_emoji``), so the menu's "mine" matches chips.
QUICK_REACTIONS = ("👍", "❤️", "😂", "🎉", "😮", "😢")
#: Distance from the top, in pixels, at which older history is fetched.
PREFETCH_PX = 400
#: Milliseconds a resize must pause before the rows are laid out for the new width.
RELAYOUT_DELAY_MS = 150
#: At most one repaint per this many milliseconds for download progress and
#: arriving previews (a download reports every 256 KiB chunk).
FILES_REPAINT_MS = 50
#: How long a message shown from a search result or a date stays highlighted.
HIGHLIGHT_MS = 2500
#: How often the countdowns of burn-after-reading messages are repainted.
COUNTDOWN_MS = 1000
#: The lifetimes offered for burn-after-reading messages: (seconds, label).
BURN_CHOICES = ((10, N_("10 seconds")), (60, N_("1 minute")), (300, N_("5 minutes")),
                (3600, N_("1 hour")), (86400, N_("1 day")))


class TimelineView(QListView):
    """The messages of the open room, newest at the bottom.

    Keeps the view at the bottom while new messages arrive (unless the user
    has scrolled up: others' messages then never move what they are reading),
    goes to the bottom when the user sends (:meth:`show_newest`), keeps the
    visible message in place when older ones are put on top, and asks for
    older history before the top is reached. A window opened in the middle
    of the history (:meth:`reveal`: a search result, a date) asks for newer
    history before its bottom is reached, and does not follow the bottom
    until it holds the newest message. While the room shows burn-after-reading
    messages, one timer of the view (:attr:`countdown`, every second) repaints
    their countdowns; it stops when there are none.

    Signals:
        older_requested(): scroll-back is near the top of what is loaded.
        newer_requested(): scrolling down is near the bottom of a window that
            does not reach the newest message.
        reply_requested(msg_id), edit_requested(msg_id), delete_requested(msg_id):
            chosen from a message's menu.
        react_requested(msg_id, emoji, on): from the menu or a reaction chip.
        file_clicked(action, file_id, name, mime, size): an attached file's
            button or preview was clicked (see :class:`MessageDelegate`).
        thumbnail_wanted(file_id, mime, size): an image on screen has no preview yet.
    """

    older_requested = pyqtSignal()
    newer_requested = pyqtSignal()
    reply_requested = pyqtSignal(ID)
    edit_requested = pyqtSignal(ID)
    delete_requested = pyqtSignal(ID)
    react_requested = pyqtSignal(ID, str, bool)
    file_clicked = pyqtSignal(str, str, str, str, ID)
    thumbnail_wanted = pyqtSignal(str, str, ID)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Set before anything below: they make Qt call updateGeometries().
        self.can_moderate = False
        # (scroll maximum, distance from the bottom) while older rows are being
        # put on top: the distance is restored once the maximum has changed.
        self._keep_from_bottom: tuple[int, int] | None = None
        self._stick = True
        self.message_delegate = MessageDelegate(self)
        self.setItemDelegate(self.message_delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Always there, so the width (and so every row's height) does not
        # change when the list grows past one screen.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Rows are laid out again for a new width only once resizing pauses
        # (every row's height depends on the width; see resizeEvent).
        self.setResizeMode(QListView.ResizeMode.Fixed)
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(RELAYOUT_DELAY_MS)
        self._relayout.timeout.connect(self._width_settled)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformItemSizes(False)
        self.setMouseTracking(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.verticalScrollBar().setSingleStep(24)  # type: ignore[union-attr]
        self.message_delegate.reaction_clicked.connect(self.react_requested)
        self.message_delegate.file_clicked.connect(self.file_clicked)
        self.message_delegate.thumbnail_wanted.connect(self.thumbnail_wanted)
        self._files_repaint = QTimer(self)
        self._files_repaint.setSingleShot(True)
        self._files_repaint.setInterval(FILES_REPAINT_MS)
        self._files_repaint.timeout.connect(self._repaint_files)
        self._highlight = QTimer(self)
        self._highlight.setSingleShot(True)
        self._highlight.setInterval(HIGHLIGHT_MS)
        self._highlight.timeout.connect(self._end_highlight)
        #: The one timer repainting every countdown (burn after reading).
        self.countdown = QTimer(self)
        self.countdown.setInterval(COUNTDOWN_MS)
        self.countdown.timeout.connect(self._tick)
        bar = self.verticalScrollBar()
        assert bar is not None
        bar.valueChanged.connect(self._scrolled)

    def show_files(self, transfers: TransfersModel, thumbnails: ThumbnailCache) -> None:
        """Read downloads and previews from these (the controller's) to draw
        attached files, and repaint when they change."""
        self.message_delegate.transfers = transfers
        self.message_delegate.thumbnails = thumbnails
        transfers.dataChanged.connect(self._transfer_changed)
        for signal in (transfers.rowsInserted, transfers.rowsRemoved, transfers.modelReset):
            signal.connect(self._files_changed)
        thumbnails.ready.connect(self._files_changed)

    def _transfer_changed(self, top_left: QModelIndex, *_args: Any) -> None:
        if top_left.data(TransfersModel.Roles.Kind) == DOWNLOAD:
            self._files_changed()

    def _files_changed(self, *_args: Any) -> None:
        """Repaint soon (attached files never change a row's height)."""
        if not self._files_repaint.isActive():
            self._files_repaint.start()

    def _repaint_files(self) -> None:
        viewport = self.viewport()
        if viewport is not None:
            viewport.update()

    def file_spots(self, row: int) -> list[tuple[str, QRect, QRect | None]]:
        """Where the files attached to the message at ``row`` are, in viewport
        coordinates: (file id, its button, its preview or None)."""
        model = self.model()
        if model is None:
            return []
        index = model.index(row, 0)
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        option.rect = self.visualRect(index)
        layout = self.message_delegate.layout_for(option, index)
        origin = option.rect.topLeft()
        return [(spot.file.file_id, spot.button.translated(origin),
                 spot.thumb.translated(origin) if spot.thumb is not None else None)
                for spot in layout.files]

    def timeline(self) -> TimelineModel | None:
        """The model shown, if any."""
        model = self.model()
        return model if isinstance(model, TimelineModel) else None

    def setModel(self, model: QAbstractItemModel | None) -> None:
        """Show another room's timeline, scrolled to its newest message."""
        old = self.model()
        if old is not None:
            for signal, slot in ((old.rowsAboutToBeInserted, self._about_to_insert),
                                 (old.rowsInserted, self._inserted),
                                 (old.modelReset, self._reset),
                                 (old.rowsInserted, self._watch_countdowns),
                                 (old.modelReset, self._watch_countdowns)):
                with contextlib.suppress(TypeError):
                    signal.disconnect(slot)
        super().setModel(model)
        self._keep_from_bottom = None
        self._stick = True
        self._end_highlight()
        if model is not None:
            model.rowsAboutToBeInserted.connect(self._about_to_insert)
            model.rowsInserted.connect(self._inserted)
            model.modelReset.connect(self._reset)
            model.rowsInserted.connect(self._watch_countdowns)
            model.modelReset.connect(self._watch_countdowns)
        self.message_delegate.countdowns.clear()
        self._watch_countdowns()
        self.scrollToBottom()

    def _watch_countdowns(self, *_args: Any) -> None:
        """Run the countdown timer while burn-after-reading messages are loaded."""
        timeline = self.timeline()
        if timeline is not None and timeline.burning():
            if not self.countdown.isActive():
                self.countdown.start()
        else:
            self.countdown.stop()
            self.message_delegate.countdowns.clear()

    def _tick(self) -> None:
        """A second passed: repaint the countdowns (no layout: they only get shorter)."""
        self._watch_countdowns()
        self._repaint_files()

    def resizeEvent(self, e: QResizeEvent | None) -> None:
        """Rows are laid out for the viewport's width (heights depend on it): at
        once the first time, then when a resize has paused, so that dragging
        the window's edge does not lay out a long room at every pixel."""
        super().resizeEvent(e)
        if self.message_delegate.view_width == 0:
            self._width_settled()
        else:
            self._relayout.start()

    def _width_settled(self) -> None:
        viewport = self.viewport()
        if viewport is not None and viewport.width() != self.message_delegate.view_width:
            self.message_delegate.view_width = viewport.width()
            self.scheduleDelayedItemsLayout()

    def changeEvent(self, e: QEvent | None) -> None:
        """After a language or font change, texts have other widths: lay out again."""
        if e is not None and e.type() in (QEvent.Type.LanguageChange, QEvent.Type.FontChange):
            self.message_delegate.clear_cache()
            self.scheduleDelayedItemsLayout()
        super().changeEvent(e)

    # -- scrolling -----------------------------------------------------------------------------

    def _about_to_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        bar = self.verticalScrollBar()
        assert bar is not None
        model = self.model()
        if first == 0 and model is not None and model.rowCount() > 0:
            self._keep_from_bottom = (bar.maximum(), bar.maximum() - bar.value())
        else:
            self._stick = bar.value() >= bar.maximum() - 4 and not self._in_middle()

    def _inserted(self, *_args: Any) -> None:
        if self._keep_from_bottom is None and self._stick:
            self.scrollToBottom()

    def _reset(self) -> None:
        self._keep_from_bottom = None
        # A window in the middle of the history is placed by reveal(), not at
        # its bottom (which would ask for the newer pages at once).
        self._stick = not self._in_middle()
        if self._stick:
            self.scrollToBottom()

    def updateGeometries(self) -> None:
        """After each layout (Qt has just set the scroll range): keep the
        reading position when older rows were put on top, or stay at the
        bottom; then see whether more history is needed to fill the view."""
        super().updateGeometries()
        bar = self.verticalScrollBar()
        if bar is None:
            return
        if self._keep_from_bottom is not None:
            old_maximum, distance = self._keep_from_bottom
            if bar.maximum() != old_maximum:  # the new rows are laid out
                bar.setValue(bar.maximum() - distance)
                self._keep_from_bottom = None
        elif self._stick:
            bar.setValue(bar.maximum())
        # Not from inside the layout: the request may change the model.
        QTimer.singleShot(0, self._maybe_more)

    def _scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        assert bar is not None
        self._stick = value >= bar.maximum() - 4 and not self._in_middle()
        self._maybe_more()

    def _in_middle(self) -> bool:
        """Whether the rows shown end before the newest message."""
        timeline = self.timeline()
        return timeline is not None and timeline.has_newer

    def _maybe_more(self) -> None:
        """Ask for older history near the top, newer history near the bottom of a
        window in the middle."""
        timeline = self.timeline()
        bar = self.verticalScrollBar()
        if timeline is None or bar is None or not timeline.loaded or timeline.loading:
            return
        if timeline.has_more and bar.value() <= PREFETCH_PX:
            self.older_requested.emit()
        elif timeline.has_newer and bar.value() >= bar.maximum() - PREFETCH_PX:
            self.newer_requested.emit()

    def reveal(self, seq: int) -> bool:
        """Scroll the message ``seq`` to the middle of the view and highlight it
        for :data:`HIGHLIGHT_MS` (a search result or a date was chosen).

        Returns:
            False if that message is not loaded.
        """
        timeline = self.timeline()
        row = timeline.row_of_seq(seq) if timeline is not None else -1
        if timeline is None or row < 0:
            return False
        self._keep_from_bottom = None
        self._stick = False
        self.executeDelayedItemsLayout()  # a reset only schedules it; scrolling needs it now
        index = timeline.index(row)
        self.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self.message_delegate.highlight_key = str(index.data(_TR.Key))
        self._highlight.start()
        self._repaint_files()
        return True

    def highlighted(self) -> str | None:
        """The key of the message highlighted now (``m<msg_id>``), or None."""
        return self.message_delegate.highlight_key

    def _end_highlight(self) -> None:
        self.message_delegate.highlight_key = None
        self._repaint_files()

    def show_newest(self) -> None:
        """Scroll to the newest message and stay there while rows arrive: the
        user has just sent one, and wants to see it even if they had scrolled up."""
        self._stick = True
        self.scrollToBottom()

    def at_bottom(self) -> bool:
        """Whether the newest message is in view."""
        bar = self.verticalScrollBar()
        return bar is None or bar.value() >= bar.maximum() - 4

    # -- the message menu ----------------------------------------------------------------------

    def message_actions(self, index: QModelIndex, menu: QMenu) -> list[QAction]:
        """Fill ``menu`` with what can be done to the message at ``index``.

        Each action's ``objectName`` says what it does (``reply``, ``copy``,
        ``edit``, ``delete``, ``react:<emoji>``; ``react-limit`` is the greyed-out
        note saying which reaction cap keeps some emoji from being offered).

        Returns:
            the actions added (empty for an invalid index).
        """
        if not index.isValid():
            return []
        msg_id = index.data(_TR.MsgId)
        body = str(index.data(_TR.Body) or "")
        own = bool(index.data(_TR.IsOwn))
        stored = msg_id is not None and index.data(_TR.State) == SENT
        actions: list[QAction] = []

        def add(name: str, text: str, slot: Any, target: QMenu = menu) -> None:
            action = QAction(text, target)
            action.setObjectName(name)
            action.triggered.connect(slot)
            target.addAction(action)
            actions.append(action)

        if stored:
            add("reply", _("Reply"), lambda: self.reply_requested.emit(int(msg_id)))
            reactions = QMenu(_("React"), menu)
            menu.addMenu(reactions)
            chips = index.data(_TR.Reactions) or []
            mine = {emoji for emoji, _count, me in chips if me}
            present = {emoji for emoji, _count, _me in chips}
            for emoji in QUICK_REACTIONS:
                add(f"react:{emoji}", emoji,
                    lambda _c=False, e=emoji: self.react_requested.emit(
                        int(msg_id), e, e not in mine), reactions)
            # Offer only what the server would accept (chatnet.reactions' caps),
            # and say why the rest is greyed out.
            if len(mine) >= MAX_REACTIONS_PER_USER:
                full = _("You have {n} different reactions here; remove one to add another"
                         ).format(n=MAX_REACTIONS_PER_USER)
                blocked = set(QUICK_REACTIONS) - mine
            elif len(present) >= MAX_EMOJI_PER_MESSAGE:
                full = _("This message has {n} different reactions; add one of those"
                         ).format(n=MAX_EMOJI_PER_MESSAGE)
                blocked = set(QUICK_REACTIONS) - present
            else:
                full, blocked = "", set()
            for action in actions:
                name = action.objectName()
                if name.startswith("react:") and name.removeprefix("react:") in blocked:
                    action.setEnabled(False)
            if full:
                note = QAction(full, reactions)
                note.setObjectName("react-limit")
                note.setEnabled(False)
                reactions.addAction(note)
                actions.append(note)
        add("copy", _("Copy text"), lambda: _copy(body))
        if stored and own:
            add("edit", _("Edit"), lambda: self.edit_requested.emit(int(msg_id)))
        if stored and (own or self.can_moderate):
            add("delete", _("Delete"), lambda: self.delete_requested.emit(int(msg_id)))
        return actions

    def contextMenuEvent(self, e: QContextMenuEvent | None) -> None:
        """Right click on a message: its menu."""
        if e is None:
            return
        menu = QMenu(self)
        if self.message_actions(self.indexAt(e.pos()), menu):
            menu.exec(e.globalPos())


def _copy(text: str) -> None:
    clipboard = QGuiApplication.clipboard()
    if clipboard is not None:
        clipboard.setText(text)


class Composer(QPlainTextEdit):
    """Where messages are written: Enter sends, Shift+Enter starts a new line,
    Escape cancels a reply or an edit, Up while empty edits one's last message.

    Signals:
        submitted(): Enter was pressed.
        cancelled(): Escape was pressed.
        edit_last_requested(): Up was pressed with nothing written.
    """

    submitted = pyqtSignal()
    cancelled = pyqtSignal()
    edit_last_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        lines = 3
        self.setFixedHeight(self.fontMetrics().lineSpacing() * lines + 18)

    def keyPressEvent(self, e: QKeyEvent | None) -> None:
        """Enter sends; Shift+Enter is a new line; Escape cancels; Up in an
        empty composer asks to edit the user's last message."""
        if e is None:
            return
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if e.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submitted.emit()
            return
        if e.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        if (e.key() == Qt.Key.Key_Up and not self.toPlainText()
                and not e.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
            self.edit_last_requested.emit()
            return
        super().keyPressEvent(e)


class BurnButton(QToolButton):
    """The composer's "burn after reading" toggle (🔥, next to Send).

    Checked, the messages sent get a ``ttl`` (docs/protocol.md 6): they are
    erased for everyone that long after they are sent. The arrow beside it
    chooses how long (:data:`BURN_CHOICES`; one minute at first); choosing a
    duration also turns it on. Each choice is a checkable action whose
    ``objectName`` is ``burn:<seconds>``.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("burn_button")
        self.setText("🔥")
        self.setCheckable(True)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.seconds = 60
        menu = QMenu(self)
        self.choices: dict[int, QAction] = {}
        for seconds, _label in BURN_CHOICES:
            action = QAction(menu)
            action.setObjectName(f"burn:{seconds}")
            action.setCheckable(True)
            action.triggered.connect(lambda _c=False, s=seconds: self.choose(s))
            menu.addAction(action)
            self.choices[seconds] = action
        self.setMenu(menu)
        self.toggled.connect(self._update)
        self.retranslate()

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` for the next message: the duration chosen if on, else None."""
        return self.seconds if self.isChecked() else None

    def choose(self, seconds: int) -> None:
        """Burn the next messages after ``seconds`` (turns the toggle on)."""
        self.seconds = seconds
        self.setChecked(True)
        self._update()

    def retranslate(self) -> None:
        """Read the texts again (after a language change)."""
        for seconds, label in BURN_CHOICES:
            self.choices[seconds].setText(_(label))
        self._update()

    def _update(self, *_args: Any) -> None:
        for seconds, action in self.choices.items():
            action.setChecked(seconds == self.seconds)
        label = _(dict(BURN_CHOICES)[self.seconds])
        if self.isChecked():
            self.setToolTip(_("Burn after reading: on — messages are erased {duration} "
                              "after they are sent").format(duration=label))
            self.setStyleSheet("QToolButton { background: #fce8e6; }")
        else:
            self.setToolTip(_("Burn after reading: off (the arrow chooses how long: {duration})"
                              ).format(duration=label))
            self.setStyleSheet("")

    def changeEvent(self, e: QEvent | None) -> None:
        """Retranslate on a language change."""
        if e is not None and e.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(e)
