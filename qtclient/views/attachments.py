"""Sending files: dropping them on the conversation, and the strip of uploads above the composer.

:class:`FileDropFilter` turns file drops on a widget into one intent
(``files_dropped``); :class:`AttachmentsStrip` shows the uploads of the open
room (a :class:`~qtclient.models.transfers.RoomUploadsProxy`) with a progress
bar, Cancel, Retry and Remove, and emits what the user clicked. Neither starts
or stops anything itself: the controller does (docs/desktop-client.md).
"""

from __future__ import annotations

from qtclient.i18n import _
from qtclient.models.transfers import (
    ACTIVE_STATES,
    CANCELLED,
    DONE,
    FAILED,
    HASHING,
    QUEUED,
    RETRY_STATES,
    TransfersModel,
)
from qtclient.qt import (
    QAbstractItemModel,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QEvent,
    QFont,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMimeData,
    QModelIndex,
    QObject,
    QProgressBar,
    QResizeEvent,
    QScrollArea,
    QSizePolicy,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.transfers import human_size
from qtclient.views.icons import paperclip_pixmap

_R = TransfersModel.Roles
#: Rows of the strip visible before it scrolls.
VISIBLE_ROWS = 3


def local_paths(mime: QMimeData | None) -> list[str] | None:
    """The local files a drag carries, or None if it carries no URLs at all
    (text dragged into the composer is left to the composer).

    URLs that are not local files (a link dragged from a browser) come back
    as their text, so that the controller can say why they cannot be sent.
    """
    if mime is None or not mime.hasUrls():
        return None
    return [url.toLocalFile() if url.isLocalFile() else url.toString() for url in mime.urls()]


class FileDropFilter(QObject):
    """Accepts file drops on the widgets it watches (the message list's and the
    composer's viewports) and reports the dropped paths.

    An event filter on those few widgets only, never on the application.

    Signals:
        files_dropped(paths): local paths of what was dropped (files or folders).
    """

    files_dropped = pyqtSignal(list)

    def watch(self, widget: QWidget) -> None:
        """Take file drops on ``widget``."""
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        """Accept drags that carry files; on a drop, emit their paths."""
        if isinstance(event, QDragEnterEvent | QDragMoveEvent):
            if local_paths(event.mimeData()) is not None:
                event.setDropAction(Qt.DropAction.CopyAction)
                event.accept()
                return True
        elif isinstance(event, QDropEvent) and event.type() == QEvent.Type.Drop:
            paths = local_paths(event.mimeData())
            if paths is not None:
                event.setDropAction(Qt.DropAction.CopyAction)
                event.accept()
                self.files_dropped.emit(paths)
                return True
        return super().eventFilter(watched, event)


def transfer_status(state: str, done: int, total: int, error: str, upload: bool) -> str:
    """What a transfer's row (or a file's bubble) says about it, translated."""
    if state == QUEUED:
        return _("Waiting…")
    if state == HASHING:
        return _("Preparing…")
    if state == FAILED:
        return _("Failed: {reason}").format(reason=error) if error else _("Failed")
    if state == CANCELLED:
        return _("Cancelled")
    if state == DONE:
        return _("Sent") if upload else _("Saved")
    if total <= 0:
        return _("Uploading…") if upload else _("Downloading…")
    text = _("Uploading… {done} of {total}") if upload else _("Downloading… {done} of {total}")
    return text.format(done=human_size(done), total=human_size(total))


class TransferRow(QFrame):
    """One upload in the strip: name, status, progress bar, Cancel / Retry / Remove.

    Args:
        transfer_id: the transfer shown.

    Signals:
        cancel_clicked(transfer_id), retry_clicked(transfer_id), remove_clicked(transfer_id)
    """

    cancel_clicked = pyqtSignal(int)
    retry_clicked = pyqtSignal(int)
    remove_clicked = pyqtSignal(int)

    def __init__(self, transfer_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transfer_id = transfer_id
        self.setObjectName("transfer_row")
        self.setStyleSheet("#transfer_row { background: #f1f3f4; border-radius: 6px; }")
        self.icon = QLabel()
        self.icon.setPixmap(paperclip_pixmap(16))
        self.name = QLabel()
        bold = QFont(self.name.font())
        bold.setBold(True)
        self.name.setFont(bold)
        self.name.setMinimumWidth(60)
        self.name.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status = QLabel()
        self.status.setStyleSheet("color: #5f6368;")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.cancel_button = QToolButton()
        self.cancel_button.clicked.connect(lambda: self.cancel_clicked.emit(self.transfer_id))
        self.retry_button = QToolButton()
        self.retry_button.clicked.connect(lambda: self.retry_clicked.emit(self.transfer_id))
        self.remove_button = QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.clicked.connect(lambda: self.remove_clicked.emit(self.transfer_id))
        texts = QVBoxLayout()
        texts.setSpacing(2)
        line = QHBoxLayout()
        line.addWidget(self.name, 3)
        line.addWidget(self.status, 2)
        texts.addLayout(line)
        texts.addWidget(self.progress)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.icon)
        layout.addLayout(texts, 1)
        for button in (self.cancel_button, self.retry_button, self.remove_button):
            layout.addWidget(button)
        self._full_name = ""
        self.retranslate()

    def retranslate(self) -> None:
        """Button texts in the current language."""
        self.cancel_button.setText(_("Cancel"))
        self.retry_button.setText(_("Retry"))
        self.remove_button.setToolTip(_("Remove from the list"))

    def show_state(self, index: QModelIndex) -> None:
        """Show the transfer at ``index`` (a row of the strip's model)."""
        state = str(index.data(_R.State))
        done, total = int(index.data(_R.Done) or 0), int(index.data(_R.Total) or 0)
        name = str(index.data(_R.Name))
        if name != self._full_name:
            self._full_name = name
            self.setToolTip(str(index.data(_R.Path)))
        self._elide_name()
        self.status.setText(transfer_status(state, done, total, str(index.data(_R.Error) or ""),
                                            upload=True))
        self.status.setToolTip(self.status.text())
        self.status.setStyleSheet("color: #d93025;" if state == FAILED else "color: #5f6368;")
        self.progress.setValue(int(float(index.data(_R.Fraction) or 0.0) * 1000))
        self.cancel_button.setVisible(state in ACTIVE_STATES)
        self.retry_button.setVisible(state in RETRY_STATES)
        self.remove_button.setVisible(state not in ACTIVE_STATES)

    def _elide_name(self) -> None:
        width = max(40, self.name.width())
        self.name.setText(self.name.fontMetrics().elidedText(
            self._full_name, Qt.TextElideMode.ElideMiddle, width))

    def resizeEvent(self, e: QResizeEvent | None) -> None:
        """Keep the name elided to the space it has."""
        super().resizeEvent(e)
        self._elide_name()


class AttachmentsStrip(QWidget):
    """The uploads of the open room, above the composer; hidden when there are none.

    Args:
        parent: the containing widget.

    Signals:
        cancel_requested(transfer_id), retry_requested(transfer_id),
        remove_requested(transfer_id)
    """

    cancel_requested = pyqtSignal(int)
    retry_requested = pyqtSignal(int)
    remove_requested = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachments_strip")
        self._model: QAbstractItemModel | None = None
        self._rows: list[TransferRow] = []
        self._inner = QWidget()
        self._list = QVBoxLayout(self._inner)
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(3)
        self._list.addStretch(1)
        self.scroller = QScrollArea()
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroller.setWidget(self._inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroller)
        self.hide()

    def set_model(self, model: QAbstractItemModel) -> None:
        """Show the transfers of ``model`` (the open room's uploads)."""
        self._model = model
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset,
                       model.layoutChanged):
            signal.connect(self._rebuild)
        model.dataChanged.connect(self._data_changed)
        self._rebuild()

    def rows(self) -> list[TransferRow]:
        """The row widgets, in the model's order."""
        return list(self._rows)

    def _rebuild(self, *_args: object) -> None:
        """Make one row widget per transfer (a handful; rebuilt when rows come or go)."""
        model = self._model
        for row in self._rows:
            self._list.removeWidget(row)
            row.deleteLater()
        self._rows = []
        count = model.rowCount() if model is not None else 0
        for r in range(count):
            assert model is not None
            index = model.index(r, 0)
            widget = TransferRow(int(index.data(_R.TransferId)), self._inner)
            widget.cancel_clicked.connect(self.cancel_requested)
            widget.retry_clicked.connect(self.retry_requested)
            widget.remove_clicked.connect(self.remove_requested)
            self._list.insertWidget(self._list.count() - 1, widget)
            widget.show_state(index)
            self._rows.append(widget)
        if self._rows:
            row_h = self._rows[0].sizeHint().height() + self._list.spacing()
            self.scroller.setFixedHeight(min(len(self._rows), VISIBLE_ROWS) * row_h)
        self.setVisible(bool(self._rows))

    def _data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex,
                      *_roles: object) -> None:
        model = self._model
        if model is None:
            return
        for r in range(top_left.row(), bottom_right.row() + 1):
            if 0 <= r < len(self._rows):
                self._rows[r].show_state(model.index(r, 0))

    def changeEvent(self, e: QEvent | None) -> None:
        """Re-translate the rows after a language switch."""
        if e is not None and e.type() == QEvent.Type.LanguageChange:
            model = self._model
            for r, row in enumerate(self._rows):
                row.retranslate()
                if model is not None:
                    row.show_state(model.index(r, 0))
        super().changeEvent(e)
