"""Rooms, memberships, roles and direct conversations (PROTOCOL.md 5), end to end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted

from chatnet.errors import ChatError, ErrorCode
from chatnet.services.rooms import INVITE_LIFETIME
from chatnet.wire.codec import pack
from tests.support.chat import create_room, expect_error, say
from tests.support.events import EventLog, barrier
from tests.support.harness import build_harness
from tests.support.server import PASSWORD


async def members_of(conn, room_id):
    result = await conn.request("room.members", {"room_id": room_id})
    return {m["username"]: m["role"] for m in result["members"]}


@pytest_twisted.ensureDeferred
async def test_create_a_room(server):
    """room.create → the room map; the creator is its owner and only member."""
    alice = await server.user("alice")
    room = await alice.request("room.create", {"name": "General", "visibility": "public",
                                               "topic": "anything"})
    # PROTOCOL.md 2: extra fields are allowed, these must be there.
    assert set(room) >= {"room_id", "kind", "name", "topic", "visibility", "owner",
                         "members_count", "created_ts"}
    assert (room["kind"], room["name"], room["topic"], room["visibility"], room["owner"],
            room["members_count"]) == ("group", "General", "anything", "public", "alice", 1)
    assert await members_of(alice, room["room_id"]) == {"alice": "owner"}


@pytest_twisted.ensureDeferred
async def test_create_with_members_invites_them(server):
    """Users listed in ``members`` are invited, not added: each gets room.invited
    {room, by}, is not a member until room.join accepts (even of a private room),
    and sees the invitation in room.invites."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    bob_events = EventLog(bob, "bob")
    room = await create_room(alice, visibility="private", members=["BOB", "alice"])
    rid = room["room_id"]
    assert room["members_count"] == 1
    invited = await bob_events.next("room.invited")
    assert invited.data == {"room": room, "by": "alice"}
    assert await members_of(alice, rid) == {"alice": "owner"}
    await expect_error(bob.request("room.members", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(bob.request("msg.history", {"room_id": rid}), ErrorCode.NOT_FOUND)
    assert (await bob.request("room.list"))["rooms"] == []
    [invite] = (await bob.request("room.invites"))["invites"]
    assert (invite["room"]["room_id"], invite["by"]) == (rid, "alice")
    assert isinstance(invite["ts"], int)
    assert (await bob.request("room.join", {"room_id": rid}))["members_count"] == 2
    assert await members_of(bob, rid) == {"alice": "owner", "bob": "member"}
    assert (await bob.request("room.invites"))["invites"] == []
    await expect_error(carol.request("room.members", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(carol.request("room.join", {"room_id": rid}), ErrorCode.NOT_FOUND)
    error = await expect_error(alice.request("room.create", {
        "name": "x", "visibility": "public", "members": ["ghost"]}), ErrorCode.NOT_FOUND)
    assert "ghost" in error.message


@pytest_twisted.ensureDeferred
async def test_decline_removes_the_invitation(server):
    """room.decline → {}: the invitation is gone (room.invites, and a private room's
    join is not_found again), the invitee's other sessions get room.declined
    {room_id}, the inviter is not told; declining again is not_found."""
    alice, bob = await server.user("alice"), await server.user("bob")
    bob_elsewhere = await server.user("bob", register=False)
    other_session, alice_events = EventLog(bob_elsewhere, "bob2"), EventLog(alice, "alice")
    room = await create_room(alice, visibility="private", members=["bob"])
    rid = room["room_id"]
    await other_session.next("room.invited")
    assert await bob.request("room.decline", {"room_id": rid}) == {}
    assert (await other_session.next("room.declined")).data == {"room_id": rid}
    assert (await bob.request("room.invites"))["invites"] == []
    await expect_error(bob.request("room.join", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(bob.request("room.decline", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await barrier(alice)
    assert alice_events.pending("room.declined") == []
    assert await members_of(alice, rid) == {"alice": "owner"}
    # Invited again, bob can accept.
    await alice.request("room.invite", {"room_id": rid, "username": "bob"})
    await bob.request("room.join", {"room_id": rid})


@pytest_twisted.ensureDeferred
async def test_many_rooms_naming_a_victim_do_not_stop_the_victim_syncing(make_server):
    """The attack of the hardening issue: someone creates many rooms with bob in
    ``members``. Bob is invited to each, member of none; his room.list still
    answers (empty), and his invitations page, every page within max_frame."""
    server = await make_server(max_frame=4096)
    mallory, bob = await server.user("mallory"), await server.user("bob")
    topic = "x" * 500
    for n in range(12):
        await mallory.request("room.create", {"name": f"spam {n}", "topic": topic,
                                              "visibility": "private", "members": ["bob"]})
    assert await bob.request("room.list") == {"rooms": []}
    invites, cursor, pages = [], None, 0
    while True:
        page = await bob.request("room.invites", {"cursor": cursor} if cursor else {})
        assert len(pack({"id": 2**63 - 1, "result": page})) <= 4096
        invites += page["invites"]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert len(invites) == 12 and pages > 1
    assert {i["room"]["name"] for i in invites} == {f"spam {n}" for n in range(12)}
    assert all(i["by"] == "mallory" for i in invites)


@pytest_twisted.ensureDeferred
async def test_room_list_pages_and_every_page_fits_the_frame(make_server):
    """A member of more rooms than fit in a frame gets room.list in pages: each
    within max_frame, ordered by room id, with next_cursor until the last; limit
    caps a page; a cursor the server did not hand out is bad_request."""
    server = await make_server(max_frame=4096)
    alice = await server.user("alice")
    made = [(await create_room(alice, name=f"r{n}", topic="t" * 500))["room_id"]
            for n in range(9)]
    seen, cursor, pages = [], None, 0
    while True:
        page = await alice.request("room.list", {"cursor": cursor} if cursor else {})
        assert len(pack({"id": 2**63 - 1, "result": page})) <= 4096
        seen += [r["room_id"] for r in page["rooms"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == sorted(made) and pages > 1
    first = await alice.request("room.list", {"limit": 2})
    assert [r["room_id"] for r in first["rooms"]] == sorted(made)[:2]
    rest = await alice.request("room.list", {"limit": 500, "cursor": first["next_cursor"]})
    assert rest["rooms"][0]["room_id"] == sorted(made)[2]
    error = await expect_error(alice.request("room.list", {"cursor": "nonsense"}),
                               ErrorCode.BAD_REQUEST)
    assert "cursor" in error.message
    await expect_error(alice.request("room.list", {"limit": 501}), ErrorCode.BAD_REQUEST)


@pytest_twisted.ensureDeferred
async def test_room_members_and_directory_page(make_server):
    """room.members pages by username and room.directory by name, with next_cursor,
    every page within max_frame."""
    server = await make_server(max_frame=4096)
    alice = await server.user("alice")
    room = await create_room(alice, name="big")
    names = ["alice"] + [f"user{n:02d}" for n in range(40)]
    for name in names[1:]:
        conn = await server.user(name)
        await conn.request("room.join", {"room_id": room["room_id"]})
        await conn.close()
    seen, cursor, pages = [], None, 0
    while True:
        args = {"room_id": room["room_id"], "limit": 15}
        page = await alice.request("room.members", {**args, "cursor": cursor} if cursor
                                   else args)
        seen += [m["username"] for m in page["members"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == names and pages == 3
    for n in range(8):
        await create_room(alice, name=f"lobby {n}", topic="y" * 500)
    listed, cursor, pages = [], None, 0
    while True:
        page = await alice.request("room.directory", {"query": "lobby", "cursor": cursor}
                                   if cursor else {"query": "lobby"})
        assert len(pack({"id": 2**63 - 1, "result": page})) <= 4096
        listed += [r["name"] for r in page["rooms"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert listed == [f"lobby {n}" for n in range(8)] and pages > 1


@pytest_twisted.ensureDeferred
async def test_rooms_per_user_are_bounded(make_server):
    """A user in max_rooms rooms (group rooms and direct rooms they opened) gets
    conflict with details.limit from room.create, room.join and dm.open; a direct
    room someone else opens with them does not count, so nobody can fill another
    user's limit; leaving a room frees a place."""
    server = await make_server(max_rooms=3)
    alice, carol = await server.user("alice"), await server.user("carol")
    await server.user("bob")
    one = await create_room(alice, name="one")
    await create_room(alice, name="two")
    await alice.request("dm.open", {"username": "bob"})
    error = await expect_error(alice.request("room.create", {"name": "four",
                                                             "visibility": "public"}),
                               ErrorCode.CONFLICT)
    assert error.details == {"limit": 3} and "3 rooms" in error.message
    public = await create_room(carol, name="carol's")
    error = await expect_error(alice.request("room.join", {"room_id": public["room_id"]}),
                               ErrorCode.CONFLICT)
    assert error.details == {"limit": 3}
    await expect_error(alice.request("dm.open", {"username": "carol"}), ErrorCode.CONFLICT)
    # carol opens one with alice: it counts for carol, not for alice.
    assert (await carol.request("dm.open", {"username": "alice"}))["members_count"] == 2
    await expect_error(alice.request("room.join", {"room_id": public["room_id"]}),
                       ErrorCode.CONFLICT)
    # Direct rooms that exist still open; leaving frees a place.
    assert (await alice.request("dm.open", {"username": "bob"}))["kind"] == "direct"
    assert (await alice.request("dm.open", {"username": "carol"}))["kind"] == "direct"
    await alice.request("room.leave", {"room_id": one["room_id"]})
    assert (await alice.request("room.join", {"room_id": public["room_id"]}))["name"] == (
        "carol's")


@pytest_twisted.ensureDeferred
async def test_pending_invitations_are_bounded_per_inviter(make_server):
    """An inviter has at most max_invites invitations pending (conflict with
    details.limit, from room.create and room.invite, nothing created); one that
    ends (accepted or declined) frees a place; renewing one does not count twice.
    Other people's invitations to the same user are unaffected."""
    server = await make_server(max_invites=2)
    alice, bob, carol, dave = (await server.user("alice"), await server.user("bob"),
                               await server.user("carol"), await server.user("dave"))
    room = await create_room(alice, visibility="private", members=["bob", "carol"])
    rid = room["room_id"]
    error = await expect_error(alice.request("room.invite", {"room_id": rid,
                                                             "username": "dave"}),
                               ErrorCode.CONFLICT)
    assert error.details == {"limit": 2} and "2 pending invitations" in error.message
    await expect_error(alice.request("room.create", {"name": "more", "visibility": "public",
                                                     "members": ["dave"]}),
                       ErrorCode.CONFLICT)
    assert [r["name"] for r in (await alice.request("room.list"))["rooms"]] == ["room"]
    assert await alice.request("room.invite", {"room_id": rid, "username": "bob"}) == {}
    # Dave invites bob too: alice's full budget does not limit him.
    other = await create_room(dave, visibility="private", members=["bob"])
    await bob.request("room.join", {"room_id": rid})
    await carol.request("room.decline", {"room_id": rid})
    await alice.request("room.create", {"name": "more", "visibility": "public",
                                        "members": ["dave", "carol"]})
    assert {i["room"]["room_id"] for i in (await bob.request("room.invites"))["invites"]} \
        == {other["room_id"]}
@pytest_twisted.ensureDeferred
async def test_join_a_public_room_tells_the_members(server):
    """room.join of a public room → the room; members get room.member {joined}; joining
    again changes nothing."""
    alice, bob = await server.user("alice"), await server.user("bob")
    alice_events = EventLog(alice, "alice")
    room = await create_room(alice)
    joined = await bob.request("room.join", {"room_id": room["room_id"]})
    assert joined["members_count"] == 2
    event = await alice_events.next("room.member")
    assert event.data == {"room_id": room["room_id"], "username": "bob", "change": "joined"}
    again = await bob.request("room.join", {"room_id": room["room_id"]})
    assert again["members_count"] == 2
    await barrier(alice)
    assert alice_events.pending("room.member") == []


@pytest_twisted.ensureDeferred
async def test_private_room_needs_an_invitation(server):
    """A private room is not_found without an invitation (and so is a room that does
    not exist); after room.invite the invitee gets room.invited and can join."""
    alice, bob = await server.user("alice"), await server.user("bob")
    bob_events = EventLog(bob, "bob")
    room = await create_room(alice, visibility="private")
    await expect_error(bob.request("room.join", {"room_id": room["room_id"]}),
                       ErrorCode.NOT_FOUND)
    await expect_error(bob.request("room.join", {"room_id": 123456789}), ErrorCode.NOT_FOUND)
    assert await alice.request("room.invite", {"room_id": room["room_id"],
                                               "username": "bob"}) == {}
    invited = await bob_events.next("room.invited")
    assert invited.data["by"] == "alice" and invited.data["room"]["room_id"] == room["room_id"]
    assert (await bob.request("room.join", {"room_id": room["room_id"]}))["members_count"] == 2


@pytest_twisted.ensureDeferred
async def test_invite_permissions(server):
    """Members cannot invite (forbidden); moderators can; inviting a member is a
    conflict; an unknown user is not_found; a non-member sees not_found."""
    alice, bob, dave = (await server.user("alice"), await server.user("bob"),
                        await server.user("dave"))
    carol = await server.user("carol")
    room = await create_room(alice, bob)
    rid = room["room_id"]
    await expect_error(bob.request("room.invite", {"room_id": rid, "username": "carol"}),
                       ErrorCode.FORBIDDEN)
    await expect_error(dave.request("room.invite", {"room_id": rid, "username": "carol"}),
                       ErrorCode.NOT_FOUND)
    await alice.request("room.set_role", {"room_id": rid, "username": "bob",
                                          "role": "moderator"})
    assert await bob.request("room.invite", {"room_id": rid, "username": "carol"}) == {}
    await expect_error(bob.request("room.invite", {"room_id": rid, "username": "alice"}),
                       ErrorCode.CONFLICT)
    await expect_error(bob.request("room.invite", {"room_id": rid, "username": "ghost"}),
                       ErrorCode.NOT_FOUND)
    await carol.request("room.join", {"room_id": rid})


@pytest_twisted.ensureDeferred
async def test_leave_tells_everyone_and_ends_membership(server):
    """room.leave → {}; everyone, the leaver included, gets room.member {left}; the
    leaver no longer sees the room or its messages."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice, bob)
    rid = room["room_id"]
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    assert await bob.request("room.leave", {"room_id": rid}) == {}
    left = {"room_id": rid, "username": "bob", "change": "left"}
    assert (await alice_events.next("room.member", change="left")).data == left
    assert (await bob_events.next("room.member", change="left")).data == left
    await say(alice, rid, "after bob left")
    await expect_error(bob.request("msg.history", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(bob.request("room.leave", {"room_id": rid}), ErrorCode.NOT_FOUND)
    assert (await bob.request("room.list"))["rooms"] == []
    await barrier(bob)
    assert bob_events.pending("msg") == []


@pytest_twisted.ensureDeferred
async def test_owner_leaving_hands_the_room_on(server):
    """When the owner leaves, the moderator becomes owner and members are told
    (room.member {change: role, role: owner})."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    room = await create_room(alice, bob, carol)
    rid = room["room_id"]
    await alice.request("room.set_role", {"room_id": rid, "username": "carol",
                                          "role": "moderator"})
    bob_events = EventLog(bob, "bob")
    await alice.request("room.leave", {"room_id": rid})
    heir = await bob_events.next("room.member", change="role", role="owner")
    assert heir.data == {"room_id": rid, "username": "carol", "change": "role",
                         "role": "owner"}
    assert await members_of(bob, rid) == {"bob": "member", "carol": "owner"}


@pytest_twisted.ensureDeferred
async def test_last_member_leaving_deletes_the_room(server):
    """When the last member leaves, the room is gone (join → not_found)."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice)
    await alice.request("room.leave", {"room_id": room["room_id"]})
    await expect_error(bob.request("room.join", {"room_id": room["room_id"]}),
                       ErrorCode.NOT_FOUND)
    assert (await bob.request("room.directory", {}))["rooms"] == []


@pytest_twisted.ensureDeferred
async def test_kick_permissions_and_effect(server):
    """Members cannot kick; a moderator kicks a member (who is told and loses access)
    but not the owner nor another moderator; the owner can kick a moderator; nobody
    kicks themselves; kicking a non-member is not_found."""
    alice, bob, carol, dave = (await server.user("alice"), await server.user("bob"),
                               await server.user("carol"), await server.user("dave"))
    room = await create_room(alice, bob, carol, dave)
    rid = room["room_id"]

    def kick(conn, username, **extra):
        return conn.request("room.kick", {"room_id": rid, "username": username, **extra})

    await expect_error(kick(carol, "dave"), ErrorCode.FORBIDDEN)
    for name in ("bob", "carol"):
        await alice.request("room.set_role", {"room_id": rid, "username": name,
                                              "role": "moderator"})
    await expect_error(kick(bob, "alice"), ErrorCode.FORBIDDEN)
    await expect_error(kick(bob, "carol"), ErrorCode.FORBIDDEN)
    await expect_error(kick(bob, "bob"), ErrorCode.FORBIDDEN)
    await expect_error(kick(bob, "ghost"), ErrorCode.NOT_FOUND)
    dave_events, alice_events = EventLog(dave, "dave"), EventLog(alice, "alice")
    assert await kick(bob, "dave", reason="spam") == {}
    expected = {"room_id": rid, "username": "dave", "change": "kicked", "by": "bob",
                "reason": "spam"}
    assert (await dave_events.next("room.member", change="kicked")).data == expected
    assert (await alice_events.next("room.member", change="kicked")).data == expected
    await expect_error(dave.request("msg.history", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(kick(bob, "dave"), ErrorCode.NOT_FOUND)
    assert await kick(alice, "carol") == {}
    assert await members_of(alice, rid) == {"alice": "owner", "bob": "moderator"}


@pytest_twisted.ensureDeferred
async def test_set_role_is_for_the_owner_and_can_transfer_ownership(server):
    """Only the owner sets roles; members are told; giving ``owner`` makes the old owner
    a moderator; the owner cannot change their own role; unknown roles are bad_request."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    room = await create_room(alice, bob, carol)
    rid = room["room_id"]

    def set_role(conn, username, role):
        return conn.request("room.set_role", {"room_id": rid, "username": username,
                                              "role": role})

    carol_events = EventLog(carol, "carol")
    await expect_error(set_role(bob, "carol", "moderator"), ErrorCode.FORBIDDEN)
    await expect_error(set_role(alice, "alice", "member"), ErrorCode.FORBIDDEN)
    error = await expect_error(set_role(alice, "bob", "king"), ErrorCode.BAD_REQUEST)
    assert "role" in error.message
    assert await set_role(alice, "bob", "moderator") == {}
    assert (await carol_events.next("room.member", change="role")).data == {
        "room_id": rid, "username": "bob", "change": "role", "role": "moderator"}
    await expect_error(set_role(bob, "carol", "moderator"), ErrorCode.FORBIDDEN)
    await set_role(alice, "carol", "owner")
    assert (await carol_events.next("room.member", username="carol")).data["role"] == "owner"
    assert (await carol_events.next("room.member", username="alice")).data["role"] == \
        "moderator"
    assert await members_of(alice, rid) == {"alice": "moderator", "bob": "moderator",
                                            "carol": "owner"}
    await expect_error(set_role(alice, "bob", "member"), ErrorCode.FORBIDDEN)


@pytest_twisted.ensureDeferred
async def test_update_room(server):
    """Members cannot update (forbidden); a moderator can; members get room.updated."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    room = await create_room(alice, bob, carol)
    rid = room["room_id"]
    await expect_error(carol.request("room.update", {"room_id": rid, "name": "mine"}),
                       ErrorCode.FORBIDDEN)
    await alice.request("room.set_role", {"room_id": rid, "username": "bob",
                                          "role": "moderator"})
    carol_events = EventLog(carol, "carol")
    updated = await bob.request("room.update", {"room_id": rid, "topic": "new topic"})
    assert (updated["name"], updated["topic"]) == ("room", "new topic")
    assert (await carol_events.next("room.updated")).data == {"room": updated}


@pytest_twisted.ensureDeferred
async def test_delete_room(server):
    """Only the owner deletes; members get room.deleted; the room is gone for all."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice, bob)
    rid = room["room_id"]
    await alice.request("room.set_role", {"room_id": rid, "username": "bob",
                                          "role": "moderator"})
    await expect_error(bob.request("room.delete", {"room_id": rid}), ErrorCode.FORBIDDEN)
    bob_events = EventLog(bob, "bob")
    assert await alice.request("room.delete", {"room_id": rid}) == {}
    assert (await bob_events.next("room.deleted")).data == {"room_id": rid}
    assert (await bob.request("room.list"))["rooms"] == []
    await expect_error(bob.request("room.join", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(alice.request("msg.send", {"room_id": rid, "body": "x",
                                                  "client_msg_id": "gone"}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_directory_lists_matching_public_rooms_only(server):
    """room.directory lists public group rooms whose name or topic matches the query."""
    alice, bob = await server.user("alice"), await server.user("bob")
    lobby = await create_room(alice, name="Lobby", topic="say hello")
    ops = await create_room(alice, name="Ops", topic="deploys")
    await create_room(alice, name="Hidden lobby", visibility="private")
    await bob.request("dm.open", {"username": "alice"})
    listed = await bob.request("room.directory", {})
    assert [r["room_id"] for r in listed["rooms"]] == [lobby["room_id"], ops["room_id"]]
    found = await bob.request("room.directory", {"query": "HELLO"})
    assert [r["room_id"] for r in found["rooms"]] == [lobby["room_id"]]
    assert (await bob.request("room.directory", {"query": "nothing"}))["rooms"] == []


@pytest_twisted.ensureDeferred
async def test_room_list_counts_unread(server):
    """room.list gives role, last_seq, read_seq and unread; msg.read lowers unread;
    one's own messages are read."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice, bob)
    rid = room["room_id"]
    for n in range(3):
        await say(alice, rid, f"m{n}")
    [entry] = (await bob.request("room.list"))["rooms"]
    assert (entry["room_id"], entry["role"], entry["last_seq"], entry["read_seq"],
            entry["unread"]) == (rid, "member", 3, 0, 3)
    await bob.request("msg.read", {"room_id": rid, "seq": 2})
    [entry] = (await bob.request("room.list"))["rooms"]
    assert (entry["read_seq"], entry["unread"]) == (2, 1)
    [mine] = (await alice.request("room.list"))["rooms"]
    assert (mine["role"], mine["unread"]) == ("owner", 0)


@pytest_twisted.ensureDeferred
async def test_room_members_shows_roles_and_presence(server):
    """room.members lists username, display_name, role, presence and picture of each
    member."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice, bob)
    await bob.close()
    result = await alice.request("room.members", {"room_id": room["room_id"]})
    assert result["members"] == [
        {"username": "alice", "display_name": "alice", "role": "owner", "presence": "online",
         "avatar_file_id": None},
        {"username": "bob", "display_name": "bob", "role": "member", "presence": "offline",
         "avatar_file_id": None},
    ]


@pytest_twisted.ensureDeferred
async def test_dm_open_returns_the_same_room_both_ways(server):
    """dm.open creates one direct room per pair: the peer gets room.invited once, and
    opening from either side returns that room."""
    alice, bob = await server.user("alice"), await server.user("bob")
    bob_events = EventLog(bob, "bob")
    room = await alice.request("dm.open", {"username": "bob"})
    assert (room["kind"], room["visibility"], room["members_count"]) == ("direct", "private", 2)
    invited = await bob_events.next("room.invited")
    assert invited.data == {"room": room, "by": "alice"}
    assert (await bob.request("dm.open", {"username": "ALICE"}))["room_id"] == room["room_id"]
    assert (await alice.request("dm.open", {"username": "bob"}))["room_id"] == room["room_id"]
    await barrier(bob)
    assert bob_events.pending("room.invited") == []
    ack = await say(bob, room["room_id"], "hi alice")
    assert ack["seq"] == 1


@pytest_twisted.ensureDeferred
async def test_direct_rooms_are_closed_to_group_operations(server):
    """A direct room cannot be joined by a third user, left, invited to, renamed or
    deleted; dm.open with oneself is bad_request and with a stranger not_found."""
    alice, carol = await server.user("alice"), await server.user("carol")
    await server.user("bob")
    rid = (await alice.request("dm.open", {"username": "bob"}))["room_id"]
    await expect_error(carol.request("room.join", {"room_id": rid}), ErrorCode.NOT_FOUND)
    await expect_error(alice.request("room.leave", {"room_id": rid}), ErrorCode.FORBIDDEN)
    await expect_error(alice.request("room.invite", {"room_id": rid, "username": "carol"}),
                       ErrorCode.FORBIDDEN)
    await expect_error(alice.request("room.update", {"room_id": rid, "name": "x"}),
                       ErrorCode.FORBIDDEN)
    await expect_error(alice.request("room.delete", {"room_id": rid}), ErrorCode.FORBIDDEN)
    await expect_error(alice.request("dm.open", {"username": "alice"}), ErrorCode.BAD_REQUEST)
    await expect_error(alice.request("dm.open", {"username": "ghost"}), ErrorCode.NOT_FOUND)


@dataclass
class _Actor:
    """Who calls a perspective directly (the fields services read of an avatar)."""

    user_id: int
    username: str
    roles: tuple[str, ...] = ()
    mind: Any = None


@pytest_twisted.ensureDeferred
async def test_invitations_expire(tmp_path):
    """An invitation older than INVITE_LIFETIME is not honoured by room.join, not
    listed by room.invites, cannot be declined, and no longer counts against the
    inviter's max_invites (fake clock, real store)."""
    harness = await build_harness(tmp_path, max_invites=1)
    try:
        accounts, rooms = harness.services.accounts, harness.services.rooms
        people = {name: await accounts.create_user(name, PASSWORD)
                  for name in ("alice", "bob", "carol")}
        alice, bob, carol = (rooms.perspective(_Actor(u.user_id, u.username))
                             for u in people.values())
        harness.clock.advance(1_000_000)
        room = await alice.perspective_create("r", "", "private", ["bob"])
        harness.clock.advance(INVITE_LIFETIME - 1)
        assert len((await bob.perspective_invites(None, 100))["invites"]) == 1
        with pytest.raises(ChatError) as full:
            await alice.perspective_invite(room["room_id"], "carol")
        assert full.value.code is ErrorCode.CONFLICT
        harness.clock.advance(2)
        assert (await bob.perspective_invites(None, 100))["invites"] == []
        for attempt in (bob.perspective_join, bob.perspective_decline):
            with pytest.raises(ChatError) as gone:
                await attempt(room["room_id"])
            assert gone.value.code is ErrorCode.NOT_FOUND
        assert await alice.perspective_invite(room["room_id"], "carol") == {}
        assert (await carol.perspective_join(room["room_id"]))["members_count"] == 2
    finally:
        harness.close()
