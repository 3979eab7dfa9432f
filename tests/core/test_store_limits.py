"""Per-user bounds and avatar rules in the store, run against SQLite and PostgreSQL
(the ``store`` fixture of test_store.py). PostgreSQL runs transactions in parallel,
so the concurrent tests there are what proves a check-and-reserve atomic."""

from __future__ import annotations

import hashlib

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList

from chatnet.errors import ChatError, ErrorCode
from chatnet.store import ChatStore, Database
from chatnet.store.files import ATTACHMENT, AVATAR, UploadRecord
from chatnet.store.users import ContactLimits
from tests.core.test_store import T0, expect_error, new_user


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wanted(store: ChatStore, user_id: int, content: str, size: int,
           purpose: str = ATTACHMENT, name: str = "f") -> UploadRecord:
    return UploadRecord(f"up-{store.ids.next_id()}", user_id, sha(content), name, size,
                        "application/octet-stream", T0, purpose)


async def add_file(store: ChatStore, user_id: int, content: str, size: int,
                   purpose: str = ATTACHMENT) -> str:
    """A finished file of ``size`` bytes (through begin and finish)."""
    upload, _ = await store.begin_upload(wanted(store, user_id, content, size, purpose),
                                         None, 100)
    finished = await store.finish_upload(upload, f"file-{store.ids.next_id()}", T0,
                                         store.ids.next_id())
    return finished.file.file_id


# -- uploads: open uploads and the quota -------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_open_uploads_are_bounded_but_resuming_one_is_not_a_new_one(store):
    """The user's max_open-th unfinished upload is refused with conflict {limit};
    beginning one of them again (resume) still works; finishing one frees a place."""
    alice = await new_user(store, "alice")
    begun = [await store.begin_upload(wanted(store, alice.id, f"c{i}", 10), None, 3)
             for i in range(3)]
    error = await expect_error(ErrorCode.CONFLICT, store.begin_upload(
        wanted(store, alice.id, "c3", 10), None, 3))
    assert error.details == {"limit": 3} and "3 unfinished uploads" in error.message
    again, resumed = await store.begin_upload(wanted(store, alice.id, "c0", 10), None, 3)
    assert resumed and again.upload_id == begun[0][0].upload_id
    await store.finish_upload(again, "f0", T0, store.ids.next_id())
    await store.begin_upload(wanted(store, alice.id, "c3", 10), None, 3)
    assert len(await store.open_uploads(alice.id)) == 3


@pytest_twisted.ensureDeferred
async def test_the_quota_counts_files_and_other_uploads_once(store):
    """Used = finished files + declared sizes of the other unfinished uploads; a
    resumed upload counts once, at its new size (not twice)."""
    alice = await new_user(store, "alice")
    await add_file(store, alice.id, "done", 300)
    await store.begin_upload(wanted(store, alice.id, "open", 200), 1000, 20)
    # Resuming "open" at the same size: 300 + 200 <= 1000 (counted once, not 700).
    await store.begin_upload(wanted(store, alice.id, "open", 200), 1000, 20)
    # Resuming it larger: 300 + 700 = 1000 fits exactly.
    await store.begin_upload(wanted(store, alice.id, "open", 700), 1000, 20)
    error = await expect_error(ErrorCode.TOO_LARGE, store.begin_upload(
        wanted(store, alice.id, "more", 1), 1000, 20))
    assert error.details == {"quota": 1000, "used": 1000}
    assert await store.bytes_used(alice.id) == 1000


def _begin(store: ChatStore, upload: UploadRecord, quota: int | None,
           max_open: int) -> Deferred[object]:
    return Deferred.fromCoroutine(store.begin_upload(upload, quota, max_open))


async def _outcomes(attempts: list[Deferred[object]]) -> tuple[int, list[ErrorCode]]:
    results = await DeferredList(attempts, consumeErrors=True)
    errors = [r.value.code for ok, r in results if not ok and isinstance(r.value, ChatError)]
    assert len(errors) == len([1 for ok, _ in results if not ok]), results
    return sum(1 for ok, _ in results if ok), errors


@pytest_twisted.ensureDeferred
async def test_concurrent_begins_cannot_both_pass_the_quota(store):
    """Twelve begins of 100 bytes at once against a 500-byte quota: exactly five are
    reserved, the rest are too_large (check and reserve are one transaction)."""
    alice = await new_user(store, "alice")
    passed, errors = await _outcomes([_begin(store, wanted(store, alice.id, f"q{i}", 100),
                                             500, 100) for i in range(12)])
    assert passed == 5 and errors == [ErrorCode.TOO_LARGE] * 7
    assert await store.bytes_used(alice.id) == 500


@pytest_twisted.ensureDeferred
async def test_concurrent_begins_cannot_both_pass_the_open_upload_limit(store):
    """Twelve new uploads begun at once with a limit of four: exactly four open."""
    alice = await new_user(store, "alice")
    passed, errors = await _outcomes([_begin(store, wanted(store, alice.id, f"o{i}", 1),
                                             None, 4) for i in range(12)])
    assert passed == 4 and errors == [ErrorCode.CONFLICT] * 8
    assert len(await store.open_uploads(alice.id)) == 4


