"""The store (chatnet/store), every test run against SQLite and PostgreSQL.

The ``store`` and ``engine`` fixtures (conftest.py) are parametrised over both
engines: SQLite on a file in ``tmp_path`` and PostgreSQL in a schema of its own
(the ``postgres`` fixture skips when the server is unreachable unless
``CHATNET_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults

from chatnet.errors import ChatError, ErrorCode
from chatnet.store import ChatStore, Database, LimitReached, PostgresEngine, SqliteEngine
from chatnet.store.database import migrations
from chatnet.store.users import ContactLimits

T0 = 1_700_000_000_000
_cmids = itertools.count(1)


@dataclass(frozen=True)
class U:
    """A user made for a test."""

    id: int
    name: str


async def new_user(store: ChatStore, name: str, ts: int = T0) -> U:
    uid = store.ids.next_id()
    await store.create_user(uid, name, name.title(), f"hash-{name}", (), ts)
    return U(uid, name)


async def new_room(store: ChatStore, owner: U, *members: U, visibility: str = "public",
                   name: str = "room", topic: str = "", ts: int = T0) -> int:
    """A room of ``owner`` that ``members`` have joined."""
    room = await store.create_room(store.ids.next_id(), "group", name, topic, visibility,
                                   owner.id, ts)
    for member in members:
        await store.add_member(room.room_id, member.id, "member", ts)
    return room.room_id


def send(store: ChatStore, room_id: int, sender: U, body: str = "hello",
         client_msg_id: str | None = None, ts: int = T0, reply_to: int | None = None,
         mentions: list[str] | None = None, ttl: int | None = None) -> Deferred:
    """``store.send_message`` as a Deferred (so many can run at once)."""
    return Deferred.fromCoroutine(store.send_message(
        store.ids.next_id(), room_id, sender.id, sender.name, ts, body,
        client_msg_id or f"c{next(_cmids)}", reply_to, mentions, ttl))


async def expect_error(code: ErrorCode, coro) -> ChatError:
    with pytest.raises(ChatError) as info:
        await coro
    assert info.value.code is code, info.value
    return info.value


# -- migrations -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_migrate_again_is_a_no_op_that_keeps_data(store):
    """Re-running migrations changes nothing and loses nothing."""
    alice = await new_user(store, "alice")
    newest = migrations()[-1][0]
    assert await store.db.migrate() == newest
    assert await store.db.migrate() == newest
    assert (await store.user_by_name("alice")).user_id == alice.id
    rows = await store.db.run_interaction(
        "versions", lambda t: t.execute("SELECT version FROM schema_version").fetchall())
    assert sorted(r[0] for r in rows) == [v for v, _n, _s in migrations()]


@pytest_twisted.ensureDeferred
async def test_migrate_refuses_a_newer_schema(store):
    """A database from a newer chatnet is refused rather than altered."""
    await store.db.run_interaction("bump", lambda t: t.execute(
        "INSERT INTO schema_version (version, name) VALUES (?, ?)", (999, "999_future.sql")))
    with pytest.raises(RuntimeError, match="newer"):
        await store.db.migrate()


# -- users ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_users_are_created_and_found_by_name_and_id(store):
    """A created user reads back with every field, by name and by id."""
    uid = store.ids.next_id()
    await store.create_user(uid, "alice", "Alice A.", "phc$hash", ["admin"], T0)
    user = await store.user_by_name("alice")
    assert user is not None
    assert (user.user_id, user.username, user.display_name, user.password_hash) == \
        (uid, "alice", "Alice A.", "phc$hash")
    assert user.roles == ("admin",)
    assert (user.status_text, user.avatar_file_id, user.created_ts, user.last_seen,
            user.banned) == ("", None, T0, None, False)
    assert await store.user_by_id(uid) == user
    assert await store.user_by_name("nobody") is None
    assert await store.user_by_id(12345) is None


@pytest_twisted.ensureDeferred
async def test_a_taken_username_is_a_conflict(store):
    """Creating a second user with the same name → conflict, and the first is intact."""
    await new_user(store, "alice")
    await expect_error(ErrorCode.CONFLICT, store.create_user(
        store.ids.next_id(), "alice", "Other", "h", (), T0))
    assert len(await store.list_users()) == 1


@pytest_twisted.ensureDeferred
async def test_users_by_ids_and_list_users(store):
    """users_by_ids maps known ids (unknown left out); list_users is sorted by name."""
    bob = await new_user(store, "bob")
    alice = await new_user(store, "alice")
    found = await store.users_by_ids([alice.id, bob.id, 999])
    assert {k: v.username for k, v in found.items()} == {alice.id: "alice", bob.id: "bob"}
    assert [u.username for u in await store.list_users()] == ["alice", "bob"]


@pytest_twisted.ensureDeferred
async def test_search_users_by_name_or_display_name_case_insensitively(store):
    """search_users matches a substring of the username or display name, any case,
    and treats LIKE wildcards literally."""
    await new_user(store, "alice")
    await new_user(store, "bob")
    await store.update_profile((await store.user_by_name("bob")).user_id,
                               {"display_name": "Robert ALICEson"})
    await new_user(store, "a_b")
    assert [u.username for u in await store.search_users("ALI", 10)] == ["alice", "bob"]
    assert [u.username for u in await store.search_users("_", 10)] == ["a_b"]
    assert [u.username for u in await store.search_users("%", 10)] == []
    assert len(await store.search_users("", 2)) == 2


@pytest_twisted.ensureDeferred
async def test_profile_updates_and_last_seen(store):
    """update_profile changes only the allowed columns; set_last_seen records the time."""
    alice = await new_user(store, "alice")
    user = await store.update_profile(alice.id, {"display_name": "Al", "status_text": "busy",
                                                 "password_hash": "ignored"})
    assert (user.display_name, user.status_text, user.password_hash) == \
        ("Al", "busy", "hash-alice")
    await store.set_last_seen(alice.id, T0 + 5)
    assert (await store.user_by_id(alice.id)).last_seen == T0 + 5
    await store.set_roles(alice.id, ["admin", "admin"])
    assert (await store.user_by_id(alice.id)).roles == ("admin",)


@pytest_twisted.ensureDeferred
async def test_many_last_seen_writes_at_once_share_a_group_and_all_land(store):
    """Sessions ending together (a mass disconnect): their set_last_seen calls
    run as grouped transactions, each user's row locked first (the users table's
    half of a group's declared rows), and every time is stored."""
    users = [await new_user(store, f"user{i}") for i in range(6)]
    before = store.db.grouped_transactions
    await gatherResults([Deferred.fromCoroutine(store.set_last_seen(u.id, T0 + i))
                         for i, u in enumerate(reversed(users))])
    assert store.db.grouped_transactions - before == 2  # one alone, then five together
    stored = [(await store.user_by_id(u.id)).last_seen for u in reversed(users)]
    assert stored == [T0 + i for i in range(6)]


