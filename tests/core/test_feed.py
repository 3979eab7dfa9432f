"""The team feed (PROTOCOL.md 10) over the wire: who sees a post, live events,
likes and comments, deletion rights, attachments, limits and pages."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from chatnet.errors import ErrorCode
from chatnet.store.feed import LISTED_COMMENTS
from tests.core.test_avatars import download, upload
from tests.support.chat import expect_error
from tests.support.events import EventLog


async def befriend(a: Any, b: Any, b_name: str, a_name: str) -> None:
    """Make two users contacts (a asks, b accepts)."""
    await a.request("contact.request", {"username": b_name})
    await b.request("contact.respond", {"username": a_name, "accept": True})


@pytest_twisted.ensureDeferred
async def test_a_post_reaches_the_authors_contacts_only(server):
    """A post is listed for its author and their contacts, newest first, and
    announced live to them (feed.posted); a stranger sees nothing and gets
    not_found for it; removing the contact hides it again."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    await befriend(alice, bob, "bob", "alice")
    bob_events, carol_events = EventLog(bob, "bob"), EventLog(carol, "carol")
    first = await alice.request("feed.post", {"body": "shipped the release 🎉"})
    second = await alice.request("feed.post", {"body": "and the docs"})
    assert first["author"] == "alice" and first["likes"] == [] and first["comments"] == []
    posted = await bob_events.next("feed.posted")
    assert posted.data["post"]["post_id"] == first["post_id"]
    for reader in (alice, bob):
        listed = await reader.request("feed.list", {})
        assert [p["body"] for p in listed["posts"]] == ["and the docs", "shipped the release 🎉"]
    assert (await carol.request("feed.list", {}))["posts"] == []
    assert (await carol.request("feed.list", {"author": "alice"}))["posts"] == []
    await expect_error(carol.request("feed.like", {"post_id": second["post_id"], "on": True}),
                       ErrorCode.NOT_FOUND)
    assert [e for e in carol_events.seen if e.name.startswith("feed.")] == []
    await bob.request("contact.remove", {"username": "alice"})
    assert (await bob.request("feed.list", {}))["posts"] == []


@pytest_twisted.ensureDeferred
async def test_likes_and_comments_are_counted_listed_and_announced(server):
    """feed.like (once per person; off takes it back) and feed.comment show in the
    post (likers, liked, newest comments, counts) and go out as events; feed.comments
    pages through every comment."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await befriend(alice, bob, "bob", "alice")
    alice_events = EventLog(alice, "alice")
    post = await alice.request("feed.post", {"body": "lunch?"})
    pid = post["post_id"]
    await bob.request("feed.like", {"post_id": pid, "on": True})
    await bob.request("feed.like", {"post_id": pid, "on": True})
    liked = await alice_events.next("feed.liked")
    assert liked.data == {"post_id": pid, "username": "bob", "on": True}
    for i in range(LISTED_COMMENTS + 3):
        await bob.request("feed.comment", {"post_id": pid, "body": f"comment {i}"})
    commented = await alice_events.next("feed.commented")
    assert commented.data["comment"]["body"] == "comment 0"
    [seen] = (await bob.request("feed.list", {}))["posts"]
    assert seen["likes"] == ["bob"] and seen["likes_count"] == 1 and seen["liked"] is True
    assert seen["comments_count"] == LISTED_COMMENTS + 3
    assert [c["body"] for c in seen["comments"]] == [
        f"comment {i}" for i in range(3, LISTED_COMMENTS + 3)]
    [mine] = (await alice.request("feed.list", {}))["posts"]
    assert mine["liked"] is False
    everything, before = [], None
    while True:
        page = await alice.request("feed.comments", {"post_id": pid, "limit": 5,
                                                     **({"before_id": before} if before else {})})
        everything += [c["body"] for c in page["comments"]]
        if not page["has_more"]:
            break
        before = page["comments"][-1]["comment_id"]
    assert everything == [f"comment {i}" for i in reversed(range(LISTED_COMMENTS + 3))]
    await bob.request("feed.like", {"post_id": pid, "on": False})
    assert (await alice_events.next("feed.liked", on=False)).data["username"] == "bob"
    [after] = (await alice.request("feed.list", {}))["posts"]
    assert after["likes"] == [] and after["likes_count"] == 0


@pytest_twisted.ensureDeferred
async def test_who_may_delete_posts_and_comments(server):
    """A post: only its author (or an admin); a comment: its author or the post's
    author. Deletion is announced (feed.deleted) and takes likes and comments along."""
    alice, bob = await server.user("alice"), await server.user("bob")
    await befriend(alice, bob, "bob", "alice")
    bob_events = EventLog(bob, "bob")
    post = await alice.request("feed.post", {"body": "hello team"})
    pid = post["post_id"]
    theirs = (await bob.request("feed.comment", {"post_id": pid, "body": "hi!"}))["comment_id"]
    mine = (await alice.request("feed.comment", {"post_id": pid, "body": "hi bob"}))["comment_id"]
    await expect_error(bob.request("feed.delete", {"post_id": pid}), ErrorCode.FORBIDDEN)
    await expect_error(bob.request("feed.delete", {"comment_id": mine}), ErrorCode.FORBIDDEN)
    await alice.request("feed.delete", {"comment_id": theirs})
    gone = await bob_events.next("feed.deleted", comment_id=theirs)
    assert gone.data == {"post_id": pid, "comment_id": theirs}
    await expect_error(bob.request("feed.delete", {}), ErrorCode.BAD_REQUEST)
    await alice.request("feed.delete", {"post_id": pid})
    assert (await bob_events.next("feed.deleted", post_id=pid)).data == {"post_id": pid}
    assert (await bob.request("feed.list", {}))["posts"] == []
    await expect_error(alice.request("feed.comments", {"post_id": pid}), ErrorCode.NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_attachments_of_a_post_are_readable_by_its_audience(server):
    """A post may carry the author's files; the author's contacts may then download
    them, strangers may not; someone else's file cannot be attached."""
    alice, bob, carol = (await server.user("alice"), await server.user("bob"),
                         await server.user("carol"))
    await befriend(alice, bob, "bob", "alice")
    photo = await upload(alice, b"\x89PNG fake team photo", "team.png")
    post = await alice.request("feed.post", {"body": "", "attachments": [photo["file_id"]]})
    assert [a["name"] for a in post["attachments"]] == ["team.png"]
    assert await download(bob, photo["file_id"]) == b"\x89PNG fake team photo"
    await expect_error(download(carol, photo["file_id"]), ErrorCode.NOT_FOUND)
    theirs = await upload(carol, b"carol's", "carol.txt")
    await expect_error(alice.request("feed.post", {"body": "x",
                                                   "attachments": [theirs["file_id"]]}),
                       ErrorCode.NOT_FOUND)
    await expect_error(alice.request("feed.post", {"body": "  "}), ErrorCode.BAD_REQUEST)


