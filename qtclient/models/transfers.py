"""File transfers in progress, failed or finished (PROTOCOL.md 7), for the views to show.

:class:`TransfersModel` holds one row per upload the user started (until its
message is sent) and per download to a place the user chose (kept, so the
file's bubble can offer *Open*). The transfer manager
(:mod:`qtclient.transfers`) changes it through its domain methods; the
attachments strip shows a room's uploads through :class:`RoomUploadsProxy`,
and the message delegate looks downloads up by file id.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from qtclient.models.base import RowsModel
from qtclient.qt import (
    USER_ROLE,
    ItemRole,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
)

_Index = QModelIndex | QPersistentModelIndex

#: Kinds of transfer.
UPLOAD, DOWNLOAD = "upload", "download"
#: States of a transfer: waiting for a free slot, reading the file's checksum,
#: moving bytes, finished, failed (``error`` says why), cancelled by the user.
QUEUED, HASHING, RUNNING, DONE, FAILED, CANCELLED = (
    "queued", "hashing", "running", "done", "failed", "cancelled")
#: States in which a transfer is under way (Cancel applies).
ACTIVE_STATES = frozenset({QUEUED, HASHING, RUNNING})
#: States from which Retry applies.
RETRY_STATES = frozenset({FAILED, CANCELLED})

_ids = itertools.count(1)


@dataclass(slots=True)
class TransferItem:
    """One transfer.

    Attributes:
        transfer_id: a number unique in this process.
        kind: :data:`UPLOAD` or :data:`DOWNLOAD`.
        name: the file's name (as announced, or as shown in the message).
        path: the local file: the source of an upload, the destination of a download.
        room_id: the room an upload is sent to (None for downloads).
        file_id: the server's file id (downloads; uploads once finished).
        mime: the media type.
        done: bytes transferred so far.
        total: the file's size in bytes (0 until known).
        state: one of the states above.
        error: why it failed, translated ("" unless ``state`` is failed).
    """

    transfer_id: int
    kind: str
    name: str
    path: str
    room_id: int | None = None
    file_id: str = ""
    mime: str = ""
    done: int = 0
    total: int = 0
    state: str = QUEUED
    error: str = ""

    @property
    def fraction(self) -> float:
        """How much is done, 0.0 to 1.0 (0 while the size is unknown)."""
        if self.state == DONE:
            return 1.0
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


class TransfersModel(RowsModel):
    """Every transfer of the session, oldest first.

    Args:
        parent: the owning QObject.
    """

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the file name."""

        TransferId = USER_ROLE + 1
        Kind = USER_ROLE + 2
        Name = USER_ROLE + 3
        Path = USER_ROLE + 4
        RoomId = USER_ROLE + 5
        FileId = USER_ROLE + 6
        Done = USER_ROLE + 7
        Total = USER_ROLE + 8
        State = USER_ROLE + 9
        Error = USER_ROLE + 10
        Fraction = USER_ROLE + 11
        Mime = USER_ROLE + 12

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[TransferItem] = []
        self._downloads: dict[str, TransferItem] = {}  # file id -> its latest download

    # -- Qt model interface ------------------------------------------------------------------



    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The value of ``role`` for the transfer at ``index`` (None if unknown)."""
        item = self.row_item(index)
        if item is None:
            return None
        roles = self.Roles
        values: dict[int, Any] = {
            roles.TransferId: item.transfer_id, roles.Kind: item.kind, roles.Name: item.name,
            roles.Path: item.path, roles.RoomId: item.room_id, roles.FileId: item.file_id,
            roles.Done: item.done, roles.Total: item.total, roles.State: item.state,
            roles.Error: item.error, roles.Fraction: item.fraction, roles.Mime: item.mime,
            ItemRole.DisplayRole.value: item.name,
        }
        return values.get(role)

    # -- reading -------------------------------------------------------------------------------

    def item(self, transfer_id: int) -> TransferItem | None:
        """The transfer with ``transfer_id`` (read it, do not change it), or None."""
        return next((i for i in self._rows if i.transfer_id == transfer_id), None)

    def row_of(self, transfer_id: int) -> int:
        """The row of a transfer, or -1."""
        return next((r for r, i in enumerate(self._rows) if i.transfer_id == transfer_id), -1)

    def items(self) -> list[TransferItem]:
        """Every transfer, in order."""
        return list(self._rows)

    def download_for(self, file_id: str) -> TransferItem | None:
        """The latest download of ``file_id`` (one dictionary lookup: the message
        delegate asks for every attachment it paints)."""
        return self._downloads.get(file_id)

    def uploads_in(self, room_id: int) -> list[TransferItem]:
        """The uploads to ``room_id`` shown in its attachments strip."""
        return [i for i in self._rows if i.kind == UPLOAD and i.room_id == room_id]

    # -- domain changes ------------------------------------------------------------------------

    def add_upload(self, room_id: int, path: str, name: str, mime: str, total: int) -> int:
        """A new upload of ``path`` to ``room_id``, queued. Returns its transfer id."""
        item = TransferItem(next(_ids), UPLOAD, name, path, room_id=room_id, mime=mime,
                            total=total)
        self._append(item)
        return item.transfer_id

    def add_download(self, file_id: str, name: str, path: str, mime: str, total: int) -> int:
        """A new download of ``file_id`` to ``path``, queued (it becomes the one
        :meth:`download_for` answers). Returns its transfer id."""
        old = self._downloads.get(file_id)
        if old is not None and old.state not in ACTIVE_STATES:
            self.remove(old.transfer_id)
        item = TransferItem(next(_ids), DOWNLOAD, name, path, file_id=file_id, mime=mime,
                            total=total)
        self._append(item)
        self._downloads[file_id] = item
        return item.transfer_id

    def _append(self, item: TransferItem) -> None:
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(item)
        self.endInsertRows()

    def _changed(self, item: TransferItem) -> None:
        row = self._rows.index(item)
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def set_state(self, transfer_id: int, state: str, error: str = "") -> None:
        """Move a transfer to ``state`` (``error``: why it failed, translated)."""
        item = self.item(transfer_id)
        if item is not None and (item.state, item.error) != (state, error):
            item.state, item.error = state, error
            if state == DONE and item.total:
                item.done = item.total
            self._changed(item)

    def set_progress(self, transfer_id: int, done: int, total: int) -> None:
        """Bytes transferred so far (the library reports after every chunk)."""
        item = self.item(transfer_id)
        if item is not None and (item.done, item.total) != (done, total):
            item.done, item.total = done, total
            if item.state in (QUEUED, HASHING) and done > 0:
                item.state = RUNNING
            self._changed(item)

    def set_file_id(self, transfer_id: int, file_id: str) -> None:
        """The server's id of an uploaded file."""
        item = self.item(transfer_id)
        if item is not None and item.file_id != file_id:
            item.file_id = file_id
            self._changed(item)

    def remove(self, transfer_id: int) -> None:
        """Forget a transfer (finished uploads, dismissed failures)."""
        row = self.row_of(transfer_id)
        if row < 0:
            return
        item = self._rows[row]
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rows[row]
        if item.kind == DOWNLOAD and self._downloads.get(item.file_id) is item:
            del self._downloads[item.file_id]
        self.endRemoveRows()

    def clear(self) -> None:
        """Forget every transfer (logout)."""
        self.beginResetModel()
        self._rows.clear()
        self._downloads.clear()
        self.endResetModel()


class RoomUploadsProxy(QSortFilterProxyModel):
    """The uploads to one room (what its attachments strip lists).

    Args:
        parent: the owning QObject.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._room_id: int | None = None

    def set_room(self, room_id: int | None) -> None:
        """Show the uploads to ``room_id`` (None: none)."""
        if room_id != self._room_id:
            self.beginFilterChange()
            self._room_id = room_id
            self.endFilterChange()

    def filterAcceptsRow(self, source_row: int, _source_parent: _Index) -> bool:
        """Uploads whose room is the one shown."""
        model = self.sourceModel()
        if model is None or self._room_id is None:
            return False
        index = model.index(source_row, 0)  # a list: no parents
        roles = TransfersModel.Roles
        return bool(index.data(roles.Kind) == UPLOAD and index.data(roles.RoomId) == self._room_id)