# -- tokens ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tokens_work_until_they_expire_and_are_then_gone(store):
    """A token maps to its user before expires_ts; at expiry it fails and is deleted."""
    alice = await new_user(store, "alice")
    await store.add_token("h1", alice.id, T0, T0 + 1000)
    assert await store.token_user("h1", T0 + 999) == alice.id
    assert await store.token_user("h1", T0 + 1000) is None
    assert await store.token_user("h1", T0) is None  # deleted, not merely expired
    assert await store.token_user("unknown", T0) is None


@pytest_twisted.ensureDeferred
async def test_revoke_one_token_and_password_change_revokes_all(store):
    """revoke_token removes one token; set_password_hash(revoke_tokens=True) removes all
    of that user's tokens and nobody else's."""
    alice = await new_user(store, "alice")
    bob = await new_user(store, "bob")
    for h in ("a1", "a2", "a3"):
        await store.add_token(h, alice.id, T0, T0 + 10**6)
    await store.add_token("b1", bob.id, T0, T0 + 10**6)
    await store.revoke_token("a1")
    assert await store.token_user("a1", T0) is None
    assert await store.token_user("a2", T0) == alice.id
    await store.set_password_hash(alice.id, "new", revoke_tokens=False)
    assert await store.token_user("a2", T0) == alice.id
    await store.set_password_hash(alice.id, "newer", revoke_tokens=True)
    assert await store.token_user("a2", T0) is None
    assert await store.token_user("a3", T0) is None
    assert await store.token_user("b1", T0) == bob.id
    assert (await store.user_by_id(alice.id)).password_hash == "newer"


# -- contacts --------------------------------------------------------------------------------

#: Contact limits for these tests: generous, and requests that never expire.
LIMITS = ContactLimits(max_contacts=1000, max_outgoing=100, request_ttl_ms=10**12)


async def contacts_of(store: ChatStore, user_id: int) -> tuple[list, list, list]:
    """The whole contact list as (contacts, incoming usernames, outgoing usernames)."""
    entries = await store.contact_entries(user_id, None, 10_000, 0)
    return ([e.user for e in entries if e.section == "contacts"],
            [e.username for e in entries if e.section == "incoming"],
            [e.username for e in entries if e.section == "outgoing"])


@pytest_twisted.ensureDeferred
async def test_contact_request_accept(store):
    """request → pending on both sides' lists; accept → contacts both ways."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    assert await store.contact_request(alice.id, bob.id, "hi", T0, LIMITS) == "pending"
    assert await store.contact_request(alice.id, bob.id, "again", T0, LIMITS) == "repeated"
    assert await contacts_of(store, alice.id) == ([], [], ["bob"])
    assert await contacts_of(store, bob.id) == ([], ["alice"], [])
    assert await store.contact_respond(bob.id, alice.id, True, T0, LIMITS) is True
    a_contacts, a_in, a_out = await contacts_of(store, alice.id)
    b_contacts, b_in, b_out = await contacts_of(store, bob.id)
    assert [u.username for u in a_contacts] == ["bob"] and a_in == a_out == []
    assert [u.username for u in b_contacts] == ["alice"] and b_in == b_out == []
    assert await store.contact_ids(alice.id) == {bob.id}
    assert await store.contact_ids(bob.id) == {alice.id}
    assert await store.contact_request(alice.id, bob.id, None, T0, LIMITS) == "already"


@pytest_twisted.ensureDeferred
async def test_crossed_requests_become_contacts(store):
    """If the other side had asked already, a request accepts at once."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    await store.contact_request(alice.id, bob.id, None, T0, LIMITS)
    assert await store.contact_request(bob.id, alice.id, None, T0, LIMITS) == "accepted"
    assert await store.contact_ids(alice.id) == {bob.id}
    assert await store.contact_ids(bob.id) == {alice.id}


@pytest_twisted.ensureDeferred
async def test_contact_decline_and_respond_without_request(store):
    """Declining removes the request; responding to no request returns False;
    a requester cannot accept their own request."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    assert await store.contact_respond(bob.id, alice.id, True, T0, LIMITS) is False
    await store.contact_request(alice.id, bob.id, None, T0, LIMITS)
    assert await store.contact_respond(alice.id, bob.id, True, T0, LIMITS) is False
    assert await store.contact_respond(bob.id, alice.id, False, T0, LIMITS) is True
    assert await contacts_of(store, alice.id) == ([], [], [])
    assert await contacts_of(store, bob.id) == ([], [], [])


@pytest_twisted.ensureDeferred
async def test_contact_remove_both_directions_and_withdraw(store):
    """contact_remove ends a contact for both sides, or withdraws a request."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    await store.contact_request(alice.id, bob.id, None, T0, LIMITS)
    await store.contact_respond(bob.id, alice.id, True, T0, LIMITS)
    await store.contact_request(alice.id, carol.id, None, T0, LIMITS)
    assert await store.contact_remove(bob.id, alice.id) is True
    assert await store.contact_ids(alice.id) == set()
    assert await store.contact_ids(bob.id) == set()
    assert await store.contact_remove(alice.id, carol.id) is True
    assert await contacts_of(store, carol.id) == ([], [], [])
    assert await store.contact_remove(alice.id, bob.id) is False


