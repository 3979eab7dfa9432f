"""File metadata, uploads in progress, attachments and the file audit trail:
named transactions over ``files``, ``uploads``, ``message_attachments`` and
``file_events`` (PROTOCOL.md section 7). The bytes themselves live on disk
(:mod:`chatnet.services.files`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chatnet.errors import ChatError, ErrorCode, not_found
from chatnet.store.database import Database, IntegrityError, Txn
from chatnet.store.users import lock_users

#: What a file is for (``files.purpose``, ``uploads.purpose``).
ATTACHMENT = "attachment"
#: A profile picture re-encoded by the server (readable by every logged-in user).
AVATAR = "avatar"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file (table ``files``).

    Attributes:
        file_id: the id handed to clients.
        sha256: hex SHA-256 of the content (the blob's name on disk).
        name: the file name the uploader gave.
        size: bytes.
        mime: media type.
        uploader_id: who uploaded it.
        uploader: their username.
        ts: when the upload finished, ms since epoch.
        purpose: :data:`ATTACHMENT` or :data:`AVATAR`.
    """

    file_id: str
    sha256: str
    name: str
    size: int
    mime: str
    uploader_id: int
    uploader: str
    ts: int
    purpose: str = ATTACHMENT

    def info(self) -> dict[str, Any]:
        """The ``file.info`` result (PROTOCOL.md 7), plus ``purpose: "avatar"`` for a
        profile picture (an extension, docs/protocol.md 7)."""
        info = {"file_id": self.file_id, "name": self.name, "size": self.size,
                "sha256": self.sha256, "mime": self.mime, "uploader": self.uploader,
                "ts": self.ts}
        if self.purpose != ATTACHMENT:
            info["purpose"] = self.purpose
        return info

    def attachment(self) -> dict[str, Any]:
        """The attachment map inside a message (PROTOCOL.md 6)."""
        return {"file_id": self.file_id, "name": self.name, "size": self.size,
                "mime": self.mime}


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An upload in progress (table ``uploads``); ``purpose`` is what the finished
    file will be (:data:`ATTACHMENT` or :data:`AVATAR`)."""

    upload_id: str
    user_id: int
    sha256: str
    name: str
    size: int
    mime: str
    created_ts: int
    purpose: str = ATTACHMENT


@dataclass(frozen=True, slots=True)
class FinishedUpload:
    """What :meth:`FileStore.finish_upload` did.

    Attributes:
        file: the stored file.
        retired: SHA-256s of the user's earlier avatar files it deleted; their
            blobs go once no file refers to them.
    """

    file: FileRecord
    retired: list[str]


_FILE_SELECT = ("SELECT f.file_id, f.sha256, f.name, f.size, f.mime, f.uploader_id, u.username, "
                "f.ts, f.purpose FROM files f JOIN users u ON u.user_id = f.uploader_id")
_UPLOAD_COLUMNS = "upload_id, user_id, sha256, name, size, mime, created_ts, purpose"


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(row[0], row[1], row[2], int(row[3]), row[4], int(row[5]), row[6],
                      int(row[7]), row[8])


def _upload(row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(row[0], int(row[1]), row[2], row[3], int(row[4]), row[5], int(row[6]),
                        row[7])


def file_by_id(t: Txn, file_id: str) -> FileRecord | None:
    """One file's metadata inside a transaction (used by message sends too)."""
    row = t.execute(_FILE_SELECT + " WHERE f.file_id = ?", (file_id,)).fetchone()
    return _file(row) if row else None


