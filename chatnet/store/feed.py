"""Data access for the team feed (PROTOCOL.md 10). Mixed into :class:`ChatStore`.

A post is visible to its author and to the author's accepted contacts *now*
(removing a contact hides their posts again). Each post in a list carries up to
:data:`LISTED_LIKES` likers and its :data:`LISTED_COMMENTS` newest comments,
with ``likes_count`` and ``comments_count`` for the rest (``feed.comments`` pages
through all of them), so a page's size is bounded by construction and pages
stop before they would outgrow the frame.

Limits per user: :data:`MAX_POSTS` posts kept, :data:`MAX_COMMENTS` comments
per post (from everyone), attachments as for messages (20, files the author
may see).
"""

from __future__ import annotations

from typing import Any

from chatnet.errors import ChatError, ErrorCode, forbidden, not_found
from chatnet.store.database import Database, Txn
from chatnet.store.files import file_by_id, may_access
from chatnet.wire.codec import pack

#: Posts one user may have (older ones must be deleted first).
MAX_POSTS = 10_000
#: Comments one post may have, from everyone.
MAX_COMMENTS = 500
#: Likers listed by name in a post (the rest are counted).
LISTED_LIKES = 50
#: Newest comments carried in a post (``feed.comments`` has the rest).
LISTED_COMMENTS = 10

#: ``viewer`` (``?``) sees posts of ``p.author_id``.
_SEES = ("(p.author_id = ? OR EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = ? AND "
         "c.contact_id = p.author_id AND c.state = 'accepted'))")


def _sees(t: Txn, viewer_id: int, post_id: int) -> int | None:
    """The author of ``post_id`` if ``viewer_id`` may see it, else None."""
    author = t.scalar(f"SELECT p.author_id FROM feed_posts p WHERE p.post_id = ? AND {_SEES}",
                      (post_id, viewer_id, viewer_id))
    return int(author) if author is not None else None


def _comment(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"comment_id": int(row[0]), "author": row[1], "ts": int(row[2]), "body": row[3]}


