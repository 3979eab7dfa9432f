"""File transfer end to end (PROTOCOL.md 7): real server, real TLS, real files on disk."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred

from chatnet.client.files import Download, Upload
from chatnet.client.session import ChatSession, SessionState
from chatnet.errors import ChatError, ErrorCode
from chatnet.services.files import CHUNK_SIZE, MAX_OPEN_UPLOADS
from tests.support.chat import room_with_members
from tests.support.server import PASSWORD, RunningServer, start_server, test_config


def session_for(server: RunningServer, username: str) -> ChatSession:
    return ChatSession(reactor, "localhost", server.port, username, PASSWORD, ca=server.ca,
                       retry_initial=0.05, retry_max=0.5, retry_jitter=0.05)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def shared_room(owner: Any, *members: Any) -> int:
    """A private room of ``owner`` that ``members`` (connections or sessions) are in."""
    return await room_with_members(owner, *members, name="files")


async def raw_upload(conn: Any, data: bytes, name: str = "f.bin") -> dict[str, Any]:
    begin = await conn.request("file.upload.begin", {"name": name, "size": len(data),
                                                     "sha256": sha(data)})
    offset = begin["offset"]
    while offset < len(data):
        piece = data[offset:offset + begin["chunk_size"]]
        await conn.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                 "offset": offset, "data": piece})
        offset += len(piece)
    return await conn.request("file.upload.finish", {"upload_id": begin["upload_id"]})


def until(session: ChatSession, state: SessionState) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    if session.state is state:
        d.callback(None)
        return d

    def watch(new: SessionState) -> None:
        if new is state and not d.called:
            d.callback(None)

    session.add_state_listener(watch)
    return d.addTimeout(10, reactor)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                                  3 * CHUNK_SIZE + 12345])
@pytest_twisted.ensureDeferred
async def test_round_trip_to_a_room_member(server, tmp_path, size):
    """A file of each awkward size goes up as an attachment and comes down
    byte-identical for another member; the message carries {file_id, name, size, mime}."""
    data = os.urandom(size)
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    bob_conn = await server.user("bob")
    alice = session_for(server, "alice")
    await alice.start(register=True)
    room_id = await shared_room(bob_conn, alice)
    progress: list[tuple[int, int]] = []
    info = await Upload(alice, source, room_id=room_id, body="the report",
                        progress=lambda done, total: progress.append((done, total))).start()
    assert info["size"] == size and info["sha256"] == sha(data)
    assert info["mime"] == "application/pdf" and info["name"] == "report.pdf"
    assert progress[-1] == (size, size)
    history = await bob_conn.request("msg.history", {"room_id": room_id})
    [message] = history["messages"]
    assert message["attachments"] == [{"file_id": info["file_id"], "name": "report.pdf",
                                       "size": size, "mime": "application/pdf"}]
    bob = session_for(server, "bob")
    await bob.start()
    dest = tmp_path / "downloaded.pdf"
    got = await Download(bob, info["file_id"], dest).start()
    assert got["sha256"] == sha(data)
    assert dest.read_bytes() == data
    assert not dest.with_name("downloaded.pdf.part").exists()
    await alice.close()
    await bob.close()
    await bob_conn.close()


@pytest_twisted.ensureDeferred
async def test_same_content_is_stored_once(server):
    """Two users uploading the same bytes share one blob on disk."""
    data = os.urandom(5000)
    alice, bob = await server.user("alice"), await server.user("bob")
    first = await raw_upload(alice, data, "a.bin")
    second = await raw_upload(bob, data, "b.bin")
    assert first["file_id"] != second["file_id"]
    blobs = [p for p in (server.service.config.data_dir / "files" / "blobs").rglob("*")
             if p.is_file()]
    assert [p.name for p in blobs] == [sha(data)]
    assert not list((server.service.config.data_dir / "files" / "partial").iterdir())


@pytest_twisted.ensureDeferred
async def test_sha_mismatch_discards_the_upload(server):
    """finish with bytes that do not hash to the announced sha256 gets bad_request and
    the upload is gone (a later chunk gets not_found)."""
    alice = await server.user("alice")
    data = b"hello world"
    begin = await alice.request("file.upload.begin", {"name": "x", "size": len(data),
                                                      "sha256": sha(b"something else")})
    await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                              "data": data})
    with pytest.raises(ChatError) as caught:
        await alice.request("file.upload.finish", {"upload_id": begin["upload_id"]})
    assert caught.value.code is ErrorCode.BAD_REQUEST and "sha256" in caught.value.message
    with pytest.raises(ChatError) as again:
        await alice.request("file.upload.finish", {"upload_id": begin["upload_id"]})
    assert again.value.code is ErrorCode.NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_size_lies_are_refused(server):
    """More bytes than declared, or finishing with fewer, gets bad_request."""
    alice = await server.user("alice")
    more = await alice.request("file.upload.begin", {"name": "m", "size": 3,
                                                     "sha256": sha(b"abcd")})
    with pytest.raises(ChatError) as too_many:
        await alice.request("file.upload.chunk", {"upload_id": more["upload_id"],
                                                  "offset": 0, "data": b"abcd"})
    assert too_many.value.code is ErrorCode.BAD_REQUEST
    fewer = await alice.request("file.upload.begin", {"name": "f", "size": 10,
                                                      "sha256": sha(b"0123456789")})
    await alice.request("file.upload.chunk", {"upload_id": fewer["upload_id"], "offset": 0,
                                              "data": b"01234"})
    with pytest.raises(ChatError) as too_few:
        await alice.request("file.upload.finish", {"upload_id": fewer["upload_id"]})
    assert too_few.value.code is ErrorCode.BAD_REQUEST and "5 of 10" in too_few.value.message


@pytest_twisted.ensureDeferred
async def test_out_of_order_and_overlapping_chunks_are_refused(server):
    """A chunk must start exactly where the received bytes end."""
    alice = await server.user("alice")
    data = os.urandom(100)
    begin = await alice.request("file.upload.begin", {"name": "o", "size": 100,
                                                      "sha256": sha(data)})
    uid = begin["upload_id"]
    with pytest.raises(ChatError) as gap:
        await alice.request("file.upload.chunk", {"upload_id": uid, "offset": 50,
                                                  "data": data[50:]})
    assert gap.value.code is ErrorCode.BAD_REQUEST and "offset must be 0" in gap.value.message
    await alice.request("file.upload.chunk", {"upload_id": uid, "offset": 0, "data": data[:60]})
    with pytest.raises(ChatError) as overlap:
        await alice.request("file.upload.chunk", {"upload_id": uid, "offset": 40,
                                                  "data": data[40:]})
    assert overlap.value.code is ErrorCode.BAD_REQUEST
    await alice.request("file.upload.chunk", {"upload_id": uid, "offset": 60, "data": data[60:]})
    done = await alice.request("file.upload.finish", {"upload_id": uid})
    assert done["sha256"] == sha(data)


@pytest_twisted.ensureDeferred
async def test_chunk_for_someone_elses_upload_is_not_found(server):
    """Another user cannot add to, finish, or learn of someone's upload."""
    alice, mallory = await server.user("alice"), await server.user("mallory")
    begin = await alice.request("file.upload.begin", {"name": "a", "size": 4,
                                                      "sha256": sha(b"abcd")})
    for op, args in (("file.upload.chunk", {"offset": 0, "data": b"abcd"}),
                     ("file.upload.finish", {})):
        with pytest.raises(ChatError) as caught:
            await mallory.request(op, {"upload_id": begin["upload_id"], **args})
        assert caught.value.code is ErrorCode.NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_non_member_cannot_see_or_download(server):
    """Someone outside the room gets not_found for info and download, just as for a
    file that does not exist; attaching a file one cannot see is refused too."""
    alice, bob, eve = [await server.user(n) for n in ("alice", "bob", "eve")]
    room_id = await shared_room(alice, bob)
    info = await raw_upload(alice, b"secret plans")
    await alice.request("msg.send", {"room_id": room_id, "body": "", "client_msg_id": "1",
                                     "attachments": [info["file_id"]]})
    assert (await bob.request("file.info", {"file_id": info["file_id"]}))["name"] == "f.bin"
    for op, args in (("file.info", {}), ("file.download", {"offset": 0, "length": 100})):
        with pytest.raises(ChatError) as caught:
            await eve.request(op, {"file_id": info["file_id"], **args})
        assert caught.value.code is ErrorCode.NOT_FOUND
        assert caught.value.message == "no such file"
    eve_room = await shared_room(eve)
    with pytest.raises(ChatError) as attach:
        await eve.request("msg.send", {"room_id": eve_room, "body": "", "client_msg_id": "2",
                                       "attachments": [info["file_id"]]})
    assert attach.value.code is ErrorCode.NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_size_limit_and_quota_are_too_large(tmp_path):
    """Over --max-file-size or over the user's quota, begin answers too_large."""
    server = await start_server(test_config(tmp_path / "data", max_file_size=1000,
                                            user_quota=1500))
    try:
        alice = await server.user("alice")
        with pytest.raises(ChatError) as big:
            await alice.request("file.upload.begin", {"name": "b", "size": 1001,
                                                      "sha256": sha(b"x")})
        assert big.value.code is ErrorCode.TOO_LARGE
        await raw_upload(alice, os.urandom(1000))
        with pytest.raises(ChatError) as quota:
            await alice.request("file.upload.begin", {"name": "q", "size": 600,
                                                      "sha256": sha(b"y")})
        assert quota.value.code is ErrorCode.TOO_LARGE and "quota" in quota.value.message
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_upload_survives_a_dropped_connection(server, tmp_path):
    """The connection drops in the middle of an upload; after the reconnect the
    transfer resumes where the server left off and the file is intact."""
    data = os.urandom(20 * CHUNK_SIZE + 7)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    alice = session_for(server, "alice")
    await alice.start(register=True)
    dropped = False

    def progress(done: int, total: int) -> None:
        nonlocal dropped
        if not dropped and done >= 4 * CHUNK_SIZE:
            dropped = True
            alice._connection.abort()

    upload = Upload(alice, source, progress=progress, window=2)
    info = await upload.start().addTimeout(30, reactor)
    assert dropped
    assert info["sha256"] == sha(data)
    dest = tmp_path / "back.bin"
    await Download(alice, info["file_id"], dest).start()
    assert dest.read_bytes() == data
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_upload_resumes_after_server_restart(tmp_path):
    """Half an upload, a server restart, then begin with the same sha256 returns the
    offset already received and the upload completes."""
    config = test_config(tmp_path / "data")
    server = await start_server(config)
    data = os.urandom(3 * CHUNK_SIZE)
    alice = await server.user("alice")
    begin = await alice.request("file.upload.begin", {"name": "r", "size": len(data),
                                                      "sha256": sha(data)})
    await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"], "offset": 0,
                                              "data": data[:CHUNK_SIZE]})
    await alice.close()
    await server.stop()
    server = await start_server(test_config(tmp_path / "data", port=server.port))
    try:
        alice = await server.user("alice", register=False)
        again = await alice.request("file.upload.begin", {"name": "r", "size": len(data),
                                                          "sha256": sha(data)})
        assert again["upload_id"] == begin["upload_id"] and again["offset"] == CHUNK_SIZE
        offset = CHUNK_SIZE
        while offset < len(data):
            await alice.request("file.upload.chunk", {"upload_id": again["upload_id"],
                                                      "offset": offset,
                                                      "data": data[offset:offset + CHUNK_SIZE]})
            offset += CHUNK_SIZE
        done = await alice.request("file.upload.finish", {"upload_id": again["upload_id"]})
        assert done["sha256"] == sha(data)
        page = await alice.request("file.download", {"file_id": done["file_id"], "offset": 0,
                                                     "length": CHUNK_SIZE})
        assert page["data"] == data[:CHUNK_SIZE] and not page["eof"]
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_download_resumes_from_a_partial_file(server, tmp_path):
    """A download finds DEST.part with the first bytes and fetches only the rest; a
    corrupt partial file is caught by the sha256 check and removed."""
    data = os.urandom(2 * CHUNK_SIZE + 99)
    alice = session_for(server, "alice")
    await alice.start(register=True)
    conn = await server.user("alice", register=False)
    info = await raw_upload(conn, data)
    dest = tmp_path / "out.bin"
    dest.with_name("out.bin.part").write_bytes(data[:CHUNK_SIZE])
    seen: list[int] = []
    await Download(alice, info["file_id"], dest,
                   progress=lambda done, total: seen.append(done)).start()
    assert seen[0] == CHUNK_SIZE and dest.read_bytes() == data
    dest.unlink()
    dest.with_name("out.bin.part").write_bytes(b"\0" * 100)  # wrong bytes
    with pytest.raises(ChatError) as caught:
        await Download(alice, info["file_id"], dest).start()
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert not dest.exists() and not dest.with_name("out.bin.part").exists()
    await alice.close()
    await conn.close()