def may_access(t: Txn, file_id: str, user_id: int) -> bool:
    """Whether a user may see an attachment, and so attach it to a message: its
    uploader, a member of a room where a visible message attaches it
    (PROTOCOL.md 7), or someone who sees a feed post that carries it (its
    author's contacts, PROTOCOL.md 10). Always False for avatar files: they are
    never attachments (:func:`readable` lets everyone read them)."""
    uploader = t.scalar("SELECT uploader_id FROM files WHERE file_id = ? AND purpose = ?",
                        (file_id, ATTACHMENT))
    if uploader is None:
        return False
    if int(uploader) == user_id:
        return True
    if t.scalar(
            "SELECT 1 FROM message_attachments a JOIN messages m ON m.msg_id = a.msg_id "
            "JOIN room_members rm ON rm.room_id = a.room_id AND rm.user_id = ? "
            "WHERE a.file_id = ? AND m.deleted = 0 LIMIT 1", (user_id, file_id)) is not None:
        return True
    return t.scalar(
        "SELECT 1 FROM feed_post_files f JOIN feed_posts p ON p.post_id = f.post_id "
        "JOIN contacts c ON c.user_id = ? AND c.contact_id = p.author_id "
        "AND c.state = 'accepted' WHERE f.file_id = ? LIMIT 1", (user_id, file_id)) is not None