# -- rooms -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_room_invites_the_listed_users(store):
    """The creator is owner and only member; the listed users (not the creator) are
    invited, by the creator, at the creation time; the room reads back whole."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    room = await store.create_room(store.ids.next_id(), "group", "General", "talk", "private",
                                   alice.id, T0, invitee_ids=[bob.id, carol.id, alice.id,
                                                              bob.id])
    expected = {
        "room_id": room.room_id, "kind": "group", "name": "General", "topic": "talk",
        "visibility": "private", "owner": "alice", "members_count": 1, "created_ts": T0}
    wire = room.to_wire()
    assert {k: wire.get(k) for k in expected} == expected
    assert room.last_seq == 0
    assert await store.role_of(room.room_id, alice.id) == "owner"
    assert await store.role_of(room.room_id, bob.id) is None
    assert [m.username for m in await store.members(room.room_id)] == ["alice"]
    assert await store.rooms_of(bob.id) == []
    assert await store.has_invite(room.room_id, bob.id)
    assert not await store.has_invite(room.room_id, alice.id)
    [invite] = await store.invites_of(carol.id, since=0)
    assert (invite.room.room_id, invite.by, invite.ts) == (room.room_id, "alice", T0)
    assert invite.to_wire() == {"room": room.to_wire(), "by": "alice", "ts": T0}
    assert (room.room_id, carol.id) not in await store.all_memberships()


@pytest_twisted.ensureDeferred
async def test_direct_room_is_unique_per_pair(store):
    """open_direct returns the same room for (a, b) and (b, a); it is created once."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    room, created = await store.open_direct(store.ids.next_id(), alice.id, bob.id, T0)
    assert created and room.kind == "direct" and room.members_count == 2
    again, created_again = await store.open_direct(store.ids.next_id(), bob.id, alice.id, T0)
    assert again.room_id == room.room_id and not created_again
    other, _ = await store.open_direct(store.ids.next_id(), alice.id, carol.id, T0)
    assert other.room_id != room.room_id


@pytest_twisted.ensureDeferred
async def test_direct_room_opened_concurrently_is_still_one_room(store):
    """Twenty simultaneous open_direct calls for one pair all return the same room."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    results = await gatherResults([
        Deferred.fromCoroutine(store.open_direct(store.ids.next_id(), *pair, T0))
        for pair in [(alice.id, bob.id), (bob.id, alice.id)] * 10])
    assert len({room.room_id for room, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(await store.rooms_of(alice.id)) == 1


@pytest_twisted.ensureDeferred
async def test_add_member_consumes_the_invite_and_starts_read_at_present(store):
    """add_member adds once (False the second time), removes the invite, and starts the
    new member's read position at the room's last seq."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, visibility="private")
    for _ in range(3):
        await send(store, room_id, alice)
    await store.add_invite(room_id, bob.id, alice.id, T0)
    assert await store.has_invite(room_id, bob.id)
    assert await store.add_member(room_id, bob.id, "member", T0) is True
    assert not await store.has_invite(room_id, bob.id)
    assert await store.add_member(room_id, bob.id, "member", T0) is False
    [(_room, role, read_seq)] = await store.rooms_of(bob.id)
    assert (role, read_seq) == ("member", 3)


@pytest_twisted.ensureDeferred
async def test_owner_leaving_hands_the_room_to_a_moderator_first(store):
    """When the owner leaves, a moderator inherits before any (older) member."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    room_id = await new_room(store, alice, bob)
    await store.add_member(room_id, carol.id, "member", T0 + 10)
    await store.set_role(room_id, carol.id, "moderator", alice.id)
    assert await store.remove_member(room_id, alice.id) == "carol"
    room = await store.room(room_id)
    assert room.owner == "carol" and room.members_count == 2
    assert await store.role_of(room_id, carol.id) == "owner"
    assert await store.role_of(room_id, alice.id) is None


@pytest_twisted.ensureDeferred
async def test_owner_leaving_without_moderators_hands_to_longest_member(store):
    """Without moderators, the longest-standing member inherits; a member leaving moves
    nothing; the last one leaving leaves no heir."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    room_id = await new_room(store, alice)
    await store.add_member(room_id, carol.id, "member", T0 + 5)
    await store.add_member(room_id, bob.id, "member", T0 + 9)
    assert await store.remove_member(room_id, alice.id) == "carol"
    assert await store.remove_member(room_id, bob.id) is None
    assert await store.remove_member(room_id, carol.id) is None
    assert await store.members(room_id) == []


@pytest_twisted.ensureDeferred
async def test_set_role_owner_moves_ownership(store):
    """Giving ``owner`` moves ownership; the old owner becomes a moderator."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    await store.set_role(room_id, bob.id, "owner", alice.id)
    assert await store.role_of(room_id, bob.id) == "owner"
    assert await store.role_of(room_id, alice.id) == "moderator"
    assert (await store.room(room_id)).owner == "bob"


@pytest_twisted.ensureDeferred
async def test_update_room_and_directory(store):
    """update_room changes name/topic; the directory lists public group rooms matching
    name or topic, case-insensitively, and never private or direct ones."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    public = await new_room(store, alice, name="Lobby")
    await new_room(store, alice, name="Secret lobby", visibility="private")
    await store.open_direct(store.ids.next_id(), alice.id, bob.id, T0)
    updated = await store.update_room(public, {"topic": "Welcome DESK", "owner_id": bob.id})
    assert (updated.name, updated.topic, updated.owner) == ("Lobby", "Welcome DESK", "alice")
    assert [r.room_id for r in await store.directory("")] == [public]
    assert [r.room_id for r in await store.directory("LOB")] == [public]
    assert [r.room_id for r in await store.directory("desk")] == [public]
    assert await store.directory("nothing") == []