@pytest_twisted.ensureDeferred
async def test_cancel_stops_an_upload(server, tmp_path):
    """cancel() fails the transfer with CancelledError."""
    source = tmp_path / "c.bin"
    source.write_bytes(os.urandom(40 * CHUNK_SIZE))
    alice = session_for(server, "alice")
    await alice.start(register=True)
    upload = Upload(alice, source, window=1)
    upload.progress = lambda done, total: upload.cancel() if done > CHUNK_SIZE else None
    with pytest.raises(CancelledError):
        await upload.start()
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_folder_is_refused(server, tmp_path):
    """Uploading a folder fails with a clear bad_request."""
    alice = session_for(server, "alice")
    await alice.start(register=True)
    with pytest.raises(ChatError) as caught:
        await Upload(alice, tmp_path).start()
    assert "folder" in caught.value.message
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_transfers_are_audited(server):
    """Uploads and downloads are recorded with who, which file, when and size."""
    alice = await server.user("alice")
    info = await raw_upload(alice, b"audit me")
    await alice.request("file.download", {"file_id": info["file_id"], "offset": 0,
                                          "length": 100})
    events = await server.service.store.file_events()
    assert [(e["username"], e["file_id"], e["action"], e["size"]) for e in events] == [
        ("alice", info["file_id"], "upload", 8), ("alice", info["file_id"], "download", 8)]
    assert all(e["ts"] > 0 for e in events)


