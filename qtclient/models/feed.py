"""The team feed of an account (PROTOCOL.md 10): posts, newest first, with likes and comments.

:class:`FeedModel` holds the posts loaded so far — the newest page of
``feed.list``, then older pages as the user asks for them — and is kept current
by the ``feed.posted``, ``feed.liked``, ``feed.commented`` and ``feed.deleted``
events. The feed manager (:mod:`qtclient.feed`) changes it only through its
domain methods; the Feed window reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from qtclient.models.base import RowsModel
from qtclient.qt import (
    USER_ROLE,
    ItemRole,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    pyqtSignal,
)

_Index = QModelIndex | QPersistentModelIndex


@dataclass(slots=True)
class PostItem:
    """One post as the reader sees it (docs/protocol.md 10).

    Attributes:
        post_id: the server's id.
        author: the author's username.
        ts: when it was posted (ms since the epoch).
        body: its text (may be empty when it has attachments).
        attachments: ``{file_id, name, size, mime}`` of its files.
        likes: usernames of (up to 50 of) the people who like it, oldest first.
        likes_count: how many like it.
        liked: whether the reader likes it.
        comments: the comments loaded, oldest first, each ``{comment_id,
            author, ts, body}``.
        comments_count: how many comments it has on the server.
        revision: bumped on every change (views redraw what changed).
    """

    post_id: int
    author: str
    ts: int
    body: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    likes: list[str] = field(default_factory=list)
    likes_count: int = 0
    liked: bool = False
    comments: list[dict[str, Any]] = field(default_factory=list)
    comments_count: int = 0
    revision: int = 0

    @classmethod
    def from_post(cls, post: dict[str, Any], me: str) -> PostItem:
        """A row from a post of ``feed.list``, ``feed.post`` or ``feed.posted``."""
        likes = [str(u) for u in post.get("likes") or []]
        comments = sorted((dict(c) for c in post.get("comments") or []),
                          key=lambda c: int(c.get("comment_id", 0)))
        return cls(post_id=int(post["post_id"]), author=str(post.get("author", "")),
                   ts=int(post.get("ts", 0)), body=str(post.get("body") or ""),
                   attachments=[dict(a) for a in post.get("attachments") or []],
                   likes=likes, likes_count=int(post.get("likes_count", len(likes))),
                   liked=bool(post.get("liked", me in likes)), comments=comments,
                   comments_count=int(post.get("comments_count", len(comments))))

    @property
    def earlier_comments(self) -> int:
        """Comments on the server older than those loaded."""
        return max(0, self.comments_count - len(self.comments))


class FeedModel(RowsModel):
    """The posts of one account's feed, newest first.

    Args:
        me: the user's own username (``liked``, own posts).
        names: username -> display name, kept current by the controller.

    Attributes:
        loaded: the newest page has arrived at least once.
        loading: a page is on its way (the view asks only once).
        has_more: older posts exist beyond the last row.
        next_cursor: where the next older page starts (``feed.list {cursor}``).

    Signals:
        paging_changed(): a page arrived or the feed was cleared (``loaded``,
            ``has_more`` may have changed even if no row did).
    """

    paging_changed = pyqtSignal()

    class Roles(IntEnum):
        """Data roles; ``DisplayRole`` gives the body."""

        PostId = USER_ROLE + 1
        Author = USER_ROLE + 2
        AuthorName = USER_ROLE + 3
        Timestamp = USER_ROLE + 4
        Body = USER_ROLE + 5
        Attachments = USER_ROLE + 6
        Likes = USER_ROLE + 7
        LikesCount = USER_ROLE + 8
        Liked = USER_ROLE + 9
        Comments = USER_ROLE + 10
        CommentsCount = USER_ROLE + 11
        IsOwn = USER_ROLE + 12
        Revision = USER_ROLE + 13

    def __init__(self, me: str = "", names: Mapping[str, str] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.me = me
        self.names: Mapping[str, str] = names if names is not None else {}
        self.loaded = False
        self.loading = False
        self.has_more = False
        self.next_cursor: str | None = None
        self._rows: list[PostItem] = []

    def data(self, index: _Index, role: int = ItemRole.DisplayRole.value) -> Any:
        """The post at ``index`` by role."""
        item: PostItem | None = self.row_item(index)
        if item is None:
            return None
        r = self.Roles
        values: dict[int, Any] = {
            ItemRole.DisplayRole.value: item.body, r.PostId: item.post_id,
            r.Author: item.author, r.AuthorName: self.names.get(item.author, item.author),
            r.Timestamp: item.ts, r.Body: item.body, r.Attachments: item.attachments,
            r.Likes: item.likes, r.LikesCount: item.likes_count, r.Liked: item.liked,
            r.Comments: item.comments, r.CommentsCount: item.comments_count,
            r.IsOwn: item.author == self.me, r.Revision: item.revision,
        }
        return values.get(role)

    # -- reading -------------------------------------------------------------------------------

    def posts(self) -> list[PostItem]:
        """The rows, newest first."""
        return list(self._rows)

    def post(self, post_id: int) -> PostItem | None:
        """The row of ``post_id``, if loaded."""
        return next((p for p in self._rows if p.post_id == post_id), None)

    def row_of(self, post_id: int) -> int:
        """The row of ``post_id`` (-1 if not loaded)."""
        return next((row for row, p in enumerate(self._rows) if p.post_id == post_id), -1)

    # -- domain changes ------------------------------------------------------------------------

    def _changed(self, item: PostItem) -> None:
        item.revision += 1
        index = self.index(self.row_of(item.post_id))
        self.dataChanged.emit(index, index)

    def load_newest(self, posts: list[dict[str, Any]], has_more: bool,
                    next_cursor: str | None) -> None:
        """The newest page of ``feed.list`` (replaces the rows)."""
        self.beginResetModel()
        self._rows = sorted((PostItem.from_post(p, self.me) for p in posts),
                            key=lambda p: (p.ts, p.post_id), reverse=True)
        self.has_more, self.next_cursor = has_more, next_cursor
        self.loaded, self.loading = True, False
        self.endResetModel()
        self.paging_changed.emit()

    def append_older(self, posts: list[dict[str, Any]], has_more: bool,
                     next_cursor: str | None) -> int:
        """An older page (after the last row); posts already shown are skipped.

        Returns:
            how many rows were added.
        """
        known = {p.post_id for p in self._rows}
        fresh = [PostItem.from_post(p, self.me) for p in posts
                 if int(p["post_id"]) not in known]
        self.has_more, self.next_cursor, self.loading = has_more, next_cursor, False
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            self.endInsertRows()
        self.paging_changed.emit()
        return len(fresh)

    def add_post(self, post: dict[str, Any]) -> bool:
        """A new post (``feed.posted``, or the answer to one's own ``feed.post``)
        goes on top; one already shown is left as it is.

        Returns:
            whether a row was added.
        """
        if self.post(int(post["post_id"])) is not None:
            return False
        item = PostItem.from_post(post, self.me)
        row = next((r for r, p in enumerate(self._rows)
                    if (p.ts, p.post_id) < (item.ts, item.post_id)), len(self._rows))
        if row == len(self._rows) and self.has_more:
            return False  # older than the loaded pages: it comes with "older posts"
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, item)
        self.endInsertRows()
        return True

    def apply_like(self, post_id: int, username: str, on: bool) -> None:
        """``feed.liked``: ``username`` likes (``on``) or no longer likes a post."""
        item = self.post(post_id)
        if item is None:
            return
        if on and username not in item.likes:
            item.likes.append(username)
            item.likes_count += 1
        elif not on and username in item.likes:
            item.likes.remove(username)
            item.likes_count = max(0, item.likes_count - 1)
        elif not on and item.likes_count > len(item.likes):
            item.likes_count -= 1  # one of those beyond the 50 listed
        elif on:
            return
        if username == self.me:
            item.liked = on
        self._changed(item)

    def add_comment(self, post_id: int, comment: dict[str, Any]) -> None:
        """``feed.commented``: a comment at the end of the post's (once)."""
        item = self.post(post_id)
        if item is None or any(c.get("comment_id") == comment.get("comment_id")
                               for c in item.comments):
            return
        item.comments.append(dict(comment))
        item.comments_count += 1
        self._changed(item)

    def prepend_comments(self, post_id: int, comments: list[dict[str, Any]]) -> None:
        """Earlier comments (``feed.comments``, newest first) before those loaded."""
        item = self.post(post_id)
        if item is None:
            return
        known = {c.get("comment_id") for c in item.comments}
        older = sorted((dict(c) for c in comments if c.get("comment_id") not in known),
                       key=lambda c: int(c.get("comment_id", 0)))
        item.comments[:0] = older
        item.comments_count = max(item.comments_count, len(item.comments))
        self._changed(item)

    def remove_comment(self, post_id: int, comment_id: int) -> None:
        """``feed.deleted {comment_id}``: the comment is gone."""
        item = self.post(post_id)
        if item is None:
            return
        kept = [c for c in item.comments if c.get("comment_id") != comment_id]
        item.comments_count = max(0, item.comments_count - 1)
        item.comments = kept
        self._changed(item)

    def remove_post(self, post_id: int) -> None:
        """``feed.deleted {post_id}``: the post is gone."""
        row = self.row_of(post_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()

    def remove_author(self, username: str) -> None:
        """``username`` is no longer a contact (removed, or blocked): the server
        no longer shows their posts, so neither does the feed."""
        for item in [p for p in self._rows if p.author == username]:
            self.remove_post(item.post_id)

    def names_changed(self) -> None:
        """Display names changed: every row's author name may have."""
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    def clear(self) -> None:
        """Forget everything (logout)."""
        self.beginResetModel()
        self._rows = []
        self.loaded = self.loading = self.has_more = False
        self.next_cursor = None
        self.endResetModel()
        self.paging_changed.emit()