@pytest_twisted.ensureDeferred
async def test_delete_room_removes_it_everywhere(store):
    """A deleted room is gone from lookups, lists, the directory and memberships, and
    its messages' content is erased."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    await send(store, room_id, alice, "secret words")
    await store.delete_room(room_id)
    assert await store.room(room_id) is None
    assert await store.rooms_of(bob.id) == []
    assert await store.directory("") == []
    assert await store.all_memberships() == []
    assert await store.role_of(room_id, alice.id) is None
    bodies = await store.db.run_interaction("bodies", lambda t: t.execute(
        "SELECT body FROM messages WHERE room_id = ?", (room_id,)).fetchall())
    assert bodies == [("",)]


@pytest_twisted.ensureDeferred
async def test_read_position_moves_forward_only_and_is_capped(store):
    """set_read moves forward (never back), caps at last_seq, None when unchanged."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    for _ in range(5):
        await send(store, room_id, alice)
    assert await store.set_read(room_id, bob.id, 3) == 3
    assert await store.set_read(room_id, bob.id, 2) is None
    assert await store.set_read(room_id, bob.id, 3) is None
    assert await store.set_read(room_id, bob.id, 99) == 5
    [(_room, _role, read_seq)] = await store.rooms_of(bob.id)
    assert read_seq == 5


@pytest_twisted.ensureDeferred
async def test_rooms_members_and_directory_page_in_a_stable_order(store):
    """rooms_of pages by room id, members by username, directory by name then id;
    ``after`` continues where the previous page ended."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    rooms = [await new_room(store, alice, name=name) for name in ("b", "a", "c", "a")]
    assert [r.room_id for r, _role, _read in await store.rooms_of(alice.id)] == sorted(rooms)
    first = await store.rooms_of(alice.id, limit=2)
    rest = await store.rooms_of(alice.id, after=first[-1][0].room_id, limit=10)
    assert [r.room_id for r, _, _ in first + rest] == sorted(rooms)
    await store.add_member(rooms[0], carol.id, "member", T0)
    await store.add_member(rooms[0], bob.id, "member", T0)
    page = await store.members(rooms[0], limit=2)
    assert [m.username for m in page] == ["alice", "bob"]
    assert [m.username for m in await store.members(rooms[0], after="bob")] == ["carol"]
    directory = await store.directory("", limit=3)
    assert [r.name for r in directory] == ["a", "a", "b"]
    assert [directory[0].room_id, directory[1].room_id] == sorted([rooms[1], rooms[3]])
    more = await store.directory("", limit=3, after=(directory[1].name, directory[1].room_id))
    assert [r.name for r in more] == ["b", "c"]


@pytest_twisted.ensureDeferred
async def test_rooms_per_user_limit_holds_under_concurrent_joins(store):
    """With max_rooms=5, twenty joins of one user to twenty rooms at once leave them
    in exactly 5 rooms; the others raise LimitReached and change nothing."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    rooms = [await new_room(store, alice) for _ in range(20)]
    results = await DeferredList([
        Deferred.fromCoroutine(store.add_member(room_id, bob.id, "member", T0, max_rooms=5))
        for room_id in rooms], consumeErrors=True)
    joined = [ok for ok, value in results if ok]
    refused = [value.value for ok, value in results if not ok]
    assert len(joined) == 5 and all(joined)
    assert len(refused) == 15
    assert all(isinstance(e, LimitReached) and (e.what, e.user_id, e.limit) ==
               ("rooms", bob.id, 5) for e in refused)
    assert await store.room_count(bob.id) == 5
    # Already a member: no limit applies, nothing changes.
    member_of = [r.room_id for r, _, _ in await store.rooms_of(bob.id)]
    assert await store.add_member(member_of[0], bob.id, "member", T0, max_rooms=5) is False


@pytest_twisted.ensureDeferred
async def test_create_room_and_open_direct_respect_max_rooms(store):
    """create_room refuses an owner at the limit; open_direct refuses an opener at the
    limit but returns a room that exists; a direct room counts only for whoever
    opened it, so opening one with a full user works and does not count for them."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    await new_room(store, alice)
    dm, _ = await store.open_direct(store.ids.next_id(), alice.id, bob.id, T0, max_rooms=2)
    with pytest.raises(LimitReached) as full:
        await store.create_room(store.ids.next_id(), "group", "x", "", "public", alice.id, T0,
                                max_rooms=2)
    assert (full.value.what, full.value.user_id) == ("rooms", alice.id)
    theirs, created = await store.open_direct(store.ids.next_id(), carol.id, alice.id, T0,
                                              max_rooms=2)
    assert created and theirs.kind == "direct"
    dave = await new_user(store, "dave")
    with pytest.raises(LimitReached) as self_full:
        await store.open_direct(store.ids.next_id(), alice.id, dave.id, T0, max_rooms=2)
    assert self_full.value.user_id == alice.id
    mine, created = await store.open_direct(store.ids.next_id(), alice.id, carol.id, T0,
                                            max_rooms=2)
    assert (mine.room_id, created) == (theirs.room_id, False)
    again, created = await store.open_direct(store.ids.next_id(), bob.id, alice.id, T0,
                                             max_rooms=2)
    assert (again.room_id, created) == (dm.room_id, False)
    assert await store.room_count(alice.id) == 2
    assert await store.room_count(carol.id) == 1


@pytest_twisted.ensureDeferred
async def test_pending_invites_per_inviter_are_bounded_and_expire(store):
    """An inviter's pending invitations are capped (create_room and add_invite, all
    or nothing; renewing one does not count twice); expired ones do not count,
    are not honoured and are removed; remove_invite says whether one was live."""
    alice, bob, carol, dave = [await new_user(store, n) for n in ("alice", "bob", "carol",
                                                                   "dave")]
    room = await store.create_room(store.ids.next_id(), "group", "r", "", "private", alice.id,
                                   T0, invitee_ids=[bob.id, carol.id], max_invites=2)
    with pytest.raises(LimitReached) as full:
        await store.add_invite(room.room_id, dave.id, alice.id, T0 + 1, max_invites=2)
    assert (full.value.what, full.value.user_id, full.value.limit) == ("invites", alice.id, 2)
    await store.add_invite(room.room_id, bob.id, alice.id, T0 + 2, max_invites=2)
    with pytest.raises(LimitReached):
        await store.create_room(store.ids.next_id(), "group", "s", "", "public", alice.id, T0,
                                invitee_ids=[dave.id], max_invites=2)
    assert [r.name for r, _, _ in await store.rooms_of(alice.id)] == ["r"]
    # Carol's invitation (T0) has expired at since=T0+1; bob's renewed one (T0+2) has not.
    assert not await store.has_invite(room.room_id, carol.id, since=T0 + 1)
    assert await store.has_invite(room.room_id, bob.id, since=T0 + 1)
    await store.add_invite(room.room_id, dave.id, alice.id, T0 + 3, max_invites=2,
                           since=T0 + 1)
    assert await store.invites_of(carol.id, since=T0 + 1) == []
    assert await store.remove_invite(room.room_id, dave.id, since=T0 + 1) is True
    assert await store.remove_invite(room.room_id, dave.id, since=T0 + 1) is False
    assert [i.room.room_id for i in await store.invites_of(bob.id, since=T0 + 1)] == \
        [room.room_id]


@pytest_twisted.ensureDeferred
async def test_invites_of_pages_and_skips_deleted_rooms(store):
    """invites_of lists a user's invitations by room id, a page at a time; those to
    deleted rooms are gone."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    rooms = []
    for n in range(5):
        room = await store.create_room(store.ids.next_id(), "group", f"r{n}", "", "private",
                                       alice.id, T0 + n, invitee_ids=[bob.id])
        rooms.append(room.room_id)
    await store.delete_room(rooms[2])
    first = await store.invites_of(bob.id, since=0, limit=2)
    rest = await store.invites_of(bob.id, since=0, after=first[-1].room.room_id)
    assert [i.room.room_id for i in first + rest] == [r for r in rooms if r != rooms[2]]
    assert [i.ts for i in first] == [T0, T0 + 1]