@pytest_twisted.ensureDeferred
async def test_slow_downloader_is_not_buffered_for(server):
    """A client that pipelines many download requests and stops reading does not make
    the server queue the file in memory: at most a couple of chunks wait for it."""
    data = os.urandom(40 * CHUNK_SIZE)
    uploader = await server.user("alice")
    info = await raw_upload(uploader, data)
    reader = await server.user("alice", register=False)
    reader.transport.pauseProducing()  # stop reading from the socket
    for i in range(40):
        reader.request("file.download", {"file_id": info["file_id"], "offset": i * CHUNK_SIZE,
                                         "length": CHUNK_SIZE}).addErrback(lambda _f: None)
    # Let the server work until it has stopped making progress for this reader.
    protocols = [p for p in server.service.factory.protocols if p.session_id ==
                 reader.login_result["session_id"]]
    [proto] = protocols
    for _ in range(50):
        await uploader.request("session.ping")
    assert proto._outbox.peak <= 3 * CHUNK_SIZE
    assert proto.transport is not None and not proto._closing
    reader.transport.resumeProducing()
    await reader.request("session.ping")
    await reader.close()
    await uploader.close()


@pytest_twisted.ensureDeferred
async def test_begin_again_waits_for_chunks_still_being_written(server):
    """Chunks pipelined by an abandoned attempt are written before a new begin reads
    the offset: the offset is a whole number of chunks and the upload completes."""
    data = os.urandom(12 * CHUNK_SIZE)
    alice = await server.user("alice")
    args = {"name": "race.bin", "size": len(data), "sha256": sha(data)}
    begin = await alice.request("file.upload.begin", args)
    sent = [alice.request("file.upload.chunk", {
        "upload_id": begin["upload_id"], "offset": i * CHUNK_SIZE,
        "data": data[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE]}) for i in range(8)]
    for d in sent:
        d.addErrback(lambda _f: None)
    again = await alice.request("file.upload.begin", args)
    assert again["upload_id"] == begin["upload_id"]
    assert again["offset"] % CHUNK_SIZE == 0 and again["offset"] <= 8 * CHUNK_SIZE
    for d in sent:
        await d
    # Start from wherever the server says now (the stale chunks may have landed).
    latest = await alice.request("file.upload.begin", args)
    offset = latest["offset"]
    while offset < len(data):
        await alice.request("file.upload.chunk", {"upload_id": latest["upload_id"],
                                                  "offset": offset,
                                                  "data": data[offset:offset + CHUNK_SIZE]})
        offset += CHUNK_SIZE
    done = await alice.request("file.upload.finish", {"upload_id": latest["upload_id"]})
    assert done["sha256"] == sha(data)


