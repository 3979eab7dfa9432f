"""The search panel: find messages in one conversation or in all of an account's.

Layout (the panel takes the members panel's place on the right)::

    +--------------------------------+
    | Search                      ✕  |
    | [ words…                     ] |
    | [In # general ▾] [Best match ▾]|
    | 3 messages found               |
    | # general · Bob     12 Mar 10:02|
    |   …the report **数据** is up…   |
    | …                              |
    | [More]                         |
    +--------------------------------+

Results come from the account's
:class:`~qtclient.models.search.SearchResultsModel`; the snippet's matched
parts (``snippet.marks``) are drawn bold on a highlight. Choosing a result
(click, or Enter) asks to open its conversation at that message.
"""

from __future__ import annotations

from typing import Any

from qtclient.i18n import _, ngettext
from qtclient.models.search import RECENT, RELEVANCE, SearchResultsModel, utf16_marks
from qtclient.qt import (
    ID,
    QAbstractItemView,
    QColor,
    QComboBox,
    QDateTime,
    QEvent,
    QFont,
    QFontMetrics,
    QHBoxLayout,
    QKeyEvent,
    QLabel,
    QLineEdit,
    QListView,
    QLocale,
    QModelIndex,
    QObject,
    QPainter,
    QPersistentModelIndex,
    QPointF,
    QPushButton,
    QRect,
    QRectF,
    QSize,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    Qt,
    QTextCharFormat,
    QTextLayout,
    QTextOption,
    QTimer,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)

_Index = QModelIndex | QPersistentModelIndex
_SR = SearchResultsModel.Roles
#: Lines of snippet shown per result at most.
SNIPPET_LINES = 3
#: Padding inside a result, pixels.
PAD = 8
#: Milliseconds typing must pause before the words are searched.
TYPING_PAUSE_MS = 400
#: Distance from the end of the results, in pixels, at which the next page is asked for.
MORE_PX = 200
#: The background of a matched part of a snippet.
MARK_BACKGROUND = QColor("#fde293")
_MUTED = QColor("#5f6368")
_TEXT = QColor("#202124")


def when_text(ts: int) -> str:
    """``ts`` (ms since the epoch) as a short local date and time."""
    return QLocale().toString(QDateTime.fromMSecsSinceEpoch(ts),
                              QLocale.FormatType.ShortFormat)