# -- avatars ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_only_the_users_own_avatar_files_can_become_their_avatar(store):
    """set_avatar accepts an avatar file the user uploaded; an attachment (even their
    own) or someone else's avatar file is not_found and changes nothing."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    attachment = await add_file(store, bob.id, "xlsx", 10)
    theirs = await add_file(store, alice.id, "alice.png", 10, AVATAR)
    mine = await add_file(store, bob.id, "bob.png", 10, AVATAR)
    for file_id in (attachment, theirs, "nothing"):
        await expect_error(ErrorCode.NOT_FOUND, store.set_avatar(bob.id, file_id))
    assert (await store.user_by_id(bob.id)).avatar_file_id is None
    assert await store.set_avatar(bob.id, mine) == []
    assert (await store.user_by_id(bob.id)).avatar_file_id == mine
    assert await store.file_for(mine, alice.id) is not None  # readable by everyone
    assert await store.file_for(attachment, alice.id) is None


@pytest_twisted.ensureDeferred
async def test_avatar_files_are_retired_when_replaced(store):
    """Finishing an avatar keeps only it and the current picture; setting one deletes
    the others; clearing deletes all. The SHA-256s of what went are returned."""
    bob = await new_user(store, "bob")
    first = await add_file(store, bob.id, "p1", 10, AVATAR)
    await store.set_avatar(bob.id, first)
    second = await add_file(store, bob.id, "p2", 10, AVATAR)
    upload, _ = await store.begin_upload(wanted(store, bob.id, "p3", 10, AVATAR), None, 20)
    third = await store.finish_upload(upload, "third", T0, store.ids.next_id())
    assert third.retired == [sha("p2")]
    assert await store.file_for(second, bob.id) is None
    assert await store.set_avatar(bob.id, "third") == [sha("p1")]
    assert await store.file_for(first, bob.id) is None
    assert await store.set_avatar(bob.id, None) == [sha("p3")]
    assert not await store.blob_in_use(sha("p3"))


@pytest_twisted.ensureDeferred
async def test_migration_clears_avatars_that_are_attachments(engine):
    """A database from before 006 whose users point avatar_file_id at attachments
    (or at nothing) comes out with those avatars cleared: no attachment stays public."""
    db = Database(engine, reactor)
    try:
        assert await db.migrate(up_to=5) == 5

        def old_schema(t):  # what a chatnet of schema 5 could hold
            for uid, name, avatar in ((1, "alice", "salaries"), (2, "bob", "gone"),
                                      (3, "carol", None)):
                t.execute("INSERT INTO users (user_id, username, display_name, password_hash, "
                          "created_ts, avatar_file_id) VALUES (?, ?, ?, 'h', 0, ?)",
                          (uid, name, name, avatar))
            t.execute("INSERT INTO files (file_id, sha256, name, size, mime, uploader_id, ts) "
                      "VALUES ('salaries', 'abc', 'salaries.xlsx', 3, 'x', 1, 0)")

        await db.run_interaction("old_schema", old_schema)
        await db.migrate()
        store = ChatStore(db)
        for name in ("alice", "bob", "carol"):
            assert (await store.user_by_name(name)).avatar_file_id is None
        record = await store.file_for("salaries", 2)
        assert record is None  # bob never had access; the avatar no longer grants it
        assert (await store.file_for("salaries", 1)).purpose == ATTACHMENT
    finally:
        db.close()


# -- the download audit trail -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_download_is_recorded_once_per_period(store):
    """record_file_event(once_since=...) writes one row per (user, file) per period,
    however often it is called."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    file_id = await add_file(store, alice.id, "doc", 5)

    async def download(user_id: int, ts: int) -> bool:
        return await store.record_file_event(store.ids.next_id(), ts, user_id, file_id,
                                             "download", 5, once_since=ts - 3_600_000)

    assert await download(alice.id, T0 + 1) is True
    assert [await download(alice.id, T0 + 2 + i) for i in range(20)] == [False] * 20
    assert await download(bob.id, T0 + 3) is True
    assert await download(alice.id, T0 + 1 + 3_600_000) is True
    events = await store.file_events()
    assert [e["action"] for e in events] == ["upload", "download", "download", "download"]


# -- contacts ----------------------------------------------------------------------------------


def limits(contacts: int = 1000, outgoing: int = 100, ttl_ms: int = 10**12) -> ContactLimits:
    return ContactLimits(max_contacts=contacts, max_outgoing=outgoing, request_ttl_ms=ttl_ms)


async def users(store: ChatStore, *names: str) -> list:
    return [await new_user(store, name) for name in names]


