"""The team feed (PROTOCOL.md 10): posts a user's contacts see, likes, comments.

Every event goes to the post's audience — its author's sessions and their
accepted contacts' — encoded once (``feed.posted {post}``, ``feed.liked
{post_id, username, on}``, ``feed.commented {post_id, comment}``,
``feed.deleted {post_id, comment_id?}``). Limits: :mod:`chatnet.store.feed`
and the ``posts`` and ``changes`` budgets (docs/protocol.md "Limits").
"""

from __future__ import annotations

import re
from typing import Any

from chatnet.config import DEFAULT_MAX_FRAME
from chatnet.errors import bad_request
from chatnet.fanout import LocalFanout
from chatnet.services import Actor, Clock, ms
from chatnet.services.users import UserService
from chatnet.store import ChatStore
from chatnet.wire.codec import event_frame

#: Bytes a feed page leaves for the envelope (as for message pages).
PAGE_MARGIN = 1024
_CURSOR = re.compile(r"(\d{1,19})\.(\d{1,19})")


class FeedService:
    """Feed state is all in the store; this holds what the perspectives share.

    Args:
        store: the chat store.
        fanout: event delivery.
        users: user lookups (``feed.list {author}``).
        clock: time source.
        max_frame: the frame limit, which bounds pages.
    """

    def __init__(self, store: ChatStore, fanout: LocalFanout, users: UserService, clock: Clock,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.store = store
        self.fanout = fanout
        self.users = users
        self.clock = clock
        self.page_budget = max_frame - PAGE_MARGIN

    def perspective(self, actor: Actor) -> FeedPerspective:
        """The ``feed.*`` ops for one session."""
        return FeedPerspective(self, actor)


class FeedPerspective:
    """``perspective_*`` methods for the ``feed.*`` ops (PROTOCOL.md 10)."""

    def __init__(self, service: FeedService, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    async def perspective_post(self, body: str, attachments: list[str] | None) -> dict[str, Any]:
        """``feed.post`` → the post; its audience gets ``feed.posted {post}``.

        Raises:
            ChatError: ``bad_request`` (empty without attachments), ``not_found``
                (a file the author may not see), ``conflict`` (too many posts).
        """
        if not body.strip() and not attachments:
            raise bad_request("body must not be empty")
        service = self.service
        post = await service.store.create_post(service.store.ids.next_id(), self.actor.user_id,
                                               ms(service.clock), body, attachments or [])
        _author, audience = await service.store.post_audience(post["post_id"])
        # "liked" is the reader's own: a new post is liked by nobody.
        service.fanout.deliver_users(audience, event_frame("feed.posted", {"post": post}))
        return post

    async def perspective_list(self, author: str | None, before_ts: int | None,
                               limit: int, cursor: str | None) -> dict[str, Any]:
        """``feed.list`` → ``{posts, has_more, next_cursor?}``: own and contacts'
        posts (or one author's, if visible), newest first; each with up to 50
        likers, ``likes_count``, ``liked`` (by the reader), the 10 newest comments
        and ``comments_count``. Pages fit the frame.

        Raises:
            ChatError: ``not_found`` (no such author), ``bad_request`` (a cursor
                this server did not give).
        """
        service = self.service
        author_id = (await service.users.user_named(author)).user_id if author else None
        before: tuple[int, int] | None = None
        if cursor is not None:
            match = _CURSOR.fullmatch(cursor)
            if match is None:
                raise bad_request("cursor is not one this server gave")
            before = (int(match.group(1)), int(match.group(2)))
        elif before_ts is not None:
            before = (before_ts, 0)
        posts, more = await service.store.list_posts(self.actor.user_id, author_id, before,
                                                     limit, service.page_budget)
        result: dict[str, Any] = {"posts": posts, "has_more": more}
        if more and posts:
            result["next_cursor"] = f"{posts[-1]['ts']}.{posts[-1]['post_id']}"
        return result

    async def perspective_like(self, post_id: int, on: bool) -> dict[str, Any]:
        """``feed.like`` → ``{}``; if it changed, the audience gets ``feed.liked``.

        Raises:
            ChatError: ``not_found``.
        """
        service = self.service
        if await service.store.like_post(self.actor.user_id, post_id, on, ms(service.clock)):
            _author, audience = await service.store.post_audience(post_id)
            service.fanout.deliver_users(audience, event_frame(
                "feed.liked", {"post_id": post_id, "username": self.actor.username, "on": on}))
        return {}

    async def perspective_comment(self, post_id: int, body: str) -> dict[str, Any]:
        """``feed.comment`` → ``{comment_id}``; the audience gets ``feed.commented``.

        Raises:
            ChatError: ``not_found``, ``bad_request`` (empty), ``conflict`` (the
                post has the most comments it may have).
        """
        if not body.strip():
            raise bad_request("body must not be empty")
        service = self.service
        comment = await service.store.comment_post(service.store.ids.next_id(),
                                                   self.actor.user_id, post_id, body,
                                                   ms(service.clock))
        _author, audience = await service.store.post_audience(post_id)
        service.fanout.deliver_users(audience, event_frame(
            "feed.commented", {"post_id": post_id, "comment": comment}))
        return {"comment_id": comment["comment_id"]}

    async def perspective_comments(self, post_id: int, before_id: int | None,
                                   limit: int) -> dict[str, Any]:
        """``feed.comments`` (extension) → ``{comments, has_more}``, newest first.

        Raises:
            ChatError: ``not_found``.
        """
        comments, more = await self.service.store.comments(self.actor.user_id, post_id,
                                                           before_id, limit)
        return {"comments": comments, "has_more": more}

    async def perspective_delete(self, post_id: int | None,
                                 comment_id: int | None) -> dict[str, Any]:
        """``feed.delete {post_id}`` or ``{comment_id}`` → ``{}``; the audience gets
        ``feed.deleted {post_id, comment_id?}``. A post: its author or an admin; a
        comment: its author, the post's author or an admin.

        Raises:
            ChatError: ``bad_request`` (neither or both ids), ``not_found``,
                ``forbidden``.
        """
        if (post_id is None) == (comment_id is None):
            raise bad_request("give post_id or comment_id")
        service = self.service
        admin = "admin" in self.actor.roles
        if comment_id is not None:
            post_id, audience = await service.store.delete_comment(self.actor.user_id,
                                                                   comment_id, admin)
            data: dict[str, Any] = {"post_id": post_id, "comment_id": comment_id}
        else:
            assert post_id is not None
            audience = await service.store.delete_post(self.actor.user_id, post_id, admin)
            data = {"post_id": post_id}
        service.fanout.deliver_users(audience, event_frame("feed.deleted", data))
        return {}