@pytest_twisted.ensureDeferred
async def test_cancelled_upload_retried_at_once_completes(server, tmp_path):
    """Cancel an upload with chunks in flight and start it again immediately: the new
    attempt resumes and the stored file is intact (stale chunks cannot break it)."""
    data = os.urandom(30 * CHUNK_SIZE)
    source = tmp_path / "again.bin"
    source.write_bytes(data)
    alice = session_for(server, "alice")
    await alice.start(register=True)
    for _ in range(3):
        first = Upload(alice, source, window=8)
        first.progress = lambda done, total, up=first: up.cancel() if done >= 4 * CHUNK_SIZE \
            else None
        with pytest.raises(CancelledError):
            await first.start()
    info = await Upload(alice, source, window=8).start()
    assert info["sha256"] == sha(data)
    dest = tmp_path / "check.bin"
    await Download(alice, info["file_id"], dest).start()
    assert dest.read_bytes() == data
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_upload_to_a_room_uses_the_given_client_msg_id(server, tmp_path):
    """Upload(room_id=..., client_msg_id=...) sends the message with that id, so a
    client can match its pending message with the msg event."""
    source = tmp_path / "note.txt"
    source.write_bytes(b"hello")
    alice = session_for(server, "alice")
    await alice.start(register=True)
    room = await alice.call("room.create", {"name": "r", "visibility": "private"})
    info = await Upload(alice, source, room_id=room["room_id"], client_msg_id="mine-1").start()
    page = await alice.call("msg.history", {"room_id": room["room_id"]})
    [message] = page["messages"]
    assert message["client_msg_id"] == "mine-1"
    assert message["msg_id"] == info["message"]["msg_id"]
    await alice.close()


