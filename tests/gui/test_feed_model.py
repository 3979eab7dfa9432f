"""FeedModel's rules, without a server: posts newest first and once, likes
counted past the 50 listed, comments once, an author's posts leaving."""

from __future__ import annotations

from typing import Any

from qtclient.models.feed import FeedModel


def _post(post_id: int, ts: int, author: str = "bob", **extra: Any) -> dict[str, Any]:
    return {"post_id": post_id, "author": author, "ts": ts, "body": f"p{post_id}",
            "attachments": [], "likes": [], "likes_count": 0, "liked": False,
            "comments": [], "comments_count": 0, **extra}


def test_posts_stay_newest_first_and_appear_once() -> None:
    """A live post goes on top; one already shown (the answer to one's own post
    and its event) is not doubled; one older than the loaded pages waits for
    "older posts"."""
    model = FeedModel("alice")
    model.load_newest([_post(2, 200), _post(3, 300)], has_more=True, next_cursor="200.2")
    assert [p.post_id for p in model.posts()] == [3, 2]
    assert model.add_post(_post(4, 400, author="alice"))
    assert not model.add_post(_post(4, 400, author="alice"))
    assert not model.add_post(_post(1, 100))
    assert model.append_older([_post(2, 200), _post(1, 100)], False, None) == 1
    assert [p.post_id for p in model.posts()] == [4, 3, 2, 1]
    assert model.index(0).data(FeedModel.Roles.IsOwn) is True


def test_likes_and_comments_follow_the_events() -> None:
    """Likes by name (and beyond the 50 listed, by count only); the reader's own
    like marks the post liked; a comment comes once; a deletion takes one off."""
    model = FeedModel("alice")
    likers = [f"u{n}" for n in range(50)]
    model.load_newest([_post(1, 100, likes=likers, likes_count=60)], False, None)
    model.apply_like(1, "alice", True)
    item = model.post(1)
    assert item is not None and item.liked and item.likes_count == 61
    model.apply_like(1, "alice", True)  # no change, no double count
    assert item.likes_count == 61
    model.apply_like(1, "someone-unlisted", False)
    assert item.likes_count == 60
    comment = {"comment_id": 7, "author": "bob", "ts": 150, "body": "hi"}
    model.add_comment(1, comment)
    model.add_comment(1, comment)
    assert item.comments_count == 1 and len(item.comments) == 1
    model.remove_comment(1, 7)
    assert item.comments == [] and item.comments_count == 0


def test_an_authors_posts_leave_with_them() -> None:
    """A contact removed or blocked: their posts leave, others stay."""
    model = FeedModel("alice")
    model.load_newest([_post(1, 100), _post(2, 200, author="carol"), _post(3, 300)],
                      False, None)
    model.remove_author("bob")
    assert [p.post_id for p in model.posts()] == [2]