@pytest_twisted.ensureDeferred
async def test_feed_pages_newest_first_with_a_cursor(server):
    """feed.list pages with next_cursor until has_more is false; every post once."""
    alice = await server.user("alice")
    for i in range(7):
        await alice.request("feed.post", {"body": f"post {i}"})
    seen, cursor = [], None
    while True:
        page = await alice.request("feed.list", {"limit": 3, **({"cursor": cursor} if cursor
                                                                else {})})
        seen += [p["body"] for p in page["posts"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == [f"post {i}" for i in reversed(range(7))]
    await expect_error(alice.request("feed.list", {"cursor": "nope"}), ErrorCode.BAD_REQUEST)


@pytest_twisted.ensureDeferred
async def test_feed_store_on_both_engines(store, monkeypatch):
    """The feed's transactions on SQLite and PostgreSQL: visibility through contacts,
    likes once, comments capped per post, deletion of a post with what hangs on it."""
    from chatnet.errors import ChatError
    from chatnet.store import feed
    from chatnet.store.users import ContactLimits
    from tests.core.test_store import T0, new_user

    alice, bob, carol = (await new_user(store, "alice"), await new_user(store, "bob"),
                         await new_user(store, "carol"))
    limits = ContactLimits(max_contacts=10, max_outgoing=10, request_ttl_ms=10**9)
    assert await store.contact_request(alice.id, bob.id, None, T0, limits) == "pending"
    assert await store.contact_request(bob.id, alice.id, None, T0, limits) == "accepted"
    post = await store.create_post(store.ids.next_id(), alice.id, T0, "hello", [])
    pid = post["post_id"]
    assert [p["post_id"] for p in (await store.list_posts(bob.id, None, None, 10, 10**6))[0]] \
        == [pid]
    assert (await store.list_posts(carol.id, None, None, 10, 10**6))[0] == []
    assert await store.like_post(bob.id, pid, True, T0) is True
    assert await store.like_post(bob.id, pid, True, T0) is False
    monkeypatch.setattr(feed, "MAX_COMMENTS", 2)
    for i in range(2):
        await store.comment_post(store.ids.next_id(), bob.id, pid, f"c{i}", T0)
    with pytest.raises(ChatError) as over:
        await store.comment_post(store.ids.next_id(), bob.id, pid, "one too many", T0)
    assert over.value.code is ErrorCode.CONFLICT and over.value.details == {"limit": 2}
    assert await store.delete_post(alice.id, pid, False) == {alice.id, bob.id}
    assert (await store.list_posts(alice.id, None, None, 10, 10**6))[0] == []
    counts = await store.db.run_interaction("left", lambda t: [
        int(t.scalar(f"SELECT COUNT(*) FROM {table}")) for table in
        ("feed_likes", "feed_comments", "feed_posts")])
    assert counts == [0, 0, 0]