@pytest_twisted.ensureDeferred
async def test_open_uploads_are_bounded_and_cancel_frees_one(server):
    """The 21st unfinished upload of a user is conflict with details.limit; resuming
    one of the 20 still works; file.upload.cancel frees a place (and is not_found for
    someone else's upload)."""
    alice, bob = await server.user("alice"), await server.user("bob")
    begun = [await alice.request("file.upload.begin", {"name": f"f{i}", "size": 10,
                                                       "sha256": sha(b"%d" % i)})
             for i in range(MAX_OPEN_UPLOADS)]
    with pytest.raises(ChatError) as caught:
        await alice.request("file.upload.begin", {"name": "one more", "size": 10,
                                                  "sha256": sha(b"more")})
    assert caught.value.code is ErrorCode.CONFLICT
    assert caught.value.details == {"limit": MAX_OPEN_UPLOADS}
    again = await alice.request("file.upload.begin", {"name": "f0", "size": 10,
                                                      "sha256": sha(b"0")})
    assert again["upload_id"] == begun[0]["upload_id"]
    with pytest.raises(ChatError) as foreign:
        await bob.request("file.upload.cancel", {"upload_id": begun[0]["upload_id"]})
    assert foreign.value.code is ErrorCode.NOT_FOUND
    assert await alice.request("file.upload.cancel", {"upload_id": begun[0]["upload_id"]}) == {}
    with pytest.raises(ChatError) as gone:
        await alice.request("file.upload.chunk", {"upload_id": begun[0]["upload_id"],
                                                  "offset": 0, "data": b"x"})
    assert gone.value.code is ErrorCode.NOT_FOUND
    await alice.request("file.upload.begin", {"name": "one more", "size": 10,
                                              "sha256": sha(b"more")})


