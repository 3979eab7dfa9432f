"""Data at rest is private: the data dir is 0700, its files 0600, and a data dir
that others could write to, or that another user owns, is refused.

Real files, a real server in-process and a real ``twistd chatnet`` subprocess;
modes are read back with ``stat``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import LogLevel, globalLogPublisher

from chatnet.client.connection import connect
from chatnet.config import ConfigError
from chatnet.server import ChatnetService
from tests.support.chat import create_room, say
from tests.support.process import TwistdServer, admin, command
from tests.support.server import PASSWORD, test_config

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask most shells have (022), restored afterwards."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of everything under ``root`` (and ``root`` as ``.``)."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> dict[str, int]:
    """Every directory under ``root`` is 0700 and every file 0600."""
    found = modes(root)
    for name, mode in found.items():
        path = root / name
        assert mode == (0o700 if path.is_dir() else 0o600), f"{name} has mode {mode:04o}"
    return found


async def use_everything(running: Any) -> None:
    """Write to every kind of file the server keeps: database, a blob, a partial upload."""
    alice = await running.user("alice")
    room = await create_room(alice)
    await say(alice, room["room_id"], "hello")
    data = b"blob bytes" * 100
    begin = await alice.request("file.upload.begin", {
        "name": "a.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                              "data": data})
    await alice.request("file.upload.finish", {"upload_id": begin["upload_id"]})
    half = b"partial" * 50
    begin = await alice.request("file.upload.begin", {
        "name": "p.bin", "size": 2 * len(half),
        "sha256": hashlib.sha256(half + half).hexdigest()})
    await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                              "data": half})
    alice.close()


@pytest_twisted.ensureDeferred
async def test_a_new_data_dir_is_private(make_server, tmp_path, loose_umask):
    """Under a 022 umask, the server creates its data dir 0700 and every file in it
    (database, -wal, -shm, TLS keys and certificates, blobs, partial uploads) 0600."""
    data_dir = tmp_path / "fresh"
    running = await make_server(data_dir=data_dir)
    await use_everything(running)
    found = assert_private(data_dir)
    for name in ("chatnet.db", "chatnet.db-wal", "chatnet.db-shm", "tls/ca.key",
                 "tls/server.key", "tls/ca.pem", "files/partial"):
        assert name in found
    assert any(name.startswith("files/blobs/") and len(name) > 70 for name in found)
    assert any(name.startswith("files/partial/") for name in found)


@pytest_twisted.ensureDeferred
async def test_readable_files_are_tightened_at_start_and_logged(make_server, tmp_path):
    """Files and directories left readable by group or others (an older version's
    0644 database and blobs in 0755 folders) are made private at start, and the
    server says so in a warning."""
    data_dir = tmp_path / "old"
    first = await make_server(data_dir=data_dir)
    await use_everything(first)
    await first.stop()
    loosened = [data_dir, *data_dir.rglob("*")]
    for path in loosened:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    warnings: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            warnings.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        again = await make_server(data_dir=data_dir)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert_private(data_dir)
    [warning] = [w for w in warnings if "took group and other access" in w["log_format"]]
    assert warning["count"] == len(loosened)
    assert str(data_dir / "chatnet.db") in warning["paths"]
    # and it still works on the tightened files
    bob = await again.user("bob")
    await create_room(bob)


@pytest.mark.parametrize("where", [".", "files/blobs", "tls"])
def test_data_dir_writable_by_others_is_refused(tmp_path, where):
    """A data dir, or an important folder in it, that group or others may write to
    stops the server before it touches anything, naming the path and the fix."""
    data_dir = tmp_path / "data"
    for sub in ("files/blobs/ab", "files/partial", "tls"):
        (data_dir / sub).mkdir(mode=0o755, parents=True)
    (data_dir / "chatnet.db").write_bytes(b"")
    target = data_dir / where
    os.chmod(target, 0o770 if where == "." else 0o777)
    before = modes(data_dir)
    with pytest.raises(ConfigError) as info:
        ChatnetService(test_config(data_dir), reactor)
    assert f"{target} is writable by group or others" in str(info.value)
    assert "chmod go-w" in str(info.value)
    assert modes(data_dir) == before, "a refused data dir is left as it was"


@needs_root
def test_data_dir_of_another_user_is_refused(tmp_path):
    """A data dir that belongs to another user is refused (its files may have
    been put there by that user), with the chown that fixes it."""
    data_dir = tmp_path / "theirs"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 65534, 65534)
    with pytest.raises(ConfigError) as info:
        ChatnetService(test_config(data_dir), reactor)
    assert str(data_dir) in str(info.value) and "chown -R" in str(info.value)


def test_twistd_refuses_a_data_dir_others_can_write(tmp_path):
    """``twistd chatnet`` exits at once with the message (no traceback) when the
    data dir is world-writable."""
    data_dir = tmp_path / "open"
    data_dir.mkdir()
    os.chmod(data_dir, 0o777)
    done = subprocess.run(
        [command("twistd"), "--nodaemon", "--pidfile=", "chatnet", "--port", "0",
         "--interface", "127.0.0.1", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert f"twistd chatnet: --data-dir: {data_dir} is writable by group or others" \
        in done.stderr
    assert "chmod go-w" in done.stderr and "Traceback" not in done.stderr
    assert not (data_dir / "chatnet.db").exists()


@pytest_twisted.ensureDeferred
async def test_twistd_keeps_files_private_despite_its_umask_option(tmp_path):
    """``twistd --umask 0022`` (applied after makeService) does not make chatnet's
    files readable: the server widens the umask back to 077 when it starts."""
    data_dir = tmp_path / "data"
    server = TwistdServer(data_dir, "--open-registration")
    server.twistd_options = ("--umask", "0022")
    server.start()
    try:
        conn = await connect(reactor, "localhost", server.port, server.ca)
        await conn.register("carol", PASSWORD)
        await conn.login("carol", PASSWORD)
        room = await conn.request("room.create", {"name": "r", "visibility": "public"})
        await conn.request("msg.send", {"room_id": room["room_id"], "body": "x",
                                        "client_msg_id": "1"})
        conn.close()
        found = assert_private(data_dir)
        assert {"chatnet.db", "chatnet.db-wal", "tls/server.key"} <= set(found)
        assert "umask 0022 widened to 0077" in server.text()
    finally:
        server.stop()


def test_admin_creates_private_files_and_refuses_an_open_dir(tmp_path, loose_umask):
    """``chatnet-admin`` on a new data dir (under a 022 umask) creates it 0700 with a
    0600 database; on a dir others can write to it refuses with exit status 2."""
    data_dir = tmp_path / "admin"
    done = admin(data_dir, "create-user", "dave", "--password", PASSWORD)
    assert done.returncode == 0, done.stderr
    assert_private(data_dir)
    os.chmod(data_dir, 0o757)
    done = admin(data_dir, "list-users")
    assert done.returncode == 2
    assert f"{data_dir} is writable by group or others" in done.stderr