class FeedStore:
    """Posts, likes and comments."""

    db: Database

    async def create_post(self, post_id: int, author_id: int, ts: int, body: str,
                          attachments: list[str]) -> dict[str, Any]:
        """Store a post.

        Returns:
            the post as ``feed.post`` answers it.

        Raises:
            ChatError: ``not_found`` for a file the author may not see;
                ``conflict`` with ``details.limit`` past :data:`MAX_POSTS`.
        """
        def txn(t: Txn) -> dict[str, Any]:
            count = int(t.scalar("SELECT COUNT(*) FROM feed_posts WHERE author_id = ?",
                                 (author_id,)))
            if count >= MAX_POSTS:
                raise ChatError(ErrorCode.CONFLICT, f"you have {MAX_POSTS} posts; delete some "
                                "first", {"limit": MAX_POSTS})
            files = []
            for file_id in dict.fromkeys(attachments):
                record = file_by_id(t, file_id)
                if record is None or not may_access(t, file_id, author_id):
                    raise not_found(f"no such file {file_id!r}")
                files.append(record)
            t.execute("INSERT INTO feed_posts (post_id, author_id, ts, body) VALUES (?, ?, ?, ?)",
                      (post_id, author_id, ts, body))
            t.executemany("INSERT INTO feed_post_files (post_id, file_id, position) "
                          "VALUES (?, ?, ?)", [(post_id, f.file_id, i) for i, f in
                                               enumerate(files)])
            [post] = self._posts(t, [post_id], author_id)
            return post

        return await self.db.run_interaction("create_post", txn)

    def _posts(self, t: Txn, post_ids: list[int], viewer_id: int) -> list[dict[str, Any]]:
        """Posts by id, in the given order, with their files, likes and newest comments."""
        if not post_ids:
            return []
        marks = ",".join("?" * len(post_ids))
        rows = {int(r[0]): r for r in t.execute(
            f"SELECT p.post_id, u.username, p.ts, p.body FROM feed_posts p JOIN users u ON "
            f"u.user_id = p.author_id WHERE p.post_id IN ({marks})", post_ids).fetchall()}
        posts = []
        for post_id in post_ids:
            row = rows.get(post_id)
            if row is None:
                continue
            files = t.execute(
                "SELECT f.file_id FROM feed_post_files f WHERE f.post_id = ? ORDER BY f.position",
                (post_id,)).fetchall()
            attachments = []
            for (file_id,) in files:
                record = file_by_id(t, str(file_id))
                if record is not None:
                    attachments.append(record.attachment())
            likes = [str(r[0]) for r in t.execute(
                "SELECT u.username FROM feed_likes l JOIN users u ON u.user_id = l.user_id "
                "WHERE l.post_id = ? ORDER BY l.ts, u.username LIMIT ?",
                (post_id, LISTED_LIKES)).fetchall()]
            likes_count = int(t.scalar("SELECT COUNT(*) FROM feed_likes WHERE post_id = ?",
                                       (post_id,)))
            liked = t.scalar("SELECT 1 FROM feed_likes WHERE post_id = ? AND user_id = ?",
                             (post_id, viewer_id)) is not None
            comments = [_comment(r) for r in t.execute(
                "SELECT c.comment_id, u.username, c.ts, c.body FROM feed_comments c JOIN users "
                "u ON u.user_id = c.author_id WHERE c.post_id = ? ORDER BY c.comment_id DESC "
                "LIMIT ?", (post_id, LISTED_COMMENTS)).fetchall()]
            comments.reverse()
            comments_count = int(t.scalar("SELECT COUNT(*) FROM feed_comments WHERE "
                                          "post_id = ?", (post_id,)))
            posts.append({"post_id": post_id, "author": row[1], "ts": int(row[2]),
                          "body": row[3], "attachments": attachments, "likes": likes,
                          "likes_count": likes_count, "liked": liked, "comments": comments,
                          "comments_count": comments_count})
        return posts

    async def list_posts(self, viewer_id: int, author_id: int | None,
                         before: tuple[int, int] | None, limit: int,
                         budget: int) -> tuple[list[dict[str, Any]], bool]:
        """The viewer's own posts and their contacts' (or one author's, if the viewer
        sees them), newest first, at most ``limit`` and ``budget`` bytes.

        Args:
            before: ``(ts, post_id)`` of the last post of the previous page.

        Returns:
            ``(posts, has_more)``.

        Raises:
            ChatError: ``too_large`` if not even one post fits ``budget``.
        """
        def txn(t: Txn) -> tuple[list[dict[str, Any]], bool]:
            where = _SEES
            args: list[Any] = [viewer_id, viewer_id]
            if author_id is not None:
                where += " AND p.author_id = ?"
                args.append(author_id)
            if before is not None:
                where += " AND (p.ts < ? OR (p.ts = ? AND p.post_id < ?))"
                args.extend((before[0], before[0], before[1]))
            ids = [int(r[0]) for r in t.execute(
                f"SELECT p.post_id FROM feed_posts p WHERE {where} "
                "ORDER BY p.ts DESC, p.post_id DESC LIMIT ?", [*args, limit + 1]).fetchall()]
            page: list[dict[str, Any]] = []
            used = 0
            for post in self._posts(t, ids[:limit], viewer_id):
                size = len(pack(post))
                if used + size > budget:
                    if not page:
                        raise ChatError(ErrorCode.TOO_LARGE, "a post does not fit the frame")
                    return page, True
                page.append(post)
                used += size
            return page, len(ids) > limit

        return await self.db.run_interaction("list_posts", txn)

    async def post_audience(self, post_id: int) -> tuple[int, set[int]]:
        """``(author_id, author and their accepted contacts)``.

        Raises:
            ChatError: ``not_found`` (no such post).
        """
        def txn(t: Txn) -> tuple[int, set[int]]:
            author = t.scalar("SELECT author_id FROM feed_posts WHERE post_id = ?", (post_id,))
            if author is None:
                raise not_found("no such post")
            ids = {int(r[0]) for r in t.execute(
                "SELECT contact_id FROM contacts WHERE user_id = ? AND state = 'accepted'",
                (author,)).fetchall()}
            return int(author), ids | {int(author)}

        return await self.db.run_interaction("post_audience", txn)

    async def like_post(self, viewer_id: int, post_id: int, on: bool, ts: int) -> bool:
        """Like (or stop liking) a post the viewer sees.

        Returns:
            whether anything changed.

        Raises:
            ChatError: ``not_found`` (no such post, or not visible).
        """
        def txn(t: Txn) -> bool:
            if _sees(t, viewer_id, post_id) is None:
                raise not_found("no such post")
            if on:
                if t.scalar("SELECT 1 FROM feed_likes WHERE post_id = ? AND user_id = ?",
                            (post_id, viewer_id)) is not None:
                    return False
                t.execute("INSERT INTO feed_likes (post_id, user_id, ts) VALUES (?, ?, ?)",
                          (post_id, viewer_id, ts))
                return True
            t.execute("DELETE FROM feed_likes WHERE post_id = ? AND user_id = ?",
                      (post_id, viewer_id))
            return t.rowcount > 0

        return await self.db.run_interaction("like_post", txn)

    async def comment_post(self, comment_id: int, viewer_id: int, post_id: int, body: str,
                           ts: int) -> dict[str, Any]:
        """Comment on a post the viewer sees.

        Returns:
            the comment ``{comment_id, author, ts, body}``.

        Raises:
            ChatError: ``not_found``; ``conflict`` with ``details.limit`` past
                :data:`MAX_COMMENTS`.
        """
        def txn(t: Txn) -> dict[str, Any]:
            if _sees(t, viewer_id, post_id) is None:
                raise not_found("no such post")
            count = int(t.scalar("SELECT COUNT(*) FROM feed_comments WHERE post_id = ?",
                                 (post_id,)))
            if count >= MAX_COMMENTS:
                raise ChatError(ErrorCode.CONFLICT, f"this post has {MAX_COMMENTS} comments, "
                                "the most it may have", {"limit": MAX_COMMENTS})
            t.execute("INSERT INTO feed_comments (comment_id, post_id, author_id, ts, body) "
                      "VALUES (?, ?, ?, ?, ?)", (comment_id, post_id, viewer_id, ts, body))
            row = t.execute("SELECT c.comment_id, u.username, c.ts, c.body FROM feed_comments "
                            "c JOIN users u ON u.user_id = c.author_id WHERE c.comment_id = ?",
                            (comment_id,)).fetchone()
            assert row is not None
            return _comment(row)

        return await self.db.run_interaction("comment_post", txn)

    async def comments(self, viewer_id: int, post_id: int, before_id: int | None,
                       limit: int) -> tuple[list[dict[str, Any]], bool]:
        """A page of a visible post's comments, newest first before ``before_id``.

        Raises:
            ChatError: ``not_found``.
        """
        def txn(t: Txn) -> tuple[list[dict[str, Any]], bool]:
            if _sees(t, viewer_id, post_id) is None:
                raise not_found("no such post")
            where, args = "c.post_id = ?", [post_id]
            if before_id is not None:
                where += " AND c.comment_id < ?"
                args.append(before_id)
            rows = t.execute(f"SELECT c.comment_id, u.username, c.ts, c.body FROM "
                             f"feed_comments c JOIN users u ON u.user_id = c.author_id WHERE "
                             f"{where} ORDER BY c.comment_id DESC LIMIT ?",
                             [*args, limit + 1]).fetchall()
            return [_comment(r) for r in rows[:limit]], len(rows) > limit

        return await self.db.run_interaction("comments", txn)

    async def delete_post(self, actor_id: int, post_id: int, admin: bool) -> set[int]:
        """Delete a post (its author, or an admin) with its likes, comments and file
        links.

        Returns:
            who saw it (author and contacts), for the event.

        Raises:
            ChatError: ``not_found`` (no such post, or not visible to a non-admin),
                ``forbidden`` (someone else's).
        """
        def txn(t: Txn) -> set[int]:
            author = t.scalar("SELECT author_id FROM feed_posts WHERE post_id = ?", (post_id,))
            if author is None or (not admin and _sees(t, actor_id, post_id) is None):
                raise not_found("no such post")
            if int(author) != actor_id and not admin:
                raise forbidden("only the author or an admin can delete a post")
            audience = {int(r[0]) for r in t.execute(
                "SELECT contact_id FROM contacts WHERE user_id = ? AND state = 'accepted'",
                (author,)).fetchall()} | {int(author)}
            for table in ("feed_likes", "feed_comments", "feed_post_files", "feed_posts"):
                t.execute(f"DELETE FROM {table} WHERE post_id = ?", (post_id,))
            return audience

        return await self.db.run_interaction("delete_post", txn)

    async def delete_comment(self, actor_id: int, comment_id: int,
                             admin: bool) -> tuple[int, set[int]]:
        """Delete a comment: its author, the post's author, or an admin.

        Returns:
            ``(post_id, who sees the post)``.

        Raises:
            ChatError: ``not_found``, ``forbidden``.
        """
        def txn(t: Txn) -> tuple[int, set[int]]:
            row = t.execute("SELECT c.post_id, c.author_id, p.author_id FROM feed_comments c "
                            "JOIN feed_posts p ON p.post_id = c.post_id WHERE c.comment_id = ?",
                            (comment_id,)).fetchone()
            if row is None or (not admin and _sees(t, actor_id, int(row[0])) is None):
                raise not_found("no such comment")
            post_id, writer, author = int(row[0]), int(row[1]), int(row[2])
            if actor_id not in (writer, author) and not admin:
                raise forbidden("only the comment's author, the post's author or an admin "
                                "can delete a comment")
            t.execute("DELETE FROM feed_comments WHERE comment_id = ?", (comment_id,))
            audience = {int(r[0]) for r in t.execute(
                "SELECT contact_id FROM contacts WHERE user_id = ? AND state = 'accepted'",
                (author,)).fetchall()} | {author}
            return post_id, audience

        return await self.db.run_interaction("delete_comment", txn)