class FileStore:
    """Data access for files. Mixed into :class:`ChatStore`."""

    db: Database

    async def begin_upload(self, upload: UploadRecord, quota: int | None,
                           max_open: int) -> tuple[UploadRecord, bool]:
        """Start an upload, or find the unfinished one of the same content by the
        same user (resume, PROTOCOL.md 7), checking the user's limits in the same
        transaction as the reservation.

        Args:
            upload: the upload to start (its id is used only if nothing resumes).
            quota: bytes the user's finished files and unfinished uploads may take
                in all, this one included (its declared ``size``), or None.
            max_open: unfinished uploads a user may have.

        Returns:
            ``(upload, resumed)``.

        Raises:
            ChatError: ``conflict`` with ``details.limit`` when the user already has
                ``max_open`` other unfinished uploads; ``too_large`` with
                ``details.quota`` and ``details.used`` over the quota.
        """
        user_id, sha256 = upload.user_id, upload.sha256

        def find(t: Txn) -> UploadRecord | None:
            row = t.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE user_id = ? AND "
                            "sha256 = ?", (user_id, sha256)).fetchone()
            return _upload(row) if row else None

        def txn(t: Txn) -> tuple[UploadRecord, bool]:
            # One begin of a user at a time, so that two cannot both pass the checks
            # below (PostgreSQL runs transactions in parallel at READ COMMITTED).
            lock_users(t, user_id)
            existing = find(t)
            if existing is None:
                open_uploads = int(t.scalar("SELECT COUNT(*) FROM uploads WHERE user_id = ?",
                                            (user_id,)))
                if open_uploads >= max_open:
                    raise ChatError(ErrorCode.CONFLICT,
                                    f"you already have {max_open} unfinished uploads; finish "
                                    "or cancel one (file.upload.cancel)", {"limit": max_open})
            if quota is not None:
                # The upload resumed is counted once, at its new declared size.
                used = _bytes_used(t, user_id, existing.upload_id if existing else None)
                if used + upload.size > quota:
                    raise ChatError(ErrorCode.TOO_LARGE, "this upload would exceed your "
                                    f"storage quota ({used} of {quota} bytes used)",
                                    {"quota": quota, "used": used})
            if existing is not None:
                if (existing.size, existing.name, existing.mime, existing.purpose) != (
                        upload.size, upload.name, upload.mime, upload.purpose):
                    # Same content announced differently: keep the bytes, take the new facts.
                    t.execute("UPDATE uploads SET name = ?, size = ?, mime = ?, purpose = ? "
                              "WHERE upload_id = ?", (upload.name, upload.size, upload.mime,
                                                      upload.purpose, existing.upload_id))
                    existing = UploadRecord(existing.upload_id, user_id, sha256, upload.name,
                                            upload.size, upload.mime, existing.created_ts,
                                            upload.purpose)
                return existing, True
            t.execute(f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (upload.upload_id, user_id, sha256, upload.name, upload.size, upload.mime,
                       upload.created_ts, upload.purpose))
            return upload, False

        try:
            return await self.db.run_interaction("begin_upload", txn)
        except IntegrityError:
            found = await self.db.run_interaction("begin_upload_retry", find)
            assert found is not None
            return found, True

    async def upload(self, upload_id: str) -> UploadRecord | None:
        """An upload in progress, or None."""
        def txn(t: Txn) -> UploadRecord | None:
            row = t.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?",
                            (upload_id,)).fetchone()
            return _upload(row) if row else None

        return await self.db.run_interaction("upload", txn)

    async def drop_upload(self, upload_id: str) -> None:
        """Forget an upload (finished, refused or abandoned)."""
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))

        await self.db.run_interaction("drop_upload", txn)

    async def stale_uploads(self, older_than: int) -> list[str]:
        """Ids of uploads started before ``older_than`` (ms since epoch)."""
        def txn(t: Txn) -> list[str]:
            return [r[0] for r in t.execute("SELECT upload_id FROM uploads WHERE created_ts < ?",
                                            (older_than,)).fetchall()]

        return await self.db.run_interaction("stale_uploads", txn)

    async def bytes_used(self, user_id: int) -> int:
        """Bytes a user's files and unfinished uploads (declared sizes) take, for the quota."""
        return await self.db.run_interaction("bytes_used", _bytes_used, user_id, None)

    async def open_uploads(self, user_id: int) -> list[str]:
        """Ids of a user's unfinished uploads."""
        def txn(t: Txn) -> list[str]:
            return [r[0] for r in t.execute("SELECT upload_id FROM uploads WHERE user_id = ? "
                                            "ORDER BY created_ts", (user_id,)).fetchall()]

        return await self.db.run_interaction("open_uploads", txn)

    async def finish_upload(self, upload: UploadRecord, file_id: str, ts: int,
                            event_id: int) -> FinishedUpload:
        """Record a verified upload as a file and forget the upload, in one transaction.

        Args:
            upload: the upload; its ``sha256``, ``size``, ``name`` and ``mime`` are
                those of the content stored (for an avatar, the re-encoded picture).
            file_id: the new file's id.
            ts: now, ms.
            event_id: id of the ``upload`` audit row.

        A user who uploads the same content again under the same name gets the
        file they already have. Finishing an avatar deletes the user's other avatar
        files except their current profile picture (so a user has at most two).
        """
        def txn(t: Txn) -> FinishedUpload:
            t.execute("DELETE FROM uploads WHERE upload_id = ?", (upload.upload_id,))
            row = t.execute(_FILE_SELECT + " WHERE f.uploader_id = ? AND f.sha256 = ? AND "
                            "f.name = ? AND f.mime = ? AND f.purpose = ?",
                            (upload.user_id, upload.sha256, upload.name, upload.mime,
                             upload.purpose)).fetchone()
            if row is None:
                t.execute("INSERT INTO files (file_id, sha256, name, size, mime, uploader_id, "
                          "ts, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (file_id, upload.sha256, upload.name, upload.size, upload.mime,
                           upload.user_id, ts, upload.purpose))
                row = t.execute(_FILE_SELECT + " WHERE f.file_id = ?", (file_id,)).fetchone()
            assert row is not None
            record = _file(row)
            _file_event(t, event_id, ts, upload.user_id, record.file_id, "upload", record.size)
            retired: list[str] = []
            if upload.purpose == AVATAR:
                current = t.scalar("SELECT avatar_file_id FROM users WHERE user_id = ?",
                                   (upload.user_id,))
                retired = _retire_avatars(t, upload.user_id, {record.file_id, current})
            return FinishedUpload(record, retired)

        return await self.db.run_interaction("finish_upload", txn)

    async def set_avatar(self, user_id: int, file_id: str | None) -> list[str]:
        """Make ``file_id`` the user's profile picture (None: none) and delete their
        other avatar files, in one transaction.

        Returns:
            the SHA-256s of the avatar files deleted (their blobs may go).

        Raises:
            ChatError: ``not_found`` unless ``file_id`` is an avatar file that this
                user uploaded (an attachment can never become a profile picture).
        """
        def txn(t: Txn) -> list[str]:
            if file_id is not None and t.scalar(
                    "SELECT 1 FROM files WHERE file_id = ? AND uploader_id = ? AND purpose = ?",
                    (file_id, user_id, AVATAR)) is None:
                raise not_found("no such profile picture: upload one with file.upload.begin "
                                "{purpose: avatar}")
            t.execute("UPDATE users SET avatar_file_id = ? WHERE user_id = ?", (file_id, user_id))
            return _retire_avatars(t, user_id, {file_id})

        return await self.db.run_interaction("set_avatar", txn)

    async def file_for(self, file_id: str, user_id: int) -> FileRecord | None:
        """A file's metadata if the user may see it, else None (PROTOCOL.md 7): an
        attachment by :func:`may_access`, an avatar file by every logged-in user."""
        def txn(t: Txn) -> FileRecord | None:
            record = file_by_id(t, file_id)
            if record is None:
                return None
            if record.purpose != AVATAR and not may_access(t, file_id, user_id):
                return None
            return record

        return await self.db.run_interaction("file_for", txn)

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any file still refers to this content (an unfinished upload keeps
        its bytes in its partial file, never in a blob)."""
        def txn(t: Txn) -> bool:
            return t.scalar("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1",
                            (sha256,)) is not None

        return await self.db.run_interaction("blob_in_use", txn)

    async def record_file_event(self, event_id: int, ts: int, user_id: int, file_id: str,
                                action: str, size: int, once_since: int | None = None) -> bool:
        """Append to the file audit trail (``download`` and the like).

        Args:
            once_since: if given (ms), record nothing when the trail already has the
                same action by this user on this file after that time.

        Returns:
            whether a row was written.
        """
        def txn(t: Txn) -> bool:
            if once_since is not None and t.scalar(
                    "SELECT 1 FROM file_events WHERE user_id = ? AND file_id = ? AND ts > ? "
                    "AND action = ? LIMIT 1", (user_id, file_id, once_since, action)) is not None:
                return False
            _file_event(t, event_id, ts, user_id, file_id, action, size)
            return True

        return await self.db.run_interaction("record_file_event", txn)

    async def file_events(self, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The file audit trail from ``since`` (ms), oldest first."""
        def txn(t: Txn) -> list[dict[str, Any]]:
            return [{"ts": int(r[0]), "username": r[1], "file_id": r[2], "action": r[3],
                     "size": int(r[4])} for r in t.execute(
                "SELECT e.ts, u.username, e.file_id, e.action, e.size FROM file_events e "
                "JOIN users u ON u.user_id = e.user_id WHERE e.ts >= ? ORDER BY e.ts, "
                "e.event_id LIMIT ?", (since, limit)).fetchall()]

        return await self.db.run_interaction("file_events", txn)