# -- messages --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_seq_is_gapless_under_200_concurrent_sends(store):
    """200 sends at once to one room get seqs exactly 1..200 (the real race check)."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    results = await gatherResults([
        send(store, room_id, alice if i % 2 else bob, f"m{i}") for i in range(200)])
    seqs = sorted(r.message["seq"] for r in results)
    assert seqs == list(range(1, 201))
    assert len({r.message["msg_id"] for r in results}) == 200
    assert (await store.room(room_id)).last_seq == 200
    page, has_more = await store.history(room_id, None, None, 200, T0)
    assert [m["seq"] for m in page] == list(range(1, 201)) and not has_more
    by_seq = {r.message["seq"]: r.message["body"] for r in results}
    assert [m["body"] for m in page] == [by_seq[s] for s in range(1, 201)]


@pytest_twisted.ensureDeferred
async def test_seqs_are_per_room_under_concurrency(store):
    """Concurrent sends to two rooms number each room independently from 1."""
    alice = await new_user(store, "alice")
    one, two = await new_room(store, alice), await new_room(store, alice)
    results = await gatherResults([send(store, one if i % 3 else two, alice)
                                   for i in range(90)])
    for room_id, count in ((one, 60), (two, 30)):
        seqs = sorted(r.message["seq"] for r in results if r.message["room_id"] == room_id)
        assert seqs == list(range(1, count + 1))


@pytest_twisted.ensureDeferred
async def test_send_is_idempotent_on_sender_and_client_msg_id(store):
    """Re-sending a client_msg_id returns the first message and stores nothing new;
    another sender may use the same id; the same id in another room is a conflict."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    first = await send(store, room_id, alice, "one", client_msg_id="x")
    again = await send(store, room_id, alice, "one (resent)", client_msg_id="x")
    assert not first.duplicate and again.duplicate
    assert again.message["msg_id"] == first.message["msg_id"]
    assert again.message["seq"] == 1 and again.message["body"] == "one"
    bobs = await send(store, room_id, bob, "two", client_msg_id="x")
    assert not bobs.duplicate and bobs.message["seq"] == 2
    other = await new_room(store, alice)
    await expect_error(ErrorCode.CONFLICT, send(store, other, alice, client_msg_id="x"))
    assert (await store.room(room_id)).last_seq == 2
    assert (await store.room(other)).last_seq == 0


@pytest_twisted.ensureDeferred
async def test_concurrent_resends_store_one_message(store):
    """Ten simultaneous sends with one client_msg_id store one message; every caller gets
    it back, none fails, and no seq is used up."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    outcomes = await DeferredList(
        [send(store, room_id, alice, "once", client_msg_id="same") for _ in range(10)],
        consumeErrors=True)
    failures = [r for ok, r in outcomes if not ok]
    assert failures == [], [f.getErrorMessage() for f in failures]
    results = [r for _ok, r in outcomes]
    assert len({r.message["msg_id"] for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert (await store.room(room_id)).last_seq == 1
    page, _ = await store.history(room_id, None, None, 50, T0)
    assert [m["body"] for m in page] == ["once"]


@pytest_twisted.ensureDeferred
async def test_send_checks_membership_and_reply_to(store):
    """Non-members get not_found; reply_to must be a message of the same room; the
    sender's read position follows their message."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice)
    other = await new_room(store, alice)
    await expect_error(ErrorCode.NOT_FOUND, send(store, room_id, bob))
    await expect_error(ErrorCode.NOT_FOUND, send(store, 424242, alice))
    elsewhere = (await send(store, other, alice)).message["msg_id"]
    await expect_error(ErrorCode.BAD_REQUEST, send(store, room_id, alice, reply_to=elsewhere))
    first = (await send(store, room_id, alice, "first")).message
    reply = (await send(store, room_id, alice, "re", reply_to=first["msg_id"],
                        mentions=["bob"])).message
    assert reply["reply_to"] == first["msg_id"] and reply["mentions"] == ["bob"]
    [stored], _ = await store.history(room_id, 2, None, 10, T0)
    assert stored["msg_id"] == first["msg_id"]
    page, _ = await store.history(room_id, None, 1, 10, T0)
    assert page[0]["reply_to"] == first["msg_id"] and page[0]["mentions"] == ["bob"]
    rooms = {r.room_id: read for r, _role, read in await store.rooms_of(alice.id)}
    assert rooms[room_id] == 2