@pytest_twisted.ensureDeferred
async def test_requests_waiting_are_bounded_per_requester(store):
    """A requester's max_outgoing-th waiting request is conflict {limit}; asking the
    same person again is not a new one; withdrawing one frees a place."""
    alice, b, c, d = await users(store, "alice", "b", "c", "d")
    rules = limits(outgoing=2)
    assert await store.contact_request(alice.id, b.id, None, T0, rules) == "pending"
    assert await store.contact_request(alice.id, c.id, None, T0, rules) == "pending"
    assert await store.contact_request(alice.id, c.id, None, T0, rules) == "repeated"
    error = await expect_error(ErrorCode.CONFLICT,
                               store.contact_request(alice.id, d.id, None, T0, rules))
    assert error.details == {"limit": 2}
    assert await store.contact_remove(alice.id, b.id)
    assert await store.contact_request(alice.id, d.id, None, T0, rules) == "pending"


@pytest_twisted.ensureDeferred
async def test_contacts_are_bounded_on_both_sides(store):
    """With max_contacts reached, a user can neither ask, accept, nor be accepted
    (conflict {limit}, naming whose limit it is); the requests stay for later."""
    alice, b, c, carol, erin = await users(store, "alice", "b", "c", "carol", "erin")
    rules = limits(contacts=2)
    await store.contact_request(alice.id, erin.id, None, T0, rules)
    for other in (b, c):
        await store.contact_request(alice.id, other.id, None, T0, rules)
        assert await store.contact_respond(other.id, alice.id, True, T0, rules)
    asking = await expect_error(ErrorCode.CONFLICT,
                                store.contact_request(alice.id, carol.id, None, T0, rules))
    assert asking.details == {"limit": 2} and "you already have 2 contacts" in asking.message
    assert await store.contact_request(carol.id, alice.id, None, T0, rules) == "pending"
    accepting = await expect_error(ErrorCode.CONFLICT,
                                   store.contact_respond(alice.id, carol.id, True, T0, rules))
    assert "you already have" in accepting.message
    crossed = await expect_error(ErrorCode.CONFLICT,
                                 store.contact_request(alice.id, carol.id, None, T0, rules))
    assert crossed.details == {"limit": 2}
    accepted = await expect_error(ErrorCode.CONFLICT,
                                  store.contact_respond(erin.id, alice.id, True, T0, rules))
    assert "the other user" in accepted.message
    entries = await store.contact_entries(alice.id, None, 10, 0)
    assert [(e.section, e.username) for e in entries] == [
        ("contacts", "b"), ("contacts", "c"), ("incoming", "carol"), ("outgoing", "erin")]


@pytest_twisted.ensureDeferred
async def test_requests_expire(store):
    """A request older than request_ttl is gone from the lists, cannot be accepted,
    and no longer takes one of the requester's places."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    rules = limits(outgoing=1, ttl_ms=1000)
    await store.contact_request(alice.id, bob.id, None, T0, rules)
    await expect_error(ErrorCode.CONFLICT,
                       store.contact_request(alice.id, carol.id, None, T0 + 1000, rules))
    assert await store.contact_entries(bob.id, None, 10, T0 + 1001 - 1000) == []
    assert await store.contact_respond(bob.id, alice.id, True, T0 + 1001, rules) is False
    assert await store.contact_request(alice.id, carol.id, None, T0 + 1001, rules) == "pending"


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_cannot_pass_the_limit(store):
    """Ten requests by one user at once against a limit of three: exactly three wait."""
    alice, *others = await users(store, "alice", *[f"u{i}" for i in range(10)])
    rules = limits(outgoing=3)
    passed, errors = await _outcomes([
        Deferred.fromCoroutine(store.contact_request(alice.id, other.id, None, T0, rules))
        for other in others])
    assert passed == 3 and errors == [ErrorCode.CONFLICT] * 7


@pytest_twisted.ensureDeferred
async def test_contact_entries_page_through_the_sections_in_order(store):
    """contact_entries continues after (section, username) across the three
    sections, so pages of any size cover the list exactly once."""
    me, *others = await users(store, "me", "a", "b", "c", "d", "e", "f")
    rules = limits()
    a, b, c, d, e, f = others
    for contact in (c, a):
        await store.contact_request(me.id, contact.id, None, T0, rules)
        await store.contact_respond(contact.id, me.id, True, T0, rules)
    for asker in (e, b):
        await store.contact_request(asker.id, me.id, None, T0, rules)
    for asked in (f, d):
        await store.contact_request(me.id, asked.id, None, T0, rules)
    whole = [("contacts", "a"), ("contacts", "c"), ("incoming", "b"), ("incoming", "e"),
             ("outgoing", "d"), ("outgoing", "f")]
    for size in (1, 2, 4, 6):
        seen, after = [], None
        while True:
            page = await store.contact_entries(me.id, after, size, 0)
            seen += [(x.section, x.username) for x in page]
            if len(page) < size:
                break
            after = (page[-1].section, page[-1].username)
        assert seen == whole
