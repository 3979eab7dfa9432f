"""Blocking (docs/protocol.md 4, "Blocking"): what a blocked user can no longer
bring to the blocker, and that they are not told."""

from __future__ import annotations

import pytest_twisted

from chatnet.errors import ErrorCode
from tests.support.chat import create_room, expect_error, say
from tests.support.events import EventLog, barrier


@pytest_twisted.ensureDeferred
async def test_blocking_ends_the_contact_and_refuses_requests_silently(server):
    """Blocking a contact ends the contact for both; the blocked user's new contact
    request answers as usual but reaches nobody; the blocker may not ask them
    until unblocking; the block list pages and the blocker's sessions hear of it."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await bob.request("contact.request", {"username": "alice"})
    await alice.request("contact.respond", {"username": "bob", "accept": True})
    alice_events, bob_events = EventLog(alice, "alice"), EventLog(bob, "bob")
    await alice.request("contact.block", {"username": "bob", "on": True})
    assert (await alice_events.next("contact.blocked")).data == {"username": "bob", "on": True}
    assert (await bob_events.next("contact.removed")).data == {"username": "alice"}
    assert (await alice.request("contact.list", {}))["contacts"] == []
    assert await bob.request("contact.request", {"username": "alice"}) == {}
    listed = await alice.request("contact.list", {})
    assert listed["incoming"] == [] and listed["contacts"] == []
    assert [e for e in alice_events.seen if e.name == "contact.request"] == []
    error = await expect_error(alice.request("contact.request", {"username": "bob"}),
                               ErrorCode.CONFLICT)
    assert "unblock" in error.message
    assert (await alice.request("contact.blocks", {}))["blocked"] == ["bob"]
    await alice.request("contact.block", {"username": "bob", "on": False})
    assert (await alice.request("contact.blocks", {}))["blocked"] == []
    await barrier(bob)  # in a cluster, the unblock reaches bob's node first
    await bob.request("contact.request", {"username": "alice"})
    assert (await alice_events.next("contact.request")).data["from"] == "bob"


@pytest_twisted.ensureDeferred
async def test_a_blocked_users_messages_do_not_reach_the_blocker(server):
    """In a direct room and in a shared group room, a blocked user's messages are
    acknowledged and reach the others, but not the blocker: no event, not in the
    blocker's history or search. Opening a direct room or inviting the blocker
    tells them nothing. Unblocking shows the messages again."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    await alice.request("contact.block", {"username": "bob", "on": True})
    await barrier(bob)  # in a cluster, the block reaches bob's node first
    alice_events, carol_events = EventLog(alice, "alice"), EventLog(carol, "carol")
    direct = (await bob.request("dm.open", {"username": "alice"}))["room_id"]
    ack = await say(bob, direct, "hello alice, it's bob")
    assert ack["seq"] == 1
    own = await bob.request("msg.history", {"room_id": direct})
    assert [m["body"] for m in own["messages"]] == ["hello alice, it's bob"]
    group = (await create_room(carol, name="lunch"))["room_id"]
    for user in (alice, bob):
        await user.request("room.join", {"room_id": group})
    await say(bob, group, "bob in the group")
    await say(carol, group, "carol in the group")
    assert (await carol_events.next("msg", where=lambda d: d["message"]["body"] ==
                                    "bob in the group"))
    await alice_events.next("msg", where=lambda d: d["message"]["body"] == "carol in the group")
    assert [e.data["message"]["body"] for e in alice_events.seen if e.name == "msg"] == [
        "carol in the group"]
    assert [e for e in alice_events.seen if e.name == "room.invited"] == []
    history = await alice.request("msg.history", {"room_id": group})
    assert [m["body"] for m in history["messages"]] == ["carol in the group"]
    assert (await alice.request("msg.history", {"room_id": direct}))["messages"] == []
    searched = await alice.request("msg.search", {"query": "group"})
    assert [m["body"] for m in searched["messages"]] == ["carol in the group"]
    plans = (await create_room(bob, name="plans", visibility="private"))["room_id"]
    assert await bob.request("room.invite", {"room_id": plans, "username": "alice"}) == {}
    assert (await alice.request("room.invites", {}))["invites"] == []
    await alice.request("contact.block", {"username": "bob", "on": False})
    history = await alice.request("msg.history", {"room_id": group})
    assert [m["body"] for m in history["messages"]] == ["bob in the group",
                                                         "carol in the group"]


@pytest_twisted.ensureDeferred
async def test_blocking_oneself_or_nobody_is_refused(server):
    """Blocking oneself is bad_request, an unknown user not_found."""
    alice = await server.user("alice")
    await expect_error(alice.request("contact.block", {"username": "alice", "on": True}),
                       ErrorCode.BAD_REQUEST)
    await expect_error(alice.request("contact.block", {"username": "nobody", "on": True}),
                       ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_blocked_messages_are_not_unread_and_blocked_creators_do_not_invite(server):
    """A room's unread count in room.list leaves out the messages of someone the
    user blocked (they never arrive); after an unblock they count again. A room
    created with ``members`` naming someone who blocked its creator does not
    invite them (silently, as room.invite)."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    group = (await create_room(carol, name="lunch"))["room_id"]
    for user in (alice, bob):
        await user.request("room.join", {"room_id": group})
    await alice.request("contact.block", {"username": "bob", "on": True})
    await say(bob, group, "from bob")
    await say(carol, group, "from carol")
    await say(bob, group, "bob again")

    async def unread() -> int:
        rooms = (await alice.request("room.list", {}))["rooms"]
        return next(r["unread"] for r in rooms if r["room_id"] == group)

    assert await unread() == 1
    await alice.request("contact.block", {"username": "bob", "on": False})
    assert await unread() == 3
    await alice.request("contact.block", {"username": "bob", "on": True})
    alice_events = EventLog(alice, "alice")
    await barrier(bob)  # in a cluster, the block reaches bob's node first
    made = await bob.request("room.create", {"name": "party", "visibility": "private",
                                             "members": ["alice", "carol"]})
    assert (await alice.request("room.invites", {}))["invites"] == []
    invited = await carol.request("room.invites", {})
    assert [i["room"]["room_id"] for i in invited["invites"]] == [made["room_id"]]
    await barrier(alice)
    assert alice_events.pending("room.invited") == []