@pytest_twisted.ensureDeferred
async def test_history_pages_backwards_and_forwards(store):
    """history pages back from the newest (before_seq) and forward (after_seq), always
    oldest first, with has_more telling whether the direction of travel has more."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    for i in range(25):
        await send(store, room_id, alice, f"m{i + 1}")

    async def page(before=None, after=None, limit=10):
        messages, more = await store.history(room_id, before, after, limit, T0)
        return [m["seq"] for m in messages], more

    assert await page() == (list(range(16, 26)), True)
    assert await page(before=16) == (list(range(6, 16)), True)
    assert await page(before=6) == ([1, 2, 3, 4, 5], False)
    assert await page(after=0) == (list(range(1, 11)), True)
    assert await page(after=20) == ([21, 22, 23, 24, 25], False)
    assert await page(after=25) == ([], False)
    assert await page(after=5, before=9) == ([6, 7, 8], False)
    assert await page(limit=25) == (list(range(1, 26)), False)


@pytest_twisted.ensureDeferred
async def test_reactions_are_aggregated_per_emoji(store):
    """Reactions come back as {emoji: [username]}; reacting twice changes nothing;
    removing takes the user out."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    msg = (await send(store, room_id, alice)).message
    mid = msg["msg_id"]
    assert await store.react(room_id, mid, alice.id, "👍", True, T0, T0) is True
    assert await store.react(room_id, mid, bob.id, "👍", True, T0 + 1, T0) is True
    assert await store.react(room_id, mid, alice.id, "❤", True, T0 + 2, T0) is True
    assert await store.react(room_id, mid, alice.id, "👍", True, T0 + 3, T0) is False
    stored = await store.message(room_id, mid, T0)
    assert stored["reactions"] == {"👍": ["alice", "bob"], "❤": ["alice"]}
    assert await store.react(room_id, mid, alice.id, "👍", False, T0, T0) is True
    assert await store.react(room_id, mid, alice.id, "👍", False, T0, T0) is False
    page, _ = await store.history(room_id, None, None, 10, T0)
    assert page[0]["reactions"] == {"👍": ["bob"], "❤": ["alice"]}
    await expect_error(ErrorCode.NOT_FOUND,
                       store.react(room_id, 999, alice.id, "👍", True, T0, T0))


@pytest_twisted.ensureDeferred
async def test_edit_rules(store):
    """Only the sender edits, only visible messages; edits set edited_ts."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    mid = (await send(store, room_id, alice, "typo")).message["msg_id"]
    await store.edit_message(room_id, mid, alice.id, "fixed", T0 + 7, T0)
    stored = await store.message(room_id, mid, T0)
    assert (stored["body"], stored["edited_ts"]) == ("fixed", T0 + 7)
    await expect_error(ErrorCode.FORBIDDEN,
                       store.edit_message(room_id, mid, bob.id, "hijack", T0, T0))
    other = await new_room(store, alice)
    await expect_error(ErrorCode.NOT_FOUND,
                       store.edit_message(other, mid, alice.id, "wrong room", T0, T0))
    await store.delete_message(room_id, mid, alice.id, False, T0)
    await expect_error(ErrorCode.NOT_FOUND,
                       store.edit_message(room_id, mid, alice.id, "too late", T0, T0))


@pytest_twisted.ensureDeferred
async def test_delete_rules(store):
    """Senders delete their own; moderators delete any; others are forbidden; deleted
    messages vanish from history with their reactions and content."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    room_id = await new_room(store, alice, bob, carol)
    by_bob = (await send(store, room_id, bob, "bob's")).message["msg_id"]
    by_carol = (await send(store, room_id, carol, "carol's")).message["msg_id"]
    await store.react(room_id, by_bob, carol.id, "👍", True, T0, T0)
    await expect_error(ErrorCode.FORBIDDEN,
                       store.delete_message(room_id, by_bob, carol.id, False, T0))
    await store.delete_message(room_id, by_bob, bob.id, False, T0)
    await store.delete_message(room_id, by_carol, alice.id, True, T0)
    assert await store.message(room_id, by_bob, T0) is None
    assert (await store.history(room_id, None, None, 10, T0))[0] == []
    await expect_error(ErrorCode.NOT_FOUND,
                       store.delete_message(room_id, by_bob, bob.id, False, T0))
    rows = await store.db.run_interaction("raw", lambda t: t.execute(
        "SELECT m.body, (SELECT COUNT(*) FROM reactions r WHERE r.msg_id = m.msg_id) "
        "FROM messages m WHERE m.room_id = ?", (room_id,)).fetchall())
    assert rows == [("", 0), ("", 0)]


@pytest_twisted.ensureDeferred
async def test_ttl_messages_hide_at_expiry_and_expire_due_erases_them(store):
    """A ttl message is visible until ts + ttl, hidden from then on (history, search,
    message), and expire_due erases it exactly once."""
    alice = await new_user(store, "alice")
    room_id = await new_room(store, alice)
    keep = (await send(store, room_id, alice, "keep me", ts=T0)).message["msg_id"]
    burn = (await send(store, room_id, alice, "burn me", ts=T0, ttl=10)).message
    assert burn["ttl"] == 10
    expires = T0 + 10_000
    assert await store.next_expiry() == expires
    before = expires - 1
    assert [m["msg_id"] for m in (await store.history(room_id, None, None, 10, before))[0]] \
        == [keep, burn["msg_id"]]
    assert [m["msg_id"] for m in (await store.search(alice.id, "burn", None, None, None, None,
                                                     10, before))[0]] == [burn["msg_id"]]
    assert await store.expire_due(before) == []
    assert [m["msg_id"] for m in (await store.history(room_id, None, None, 10, expires))[0]] \
        == [keep]
    assert await store.search(alice.id, "burn", None, None, None, None, 10, expires) == (
        [], False)
    assert await store.message(room_id, burn["msg_id"], expires) is None
    await expect_error(ErrorCode.NOT_FOUND,
                       store.react(room_id, burn["msg_id"], alice.id, "x", True, T0, expires))
    assert await store.expire_due(expires) == [(room_id, burn["msg_id"])]
    assert await store.expire_due(expires + 5000) == []
    assert await store.next_expiry() is None
    body = await store.db.run_interaction("raw", lambda t: t.scalar(
        "SELECT body FROM messages WHERE msg_id = ?", (burn["msg_id"],)))
    assert body == ""