def _file_event(t: Txn, event_id: int, ts: int, user_id: int, file_id: str, action: str,
                size: int) -> None:
    """A row of the file trail (``file_events``) and the same in the audit log
    (``file.upload``, ``file.download``), in the caller's transaction."""
    t.execute("INSERT INTO file_events (event_id, ts, user_id, file_id, action, size) "
              "VALUES (?, ?, ?, ?, ?, ?)", (event_id, ts, user_id, file_id, action, size))
    t.execute("INSERT INTO audit_log (entry_id, ts, action, user_id, username, peer, details) "
              "SELECT ?, ?, ?, user_id, username, NULL, ? FROM users WHERE user_id = ?",
              (event_id, ts, f"file.{action}",
               json.dumps({"file_id": file_id, "size": size}, sort_keys=True), user_id))


def _bytes_used(t: Txn, user_id: int, except_upload: str | None) -> int:
    """Bytes of a user's files plus the declared sizes of their unfinished uploads,
    leaving out ``except_upload``."""
    files = t.scalar("SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = ?",
                     (user_id,))
    uploads = t.scalar("SELECT COALESCE(SUM(size), 0) FROM uploads WHERE user_id = ? "
                       "AND upload_id <> ?", (user_id, except_upload or ""))
    return int(files or 0) + int(uploads or 0)


def _retire_avatars(t: Txn, user_id: int, keep: set[str | None]) -> list[str]:
    """Delete a user's avatar files other than ``keep``; return their SHA-256s."""
    rows = t.execute("SELECT file_id, sha256 FROM files WHERE uploader_id = ? AND purpose = ?",
                     (user_id, AVATAR)).fetchall()
    retired = [(file_id, sha256) for file_id, sha256 in rows if file_id not in keep]
    t.executemany("DELETE FROM files WHERE file_id = ?", [(file_id,) for file_id, _ in retired])
    return [sha256 for _, sha256 in retired]