def snippet_layout(text: str, marks: list[tuple[int, int]], font: QFont,
                   width: int) -> QTextLayout:
    """The snippet laid out to ``width`` (at most :data:`SNIPPET_LINES` lines,
    the last one elided), each mark bold on :data:`MARK_BACKGROUND`.

    Args:
        text: the snippet's text.
        marks: ``[start, end)`` of each match, in code points (the server's unit).
    """
    layout = QTextLayout(" ".join(text.split("\n")), font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    layout.setTextOption(option)
    formats = []
    for start, end in utf16_marks(text, marks):
        mark = QTextLayout.FormatRange()
        mark.start, mark.length = start, end - start
        emphasis = QTextCharFormat()
        emphasis.setFontWeight(QFont.Weight.Bold)
        emphasis.setBackground(MARK_BACKGROUND)
        mark.format = emphasis
        formats.append(mark)
    layout.setFormats(formats)
    layout.beginLayout()
    y = 0.0
    for _n in range(SNIPPET_LINES):
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(width)
        line.setPosition(QPointF(0, y))
        y += line.height()
    layout.endLayout()
    return layout


class SearchResultDelegate(QStyledItemDelegate):
    """Paints a result: the room and sender, the date on the right, then the
    snippet with its matches emphasised."""

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        body = QFont(option.font)
        bold = QFont(body)
        bold.setBold(True)
        small = QFont(body)
        small.setPointSizeF(max(6.0, body.pointSizeF() * 0.85))
        return body, bold, small

    def _snippet_width(self, option: QStyleOptionViewItem) -> int:
        return max(80, option.rect.width() - 2 * PAD)

    def _layout(self, option: QStyleOptionViewItem, index: _Index) -> QTextLayout:
        body, _bold, _small = self._fonts(option)
        return snippet_layout(str(index.data(_SR.Snippet) or ""),
                              list(index.data(_SR.Marks) or []), body,
                              self._snippet_width(option))

    def _header_height(self, option: QStyleOptionViewItem) -> int:
        _body, bold, small = self._fonts(option)
        return max(QFontMetrics(bold).height(), QFontMetrics(small).height())

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Header line plus the snippet's lines (up to :data:`SNIPPET_LINES`)."""
        layout = self._layout(option, index)
        lines = max(1, layout.lineCount())
        height = sum(layout.lineAt(n).height() for n in range(lines))
        return QSize(option.rect.width(), int(2 * PAD + self._header_height(option) + 4
                                              + height + 0.999))

    def text_rects(self, option: QStyleOptionViewItem, index: _Index, start: int,
                   end: int) -> list[QRectF]:
        """Where the snippet's characters ``[start, end)`` (UTF-16 units, as Qt
        counts) are drawn, in the coordinates of ``option.rect``: one
        rectangle per line they are on."""
        layout = self._layout(option, index)
        origin = QPointF(option.rect.left() + PAD,
                         option.rect.top() + PAD + self._header_height(option) + 4)
        rects = []
        for n in range(layout.lineCount()):
            line = layout.lineAt(n)
            first, last = line.textStart(), line.textStart() + line.textLength()
            a, b = max(start, first), min(end, last)
            if a >= b:
                continue
            x1, _ = line.cursorToX(a)
            x2, _ = line.cursorToX(b)
            rects.append(QRectF(origin.x() + min(x1, x2), origin.y() + line.y(),
                                abs(x2 - x1), line.height()))
        return rects

    def mark_rects(self, option: QStyleOptionViewItem, index: _Index) -> list[QRectF]:
        """Where each matched part of the snippet is drawn (:meth:`text_rects`)."""
        text = str(index.data(_SR.Snippet) or "")
        return [rect for start, end in utf16_marks(text, list(index.data(_SR.Marks) or []))
                for rect in self.text_rects(option, index, start, end)]

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem,
              index: _Index) -> None:
        """Draw the result at ``index``."""
        if painter is None:
            return
        body, bold, small = self._fonts(option)
        rect = option.rect
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, QColor("#e8f0fe"))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, QColor("#f1f3f4"))
        painter.setPen(QColor("#e0e0e0"))
        painter.drawLine(rect.left(), rect.bottom(), rect.right(), rect.bottom())
        header_h = self._header_height(option)
        when = when_text(int(index.data(_SR.Timestamp) or 0))
        painter.setFont(small)
        when_w = QFontMetrics(small).horizontalAdvance(when)
        header = QRect(rect.left() + PAD, rect.top() + PAD, rect.width() - 2 * PAD, header_h)
        middle = Qt.AlignmentFlag.AlignVCenter
        painter.setPen(_MUTED)
        painter.drawText(header, middle | Qt.AlignmentFlag.AlignRight, when)
        who = f"{index.data(_SR.RoomLabel)} · {index.data(_SR.SenderName)}"
        painter.setFont(bold)
        painter.setPen(_TEXT)
        room_w = max(0, header.width() - when_w - PAD)
        painter.drawText(QRect(header.left(), header.top(), room_w, header_h),
                         middle | Qt.AlignmentFlag.AlignLeft,
                         QFontMetrics(bold).elidedText(who, Qt.TextElideMode.ElideRight,
                                                       room_w))
        painter.setFont(body)
        painter.setPen(_TEXT)
        layout = self._layout(option, index)
        layout.draw(painter, QPointF(rect.left() + PAD, rect.top() + PAD + header_h + 4))
        painter.restore()


