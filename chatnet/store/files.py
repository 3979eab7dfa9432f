"""File metadata, uploads in progress, attachments and the file audit trail:
named transactions over ``files``, ``uploads``, ``message_attachments`` and
``file_events`` (PROTOCOL.md section 7). The bytes themselves live on disk
(:mod:`chatnet.services.files`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatnet.store.database import Database, IntegrityError, Txn


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
    """

    file_id: str
    sha256: str
    name: str
    size: int
    mime: str
    uploader_id: int
    uploader: str
    ts: int

    def info(self) -> dict[str, Any]:
        """The ``file.info`` result (PROTOCOL.md 7)."""
        return {"file_id": self.file_id, "name": self.name, "size": self.size,
                "sha256": self.sha256, "mime": self.mime, "uploader": self.uploader,
                "ts": self.ts}

    def attachment(self) -> dict[str, Any]:
        """The attachment map inside a message (PROTOCOL.md 6)."""
        return {"file_id": self.file_id, "name": self.name, "size": self.size,
                "mime": self.mime}


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An upload in progress (table ``uploads``)."""

    upload_id: str
    user_id: int
    sha256: str
    name: str
    size: int
    mime: str
    created_ts: int


_FILE_SELECT = ("SELECT f.file_id, f.sha256, f.name, f.size, f.mime, f.uploader_id, u.username, "
                "f.ts FROM files f JOIN users u ON u.user_id = f.uploader_id")
_UPLOAD_COLUMNS = "upload_id, user_id, sha256, name, size, mime, created_ts"


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(row[0], row[1], row[2], int(row[3]), row[4], int(row[5]), row[6],
                      int(row[7]))


def _upload(row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(row[0], int(row[1]), row[2], row[3], int(row[4]), row[5], int(row[6]))


def file_by_id(t: Txn, file_id: str) -> FileRecord | None:
    """One file's metadata inside a transaction (used by message sends too)."""
    row = t.execute(_FILE_SELECT + " WHERE f.file_id = ?", (file_id,)).fetchone()
    return _file(row) if row else None


def may_access(t: Txn, file_id: str, user_id: int) -> bool:
    """Whether a user may see a file: its uploader, a member of a room where a
    visible message attaches it (PROTOCOL.md 7), or anyone if it is someone's
    profile picture (profiles are visible to all users)."""
    if t.scalar("SELECT 1 FROM files WHERE file_id = ? AND uploader_id = ?",
                (file_id, user_id)) is not None:
        return True
    if t.scalar("SELECT 1 FROM users WHERE avatar_file_id = ? LIMIT 1",
                (file_id,)) is not None:
        return True
    return t.scalar(
        "SELECT 1 FROM message_attachments a JOIN messages m ON m.msg_id = a.msg_id "
        "JOIN room_members rm ON rm.room_id = a.room_id AND rm.user_id = ? "
        "WHERE a.file_id = ? AND m.deleted = 0 LIMIT 1", (user_id, file_id)) is not None


