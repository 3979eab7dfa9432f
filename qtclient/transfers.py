"""File transfers for the desktop client: uploads, downloads and previews (PROTOCOL.md 7).

:class:`TransferManager` is owned by the controller and, like it, talks to
the network (through the client library's resumable
:class:`~chatnet.client.files.Upload` and :class:`~chatnet.client.files.Download`).
It keeps :class:`~qtclient.models.transfers.TransfersModel`,
:class:`~qtclient.models.thumbnails.ThumbnailCache` and the pictures of
:class:`~qtclient.models.avatars.AvatarCache` current; views only read those
and emit intents, which the controller passes on here.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.client.files import Download, Upload
from chatnet.client.session import ChatSession
from chatnet.errors import ChatError, ErrorCode
from qtclient.i18n import _
from qtclient.models.avatars import MASTER_SIZE, AvatarCache
from qtclient.models.thumbnails import (
    THUMBNAIL_HEIGHT,
    THUMBNAIL_WIDTH,
    ThumbnailCache,
    is_image,
)
from qtclient.models.transfers import (
    ACTIVE_STATES,
    CANCELLED,
    DONE,
    FAILED,
    HASHING,
    QUEUED,
    RETRY_STATES,
    RUNNING,
    UPLOAD,
    TransfersModel,
)
from qtclient.qt import (
    ID,
    QGuiApplication,
    QImage,
    QImageReader,
    QLocale,
    QObject,
    QPixmap,
    QSize,
    Qt,
    pyqtSignal,
)

#: Uploads moving bytes at once; more wait their turn (a drop of 50 files).
MAX_UPLOADS = 3
#: Preview downloads at once (scrolling through a room of images).
MAX_PREVIEW_DOWNLOADS = 2
#: Preview requests kept waiting; older ones (scrolled past) are dropped and
#: asked for again if they come back on screen.
MAX_PREVIEW_QUEUE = 30
#: Profile pictures downloaded at once (a members panel coming into view).
MAX_AVATAR_DOWNLOADS = 4
#: Images larger than this get no automatic preview (their Download button stays).
PREVIEW_MAX_BYTES = 20 * 1024 * 1024
#: Seconds to wait before beginning an upload again, silently, when the server
#: reports an offset that moved under it (a cancelled attempt's last chunks
#: arriving after the retry's ``file.upload.begin``; docs/desktop-client.md,
#: "Sending files"): the abandoned chunks settle meanwhile. One delay per try.
OFFSET_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


def human_size(size: int) -> str:
    """``size`` bytes as people read it, in the current locale ("1.2 MB", "999 字节").

    SI units (1 kB = 1000 bytes), as the terminal client prints them, so that
    one file has one size everywhere: 300,000 bytes is "300.0 kB". (Qt's
    "traditional" format divides by 1024 yet still writes kB and MB.)
    """
    return QLocale().formattedDataSize(max(0, size), 1, QLocale.DataSizeFormat.DataSizeSIFormat)


def _scaled_image(path: str, width: int, height: int) -> QImage | None:
    """Read ``path`` and scale it to fit ``width`` x ``height`` device pixels
    (in a worker thread: QImage, unlike QPixmap, may be used off the GUI thread).
    Images decode at the reduced size where the format allows (JPEG)."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > width or size.height() > height):
        reader.setScaledSize(size.scaled(QSize(width, height),
                                         Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return None
    if image.width() > width or image.height() > height:
        image = image.scaled(width, height, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    return image


class AttemptSession:
    """The session as one transfer attempt sees it: every request is also
    tracked until the server's answer arrives, even after the attempt has been
    cancelled and stopped waiting for it.

    :meth:`Upload.cancel <chatnet.client.files.Upload.cancel>` abandons the
    chunks in flight; the server still appends them, and if a new attempt's
    ``file.upload.begin`` overtook them the server computes the offset while
    they are being written (the upload is then refused: "offset must be N",
    or "sha256 does not match", discarding what was received). So a new
    attempt starts only once :meth:`settled` (docs/desktop-client.md, "Sending
    files").

    Args:
        session: the real session; everything but :meth:`call` is passed through.
    """

    def __init__(self, session: ChatSession) -> None:
        self._session = session
        self.outstanding: set[Deferred[Any]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def call(self, op: str, args: dict[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """``session.call``, answering through a Deferred of its own (which the
        attempt may cancel) while the request itself is watched to its end."""
        request = self._session.call(op, args)
        self.outstanding.add(request)
        answer: Deferred[dict[str, Any]] = Deferred()

        def arrived(result: Any) -> None:
            self.outstanding.discard(request)
            if answer.called:
                return  # the attempt was cancelled; the answer is not needed
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)

        request.addBoth(arrived)
        return answer

    def settled(self) -> Deferred[Any]:
        """Fires once every request made so far has its answer (or its connection
        is gone)."""
        return DeferredList(list(self.outstanding), consumeErrors=True)


class TransferManager(QObject):
    """Starts, cancels and retries the session's file transfers.

    Args:
        reactor: the Qt reactor (its thread pool reads and scales images).
        describe: turns a failure into a translated sentence (the controller's).
        parent: the owning QObject (the controller).

    Attributes:
        session: the logged-in session, or None (set by the controller).
        cache_dir: where previews are downloaded to (set per account at login).
        transfers: uploads and downloads, for the attachments strip and bubbles.
        thumbnails: scaled image previews, for the message delegate.
        avatars: profile pictures, for every view that shows a person; the
            manager fetches the pictures it asks for (``file_wanted``).

    Signals:
        upload_finished(room_id, file): an upload to ``room_id`` is stored on the
            server; ``file`` is ``{file_id, name, size, mime}``. The controller
            sends the message that attaches it.
    """

    log = Logger()

    upload_finished = pyqtSignal(ID, dict)

    def __init__(self, reactor: Any, describe: Callable[[BaseException], str],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.reactor = reactor
        self.describe = describe
        self.session: ChatSession | None = None
        self.cache_dir: Path | None = None
        self.transfers = TransfersModel(self)
        self.thumbnails = ThumbnailCache(parent=self)
        self.avatars = AvatarCache(parent=self)
        self.avatars.file_wanted.connect(self.want_avatar)
        self._jobs: dict[int, Upload | Download] = {}
        self._offset_retries: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}  # transfer id -> its pending DelayedCall
        self._attempts: dict[int, AttemptSession] = {}  # transfer id -> its last attempt
        self._local: dict[str, str] = {}  # file id -> a local copy (own uploads)
        self._previews: list[tuple[str, str]] = []  # (file id, mime) waiting, newest last
        self._preview_jobs: dict[str, Download] = {}
        self._avatar_queue: list[str] = []  # file ids waiting, newest last
        self._avatar_jobs: dict[str, Download] = {}

    # -- uploads -------------------------------------------------------------------------------

    def upload(self, room_id: int, path: Path) -> int:
        """Queue ``path`` (a regular file) for upload to ``room_id``; returns the
        transfer id. The row appears in the room's strip at once."""
        size = path.stat().st_size
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        transfer_id = self.transfers.add_upload(room_id, str(path), path.name, mime, size)
        self._pump()
        return transfer_id

    def uploading(self, room_id: int, path: Path) -> bool:
        """Whether ``path`` is already on its way to ``room_id``."""
        return any(item.path == str(path) and item.state in ACTIVE_STATES
                   for item in self.transfers.uploads_in(room_id))

    def _pump(self) -> None:
        """Start queued uploads while fewer than :data:`MAX_UPLOADS` run."""
        if self.session is None:
            return
        running = sum(1 for i in self.transfers.items()
                      if i.kind == UPLOAD and i.state in (HASHING, RUNNING))
        for item in self.transfers.items():
            if running >= MAX_UPLOADS:
                break
            if item.kind == UPLOAD and item.state == QUEUED and self._settled(item.transfer_id):
                self._start_upload(item.transfer_id)
                running += 1

    def _settled(self, transfer_id: int) -> bool:
        """Whether the last attempt of an upload has no request left in flight
        (if it has, pump again once they are answered)."""
        attempt = self._attempts.get(transfer_id)
        if attempt is None or not attempt.outstanding:
            return True
        attempt.settled().addCallback(lambda _r: self._pump())
        return False

    def _start_upload(self, transfer_id: int) -> None:
        item = self.transfers.item(transfer_id)
        session = self.session
        if item is None or session is None:
            return
        self.transfers.set_state(transfer_id, HASHING)
        attempt = self._attempts[transfer_id] = AttemptSession(session)
        # AttemptSession stands in for the session (it passes everything through).
        job = Upload(cast(ChatSession, attempt), item.path, name=item.name, mime=item.mime,
                     progress=lambda done, total: self._progress(transfer_id, job, done, total))
        self._jobs[transfer_id] = job
        job.start().addCallbacks(
            lambda info: self._uploaded(transfer_id, job, info),
            lambda failure: self._failed(transfer_id, job, failure))

    def _uploaded(self, transfer_id: int, job: Upload, info: dict[str, Any]) -> None:
        if self._jobs.get(transfer_id) is not job:
            return
        del self._jobs[transfer_id]
        self._offset_retries.pop(transfer_id, None)
        self._attempts.pop(transfer_id, None)
        item = self.transfers.item(transfer_id)
        if item is not None and item.room_id is not None:
            file_id = str(info["file_id"])
            self._local[file_id] = item.path
            self.transfers.remove(transfer_id)
            self.upload_finished.emit(item.room_id, {
                "file_id": file_id, "name": str(info.get("name", item.name)),
                "size": int(info.get("size", item.total)),
                "mime": str(info.get("mime", item.mime))})
        self._pump()

    # -- downloads -----------------------------------------------------------------------------

    def download(self, file_id: str, name: str, dest: Path, mime: str = "",
                 size: int = 0) -> int:
        """Download ``file_id`` to ``dest`` (resuming from ``dest.part``); returns
        the transfer id. Its bubble shows the progress, then offers Open."""
        transfer_id = self.transfers.add_download(file_id, name, str(dest), mime, size)
        self._start_download(transfer_id)
        return transfer_id

    def _start_download(self, transfer_id: int) -> None:
        item = self.transfers.item(transfer_id)
        session = self.session
        if item is None:
            return
        if session is None:
            self.transfers.set_state(transfer_id, FAILED, _("Not connected to the server."))
            return
        self.transfers.set_state(transfer_id, RUNNING)
        job = Download(session, item.file_id, item.path,
                       progress=lambda done, total: self._progress(transfer_id, job, done, total))
        self._jobs[transfer_id] = job
        job.start().addCallbacks(
            lambda _info: self._downloaded(transfer_id, job),
            lambda failure: self._failed(transfer_id, job, failure))

    def _downloaded(self, transfer_id: int, job: Download) -> None:
        if self._jobs.get(transfer_id) is not job:
            return
        del self._jobs[transfer_id]
        self.transfers.set_state(transfer_id, DONE)

    # -- both ----------------------------------------------------------------------------------

    def _progress(self, transfer_id: int, job: Upload | Download, done: int,
                  total: int) -> None:
        if self._jobs.get(transfer_id) is not job:
            return  # a cancelled attempt's last acknowledgements
        item = self.transfers.item(transfer_id)
        if item is not None and item.state == HASHING:
            self.transfers.set_state(transfer_id, RUNNING)
        self.transfers.set_progress(transfer_id, done, total)

    def _failed(self, transfer_id: int, job: Upload | Download, failure: Failure) -> None:
        if self._jobs.get(transfer_id) is not job:
            return
        del self._jobs[transfer_id]
        error = failure.value if isinstance(failure.value, BaseException) else Exception()
        item = self.transfers.item(transfer_id)
        if item is None:
            return
        if isinstance(error, CancelledError):
            self.transfers.set_state(transfer_id, CANCELLED)
        elif (isinstance(job, Upload) and isinstance(error, ChatError)
              and error.code is ErrorCode.BAD_REQUEST and "offset must be" in error.message
              and self._offset_retries.get(transfer_id, 0) < len(OFFSET_RETRY_DELAYS)):
            # The server received an abandoned attempt's chunks after this attempt
            # began, so the offset it gave is stale. Once those have settled,
            # begin again (it resumes from what the server has).
            tries = self._offset_retries[transfer_id] = self._offset_retries.get(transfer_id, 0) + 1
            self._restarts[transfer_id] = self.reactor.callLater(
                OFFSET_RETRY_DELAYS[tries - 1], self._restart, transfer_id)
            return
        else:
            if not isinstance(error, ChatError | OSError):
                self.log.failure("file transfer failed", failure)
            self.transfers.set_state(transfer_id, FAILED, self.explain(error))
        if isinstance(job, Upload):
            self._pump()

    def _restart(self, transfer_id: int) -> None:
        self._restarts.pop(transfer_id, None)
        item = self.transfers.item(transfer_id)
        if item is not None and item.state in ACTIVE_STATES and transfer_id not in self._jobs:
            self.transfers.set_state(transfer_id, QUEUED)
            self._pump()

    def explain(self, error: BaseException) -> str:
        """A translated sentence for a failed transfer."""
        if isinstance(error, ChatError) and error.code is ErrorCode.TOO_LARGE:
            details = error.details or {}
            if "max_file_size" in details:
                return _("Too large: this server accepts files up to {size}.").format(
                    size=human_size(int(details["max_file_size"])))
            if "quota" in details:
                return _("Not enough storage left on the server ({used} of {quota} used).") \
                    .format(used=human_size(int(details.get("used", 0))),
                            quota=human_size(int(details["quota"])))
        if isinstance(error, ChatError) and error.code is ErrorCode.NOT_FOUND:
            return _("The file is no longer available.")
        if isinstance(error, OSError):
            return _("Cannot use the file: {reason}").format(
                reason=error.strerror or str(error))
        return self.describe(error)

    def cancel(self, transfer_id: int) -> None:
        """Stop a transfer; what was transferred stays, so Retry resumes."""
        item = self.transfers.item(transfer_id)
        if item is None or item.state not in ACTIVE_STATES:
            return
        job = self._jobs.pop(transfer_id, None)
        restart = self._restarts.pop(transfer_id, None)
        if restart is not None and restart.active():
            restart.cancel()
        self.transfers.set_state(transfer_id, CANCELLED)
        if job is not None:
            job.cancel()
        self._pump()

    def retry(self, transfer_id: int) -> None:
        """Start a failed or cancelled transfer again; it resumes where the server
        (upload) or the partial file (download) left off."""
        item = self.transfers.item(transfer_id)
        if item is None or item.state not in RETRY_STATES:
            return
        self._offset_retries.pop(transfer_id, None)
        if item.kind == UPLOAD:
            self.transfers.set_state(transfer_id, QUEUED)
            self._pump()
        else:
            self._start_download(transfer_id)

    def dismiss(self, transfer_id: int) -> None:
        """Remove a transfer's row (cancelling it first if it still runs)."""
        self.cancel(transfer_id)
        self.transfers.remove(transfer_id)
        self._attempts.pop(transfer_id, None)

    def reset(self) -> None:
        """Logout: stop everything and forget it."""
        jobs = (list(self._jobs.values()) + list(self._preview_jobs.values())
                + list(self._avatar_jobs.values()))
        self._jobs.clear()
        self._preview_jobs.clear()
        self._avatar_jobs.clear()
        self._avatar_queue.clear()
        self._previews.clear()
        self._offset_retries.clear()
        for restart in self._restarts.values():
            if restart.active():
                restart.cancel()
        self._restarts.clear()
        self._attempts.clear()
        self._local.clear()
        for job in jobs:
            job.cancel()
        self.transfers.clear()
        self.thumbnails.clear()
        self.avatars.clear()

    # -- previews ------------------------------------------------------------------------------

    def want_thumbnail(self, file_id: str, mime: str, size: int) -> None:
        """An image attachment is on screen: make its preview (once).

        From a local copy if there is one (the user's own upload, a download, the
        cache directory); otherwise downloaded into :attr:`cache_dir` first.
        """
        thumbnails = self.thumbnails
        if thumbnails.state(file_id) is not None:
            return
        thumbnails.mark_loading(file_id)
        if not is_image(mime) or size > PREVIEW_MAX_BYTES:
            thumbnails.mark_failed(file_id)
            return
        local = self._local_copy(file_id)
        if local is not None:
            self._load_preview(file_id, local)
            return
        self._previews.append((file_id, mime))
        while len(self._previews) > MAX_PREVIEW_QUEUE:
            stale, _mime = self._previews.pop(0)
            thumbnails.forget(stale)
        self._pump_previews()

    def _local_copy(self, file_id: str) -> str | None:
        candidates = [self._local.get(file_id), self.thumbnails.path(file_id)]
        download = self.transfers.download_for(file_id)
        if download is not None and download.state == DONE:
            candidates.append(download.path)
        cached = self._cache_path(file_id)
        if cached is not None:
            candidates.append(str(cached))
        return next((c for c in candidates if c and os.path.isfile(c)), None)

    def _cache_path(self, file_id: str) -> Path | None:
        if self.cache_dir is None or not file_id.isalnum():
            return None
        return self.cache_dir / file_id

    def _pump_previews(self) -> None:
        session = self.session
        while (session is not None and self._previews
               and len(self._preview_jobs) < MAX_PREVIEW_DOWNLOADS):
            # Newest first: what was scrolled to last is what is on screen.
            file_id, _mime = self._previews.pop()
            dest = self._cache_path(file_id)
            if dest is None:
                self.thumbnails.mark_failed(file_id)
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                self.thumbnails.mark_failed(file_id)
                continue
            job = Download(session, file_id, dest)
            self._preview_jobs[file_id] = job
            job.start().addCallbacks(
                lambda _info, f=file_id, j=job, d=dest: self._preview_fetched(f, j, str(d)),
                lambda failure, f=file_id, j=job: self._preview_failed(f, j, failure))

    def _preview_fetched(self, file_id: str, job: Download, path: str) -> None:
        if self._preview_jobs.get(file_id) is not job:
            return
        del self._preview_jobs[file_id]
        self._load_preview(file_id, path)
        self._pump_previews()

    def _preview_failed(self, file_id: str, job: Download, failure: Failure) -> None:
        if self._preview_jobs.get(file_id) is not job:
            return
        del self._preview_jobs[file_id]
        if not isinstance(failure.value, ChatError | OSError | CancelledError):
            self.log.failure("preview download failed", failure)
        self.thumbnails.mark_failed(file_id)
        self._pump_previews()

    def _load_preview(self, file_id: str, path: str) -> None:
        """Decode and scale in the thread pool; store the pixmap on the GUI thread."""
        screen = QGuiApplication.primaryScreen()
        ratio = screen.devicePixelRatio() if screen is not None else 1.0
        width, height = int(THUMBNAIL_WIDTH * ratio), int(THUMBNAIL_HEIGHT * ratio)
        pool = self.reactor.getThreadPool()
        work: Deferred[QImage | None] = deferToThreadPool(self.reactor, pool, _scaled_image,
                                                          path, width, height)

        def scaled(image: QImage | None) -> None:
            if image is None:
                self.thumbnails.mark_failed(file_id)
                return
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(ratio)
            self.thumbnails.store(file_id, pixmap, path)

        def failed(failure: Failure) -> None:
            self.log.failure("preview could not be made", failure)
            self.thumbnails.mark_failed(file_id)

        work.addCallbacks(scaled, failed)

    # -- profile pictures ----------------------------------------------------------------------

    def want_avatar(self, file_id: str) -> None:
        """A profile picture is drawn but not loaded: read it from the cache folder
        (pictures never change: a new one has a new file id), or download it
        there first; then decode it into :attr:`avatars`."""
        local = self._local_copy(file_id)
        if local is not None:
            self._load_avatar(file_id, local)
            return
        if file_id not in self._avatar_queue and file_id not in self._avatar_jobs:
            self._avatar_queue.append(file_id)
        self._pump_avatars()

    def _pump_avatars(self) -> None:
        session = self.session
        while (session is not None and self._avatar_queue
               and len(self._avatar_jobs) < MAX_AVATAR_DOWNLOADS):
            file_id = self._avatar_queue.pop()
            dest = self._cache_path(file_id)
            if dest is None:
                self.avatars.mark_failed(file_id)
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                self.avatars.mark_failed(file_id)
                continue
            job = Download(session, file_id, dest)
            self._avatar_jobs[file_id] = job
            job.start().addCallbacks(
                lambda _info, f=file_id, j=job, d=dest: self._avatar_fetched(f, j, str(d)),
                lambda failure, f=file_id, j=job: self._avatar_failed(f, j, failure))

    def _avatar_fetched(self, file_id: str, job: Download, path: str) -> None:
        if self._avatar_jobs.get(file_id) is not job:
            return
        del self._avatar_jobs[file_id]
        self._load_avatar(file_id, path)
        self._pump_avatars()

    def _avatar_failed(self, file_id: str, job: Download, failure: Failure) -> None:
        if self._avatar_jobs.get(file_id) is not job:
            return
        del self._avatar_jobs[file_id]
        if not isinstance(failure.value, ChatError | OSError | CancelledError):
            self.log.failure("profile picture download failed", failure)
        self.avatars.mark_failed(file_id)
        self._pump_avatars()

    def _load_avatar(self, file_id: str, path: str) -> None:
        """Decode in the thread pool, at the screen's pixel ratio; store on the GUI thread."""
        screen = QGuiApplication.primaryScreen()
        ratio = screen.devicePixelRatio() if screen is not None else 1.0
        side = int(MASTER_SIZE * ratio)
        work: Deferred[QImage | None] = deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _scaled_image, path, side, side)

        def decoded(image: QImage | None) -> None:
            if image is None:
                self.avatars.mark_failed(file_id)
            else:
                self.avatars.store(file_id, image)

        def failed(failure: Failure) -> None:
            self.log.failure("profile picture could not be read", failure)
            self.avatars.mark_failed(file_id)

        work.addCallbacks(decoded, failed)