@pytest_twisted.ensureDeferred
async def test_search_only_in_own_rooms_with_filters(store):
    """Search finds visible messages only in the searcher's rooms, case-insensitively,
    equally relevant ones newest first, filtered by room, sender and time; wildcards
    and operators are not syntax (``%`` alone matches nothing, not everything)."""
    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    shared = await new_room(store, alice, bob)
    private = await new_room(store, carol)
    m1 = (await send(store, shared, alice, "Deploy on Friday", ts=T0 + 1)).message["msg_id"]
    m2 = (await send(store, shared, bob, "no deploy please", ts=T0 + 2)).message["msg_id"]
    await send(store, private, carol, "deploy secrets", ts=T0 + 3)
    m4 = (await send(store, shared, bob, "100% sure", ts=T0 + 4)).message["msg_id"]

    async def ids(user, query, **kw):
        args = {"room_id": None, "sender": None, "since": None, "until": None, **kw}
        found, _more = await store.search(user.id, query, args["room_id"], args["sender"],
                                          args["since"], args["until"], 50, T0)
        return [m["msg_id"] for m in found]

    assert await ids(alice, "DEPLOY") == [m2, m1]
    assert len(await ids(carol, "deploy")) == 1
    assert m1 not in await ids(carol, "deploy")
    assert await ids(alice, "deploy", sender="bob") == [m2]
    assert await ids(alice, "deploy", since=T0 + 2) == [m2]
    assert await ids(alice, "deploy", until=T0 + 2) == [m1]
    assert await ids(alice, "deploy", room_id=private) == []
    assert await ids(alice, "%") == []
    assert await ids(alice, "_") == []
    assert await ids(alice, "100%") == [m4]
    assert await ids(alice, 'deploy" OR "secrets') == []
    assert await ids(alice, "deploy*") == [m2, m1]


# -- group commit ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sends_that_arrive_together_commit_together(store, engine):
    """50 sends made at once: the first runs alone, the 49 that arrived while it ran
    share the next transaction; seqs follow arrival order, and every acknowledged
    message is in the database as another connection sees it."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    before = store.db.grouped_transactions
    sends = [send(store, room_id, (alice, bob)[i % 2], f"m{i}") for i in range(50)]
    results = await gatherResults(sends)
    assert [r.message["seq"] for r in results] == list(range(1, 51))
    assert store.db.grouped_transactions - before == 2
    other = Database(engine, reactor)
    try:
        rows = await other.run_interaction("count", lambda t: t.execute(
            "SELECT body FROM messages WHERE room_id = ? ORDER BY seq", (room_id,)).fetchall())
    finally:
        other.close()
    assert [r[0] for r in rows] == [f"m{i}" for i in range(50)]


@pytest_twisted.ensureDeferred
async def test_a_group_whose_calls_all_succeed_takes_no_savepoint(store):
    """Nine sends grouped: they run in the group's transaction without a
    savepoint each (two statements fewer per send: a third of a send's round
    trips to PostgreSQL); every send is stored."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    engine = store.db.engine
    statements: list[str] = []
    convert = engine.convert

    def recording(sql: str) -> str:
        statements.append(sql)
        return convert(sql)

    engine.convert = recording
    try:
        results = await gatherResults([send(store, room_id, alice, f"m{i}") for i in range(10)])
    finally:
        del engine.convert
    assert [r.message["seq"] for r in results] == list(range(1, 11))
    assert [s for s in statements if "SAVEPOINT" in s or "ROLLBACK" in s] == []


@pytest_twisted.ensureDeferred
async def test_a_call_that_fails_in_a_group_is_rolled_back_alone(store):
    """In one grouped transaction: a send to a room that is not there, a reaction to
    a message that is not there, and a call that writes and then raises all fail
    with their own errors and leave nothing behind; the sends and the read
    position around them are stored, with no seq used up."""
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_room(store, alice, bob)
    first = send(store, room_id, alice, "first")  # runs alone; the rest wait for it

    def writes_then_fails(t):
        t.execute("UPDATE rooms SET last_seq = last_seq + 100 WHERE room_id = ?", (room_id,))
        raise ChatError(ErrorCode.BAD_REQUEST, "changed my mind")

    outcomes = await DeferredList([
        send(store, room_id, alice, "second"),
        send(store, room_id + 999, alice, "nowhere"),
        Deferred.fromCoroutine(store.react(room_id, 424242, bob.id, "👍", True, T0, T0)),
        store.db.run_grouped("writes_then_fails", (("rooms", room_id),), writes_then_fails),
        send(store, room_id, bob, "third"),
        Deferred.fromCoroutine(store.set_read(room_id, alice.id, 3)),
    ], consumeErrors=True)
    await first
    assert store.db.grouped_calls - store.db.grouped_transactions >= 5  # one group of 6
    ok = [success for success, _value in outcomes]
    assert ok == [True, False, False, False, True, True]
    codes = [value.value.code for success, value in outcomes if not success]
    assert codes == [ErrorCode.NOT_FOUND, ErrorCode.NOT_FOUND, ErrorCode.BAD_REQUEST]
    assert outcomes[0][1].message["seq"] == 2 and outcomes[4][1].message["seq"] == 3
    assert outcomes[5][1] == 3
    last = await store.db.run_interaction("last", lambda t: t.scalar(
        "SELECT last_seq FROM rooms WHERE room_id = ?", (room_id,)))
    assert last == 3