class FileStore:
    """Data access for files. Mixed into :class:`ChatStore`."""

    db: Database

    async def begin_upload(self, upload_id: str, user_id: int, sha256: str, name: str,
                           size: int, mime: str, ts: int) -> tuple[UploadRecord, bool]:
        """Start an upload, or find the unfinished one of the same content by the
        same user (resume, PROTOCOL.md 7).

        Returns:
            ``(upload, resumed)``.
        """
        def find(t: Txn) -> UploadRecord | None:
            row = t.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE user_id = ? AND "
                            "sha256 = ?", (user_id, sha256)).fetchone()
            return _upload(row) if row else None

        def txn(t: Txn) -> tuple[UploadRecord, bool]:
            existing = find(t)
            if existing is not None:
                if existing.size != size or existing.name != name or existing.mime != mime:
                    # Same content announced differently: start over with the new facts.
                    t.execute("UPDATE uploads SET name = ?, size = ?, mime = ? WHERE "
                              "upload_id = ?", (name, size, mime, existing.upload_id))
                    existing = UploadRecord(existing.upload_id, user_id, sha256, name, size,
                                            mime, existing.created_ts)
                return existing, True
            t.execute(f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (upload_id, user_id, sha256, name, size, mime, ts))
            return UploadRecord(upload_id, user_id, sha256, name, size, mime, ts), False

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

    async def bytes_used(self, user_id: int, except_upload: str | None = None) -> int:
        """Bytes a user's files and unfinished uploads take (for the quota)."""
        def txn(t: Txn) -> int:
            files = t.scalar("SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader_id = ?",
                             (user_id,))
            uploads = t.scalar("SELECT COALESCE(SUM(size), 0) FROM uploads WHERE user_id = ? "
                               "AND upload_id <> ?", (user_id, except_upload or ""))
            return int(files or 0) + int(uploads or 0)

        return await self.db.run_interaction("bytes_used", txn)

    async def finish_upload(self, upload: UploadRecord, file_id: str, ts: int,
                            event_id: int) -> FileRecord:
        """Record a verified upload as a file and forget the upload, in one transaction.

        A user who uploads the same content again under the same name gets the
        file they already have.
        """
        def txn(t: Txn) -> FileRecord:
            t.execute("DELETE FROM uploads WHERE upload_id = ?", (upload.upload_id,))
            row = t.execute(_FILE_SELECT + " WHERE f.uploader_id = ? AND f.sha256 = ? AND "
                            "f.name = ? AND f.mime = ?", (upload.user_id, upload.sha256,
                                                          upload.name, upload.mime)).fetchone()
            if row is None:
                t.execute("INSERT INTO files (file_id, sha256, name, size, mime, uploader_id, "
                          "ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (file_id, upload.sha256, upload.name, upload.size, upload.mime,
                           upload.user_id, ts))
                row = t.execute(_FILE_SELECT + " WHERE f.file_id = ?", (file_id,)).fetchone()
            assert row is not None
            record = _file(row)
            t.execute("INSERT INTO file_events (event_id, ts, user_id, file_id, action, size) "
                      "VALUES (?, ?, ?, ?, 'upload', ?)",
                      (event_id, ts, upload.user_id, record.file_id, record.size))
            return record

        return await self.db.run_interaction("finish_upload", txn)

    async def file_for(self, file_id: str, user_id: int) -> FileRecord | None:
        """A file's metadata if the user may see it, else None (PROTOCOL.md 7)."""
        def txn(t: Txn) -> FileRecord | None:
            record = file_by_id(t, file_id)
            if record is None or not may_access(t, file_id, user_id):
                return None
            return record

        return await self.db.run_interaction("file_for", txn)

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any file or upload still refers to this content."""
        def txn(t: Txn) -> bool:
            return t.scalar("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1",
                            (sha256,)) is not None

        return await self.db.run_interaction("blob_in_use", txn)

    async def record_file_event(self, event_id: int, ts: int, user_id: int, file_id: str,
                                action: str, size: int) -> None:
        """Append to the file audit trail (``download`` and the like)."""
        def txn(t: Txn) -> None:
            t.execute("INSERT INTO file_events (event_id, ts, user_id, file_id, action, size) "
                      "VALUES (?, ?, ?, ?, ?, ?)", (event_id, ts, user_id, file_id, action, size))

        await self.db.run_interaction("record_file_event", txn)

    async def file_events(self, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The file audit trail from ``since`` (ms), oldest first."""
        def txn(t: Txn) -> list[dict[str, Any]]:
            return [{"ts": int(r[0]), "username": r[1], "file_id": r[2], "action": r[3],
                     "size": int(r[4])} for r in t.execute(
                "SELECT e.ts, u.username, e.file_id, e.action, e.size FROM file_events e "
                "JOIN users u ON u.user_id = e.user_id WHERE e.ts >= ? ORDER BY e.ts, "
                "e.event_id LIMIT ?", (since, limit)).fetchall()]

        return await self.db.run_interaction("file_events", txn)
