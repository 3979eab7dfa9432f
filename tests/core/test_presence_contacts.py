"""Profiles, presence and contacts (PROTOCOL.md 4), end to end over TLS."""

from __future__ import annotations

import pytest_twisted

from chatnet.errors import ErrorCode
from tests.support.chat import create_room, expect_error
from tests.support.events import EventLog, barrier, wait_lost


def presence_of(username):
    return lambda data: data["username"] == username


@pytest_twisted.ensureDeferred
async def test_co_members_see_a_user_come_online_and_go_offline(server):
    """When a user's only session ends, co-members get presence {offline, last_seen};
    when they log in again, presence {online}. Users who share nothing hear nothing."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    await create_room(alice, bob)
    alice_events, carol_events = EventLog(alice, "alice"), EventLog(carol, "carol")
    await bob.close()
    offline = await alice_events.next("presence", state="offline", username="bob")
    assert isinstance(offline.data["last_seen"], int)
    profile = await alice.request("user.get", {"username": "bob"})
    assert (profile["presence"], profile["last_seen"]) == ("offline", offline.data["last_seen"])
    await server.user("bob", register=False)
    online = await alice_events.next("presence", state="online", username="bob")
    assert online.data == {"username": "bob", "state": "online"}
    assert (await alice.request("user.get", {"username": "bob"}))["presence"] == "online"
    await barrier(carol)
    assert [e for e in carol_events.pending("presence") if e.data["username"] == "bob"] == []


@pytest_twisted.ensureDeferred
async def test_presence_follows_the_last_session_not_each_one(server):
    """A second session does not announce online again, and closing one of two
    sessions does not announce offline."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await create_room(alice, bob)
    alice_events = EventLog(alice, "alice")
    bob2 = await server.user("bob", register=False)
    await bob2.close()
    # bob#2's client saw the server's close_notify, so the server has processed the
    # close; its TCP close completes within a reactor turn, before these round trips.
    await barrier(bob)
    await barrier(alice)
    assert alice_events.pending("presence") == []
    await bob.close()
    await alice_events.next("presence", state="offline", username="bob")


@pytest_twisted.ensureDeferred
async def test_presence_set_is_announced_and_invisible_shows_offline(server):
    """presence.set away → co-members get {away}; invisible → they get {offline} and
    every view shows offline; when the invisible user leaves, nothing more is said."""
    alice, bob = await server.user("alice"), await server.user("bob")
    room = await create_room(alice, bob)
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    assert await bob.request("presence.set", {"state": "away"}) == {}
    away = await alice_events.next("presence", username="bob")
    assert away.data == {"username": "bob", "state": "away"}
    assert (await bob_events.next("presence", username="bob")).data["state"] == "away"
    await bob.request("presence.set", {"state": "invisible"})
    hidden = await alice_events.next("presence", username="bob")
    assert hidden.data["state"] == "offline"
    assert (await alice.request("user.get", {"username": "bob"}))["presence"] == "offline"
    members = (await alice.request("room.members", {"room_id": room["room_id"]}))["members"]
    assert {m["username"]: m["presence"] for m in members} == {"alice": "online",
                                                               "bob": "offline"}
    found = (await alice.request("user.search", {"query": "bob"}))["users"]
    assert [u["presence"] for u in found] == ["offline"]
    await bob.close()
    await barrier(alice)
    assert alice_events.pending("presence") == []
    error = await expect_error(alice.request("presence.set", {"state": "asleep"}),
                               ErrorCode.BAD_REQUEST)
    assert "state" in error.message


@pytest_twisted.ensureDeferred
async def test_contact_request_accept_list_and_presence(server):
    """contact.request → the other side gets contact.request {from, message}; lists show
    incoming/outgoing; accepting sends contact.added {profile} to both; contacts then
    hear each other's presence without sharing a room."""
    alice, bob = await server.user("alice"), await server.user("bob")
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    assert await alice.request("contact.request", {"username": "bob",
                                                   "message": "let's talk"}) == {}
    assert (await bob_events.next("contact.request")).data == {"from": "alice",
                                                               "message": "let's talk"}
    assert await alice.request("contact.list") == {"contacts": [], "incoming": [],
                                                   "outgoing": ["bob"]}
    assert await bob.request("contact.list") == {"contacts": [], "incoming": ["alice"],
                                                 "outgoing": []}
    assert await bob.request("contact.respond", {"username": "alice", "accept": True}) == {}
    added_for_alice = (await alice_events.next("contact.added")).data["profile"]
    added_for_bob = (await bob_events.next("contact.added")).data["profile"]
    assert (added_for_alice["username"], added_for_alice["presence"]) == ("bob", "online")
    assert added_for_bob["username"] == "alice"
    contacts = await alice.request("contact.list")
    assert [c["username"] for c in contacts["contacts"]] == ["bob"]
    assert contacts["incoming"] == contacts["outgoing"] == []
    await bob.close()
    await alice_events.next("presence", username="bob", state="offline")