def _crossing(first: int, second: int, mine: threading.Event, theirs: threading.Event):
    """Two transaction functions for one side of a crossing: the first writes room
    ``first``'s row, says so (``mine``) and waits a moment for the other side to
    have written its first row (``theirs``); the second writes room ``second``'s."""
    def touch(t, room_id):
        t.execute("UPDATE rooms SET last_seq = last_seq WHERE room_id = ?", (room_id,))

    def one(t):
        touch(t, first)
        mine.set()
        theirs.wait(1.0)  # never set when the other side cannot start: then go on

    def two(t):
        touch(t, second)

    return one, two


async def _two_rooms_on_postgres(postgres: str) -> tuple[ChatStore, Database, int, int]:
    """A store on PostgreSQL with two rooms (lower id first), and a second pool on
    the same database: another process's."""
    store = ChatStore(Database(PostgresEngine(postgres), reactor))
    await store.db.migrate()
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    low, high = sorted([await new_room(store, alice, bob), await new_room(store, alice, bob)])
    return store, Database(PostgresEngine(postgres), reactor), low, high


@pytest_twisted.ensureDeferred
async def test_two_processes_groups_writing_two_rooms_in_opposite_orders_never_deadlock(
        postgres):
    """Two processes (workers, nodes) on one PostgreSQL: process A's group writes
    room 1 then room 2, B's room 2 then room 1, at the same moment. Each group
    locks the rows its calls declared first, in key order, so B waits for A rather
    than locking room 2 and deadlocking (a deadlock costs a second, then a
    victim). Seen in bench/cluster.py: sends in 10 rooms from two workers failed
    with ``unavailable``."""
    store, other, low, high = await _two_rooms_on_postgres(postgres)
    try:
        a_first, b_first = threading.Event(), threading.Event()
        a1, a2 = _crossing(low, high, a_first, b_first)
        b1, b2 = _crossing(high, low, b_first, a_first)
        # A first call runs alone; the two after it wait and make one group.
        groups = []
        for db, (one, two), (r1, r2) in ((store.db, (a1, a2), (low, high)),
                                         (other, (b1, b2), (high, low))):
            groups += [db.run_grouped("alone", (), lambda t: None),
                       db.run_grouped("one", (("rooms", r1),), one),
                       db.run_grouped("two", (("rooms", r2),), two)]
        await gatherResults(groups)
        assert store.db.grouped_calls - store.db.grouped_transactions == 1  # a group of 2
        assert other.grouped_calls - other.grouped_transactions == 1
        assert (store.db.retried, other.retried) == (0, 0)
    finally:
        other.close()
        store.db.close()


@pytest_twisted.ensureDeferred
async def test_a_deadlock_victim_is_run_again_and_succeeds(postgres):
    """Two transactions of two processes that do deadlock (they write two rows in
    opposite orders and declare nothing): PostgreSQL ends one; it is run again
    and both succeed, where the victim's caller got ``unavailable`` before."""
    store, other, low, high = await _two_rooms_on_postgres(postgres)
    try:
        a_first, b_first = threading.Event(), threading.Event()
        a1, a2 = _crossing(low, high, a_first, b_first)
        b1, b2 = _crossing(high, low, b_first, a_first)

        def both(one, two):
            def txn(t):
                one(t)
                two(t)
            return txn

        await gatherResults([store.db.run_interaction("a", both(a1, a2)),
                             other.run_interaction("b", both(b1, b2))])
        assert store.db.retried + other.retried == 1
    finally:
        other.close()
        store.db.close()


@pytest_twisted.ensureDeferred
async def test_a_storage_fault_fails_the_whole_group_and_the_next_one_works(tmp_path):
    """SQLite locked by another connection past the busy timeout: every send of the
    group fails with ``unavailable`` and none is stored; once the lock is gone the
    next send is stored with seq 1."""
    import sqlite3

    engine = SqliteEngine(tmp_path / "locked.db", busy_timeout=0.1)
    db = Database(engine, reactor)
    try:
        await db.migrate()
        store = ChatStore(db)
        alice = await new_user(store, "alice")
        room_id = await new_room(store, alice)
        locker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            outcomes = await DeferredList([send(store, room_id, alice, f"m{i}")
                                           for i in range(5)], consumeErrors=True)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert [s for s, _v in outcomes] == [False] * 5
        assert {v.value.code for _s, v in outcomes} == {ErrorCode.UNAVAILABLE}
        assert (await send(store, room_id, alice, "after")).message["seq"] == 1
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_compliance_log_and_retention_on_both_engines(store):
    """The compliance log's audit rows and the retention purge on SQLite and
    PostgreSQL: a deleted message's content is kept when asked; old messages and
    unused old files go."""
    store.compliance_log = True
    alice = await new_user(store, "alice")
    room = await new_room(store, alice)
    gone = (await send(store, room, alice, "keep me for compliance", ts=T0)).message["msg_id"]
    await store.delete_message(room, gone, alice.id, False, T0 + 1)
    [entry] = await store.audit_entries("message.deleted")
    assert entry["details"]["body"] == "keep me for compliance"
    assert entry["username"] == "alice"
    await send(store, room, alice, "old one", ts=T0 + 2)
    await send(store, room, alice, "new one", ts=T0 + 10_000)
    assert await store.purge_before(T0 + 5_000) == (2, [])
    assert await store.purge_before(T0 + 5_000) == (0, [])
    page, _more = await store.history(room, None, None, 50, T0 + 20_000)
    assert [m["body"] for m in page] == ["new one"]


@pytest_twisted.ensureDeferred
async def test_last_seen_of_many_users_at_once_commits_together(store):
    """Thousands of sessions ending at once (a network cut) record last_seen in
    group commits, not a transaction each: 40 at once take 2 transactions."""
    users = [await new_user(store, f"u{i}") for i in range(40)]
    before = store.db.grouped_transactions
    await gatherResults([Deferred.fromCoroutine(store.set_last_seen(u.id, 1_000 + i))
                         for i, u in enumerate(users)])
    assert store.db.grouped_transactions - before == 2
    for i, u in enumerate(users):
        assert (await store.user_by_id(u.id)).last_seen == 1_000 + i