class ResultsView(QListView):
    """The results list: Enter or a click chooses one; scrolling near the end
    asks for more.

    Signals:
        chosen(room_id, seq): a result was chosen.
        near_end(): the list was scrolled close to its last result.
    """

    chosen = pyqtSignal(ID, ID)
    near_end = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result_delegate = SearchResultDelegate(self)
        self.setItemDelegate(self.result_delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setMouseTracking(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWordWrap(True)
        self.clicked.connect(self.choose)
        bar = self.verticalScrollBar()
        assert bar is not None
        bar.valueChanged.connect(self._scrolled)

    def item_option(self, row: int) -> QStyleOptionViewItem:
        """The style option the delegate paints row ``row`` with (its rectangle
        in viewport coordinates)."""
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        model = self.model()
        if model is not None:
            option.rect = self.visualRect(model.index(row, 0))
        return option

    def choose(self, index: QModelIndex) -> None:
        """Choose the result at ``index``."""
        if index.isValid():
            self.chosen.emit(int(index.data(_SR.RoomId)), int(index.data(_SR.Seq)))

    def keyPressEvent(self, e: QKeyEvent | None) -> None:
        """Enter chooses the current result."""
        if e is not None and e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.choose(self.currentIndex())
            return
        super().keyPressEvent(e)

    def _scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        if bar is not None and bar.maximum() > 0 and value >= bar.maximum() - MORE_PX:
            self.near_end.emit()


class SearchPanel(QWidget):
    """Search one conversation or all of them; list what is found.

    Args:
        results: the account's search results (read only).

    Signals:
        search_requested(query, room_id, order): search ``query`` in
            ``room_id`` (-1: in all conversations), ``order`` ``relevance``
            or ``recent``.
        more_requested(): the next page of the current search.
        result_chosen(room_id, seq): open that message.
        close_requested(): ✕ or Escape.
    """

    search_requested = pyqtSignal(str, ID, str)
    more_requested = pyqtSignal()
    result_chosen = pyqtSignal(ID, ID)
    close_requested = pyqtSignal()

    def __init__(self, results: SearchResultsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results_model = results
        #: The conversation "in this conversation" means (None: none is open).
        self.room_id: int | None = None
        self.room_name = ""
        self.setMinimumWidth(260)
        self.title = QLabel()
        font = QFont(self.title.font())
        font.setBold(True)
        self.title.setFont(font)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.clicked.connect(self.close_requested)
        self.query = QLineEdit()
        self.query.setClearButtonEnabled(True)
        self.query.returnPressed.connect(self.search_now)
        self.query.textEdited.connect(lambda _text: self._typing.start())
        self.query.installEventFilter(self)
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_PAUSE_MS)
        self._typing.timeout.connect(self.search_now)
        self.scope = QComboBox()
        self.scope.activated.connect(lambda _i: self.search_now())
        self.order = QComboBox()
        self.order.addItem("", RELEVANCE)
        self.order.addItem("", RECENT)
        self.order.activated.connect(lambda _i: self.search_now())
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #5f6368;")
        self.results = ResultsView()
        self.results.setModel(results)
        self.results.chosen.connect(self.result_chosen)
        self.results.near_end.connect(self._near_end)
        self.more_button = QPushButton()
        self.more_button.clicked.connect(self.more_requested)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.close_button)
        options = QHBoxLayout()
        options.addWidget(self.scope, 1)
        options.addWidget(self.order)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.query)
        layout.addLayout(options)
        layout.addWidget(self.status)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.more_button)
        results.state_changed.connect(self.show_state)
        results.rowsInserted.connect(self.show_state)
        results.modelReset.connect(self.show_state)
        self.retranslate()

    # -- what the user asks ---------------------------------------------------------------------

    def start(self, here: bool) -> None:
        """Open for a search in the conversation shown (``here``) or in all of
        them, keeping the words typed before; the words are selected, ready to
        be replaced (and searched again in the new scope)."""
        self._fill_scope(all_rooms=not here or self.room_id is None)
        self.query.setFocus()
        self.query.selectAll()
        if self.query.text().strip():
            self.search_now()

    def set_room(self, room_id: int | None, room_name: str) -> None:
        """The conversation shown changed: "in this conversation" now means it."""
        searching_here = self.scope.currentData() not in (None, -1)
        self.room_id, self.room_name = room_id, room_name
        self._fill_scope(all_rooms=not searching_here)

    def _fill_scope(self, all_rooms: bool) -> None:
        self.scope.clear()
        if self.room_id is not None:
            self.scope.addItem(_("In {room}").format(room=self.room_name), self.room_id)
        self.scope.addItem(_("All conversations"), -1)
        self.scope.setCurrentIndex(self.scope.count() - 1 if all_rooms else 0)

    def search_now(self) -> None:
        """Search the words typed, in the scope and order chosen."""
        self._typing.stop()
        room = self.scope.currentData()
        self.search_requested.emit(self.query.text().strip(),
                                   int(room) if room is not None else -1,
                                   str(self.order.currentData()))

    def _near_end(self) -> None:
        results = self.results_model
        if results.has_more and not results.loading:
            self.more_requested.emit()

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        """Escape in the words closes the panel; Down goes to the results."""
        if obj is self.query and isinstance(event, QKeyEvent) and (
                event.type() == QEvent.Type.KeyPress):
            if event.key() == Qt.Key.Key_Escape:
                self.close_requested.emit()
                return True
            if event.key() == Qt.Key.Key_Down and self.results_model.rowCount():
                self.results.setFocus()
                self.results.setCurrentIndex(self.results_model.index(0))
                return True
        return super().eventFilter(obj, event)

    # -- what is shown --------------------------------------------------------------------------

    def status_text(self) -> str:
        """What the line above the results says now."""
        results = self.results_model
        if results.error:
            return results.error
        if not results.query:
            return _("Type words to search for; every word must match.")
        if results.loading and not results.rowCount():
            return _("Searching…")
        count = results.rowCount()
        if results.done and count == 0:
            if results.room_id is not None:
                return _("No messages in this conversation match “{query}”.").format(
                    query=results.query)
            return _("No messages match “{query}”.").format(query=results.query)
        if results.has_more:
            return ngettext("{n} message found so far", "{n} messages found so far",
                            count).format(n=count)
        return ngettext("{n} message found", "{n} messages found", count).format(n=count)

    def show_state(self, *_args: Any) -> None:
        """Bring the status line and the More button up to date."""
        self.status.setText(self.status_text())
        results = self.results_model
        self.more_button.setVisible(results.has_more)
        self.more_button.setEnabled(not results.loading)

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.title.setText(_("Search"))
        self.close_button.setToolTip(_("Close the search (Escape)"))
        self.query.setPlaceholderText(_("Search messages"))
        self.order.setItemText(0, _("Best match"))
        self.order.setItemText(1, _("Newest first"))
        self.more_button.setText(_("More"))
        searching_here = self.scope.currentData() not in (None, -1)
        self._fill_scope(all_rooms=not searching_here)
        self.show_state()
        viewport = self.results.viewport()
        if viewport is not None:
            viewport.update()

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate."""
        if event is not None and event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)
