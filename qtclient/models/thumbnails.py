"""Image previews of attachments, scaled once and kept in memory.

The message delegate asks :class:`ThumbnailCache` for a pixmap on every paint
(a dictionary lookup, never a disk read). What is not there yet it asks the
controller for (``thumbnail_wanted``); the transfer manager fetches the image
into the cache directory, scales it in a worker thread and stores the result
here, which emits :attr:`ThumbnailCache.ready` so the view repaints.
"""

from __future__ import annotations

from collections import OrderedDict

from qtclient.qt import QObject, QPixmap, pyqtSignal

#: Media types shown with a preview (docs/desktop-client.md, "Received files").
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: The box a preview is scaled into, in device-independent pixels.
THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT = 240, 160

#: What :meth:`ThumbnailCache.state` answers.
LOADING, READY, FAILED = "loading", "ready", "failed"


def is_image(mime: str) -> bool:
    """Whether an attachment of type ``mime`` gets a preview."""
    return mime.lower() in IMAGE_TYPES


class ThumbnailCache(QObject):
    """Scaled previews by file id, the most recently used few hundred.

    Args:
        limit: previews kept in memory; older ones are dropped and, when shown
            again, reloaded from the cache directory (no new download).
        parent: the owning QObject.

    Signals:
        ready(file_id): the preview of ``file_id`` is there, or has failed.
    """

    ready = pyqtSignal(str)

    def __init__(self, limit: int = 300, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.limit = limit
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._states: dict[str, str] = {}
        self._paths: dict[str, str] = {}

    def state(self, file_id: str) -> str | None:
        """:data:`LOADING`, :data:`READY`, :data:`FAILED`, or None (never asked for)."""
        return self._states.get(file_id)

    def pixmap(self, file_id: str) -> QPixmap | None:
        """The preview of ``file_id``, if loaded."""
        pixmap = self._pixmaps.get(file_id)
        if pixmap is not None:
            self._pixmaps.move_to_end(file_id)
        return pixmap

    def path(self, file_id: str) -> str:
        """The full-size local copy the preview was made from ("" if none)."""
        return self._paths.get(file_id, "")

    def __len__(self) -> int:
        return len(self._pixmaps)

    # -- domain changes ------------------------------------------------------------------------

    def mark_loading(self, file_id: str) -> None:
        """Someone is fetching the preview of ``file_id`` (ask only once)."""
        self._states[file_id] = LOADING

    def store(self, file_id: str, pixmap: QPixmap, path: str) -> None:
        """The scaled preview of ``file_id``, made from the local file ``path``."""
        self._pixmaps[file_id] = pixmap
        self._pixmaps.move_to_end(file_id)
        self._states[file_id] = READY
        self._paths[file_id] = path
        while len(self._pixmaps) > self.limit:
            old, _pixmap = self._pixmaps.popitem(last=False)
            del self._states[old]  # shown again: reloaded from ``path``
        self.ready.emit(file_id)

    def forget(self, file_id: str) -> None:
        """Nobody is fetching ``file_id`` after all (scrolled past): ask again
        when it is shown."""
        if self._states.get(file_id) == LOADING:
            del self._states[file_id]

    def mark_failed(self, file_id: str) -> None:
        """No preview for ``file_id`` (not an image after all, too large, not reachable)."""
        self._states[file_id] = FAILED
        self.ready.emit(file_id)

    def clear(self) -> None:
        """Forget everything (logout)."""
        self._pixmaps.clear()
        self._states.clear()
        self._paths.clear()
