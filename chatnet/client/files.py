"""Resumable, verified file transfers for the client library (PROTOCOL.md section 7).

:class:`Upload` and :class:`Download` each run one transfer over a
:class:`~chatnet.client.session.ChatSession`:

* several chunks are in flight at once (``window``), so throughput is not
  bounded by the round trip;
* when the connection drops they wait for the session to come back and resume
  where the server (upload) or the partial file (download) left off;
* uploads send the SHA-256 computed before the first byte; downloads check the
  SHA-256 of what they wrote before renaming ``DEST.part`` to ``DEST``;
* ``progress(done_bytes, total_bytes)`` is called as chunks are acknowledged;
  ``cancel()`` stops the transfer (the result fails with ``CancelledError``).

:func:`upload_avatar` makes a picture the user's profile picture: it uploads
it with ``purpose: "avatar"`` (the server stores a re-encoded 256 x 256 PNG)
and then sets it with ``user.update``.

File reads, writes and hashing run in the reactor's thread pool, so a GUI on
the Qt reactor never waits on the disk.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredLock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.client.core import ConnectionClosed
from chatnet.client.session import ChatSession
from chatnet.errors import ChatError, ErrorCode

Progress = Callable[[int, int], None]
#: Times an upload begins again after the server reports a moved offset.
_STALE_RETRIES = 5
#: One lock per partial download file: a cancelled download's last write must
#: finish before a retry reads how much is there.
_PARTIAL_LOCKS: dict[Path, DeferredLock] = {}
#: Chunk requests kept in flight by default (8 x 256 KiB = 2 MiB).
DEFAULT_WINDOW = 8


def _hash_file(source: Path | BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    handle = open(source, "rb") if isinstance(source, Path) else source  # noqa: SIM115
    try:
        if not isinstance(source, Path):
            handle.seek(0)
        while block := handle.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    finally:
        if isinstance(source, Path):
            handle.close()
    return digest.hexdigest(), size


class _Transfer:
    """What uploads and downloads share: progress, cancel, the thread pool."""

    log = Logger()

    def __init__(self, session: ChatSession, progress: Progress | None, window: int) -> None:
        self.session = session
        self.progress = progress
        self.window = max(1, window)
        self.done = 0
        self.total = 0
        self.cancelled = False
        self.result: Deferred[dict[str, Any]] | None = None

    def _in_thread(self, fn: Any, *args: Any) -> Deferred[Any]:
        reactor = self.session.reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    def _report(self) -> None:
        if self.progress is not None:
            try:
                self.progress(self.done, self.total)
            except Exception:
                self.log.failure("progress callback failed")

    def _check_cancel(self) -> None:
        if self.cancelled:
            raise CancelledError()

    def cancel(self) -> None:
        """Stop the transfer; the result fails with ``CancelledError``. What was
        transferred so far stays on the server (upload) or in ``DEST.part``
        (download), so starting again resumes."""
        self.cancelled = True
        if self.result is not None and not self.result.called:
            self.result.cancel()

    async def _resilient(self, attempt: Callable[[], Any]) -> dict[str, Any]:
        """Run ``attempt`` until it succeeds, waiting for reconnects in between."""
        while True:
            self._check_cancel()
            await self.session.when_connected()
            try:
                result: dict[str, Any] = await attempt()
                return result
            except ConnectionClosed:
                self.log.info("transfer interrupted by a disconnect; resuming after reconnect")
                continue


class Upload(_Transfer):
    """Upload one file, optionally sending it to a room as an attachment.

    Args:
        session: a started session.
        source: a path, or a binary file object opened for reading (seekable).
        name: the file name to announce (default: the path's name).
        mime: the media type (default: guessed from the name).
        room_id: if given, send a message with the file attached once uploaded.
        body: the text of that message.
        client_msg_id: that message's ``client_msg_id`` (default: a random one),
            so a caller can show it as pending and match the ``msg`` event.
        progress: ``progress(bytes_acknowledged, total_bytes)``.
        window: chunks kept in flight.
        purpose: ``"attachment"`` (default), or ``"avatar"`` for a profile picture
            (docs/protocol.md 7; the server answers with the re-encoded picture).
    """

    def __init__(self, session: ChatSession, source: str | Path | BinaryIO, *,
                 name: str | None = None, mime: str | None = None, room_id: int | None = None,
                 body: str = "", client_msg_id: str | None = None,
                 progress: Progress | None = None, window: int = DEFAULT_WINDOW,
                 purpose: str = "attachment") -> None:
        super().__init__(session, progress, window)
        self.source: Path | BinaryIO = Path(source) if isinstance(source, str | Path) else source
        if name is None:
            if isinstance(self.source, Path):
                name = self.source.name
            else:
                name = Path(getattr(self.source, "name", "file")).name
        self.name = name
        self.mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.room_id = room_id
        self.body = body
        self.client_msg_id = client_msg_id
        self.purpose = purpose
        self.sha256 = ""

    def start(self) -> Deferred[dict[str, Any]]:
        """Begin; the Deferred fires with ``{file_id, name, size, sha256, mime}``
        (plus ``message: {msg_id, seq, ts}`` when ``room_id`` was given).

        Fails with :class:`~chatnet.errors.ChatError` (``too_large`` for the size
        limit or quota, ``bad_request``), ``CancelledError``, or ``OSError``
        reading the source.
        """
        self.result = Deferred.fromCoroutine(self._run())
        return self.result

    async def _run(self) -> dict[str, Any]:
        if isinstance(self.source, Path) and self.source.is_dir():
            raise ChatError(ErrorCode.BAD_REQUEST, f"{self.source} is a folder, not a file")
        self.sha256, self.total = await self._in_thread(_hash_file, self.source)
        self._report()
        for attempt in range(_STALE_RETRIES):
            try:
                info = await self._resilient(self._attempt)
                break
            except ChatError as exc:
                # Chunks of an abandoned attempt (cancel, lost connection) may still
                # reach the server after a new begin: start over from its offset.
                if not (exc.code is ErrorCode.BAD_REQUEST and exc.message.startswith(
                        "offset must be")) or attempt == _STALE_RETRIES - 1:
                    raise
                self.log.info("upload offset moved under us; beginning again")
        if self.room_id is not None:
            info["message"] = await self.session.send_message(
                self.room_id, self.body, attachments=[info["file_id"]],
                client_msg_id=self.client_msg_id)
        return info

    async def _attempt(self) -> dict[str, Any]:
        args: dict[str, Any] = {"name": self.name, "size": self.total, "sha256": self.sha256,
                                "mime": self.mime}
        if self.purpose != "attachment":
            args["purpose"] = self.purpose
        begin = await self.session.call("file.upload.begin", args)
        upload_id, chunk_size = begin["upload_id"], int(begin["chunk_size"])
        offset = int(begin["offset"])
        self.done = offset
        self._report()
        in_flight: list[Deferred[Any]] = []
        try:
            while offset < self.total or in_flight:
                self._check_cancel()
                while offset < self.total and len(in_flight) < self.window:
                    data = await self._in_thread(self._read, offset, chunk_size)
                    if not data:
                        raise ChatError(ErrorCode.BAD_REQUEST,
                                        "the file shrank while uploading")
                    sent = self.session.call("file.upload.chunk", {
                        "upload_id": upload_id, "offset": offset, "data": data})
                    sent.addCallback(self._acknowledged)
                    in_flight.append(sent)
                    offset += len(data)
                if in_flight:
                    # Wait for the oldest; the others keep the pipe full meanwhile.
                    await in_flight.pop(0)
        except BaseException:
            _abandon(in_flight)
            raise
        return await self.session.call("file.upload.finish", {"upload_id": upload_id})

    def _acknowledged(self, result: dict[str, Any]) -> dict[str, Any]:
        self.done = max(self.done, int(result.get("received", 0)))
        self._report()
        return result

    def _read(self, offset: int, length: int) -> bytes:
        if isinstance(self.source, Path):
            with open(self.source, "rb") as f:
                f.seek(offset)
                return f.read(length)
        self.source.seek(offset)
        return self.source.read(length)


def upload_avatar(session: ChatSession, source: str | Path | BinaryIO, *,
                  progress: Progress | None = None) -> Deferred[dict[str, Any]]:
    """Make a picture the user's profile picture (docs/protocol.md 4 and 7).

    Uploads ``source`` with ``purpose: "avatar"`` (resuming across reconnects
    like any :class:`Upload`), then ``user.update {avatar_file_id}``. The server
    keeps only a re-encoded 256 x 256 PNG, and deletes the previous picture.

    Args:
        session: a started session.
        source: a path, or a binary file object opened for reading (seekable):
            a PNG, JPEG, WebP or GIF image of at most 10 MiB and 24 megapixels.
        progress: ``progress(bytes_acknowledged, total_bytes)`` of the upload.

    Returns:
        a Deferred firing with the user's new profile (its ``avatar_file_id`` is
        the stored picture); failing with :class:`~chatnet.errors.ChatError`
        (``bad_request`` for what is not such an image, ``too_large`` for too many
        bytes or pixels), ``CancelledError`` or ``OSError``.
    """
    async def run() -> dict[str, Any]:
        picture = await Upload(session, source, progress=progress, purpose="avatar").start()
        return await session.call("user.update", {"avatar_file_id": picture["file_id"]})

    return Deferred.fromCoroutine(run())


class Download(_Transfer):
    """Download one file to ``dest``, resuming from ``dest + ".part"``.

    Args:
        session: a started session.
        file_id: the file.
        dest: where the file ends up (the directory must exist).
        progress: ``progress(bytes_written, total_bytes)``.
        window: chunks kept in flight.
    """

    def __init__(self, session: ChatSession, file_id: str, dest: str | Path, *,
                 progress: Progress | None = None, window: int = DEFAULT_WINDOW) -> None:
        super().__init__(session, progress, window)
        self.file_id = file_id
        self.dest = Path(dest)
        self.partial = self.dest.with_name(self.dest.name + ".part")
        self._writing: Deferred[Any] | None = None

    def start(self) -> Deferred[dict[str, Any]]:
        """Begin; the Deferred fires with the ``file.info`` map once ``dest`` holds
        the verified file.

        Fails with :class:`~chatnet.errors.ChatError` (``not_found``; and
        ``bad_request`` if the bytes do not match the SHA-256, in which case the
        partial file is removed), ``CancelledError`` or ``OSError``.
        """
        self.result = Deferred.fromCoroutine(self._run())
        return self.result

    async def _run(self) -> dict[str, Any]:
        info = await self._resilient(
            lambda: self.session.call("file.info", {"file_id": self.file_id}))
        self.total = int(info["size"])
        await self._resilient(self._attempt)
        digest = await self._in_thread(_hash_file, self.partial)
        if digest[0] != info["sha256"]:
            await self._in_thread(self.partial.unlink, True)
            raise ChatError(ErrorCode.BAD_REQUEST, "the downloaded bytes do not match the "
                            "file's sha256; the partial download was removed")
        await self._in_thread(os.replace, self.partial, self.dest)
        return info

    async def _attempt(self) -> dict[str, Any]:
        lock = _PARTIAL_LOCKS.setdefault(self.partial, DeferredLock())
        await lock.acquire()
        try:
            return await self._attempt_locked()
        finally:
            writing, self._writing = self._writing, None
            if writing is not None and not writing.called:
                await _shielded(writing)
            lock.release()
            if not lock.locked and not lock.waiting:
                _PARTIAL_LOCKS.pop(self.partial, None)

    async def _attempt_locked(self) -> dict[str, Any]:
        have = await self._in_thread(_size_or_zero, self.partial)
        if have > self.total:
            have = 0
            await self._in_thread(self.partial.unlink, True)
        self.done = have
        self._report()
        chunk = 256 * 1024
        offset = have
        in_flight: list[Deferred[dict[str, Any]]] = []
        eof = self.total == 0
        if eof:
            await self._in_thread(_touch, self.partial)
        try:
            while not eof or in_flight:
                self._check_cancel()
                while not eof and len(in_flight) < self.window and offset < self.total:
                    in_flight.append(self.session.call("file.download", {
                        "file_id": self.file_id, "offset": offset, "length": chunk}))
                    offset += chunk
                if not in_flight:
                    break
                piece = await in_flight.pop(0)
                data = piece["data"]
                if int(piece["offset"]) != self.done:
                    raise ChatError(ErrorCode.INTERNAL, "download chunks out of order")
                # The thread finishes its write even if we are cancelled meanwhile;
                # the lock is held until it has (see _attempt).
                self._writing = self._in_thread(_write_at, self.partial, self.done, data)
                await _shielded(self._writing)
                self.done += len(data)
                self._report()
                if piece.get("eof") or self.done >= self.total:
                    eof = True
                    # Answers for chunks beyond the end are not needed.
                    if in_flight:
                        await DeferredList(in_flight, consumeErrors=True)
                    in_flight.clear()
        except BaseException:
            _abandon(in_flight)
            raise
        return {}


def _shielded(work: Deferred[Any]) -> Deferred[Any]:
    """A Deferred with ``work``'s result whose cancellation leaves ``work`` running."""
    result: Deferred[Any] = Deferred()

    def forward(outcome: Any) -> None:
        if result.called:
            return
        if isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(outcome)

    work.addBoth(forward)
    return result


def _abandon(requests: list[Deferred[Any]]) -> None:
    """Requests whose answers no longer matter: let their failures pass silently
    (a dropped connection fails them all at once)."""
    for request in requests:
        request.addErrback(lambda _failure: None)
    requests.clear()


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _touch(path: Path) -> None:
    with open(path, "ab"):
        pass


def _write_at(path: Path, offset: int, data: bytes) -> None:
    mode = "r+b" if path.exists() else "wb"
    with open(path, mode) as f:
        f.seek(offset)
        f.write(data)
        f.truncate()
