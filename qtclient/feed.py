"""The team feed of the desktop client (PROTOCOL.md 10; docs/protocol.md 10).

:class:`FeedManager` is owned by the controller and asks the server through
the controller's requests (one success path, one failure path): it turns the
Feed window's intents (post, like, comment, delete, older posts) into
``feed.*`` requests and the ``feed.*`` events into changes of its
:class:`~qtclient.models.feed.FeedModel`. Files for a post go up through the
account's :class:`~qtclient.transfers.TransferManager` like a conversation's,
addressed to :data:`FEED_UPLOADS` instead of a room; once stored they wait in
:attr:`FeedManager.attached` until the post is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from qtclient.i18n import _
from qtclient.models.feed import FeedModel
from qtclient.qt import ID, QObject, pyqtSignal
from qtclient.transfers import TransferManager

#: The "room" the feed composer's uploads are addressed to (rooms have positive
#: ids): the transfer manager's strip and its ``upload_finished`` tell them apart.
FEED_UPLOADS = 0
#: Posts per page of ``feed.list`` (docs/protocol.md 10 allows up to 100).
FEED_PAGE_SIZE = 20
#: Comments per page of ``feed.comments`` (up to 200).
COMMENTS_PAGE_SIZE = 50
#: Files one post may carry (docs/protocol.md 10).
MAX_POST_FILES = 20

#: ``request(op, args, on_success, on_failure)``: the controller's ``_call``.
Request = Callable[..., Deferred[Any]]


class FeedManager(QObject):
    """Loads and changes the account's feed.

    Args:
        request: sends one request (the controller's, with its failure path).
        describe: turns a failure into a translated sentence.
        files: the account's transfers (the composer's uploads).
        names: username -> display name (the controller's, kept current).
        parent: the owning QObject (the controller).

    Attributes:
        posts: the feed's posts, newest first.
        attached: files uploaded for the post being written, ``{file_id, name,
            size, mime}`` each, in the order they finished.
        is_admin: the account may delete anyone's post (set at login).
        page_size: posts per ``feed.list`` page.

    Signals:
        error(text): a request was refused; a translated sentence (the server's
            reason for a limit).
        attached_changed(): :attr:`attached` changed.
        posted(post_id): the user's post was stored (the composer may be cleared).
    """

    error = pyqtSignal(str)
    attached_changed = pyqtSignal()
    posted = pyqtSignal(ID)

    def __init__(self, request: Request, describe: Callable[[BaseException], str],
                 files: TransferManager, names: Mapping[str, str],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.describe = describe
        self.files = files
        self.posts = FeedModel("", names, self)
        self.attached: list[dict[str, Any]] = []
        self.is_admin = False
        self.page_size = FEED_PAGE_SIZE
        self._generation = 0
        files.upload_finished.connect(self._uploaded)

    def start(self, me: str, is_admin: bool) -> None:
        """Logged in as ``me`` (nothing is loaded until the Feed window opens)."""
        self.posts.me = me
        self.is_admin = is_admin

    def reset(self) -> None:
        """Logged out: forget the posts and the composer's files."""
        self._generation += 1
        self.posts.clear()
        self.attached = []
        self.attached_changed.emit()

    def _failed(self, error: BaseException) -> None:
        self.error.emit(self.describe(error))

    # -- reading -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """``feed.list``: the newest page, replacing what is shown (the window
        opened; back online after a reconnect; a new contact's posts)."""
        self._generation += 1
        generation = self._generation
        self.posts.loading = True

        def loaded(page: dict[str, Any]) -> None:
            if generation == self._generation:
                self.posts.load_newest(list(page.get("posts") or []),
                                       bool(page.get("has_more")), page.get("next_cursor"))

        def failed(error: BaseException) -> None:
            if generation == self._generation:
                self.posts.loading = False
            self._failed(error)

        self.request("feed.list", {"limit": self.page_size}, loaded, failed)

    def refresh_if_loaded(self) -> None:
        """:meth:`refresh`, if the feed was ever shown (otherwise it loads when it is)."""
        if self.posts.loaded:
            self.refresh()

    def load_older(self) -> None:
        """The next older page (the list was scrolled to its end, or "Older posts")."""
        posts = self.posts
        if not posts.loaded or posts.loading or not posts.has_more:
            return
        generation = self._generation
        posts.loading = True
        args: dict[str, Any] = {"limit": self.page_size}
        if posts.next_cursor:
            args["cursor"] = posts.next_cursor
        elif posts.posts():
            args["before_ts"] = posts.posts()[-1].ts

        def loaded(page: dict[str, Any]) -> None:
            if generation == self._generation:
                posts.append_older(list(page.get("posts") or []), bool(page.get("has_more")),
                                   page.get("next_cursor"))

        def failed(error: BaseException) -> None:
            if generation == self._generation:
                posts.loading = False
            self._failed(error)

        self.request("feed.list", args, loaded, failed)

    def load_comments(self, post_id: int) -> None:
        """``feed.comments``: the page of comments before the oldest shown."""
        item = self.posts.post(post_id)
        if item is None or not item.earlier_comments:
            return
        args: dict[str, Any] = {"post_id": post_id, "limit": COMMENTS_PAGE_SIZE}
        if item.comments:
            args["before_id"] = int(item.comments[0]["comment_id"])
        self.request("feed.comments", args,
                     lambda page: self.posts.prepend_comments(post_id, list(page["comments"])),
                     self._failed)

    # -- writing -------------------------------------------------------------------------------

    def post(self, body: str) -> bool:
        """``feed.post`` with ``body`` and the attached files; the post shows on
        top once stored (and :attr:`posted` clears the composer).

        Returns:
            False, sending nothing, for an empty post.
        """
        body = body.strip()
        files = [str(f["file_id"]) for f in self.attached]
        if not body and not files:
            return False
        args: dict[str, Any] = {"body": body}
        if files:
            args["attachments"] = files

        def stored(post: dict[str, Any]) -> None:
            self.attached = [f for f in self.attached if str(f["file_id"]) not in files]
            self.attached_changed.emit()
            if self.posts.loaded:
                self.posts.add_post(post)
            self.posted.emit(int(post["post_id"]))

        self.request("feed.post", args, stored, self._failed)
        return True

    def like(self, post_id: int, on: bool) -> None:
        """``feed.like``: the count changes with the ``feed.liked`` event."""
        self.request("feed.like", {"post_id": post_id, "on": on}, None, self._failed)

    def comment(self, post_id: int, body: str) -> bool:
        """``feed.comment``: the comment shows with the ``feed.commented`` event.

        Returns:
            False, sending nothing, for an empty comment.
        """
        body = body.strip()
        if not body:
            return False
        self.request("feed.comment", {"post_id": post_id, "body": body}, None, self._failed)
        return True

    def delete(self, post_id: int) -> None:
        """``feed.delete {post_id}`` (one's own post, or any for an admin)."""
        self.request("feed.delete", {"post_id": post_id},
                     lambda _r: self.posts.remove_post(post_id), self._failed)

    def delete_comment(self, post_id: int, comment_id: int) -> None:
        """``feed.delete {comment_id}`` (one's own comment, one on one's post, or
        any for an admin)."""
        self.request("feed.delete", {"comment_id": comment_id}, None, self._failed)

    def may_delete(self, author: str) -> bool:
        """Whether the user may delete a post by ``author``."""
        return author == self.posts.me or self.is_admin

    # -- the composer's files --------------------------------------------------------------------

    def _uploaded(self, room_id: int, file: dict[str, Any]) -> None:
        if room_id != FEED_UPLOADS:
            return
        if len(self.attached) >= MAX_POST_FILES:
            self.error.emit(_("A post can carry at most {n} files.").format(n=MAX_POST_FILES))
            return
        self.attached.append(dict(file))
        self.attached_changed.emit()

    def detach(self, file_id: str) -> None:
        """Take a file off the post being written (it stays uploaded, unused)."""
        self.attached = [f for f in self.attached if str(f["file_id"]) != file_id]
        self.attached_changed.emit()

    # -- events --------------------------------------------------------------------------------

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        """A ``feed.*`` event of the session."""
        posts = self.posts
        if not posts.loaded:
            return  # loaded whole when the window opens
        if name == "feed.posted":
            posts.add_post(dict(data.get("post") or {}))
        elif name == "feed.liked":
            posts.apply_like(int(data["post_id"]), str(data.get("username", "")),
                             bool(data.get("on")))
        elif name == "feed.commented":
            posts.add_comment(int(data["post_id"]), dict(data.get("comment") or {}))
        elif name == "feed.deleted":
            if data.get("comment_id") is not None:
                posts.remove_comment(int(data["post_id"]), int(data["comment_id"]))
            else:
                posts.remove_post(int(data["post_id"]))
