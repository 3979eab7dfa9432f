"""Files: resumable, verified uploads and downloads (PROTOCOL.md section 7).

On disk, under ``<data-dir>/files/``:

``partial/<upload_id>``
    the bytes of an upload in progress, appended chunk by chunk;
``blobs/<sha[:2]>/<sha256>``
    finished content, stored once however many files share it.

``file.upload.finish`` checks the size and the SHA-256, flushes the partial
file to disk and renames it into ``blobs/`` (a rename is atomic), so nothing
half-written is ever served. Uploads resume: ``begin`` with the same SHA-256
by the same user returns the offset already received, also after a server
restart. Unfinished uploads older than ``upload_expiry`` are removed by
:class:`UploadJanitor`.

An upload begun with ``purpose: "avatar"`` never becomes a file as it is: at
finish the server decodes it, checks it and stores a re-encoded 256 x 256 PNG
instead (:mod:`chatnet.services.avatars`), which every logged-in user may read;
the uploaded bytes are deleted. Replaced profile pictures are deleted, and a
blob goes from disk when no file refers to it any more.

Disk work (appending, hashing, decoding pictures) runs in the reactor's thread
pool; downloads wait until the connection has drained before reading the next
chunk, so a slow downloader never makes the server hold a file in memory.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import mimetypes
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, DeferredSemaphore
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.errors import ChatError, ErrorCode, bad_request, not_found
from chatnet.services import Actor, Clock, ms
from chatnet.services.avatars import (
    AVATAR_MIME,
    AVATAR_NAME,
    MAX_AVATAR_UPLOAD,
    AvatarRefused,
    make_avatar,
)
from chatnet.services.periodic import PeriodicJob
from chatnet.store import ChatStore
from chatnet.store.files import AVATAR, FileRecord, UploadRecord

#: Bytes per chunk offered to clients (well below the 1 MiB default frame).
CHUNK_SIZE = 256 * 1024
#: Default largest file, bytes (``--max-file-size``).
DEFAULT_MAX_FILE_SIZE = 100 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Seconds a granted download permission is trusted, for the chunks after the
#: first, before it is checked again (``file.info`` and offset 0 always check).
_ACCESS_TTL = 60.0
#: Unfinished uploads one user may have at once (``conflict`` with ``details.limit``).
MAX_OPEN_UPLOADS = 20
#: A download is written to the audit trail once per (user, file) per this many
#: seconds, however many times it is fetched: the trail grows with what people
#: read, not with how often they ask.
DOWNLOAD_AUDIT_PERIOD = 3600
#: Pictures decoded at once (each may take ~100 MB while it is decoded).
_AVATAR_DECODERS = 1
#: OS errors that mean the disk, not the request, is at fault: full, over quota,
#: read-only, failing.
_DISK_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def clean_name(name: str) -> str:
    """A file name without directories or control characters.

    Raises:
        ChatError: ``bad_request`` if nothing usable is left.
    """
    base = re.split(r"[\\/]", name.strip())[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if not base or base in (".", ".."):
        raise bad_request("name must be a file name")
    return base[:255]


@dataclass
class _Upload:
    """What the server keeps in memory about an upload in progress."""

    record: UploadRecord
    received: int
    #: Held by whatever works on the upload (begin, a chunk, finish): one at a time,
    #: which is also what lets worker threads use ``hasher`` without more locking.
    lock: DeferredLock = field(default_factory=DeferredLock)
    hasher: Any = None
    hashed: int = 0


class FileService:
    """Stores and serves files.

    Args:
        store: the chat store.
        clock: time source.
        reactor: provides the thread pool for disk work.
        root: the directory for ``partial/`` and ``blobs/`` (``<data-dir>/files``).
        max_file_size: largest file accepted, bytes.
        quota: bytes one user's files may take in all, or None for no limit.
        chunk_size: bytes per chunk (upload and download).
        max_open_uploads: unfinished uploads one user may have.
    """

    log = Logger()

    def __init__(self, store: ChatStore, clock: Clock, reactor: Any, root: Path,
                 max_file_size: int = DEFAULT_MAX_FILE_SIZE, quota: int | None = None,
                 chunk_size: int = CHUNK_SIZE,
                 max_open_uploads: int = MAX_OPEN_UPLOADS) -> None:
        self.store = store
        self.clock = clock
        self.reactor = reactor
        self.root = root
        self.partial = root / "partial"
        self.blobs = root / "blobs"
        self.partial.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.max_file_size = max_file_size
        self.quota = quota
        self.chunk_size = chunk_size
        self.max_open_uploads = max_open_uploads
        self._uploads: dict[str, _Upload] = {}
        self._blob_locks: dict[str, DeferredLock] = {}
        self._decoders = DeferredSemaphore(_AVATAR_DECODERS)

    def perspective(self, actor: Actor) -> FilePerspective:
        """The files perspective of one session."""
        return FilePerspective(self, actor)

    def in_thread(self, fn: Any, *args: Any) -> Deferred[Any]:
        """Run blocking disk work in the reactor's thread pool.

        Returns:
            a Deferred of ``fn``'s result. A full disk (or quota), a read-only
            file system or an I/O error fails it with
            :class:`~chatnet.errors.StorageUnavailable` (``unavailable``): the
            upload can go on once there is room again.
        """
        faults = self.store.db.faults
        what = "files: " + fn.__name__.strip("_")

        def done(result: Any) -> Any:
            if faults.failing:
                faults.succeeded(what)
            return result

        def failed(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, OSError) and error.errno in _DISK_FAULTS:
                raise faults.failed(what, error) from error
            return failure

        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)
        d.addCallbacks(done, failed)
        return d

    async def store_generated(self, user_id: int, path: Path, name: str,
                              mime: str) -> FileRecord:
        """Keep a file the server wrote (an export) as ``user_id``'s attachment:
        hashed and moved into the blob store like a finished upload, readable by
        that user only (until attached somewhere).

        Args:
            path: the written file, in :attr:`partial` (it is moved).

        Returns:
            the stored file.
        """
        digest = await self.in_thread(_sha256_of, path)
        size = path.stat().st_size
        record = UploadRecord(secrets.token_hex(12), user_id, digest, name, size, mime,
                              ms(self.clock))
        async with self.blob_guard(digest):
            await self.in_thread(_store_blob, path, self.blob_path(digest))
            finished = await self.store.finish_upload(record, secrets.token_hex(12),
                                                      ms(self.clock), self.store.ids.next_id())
        return finished.file

    def blob_path(self, sha256: str) -> Path:
        """Where the content with this SHA-256 lives."""
        return self.blobs / sha256[:2] / sha256

    def partial_path(self, upload_id: str) -> Path:
        """Where the bytes of an upload in progress accumulate."""
        return self.partial / upload_id

    async def active_upload(self, upload_id: str, user_id: int) -> _Upload:
        """The in-memory state of an upload of this user (rebuilt after a restart).

        Raises:
            ChatError: ``not_found`` if there is no such upload of this user.
        """
        state = self._uploads.get(upload_id)
        if state is None:
            record = await self.store.upload(upload_id)
            if record is None:
                raise not_found("no such upload")
            size = await self.in_thread(_size_of, self.partial_path(upload_id))
            state = self._uploads.setdefault(upload_id, _Upload(record, size))
        if state.record.user_id != user_id:
            raise not_found("no such upload")
        return state

    @asynccontextmanager
    async def blob_guard(self, sha256: str) -> AsyncIterator[None]:
        """Hold the content ``sha256``: publishing a blob and recording its file, or
        removing an unused blob, happen one at a time for the same content, so a
        blob is never removed under a file that was just recorded for it."""
        lock = self._blob_locks.setdefault(sha256, DeferredLock())
        await lock.acquire()
        try:
            yield
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._blob_locks.pop(sha256, None)

    async def release_blobs(self, hashes: Iterable[str]) -> None:
        """Delete the blobs of these contents that no file refers to any more
        (called after files were deleted, e.g. a replaced profile picture)."""
        for sha256 in set(hashes):
            async with self.blob_guard(sha256):
                if not await self.store.blob_in_use(sha256):
                    await self.in_thread(_unlink, self.blob_path(sha256))

    async def discard(self, upload_id: str) -> None:
        """Forget an upload and delete its bytes."""
        self._uploads.pop(upload_id, None)
        await self.store.drop_upload(upload_id)
        await self.in_thread(_unlink, self.partial_path(upload_id))

    async def clean_stale(self, max_age: float) -> int:
        """Remove unfinished uploads older than ``max_age`` seconds, and partial
        files that no upload owns. Returns how many uploads were removed."""
        before = ms(self.clock) - int(max_age * 1000)
        stale = await self.store.stale_uploads(before)
        for upload_id in stale:
            state = self._uploads.get(upload_id)
            if state is not None and state.lock.locked:
                continue
            await self.discard(upload_id)
        known = set(self._uploads)
        cutoff = time.time() - max_age
        orphans = await self.in_thread(_old_files, self.partial, cutoff)
        for path in orphans:
            if path.name not in known and await self.store.upload(path.name) is None:
                await self.in_thread(_unlink, path)
        if stale:
            self.log.info("removed {count} abandoned upload(s)", count=len(stale))
        return len(stale)


class FilePerspective:
    """``file.*`` for one session."""

    __slots__ = ("_download_lock", "_granted", "actor", "service")

    def __init__(self, service: FileService, actor: Actor) -> None:
        self.service = service
        self.actor = actor
        self._granted: dict[str, tuple[FileRecord, float]] = {}
        # One download chunk at a time per session: each waits for the
        # connection to drain before reading the next from disk.
        self._download_lock = DeferredLock()

    async def perspective_upload_begin(self, name: str, size: int, sha256: str,
                                       mime: str | None,
                                       purpose: str = "attachment") -> dict[str, Any]:
        """``file.upload.begin`` → ``{upload_id, chunk_size, offset}``; ``offset`` > 0
        resumes an unfinished upload of the same content by this user.

        Args:
            purpose: ``attachment`` (default) or ``avatar`` (an extension,
                docs/protocol.md 7): the bytes become a profile picture at finish.

        Raises:
            ChatError: ``too_large`` (over ``--max-file-size``, the avatar upload
                limit, or the user's quota), ``conflict`` (``details.limit``: too many
                unfinished uploads), ``bad_request`` (name, sha256).
        """
        service = self.service
        name = clean_name(name)
        sha256 = sha256.lower()
        if not _SHA256.fullmatch(sha256):
            raise bad_request("sha256 must be 64 hexadecimal characters")
        if size > service.max_file_size:
            raise ChatError(ErrorCode.TOO_LARGE, f"files may be at most {service.max_file_size} "
                            "bytes on this server", {"max_file_size": service.max_file_size})
        if purpose == AVATAR and size > MAX_AVATAR_UPLOAD:
            raise ChatError(ErrorCode.TOO_LARGE, "a profile picture may be at most "
                            f"{MAX_AVATAR_UPLOAD} bytes", {"max_file_size": MAX_AVATAR_UPLOAD})
        mime = (mime or mimetypes.guess_type(name)[0] or "application/octet-stream")[:127]
        wanted = UploadRecord(secrets.token_hex(12), self.actor.user_id, sha256, name, size,
                              mime, ms(service.clock), purpose)
        record, resumed = await service.store.begin_upload(wanted, service.quota,
                                                           service.max_open_uploads)
        state = service._uploads.get(record.upload_id)
        if state is None:
            state = service._uploads[record.upload_id] = _Upload(record, 0)
        # Under the upload's lock: chunks of an earlier attempt that are still
        # being written finish first, so the offset read here is whole.
        await state.lock.acquire()
        try:
            path = service.partial_path(record.upload_id)
            offset = await service.in_thread(_size_of, path) if resumed else 0
            if offset > size or state.record.size != size:
                offset = 0
            if offset == 0:
                await service.in_thread(_truncate, path)
                state.hasher, state.hashed = hashlib.sha256(), 0
            elif state.hashed != offset:
                state.hasher = None  # hashed again from the file at finish
            state.record = record
            state.received = offset
        finally:
            state.lock.release()
        return {"upload_id": record.upload_id, "chunk_size": service.chunk_size,
                "offset": offset}

    async def perspective_upload_chunk(self, upload_id: str, offset: int,
                                       data: bytes) -> dict[str, Any]:
        """``file.upload.chunk`` → ``{received}`` (bytes stored so far).

        Chunks must come in order without gaps or overlaps.

        Raises:
            ChatError: ``not_found`` (no such upload of this user), ``bad_request``
                (wrong offset; more bytes than declared, which discards the upload;
                a chunk over ``chunk_size``), ``unavailable`` (the disk is full:
                nothing of the chunk is kept; send it again, or resume, later).
        """
        service = self.service
        if len(data) > service.chunk_size:
            raise bad_request(f"data must be at most chunk_size ({service.chunk_size}) bytes")
        state = await service.active_upload(upload_id, self.actor.user_id)
        await state.lock.acquire()
        try:
            if service._uploads.get(upload_id) is not state:
                raise not_found("no such upload")
            if offset != state.received:
                raise bad_request(f"offset must be {state.received} (chunks go in order)")
            if state.received + len(data) > state.record.size:
                await service.discard(upload_id)
                raise bad_request(f"more bytes than the declared size ({state.record.size}); "
                                  "the upload is discarded")
            # The hash is updated in the worker thread that writes the chunk (SHA-256
            # of 256 KiB is not for the reactor); the upload's lock keeps any other
            # thread away from the hasher meanwhile.
            hasher = state.hasher if state.hashed == offset else None
            await service.in_thread(_append, service.partial_path(upload_id), offset, data,
                                    hasher)
            if hasher is not None:
                state.hashed += len(data)
            state.received += len(data)
            return {"received": state.received}
        finally:
            state.lock.release()

    async def perspective_upload_finish(self, upload_id: str) -> dict[str, Any]:
        """``file.upload.finish`` → ``{file_id, name, size, sha256, mime}``, plus
        ``purpose: "avatar"`` for a profile picture, whose ``size`` and ``sha256``
        are those of the re-encoded PNG the server stored.

        Raises:
            ChatError: ``not_found``; ``bad_request`` when the size or SHA-256 do
                not match, or an avatar upload is not a PNG/JPEG/WebP/GIF image;
                ``too_large`` for a picture with too many pixels (in each case the
                upload is discarded).
        """
        service = self.service
        state = await service.active_upload(upload_id, self.actor.user_id)
        await state.lock.acquire()
        try:
            record = state.record
            path = service.partial_path(upload_id)
            if state.received != record.size:
                await service.discard(upload_id)
                raise bad_request(f"only {state.received} of {record.size} bytes arrived; "
                                  "the upload is discarded")
            if state.hasher is not None and state.hashed == record.size:
                digest = state.hasher.hexdigest()
            else:
                digest = await service.in_thread(_sha256_of, path)
            if digest != record.sha256:
                await service.discard(upload_id)
                raise bad_request("sha256 does not match the bytes received; the upload is "
                                  "discarded")
            if record.purpose == AVATAR:
                record, path = await self._reencode(record, path)
            async with service.blob_guard(record.sha256):
                await service.in_thread(_store_blob, path, service.blob_path(record.sha256))
                finished = await service.store.finish_upload(
                    record, secrets.token_hex(12), ms(service.clock),
                    service.store.ids.next_id())
            service._uploads.pop(upload_id, None)
            stored = finished.file
            service.log.info("{user} uploaded {name} ({size} bytes, {file_id})",
                             user=self.actor.username, name=stored.name, size=stored.size,
                             file_id=stored.file_id)
            await service.release_blobs(finished.retired)
            result = {"file_id": stored.file_id, "name": stored.name, "size": stored.size,
                      "sha256": stored.sha256, "mime": stored.mime}
            if stored.purpose == AVATAR:
                result["purpose"] = AVATAR
            return result
        finally:
            state.lock.release()

    async def _reencode(self, record: UploadRecord, path: Path) -> tuple[UploadRecord, Path]:
        """Turn a verified avatar upload into the picture the server will store.

        Returns:
            the upload described by the new content (PNG name, mime, size and
            SHA-256) and the path of that PNG; the uploaded bytes are deleted.

        Raises:
            ChatError: ``bad_request`` / ``too_large`` from :class:`AvatarRefused`
                (the upload is discarded).
        """
        service = self.service
        picture = path.with_name(path.name + ".avatar")
        try:
            async with service._decoders:
                avatar = await service.in_thread(make_avatar, path, picture)
        except AvatarRefused as refused:
            await service.in_thread(_unlink, picture)
            await service.discard(record.upload_id)
            code = ErrorCode.TOO_LARGE if refused.too_large else ErrorCode.BAD_REQUEST
            raise ChatError(code, f"{refused.message}; the upload is discarded") from None
        # The original never leaves the server: only the re-encoded picture is kept.
        await service.in_thread(_unlink, path)
        return dataclasses.replace(record, sha256=avatar.sha256, size=avatar.size,
                                   name=AVATAR_NAME, mime=AVATAR_MIME), picture

    async def perspective_upload_cancel(self, upload_id: str) -> dict[str, Any]:
        """``file.upload.cancel`` → ``{}`` (an extension, docs/protocol.md 7): forget an
        unfinished upload of this user and delete its bytes, freeing its place
        among the user's unfinished uploads and in their quota.

        Raises:
            ChatError: ``not_found`` (no such upload of this user).
        """
        service = self.service
        state = await service.active_upload(upload_id, self.actor.user_id)
        await state.lock.acquire()
        try:
            if service._uploads.get(upload_id) is not state:
                raise not_found("no such upload")
            await service.discard(upload_id)
        finally:
            state.lock.release()
        return {}

    async def _visible(self, file_id: str, cached: bool = False) -> FileRecord:
        granted = self._granted.get(file_id)
        now = self.service.clock.seconds()
        if cached and granted is not None and now - granted[1] < _ACCESS_TTL:
            return granted[0]
        record = await self.service.store.file_for(file_id, self.actor.user_id)
        if record is None:
            self._granted.pop(file_id, None)
            raise not_found("no such file")
        self._granted[file_id] = (record, now)
        return record

    async def perspective_info(self, file_id: str) -> dict[str, Any]:
        """``file.info`` → ``{file_id, name, size, sha256, mime, uploader, ts}``.

        Raises:
            ChatError: ``not_found`` also when the user may not see it.
        """
        return (await self._visible(file_id)).info()

    async def perspective_download(self, file_id: str, offset: int,
                                   length: int) -> dict[str, Any]:
        """``file.download`` → ``{data, offset, eof}``.

        Waits until this connection's output has drained before reading, so
        that a slow reader is not buffered for.

        Raises:
            ChatError: ``not_found`` (no such file, or not allowed),
                ``bad_request`` (length over ``chunk_size``, offset past the end).
        """
        service = self.service
        if length > service.chunk_size:
            raise bad_request(f"length must be at most chunk_size ({service.chunk_size})")
        # A download in progress keeps its permission for a while; starting one
        # (offset 0) asks again, so a kicked member is refused at once.
        record = await self._visible(file_id, cached=offset > 0)
        if offset > record.size:
            raise bad_request(f"offset is past the end of the file ({record.size} bytes)")
        mind = self.actor.mind
        await self._download_lock.acquire()
        try:
            if mind is not None and hasattr(mind, "when_writable"):
                await mind.when_writable()
            data = await service.in_thread(_read, service.blob_path(record.sha256), offset,
                                           length)
        except FileNotFoundError:
            # Deleted since access was granted (a replaced profile picture).
            self._granted.pop(file_id, None)
            raise not_found("no such file") from None
        finally:
            self._download_lock.release()
        if offset == 0:
            now = ms(service.clock)
            await service.store.record_file_event(
                service.store.ids.next_id(), now, self.actor.user_id, file_id, "download",
                record.size, once_since=now - DOWNLOAD_AUDIT_PERIOD * 1000)
        return {"data": data, "offset": offset, "eof": offset + len(data) >= record.size}


class UploadJanitor(PeriodicJob):
    """Removes unfinished uploads older than ``max_age`` seconds, at start and then
    every ``interval`` seconds (a :class:`~chatnet.services.periodic.PeriodicJob`).

    Args:
        files: the file service.
        clock: drives the loop.
        max_age: seconds an unfinished upload is kept.
        interval: seconds between sweeps.
    """

    log = Logger()

    def __init__(self, files: FileService, clock: Clock, max_age: float,
                 interval: float = 3600.0) -> None:
        super().__init__(interval, clock)
        self.files = files
        self.max_age = max_age

    async def run_once(self) -> int:
        """Remove the stale uploads now; returns how many."""
        return await self.files.clean_stale(self.max_age)


# -- blocking helpers (run in the thread pool) -------------------------------------------

def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _truncate(path: Path) -> None:
    with open(path, "wb"):
        pass


def _append(path: Path, offset: int, data: bytes, hasher: Any) -> None:
    """Write ``data`` at ``offset`` (the end) and feed it to ``hasher`` (if any); on
    failure (disk full) cut the file back to ``offset``, so the chunk can be sent
    again or the upload resumed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.ftruncate(fd, offset)
        raise
    finally:
        os.close(fd)
    if hasher is not None:
        hasher.update(data)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _store_blob(partial: Path, blob: Path) -> None:
    """Make the verified bytes durable, then publish them with an atomic rename."""
    if blob.exists():
        partial.unlink(missing_ok=True)  # same content already stored
        return
    new_folder = not blob.parent.exists()
    blob.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, blob)
    # The rename, and a new blobs/<xx>/ folder's own entry, must be on disk too.
    for directory in (blob.parent, blob.parent.parent) if new_folder else (blob.parent,):
        _fsync_dir(directory)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _old_files(directory: Path, cutoff: float) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file() and p.stat().st_mtime < cutoff]