@pytest_twisted.ensureDeferred
async def test_a_resumed_upload_counts_once_against_the_quota(tmp_path):
    """Beginning the same upload again (a resume) is not counted twice: with a
    1500-byte quota a 1000-byte upload can be begun, resumed and finished."""
    server = await start_server(test_config(tmp_path / "data", user_quota=1500))
    try:
        alice = await server.user("alice")
        data = os.urandom(1000)
        args = {"name": "r.bin", "size": len(data), "sha256": sha(data)}
        begin = await alice.request("file.upload.begin", args)
        await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                  "offset": 0, "data": data[:400]})
        again = await alice.request("file.upload.begin", args)
        assert (again["upload_id"], again["offset"]) == (begin["upload_id"], 400)
        await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                  "offset": 400, "data": data[400:]})
        done = await alice.request("file.upload.finish", {"upload_id": begin["upload_id"]})
        assert done["size"] == 1000
    finally:
        await server.stop()


class _ThreadRecordingHash:
    """A SHA-256 that notes which thread fed it."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.threads: list[int] = []

    def update(self, data: bytes) -> None:
        self.threads.append(threading.get_ident())
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


@pytest_twisted.ensureDeferred
async def test_upload_hashing_runs_in_worker_threads(server):
    """Chunks are hashed by the worker thread that writes them, never on the reactor
    thread, and the hash still verifies the upload."""
    alice = await server.user("alice")
    data = os.urandom(3 * CHUNK_SIZE + 5)
    begin = await alice.request("file.upload.begin", {"name": "h.bin", "size": len(data),
                                                      "sha256": sha(data)})
    recorder = _ThreadRecordingHash()
    server.service.files._uploads[begin["upload_id"]].hasher = recorder
    for offset in range(0, len(data), CHUNK_SIZE):
        await alice.request("file.upload.chunk", {"upload_id": begin["upload_id"],
                                                  "offset": offset,
                                                  "data": data[offset:offset + CHUNK_SIZE]})
    done = await alice.request("file.upload.finish", {"upload_id": begin["upload_id"]})
    assert done["sha256"] == sha(data)
    assert len(recorder.threads) == 4
    assert threading.main_thread().ident not in recorder.threads


@pytest_twisted.ensureDeferred
async def test_repeated_downloads_are_audited_once(server):
    """Fetching a file from offset 0 over and over writes one audit row, not one per
    request (the trail cannot be used to write rows without bound)."""
    alice = await server.user("alice")
    info = await raw_upload(alice, b"read me often")
    for _ in range(10):
        await alice.request("file.download", {"file_id": info["file_id"], "offset": 0,
                                              "length": 4})
    events = await server.service.store.file_events()
    assert [e["action"] for e in events] == ["upload", "download"]
