"""Storage faults answer ``unavailable``; the server keeps serving and recovers by itself.

Real faults, no mocks: a full disk (a tmpfs the test mounts and fills, and
SQLite's own ``max_page_count`` on the server's connection where mounting is
not allowed), a database locked by a second real connection (SQLite
``BEGIN EXCLUSIVE``, a PostgreSQL table lock), a database file made immutable
(``chattr +i``) and SQLite's ``query_only`` ("attempt to write a readonly
database"). After each fault is removed, the next send succeeds, seqs have no
gap and ``PRAGMA integrity_check`` says ok.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import LogLevel, globalLogPublisher

from chatnet.errors import ErrorCode
from tests.support.chat import Bystanders, create_room, expect_error, say, unique
from tests.support.databases import postgres_url

UNAVAILABLE_MESSAGE = "the server's storage is unavailable; try again"


class StorageLog:
    """The storage-fault warnings and recovery lines logged while the block runs."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, Any]] = []
        self.recoveries: list[dict[str, Any]] = []

    def __enter__(self) -> StorageLog:
        globalLogPublisher.addObserver(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        text = str(event.get("log_format", ""))
        if event.get("log_level") is LogLevel.warn and text.startswith("storage unavailable"):
            self.warnings.append(event)
        elif text.startswith("storage available again"):
            self.recoveries.append(event)


async def run_sql(running: Any, sql: str) -> Any:
    """Run one statement on the server's own database connection (SQLite has one):
    how a test reaches per-connection settings such as ``max_page_count``."""
    return await running.service.store.db.run_interaction(
        "test setting", lambda txn: txn.scalar(sql))


def integrity(db_file: Path) -> str:
    """``PRAGMA integrity_check`` from a separate connection (it reads the WAL too)."""
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def sends_until_unavailable(conn: Any, room_id: int, body_bytes: int,
                                  attempts: int) -> int:
    """Send ``body_bytes``-character messages until one gets ``unavailable`` (any
    other failure fails the test; so does no refusal in ``attempts`` sends).

    Returns:
        how many were acknowledged before the refusal.
    """
    acked = 0
    for _ in range(attempts):
        try:
            await conn.request("msg.send", {"room_id": room_id, "body": "y" * body_bytes,
                                            "client_msg_id": unique("fill")})
            acked += 1
        except Exception as exc:
            assert getattr(exc, "code", None) is ErrorCode.UNAVAILABLE, exc
            return acked
    pytest.fail(f"no send was refused in {attempts}: the storage never filled up")


async def refused_sends(conn: Any, room_id: int, count: int = 3) -> list[str]:
    """``count`` sends that must all fail with ``unavailable``; their client_msg_ids."""
    cmids = []
    for _ in range(count):
        cmid = unique("refused")
        error = await expect_error(conn.request("msg.send", {
            "room_id": room_id, "body": "x" * 4000, "client_msg_id": cmid}),
            ErrorCode.UNAVAILABLE, "msg.send during the fault")
        assert error.message == UNAVAILABLE_MESSAGE
        cmids.append(cmid)
    return cmids


async def recovered(conn: Any, room_id: int, refused: list[str], acked: int) -> None:
    """The refused sends go through now (same client_msg_ids) with the next seqs,
    and history is gapless."""
    for n, cmid in enumerate(refused):
        ack = await conn.request("msg.send", {"room_id": room_id, "body": "again",
                                              "client_msg_id": cmid})
        assert ack["seq"] == acked + n + 1
    history = await conn.request("msg.history", {"room_id": room_id, "after_seq": 0,
                                                 "limit": 200})
    seqs = [m["seq"] for m in history["messages"]]
    assert seqs == list(range(1, acked + len(refused) + 1))


@pytest_twisted.ensureDeferred
async def test_database_full_answers_unavailable_and_recovers(make_server, tmp_path):
    """With the database at SQLite's ``max_page_count`` (its own "disk full"), sends
    get ``unavailable`` while history, pings and other users' reads still work; one
    warning is logged for the burst. Raising the limit again, the next send
    succeeds without a restart, and the database is intact."""
    running = await make_server(data_dir=tmp_path / "full")
    bystanders = await Bystanders.start(running)
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    await running.service.search_indexer.run_once()  # only the sends below meet the limit
    pages = await run_sql(running, "PRAGMA page_count")
    await run_sql(running, f"PRAGMA max_page_count = {pages}")
    with StorageLog() as log:
        # Free pages in the file may take a few sends before the limit bites.
        acked = 1 + await sends_until_unavailable(alice, rid, 4000, 50)
        refused = await refused_sends(alice, rid)
        history = await alice.request("msg.history", {"room_id": rid, "after_seq": 0,
                                                      "limit": 5})
        assert history["messages"][0]["body"] == "before"
        await alice.request("session.ping")
        assert len(log.warnings) == 1, "one warning per burst, not one per request"
        assert "database or disk is full" in log.warnings[0]["error"]
        await run_sql(running, "PRAGMA max_page_count = 1073741823")
        await recovered(alice, rid, refused, acked)
        # The indexer may have met the limit too (it indexes the acknowledged
        # sends): its next batch, like any other operation, ends the burst.
        await running.service.search_indexer.run_once()
        assert len(log.recoveries) == 1
    await bystanders.check()
    assert integrity(tmp_path / "full" / "chatnet.db") == "ok"


@pytest_twisted.ensureDeferred
async def test_locked_database_answers_unavailable_and_recovers(make_server, tmp_path):
    """While another program holds SQLite's write lock (``BEGIN EXCLUSIVE`` on a second
    connection) for longer than ``--db-busy-timeout``, sends get ``unavailable``
    and reads still work; once the lock is released the next send succeeds."""
    data_dir = tmp_path / "locked"
    running = await make_server(data_dir=data_dir, db_busy_timeout=0.1)
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    # The search indexer has moved "before" into the index: only the sends below
    # meet the lock (an idle indexer runs no transaction).
    await running.service.search_indexer.run_once()
    locker = sqlite3.connect(data_dir / "chatnet.db", isolation_level=None,
                             check_same_thread=False)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with StorageLog() as log:
            refused = await refused_sends(alice, rid)
            history = await alice.request("msg.history", {"room_id": rid, "after_seq": 0,
                                                          "limit": 5})
            assert [m["body"] for m in history["messages"]] == ["before"]
            assert len(log.warnings) == 1
            assert "database is locked" in log.warnings[0]["error"]
            locker.execute("ROLLBACK")
            await recovered(alice, rid, refused, 1)
            assert len(log.recoveries) == 1
    finally:
        locker.close()
    assert integrity(data_dir / "chatnet.db") == "ok"


@pytest_twisted.ensureDeferred
async def test_locked_table_on_postgresql_answers_unavailable_and_recovers(postgres,
                                                                           make_server):
    """On PostgreSQL, a session holding an EXCLUSIVE lock on ``rooms`` makes sends wait
    only ``--db-busy-timeout`` (``lock_timeout``) and get ``unavailable``, instead of
    stalling every pooled connection for ever; history still reads; after the lock
    is released the next send succeeds."""
    import psycopg

    running = await make_server(database=postgres_url(postgres), db_busy_timeout=0.1)
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    with psycopg.connect(postgres) as locker:
        locker.execute("LOCK TABLE rooms IN EXCLUSIVE MODE")
        with StorageLog() as log:
            refused = await refused_sends(alice, rid)
            history = await alice.request("msg.history", {"room_id": rid, "after_seq": 0,
                                                          "limit": 5})
            assert [m["body"] for m in history["messages"]] == ["before"]
            assert len(log.warnings) == 1
            assert "LockNotAvailable" in log.warnings[0]["error"]
            locker.rollback()
            await recovered(alice, rid, refused, 1)


@pytest_twisted.ensureDeferred
async def test_read_only_connection_answers_unavailable_and_recovers(make_server, tmp_path):
    """SQLite's "attempt to write a readonly database" (the server's connection set to
    ``query_only``) answers ``unavailable``; switched back, sends work again."""
    running = await make_server(data_dir=tmp_path / "ro")
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    await run_sql(running, "PRAGMA query_only = 1")
    with StorageLog() as log:
        refused = await refused_sends(alice, rid, 2)
        assert "readonly database" in log.warnings[0]["error"]
        await run_sql(running, "PRAGMA query_only = 0")
        await recovered(alice, rid, refused, 1)
    assert integrity(tmp_path / "ro" / "chatnet.db") == "ok"


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i`` on ``paths`` (even root cannot write them), undone afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed (Debian package e2fsprogs)")
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


@pytest_twisted.ensureDeferred
async def test_immutable_database_file_answers_unavailable_and_recovers(make_server, tmp_path):
    """With the database and its WAL made immutable by the file system (``chattr +i``:
    writes fail even for root), sends get ``unavailable``; once writable again the
    next send succeeds and the database is intact. (The ``-shm`` file is left alone:
    it is memory-mapped, and a write to an immutable mapping kills the process.)"""
    data_dir = tmp_path / "immutable"
    running = await make_server(data_dir=data_dir)
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    db = data_dir / "chatnet.db"
    with StorageLog() as log:
        with immutable(db, Path(f"{db}-wal")):
            refused = await refused_sends(alice, rid)
            assert len(log.warnings) == 1
        await recovered(alice, rid, refused, 1)
    assert integrity(db) == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the file system is full; return it."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    # the last blocks, smaller than 64 KiB
    with open(filler, "ab", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 512)
    return filler


@pytest_twisted.ensureDeferred
async def test_full_disk_answers_unavailable_for_sends_and_uploads_and_recovers(
        small_disk, make_server):
    """On a real file system that is full (a tmpfs), sends and upload chunks get
    ``unavailable``; nothing of the refused chunk stays in the partial file; pings
    and history still answer. Once space is freed, without a restart: the refused
    sends go through, the same chunk is accepted, the upload finishes with the right
    SHA-256 and downloads whole, and the database is intact."""
    data_dir = small_disk / "data"
    running = await make_server(data_dir=data_dir)
    alice = await running.user("alice")
    rid = (await create_room(alice))["room_id"]
    await say(alice, rid, "before")
    data = os.urandom(600_000)
    begin = await alice.request("file.upload.begin", {
        "name": "big.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    upload_id, chunk = begin["upload_id"], begin["chunk_size"]
    first = await alice.request("file.upload.chunk", {"upload_id": upload_id, "offset": 0,
                                                      "data": data[:chunk]})
    assert first["received"] == chunk
    partial = data_dir / "files" / "partial" / upload_id
    filler = fill(small_disk)
    with StorageLog() as log:
        error = await expect_error(alice.request("file.upload.chunk", {
            "upload_id": upload_id, "offset": chunk, "data": data[chunk:2 * chunk]}),
            ErrorCode.UNAVAILABLE, "a chunk on a full disk")
        assert error.message == UNAVAILABLE_MESSAGE
        assert partial.stat().st_size == chunk, "the refused chunk was cut back"
        # The WAL may still have room from earlier writes: the disk bites within a few.
        acked = 1 + await sends_until_unavailable(alice, rid, 8000, 200)
        refused = await refused_sends(alice, rid, 2)
        await alice.request("session.ping")
        await alice.request("msg.history", {"room_id": rid, "after_seq": 0, "limit": 5})
        assert len(log.warnings) == 1
        filler.unlink()
        await recovered(alice, rid, refused, acked)
        offset = chunk
        while offset < len(data):
            done = await alice.request("file.upload.chunk", {
                "upload_id": upload_id, "offset": offset, "data": data[offset:offset + chunk]})
            offset = done["received"]
        info = await alice.request("file.upload.finish", {"upload_id": upload_id})
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
    got = b""
    while len(got) < len(data):
        part = await alice.request("file.download", {"file_id": info["file_id"],
                                                     "offset": len(got), "length": chunk})
        got += part["data"]
    assert got == data
    assert integrity(data_dir / "chatnet.db") == "ok"
    await running.stop()
    shutil.rmtree(data_dir)