@pytest_twisted.ensureDeferred
async def test_contact_decline_and_errors(server):
    """Declining leaves no contact and sends no contact.added; responding without a
    request is not_found; asking oneself is bad_request; a stranger is not_found."""
    alice, bob = await server.user("alice"), await server.user("bob")
    alice_events = EventLog(alice, "alice")
    await expect_error(bob.request("contact.respond", {"username": "alice", "accept": True}),
                       ErrorCode.NOT_FOUND)
    await alice.request("contact.request", {"username": "bob"})
    await bob.request("contact.respond", {"username": "alice", "accept": False})
    assert await alice.request("contact.list") == {"contacts": [], "incoming": [],
                                                   "outgoing": []}
    await barrier(alice)
    assert alice_events.pending("contact.added") == []
    await expect_error(alice.request("contact.request", {"username": "alice"}),
                       ErrorCode.BAD_REQUEST)
    await expect_error(alice.request("contact.request", {"username": "ghost"}),
                       ErrorCode.NOT_FOUND)
    await expect_error(alice.request("contact.remove", {"username": "bob"}),
                       ErrorCode.NOT_FOUND)
    error = await expect_error(alice.request("contact.respond", {"username": "bob",
                                                                 "accept": 1}),
                               ErrorCode.BAD_REQUEST)
    assert "accept" in error.message


@pytest_twisted.ensureDeferred
async def test_crossed_requests_and_contact_remove(server):
    """Two users asking each other become contacts at once; contact.remove ends it and
    both sides get contact.removed {username}."""
    alice, bob = await server.user("alice"), await server.user("bob")
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    await alice.request("contact.request", {"username": "bob"})
    await bob.request("contact.request", {"username": "alice"})
    await alice_events.next("contact.added")
    await bob_events.next("contact.added")
    assert await bob.request("contact.remove", {"username": "alice"}) == {}
    assert (await alice_events.next("contact.removed")).data == {"username": "bob"}
    assert (await bob_events.next("contact.removed")).data == {"username": "alice"}
    assert (await alice.request("contact.list"))["contacts"] == []


@pytest_twisted.ensureDeferred
async def test_profile_update_get_and_search(server):
    """user.update returns the profile and tells co-members with user.updated; user.get
    and user.search show it; unknown users are not_found."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await create_room(alice, bob)
    bob_events = EventLog(bob, "bob")
    profile = await alice.request("user.update", {"display_name": "Alice Liddell",
                                                  "status_text": "down the hole"})
    assert (profile["username"], profile["display_name"], profile["status_text"],
            profile["presence"]) == ("alice", "Alice Liddell", "down the hole", "online")
    assert (await bob_events.next("user.updated")).data == {"profile": profile}
    assert await bob.request("user.get", {"username": "ALICE"}) == profile
    found = await bob.request("user.search", {"query": "liddell"})
    assert [u["username"] for u in found["users"]] == ["alice"]
    await expect_error(bob.request("user.get", {"username": "ghost"}), ErrorCode.NOT_FOUND)
    await expect_error(alice.request("user.update", {"avatar_file_id": "no-such-file"}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_logout_announces_offline(server):
    """An explicit auth.logout ends the session like a disconnect: co-members see offline."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await create_room(alice, bob)
    alice_events = EventLog(alice, "alice")
    await bob.request("auth.logout")
    await wait_lost(bob)
    await alice_events.next("presence", username="bob", state="offline")


@pytest_twisted.ensureDeferred
async def test_presence_in_profiles_is_for_contacts_and_co_members_only(server):
    """user.get and user.search show presence and last_seen to the user, their contacts
    and people who share a room with them; a stranger sees offline and no last_seen,
    whether the user is online or gone."""
    alice, bob, carol, eve = [await server.user(n) for n in ("alice", "bob", "carol", "eve")]
    await create_room(alice, bob)
    await carol.request("contact.request", {"username": "bob"})
    await bob.request("contact.respond", {"username": "carol", "accept": True})

    async def seen_by(conn):
        got = await conn.request("user.get", {"username": "bob"})
        [found] = (await conn.request("user.search", {"query": "bob"}))["users"]
        assert found == got
        return got["presence"], got.get("last_seen")

    await bob.request("presence.set", {"state": "busy"})
    for conn in (alice, bob, carol):
        assert await seen_by(conn) == ("busy", None)
    assert await seen_by(eve) == ("offline", None)
    alice_events = EventLog(alice, "alice")
    await bob.close()
    offline = await alice_events.next("presence", username="bob", state="offline")
    for conn in (alice, carol):
        assert await seen_by(conn) == ("offline", offline.data["last_seen"])
    assert await seen_by(eve) == ("offline", None)


async def all_pages(conn, **args):
    """Every page of contact.list, following next_cursor."""
    pages, cursor = [], None
    while True:
        page = await conn.request("contact.list", {**args, **({"cursor": cursor} if cursor
                                                              else {})})
        pages.append(page)
        cursor = page.get("next_cursor")
        if cursor is None:
            return pages


@pytest_twisted.ensureDeferred
async def test_contact_list_pages_and_each_page_fits_the_frame(make_server):
    """With long profiles and a small --max-frame, contact.list answers in pages that
    each fit (no too_large), in order contacts → incoming → outgoing, each entry once;
    user.search stops early rather than fail; limit bounds a page; a made-up cursor
    is bad_request."""
    server = await make_server(max_frame=8192)
    me = await server.user("me")
    names = [f"friend{i:02d}" for i in range(14)]
    for name in names:
        friend = await server.user(name)
        await friend.request("user.update", {"display_name": "名" * 64,
                                             "status_text": "状" * 140})
        await friend.request("contact.request", {"username": "me"})
        await me.request("contact.respond", {"username": name, "accept": True})
        await friend.close()
    for name in ("asker1", "asker2"):
        asker = await server.user(name)
        await asker.request("contact.request", {"username": "me"})
        await asker.close()
    await server.user("asked", register=True)
    await me.request("contact.request", {"username": "asked"})
    pages = await all_pages(me)
    assert len(pages) >= 2 and all("next_cursor" in p for p in pages[:-1])
    assert [c["username"] for p in pages for c in p["contacts"]] == names
    assert [u for p in pages for u in p["incoming"]] == ["asker1", "asker2"]
    assert [u for p in pages for u in p["outgoing"]] == ["asked"]
    found = (await me.request("user.search", {"query": "friend", "limit": 100}))["users"]
    assert 0 < len(found) < len(names)
    assert [u["username"] for u in found] == names[:len(found)]
    small = await all_pages(me, limit=5)
    assert [len(p["contacts"]) + len(p["incoming"]) + len(p["outgoing"]) for p in small] == \
        [5, 5, 5, 2]
    error = await expect_error(me.request("contact.list", {"cursor": "friends:../x"}),
                               ErrorCode.BAD_REQUEST)
    assert "cursor" in error.message


@pytest_twisted.ensureDeferred
async def test_asking_again_does_not_notify_again_and_requests_are_capped(server):
    """A second contact.request to the same person while the first waits sends no
    second event; the limit on waiting requests answers conflict with details.limit."""
    alice, bob = await server.user("alice"), await server.user("bob")
    bob_events = EventLog(bob, "bob")
    await alice.request("contact.request", {"username": "bob"})
    await alice.request("contact.request", {"username": "bob", "message": "hello??"})
    await bob_events.next("contact.request")
    await barrier(bob)
    assert bob_events.pending("contact.request") == []
    limit = server.service.chat_services.users.contact_limits.max_outgoing
    for i in range(limit - 1):
        await server.service.store.create_user(server.service.store.ids.next_id(), f"u{i}",
                                               f"U{i}", "x", (), 0)
        await alice.request("contact.request", {"username": f"u{i}"})
    await server.user("carol")
    error = await expect_error(alice.request("contact.request", {"username": "carol"}),
                               ErrorCode.CONFLICT)
    assert error.details == {"limit": limit} and str(limit) in error.message


@pytest_twisted.ensureDeferred
async def test_rooms_over_the_presence_limit_carry_no_presence(make_server):
    """--presence-room-limit 3: a room of four carries no presence events (one login
    there would otherwise tell every member); co-members of a smaller room and
    contacts still hear; room.members and user.get still show presence; profile
    changes (user.updated) still reach the big room."""
    server = await make_server(presence_room_limit=3)
    alice, bob, carol, dave = [await server.user(name)
                               for name in ("alice", "bob", "carol", "dave")]
    big = await create_room(alice, bob, carol, dave, name="big")
    await create_room(alice, bob, name="small")
    await carol.request("contact.request", {"username": "dave"})
    await dave.request("contact.respond", {"username": "carol", "accept": True})
    alice_events, carol_events = EventLog(alice, "alice"), EventLog(carol, "carol")
    await bob.close()
    await alice_events.next("presence", username="bob", state="offline")
    await dave.close()
    await carol_events.next("presence", username="dave", state="offline")
    await barrier(alice)
    await barrier(carol)
    assert [e.data["username"] for e in carol_events.pending("presence")] == []
    assert [e.data["username"] for e in alice_events.pending("presence")] == []
    members = (await carol.request("room.members", {"room_id": big["room_id"]}))["members"]
    assert {m["username"]: m["presence"] for m in members} == {
        "alice": "online", "bob": "offline", "carol": "online", "dave": "offline"}
    assert (await carol.request("user.get", {"username": "bob"}))["presence"] == "offline"
    bob = await server.user("bob", register=False)
    await alice_events.next("presence", username="bob", state="online")
    assert (await carol.request("user.get", {"username": "bob"}))["presence"] == "online"
    await bob.request("user.update", {"display_name": "Bob B."})
    updated = await carol_events.next("user.updated")
    assert updated.data["profile"]["display_name"] == "Bob B."
    assert [e.data["username"] for e in carol_events.pending("presence")] == []
