"""The Feed window (PROTOCOL.md 10): posting with an image, likes and comments
seen live by a contact, paging, deleting, and the server's refusals. A real
server over TLS, two desktop clients, library connections for the rest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chatnet.errors import ChatError, ErrorCode
from qtclient.app import ChatApp
from qtclient.models.thumbnails import READY
from qtclient.qt import QBuffer, QByteArray, QColor, QImage, QIODevice, Qt
from qtclient.views.feed import FeedWindow
from tests.gui.test_admin import give_roles
from tests.support.events import EventLog, barrier


def _png(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#34a853"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, "PNG")
    return bytes(data.data())


def _contacts(server: Any, first: str, second: str) -> None:
    """Make ``first`` and ``second`` contacts (on library connections of their own)."""
    one = server.user(first, register=False)
    two = server.user(second, register=False)
    server.request(one, "contact.request", {"username": second})
    server.request(two, "contact.respond", {"username": first, "accept": True})


def _open_feed(qtbot: Any, app: ChatApp) -> FeedWindow:
    """Chat → Feed…, as the user does; wait for the newest page."""
    app.main_window.feed_action.trigger()
    window = app.dialogs["feed"]
    assert isinstance(window, FeedWindow)
    qtbot.waitUntil(lambda: window.model.loaded)
    return window


def _bodies(window: FeedWindow) -> list[str]:
    return [card.body_label.text() for card in window.cards]


def test_a_post_with_an_image_reaches_a_contact_who_likes_and_comments(
        make_client: Any, server: Any, qtbot: Any, wait: Any, tmp_path: Path) -> None:
    """Alice attaches an image and posts; bob (her contact) sees the post arrive
    in his open Feed window with the image shown inline; his like and his
    comment reach alice's window live; carol, no contact, sees nothing."""
    alice = make_client("alice")
    bob = make_client("bob")
    _contacts(server, "alice", "bob")
    carol = server.user("carol")
    carol_log = EventLog(carol, "carol")
    alice_feed = _open_feed(qtbot, alice)
    bob_feed = _open_feed(qtbot, bob)
    assert alice_feed.empty_label.isVisibleTo(alice_feed)
    assert not alice_feed.post_button.isEnabled()

    picture = tmp_path / "lake.png"
    picture.write_bytes(_png(640, 480))
    alice_feed.choose_files = lambda _parent: [str(picture)]
    alice_feed.attach_button.click()
    qtbot.waitUntil(lambda: len(alice.controller.feed.attached) == 1)
    assert [b.text() for b in alice_feed.attached_buttons] == ["lake.png  ✕"]
    qtbot.keyClicks(alice_feed.composer, "Saturday at the lake")
    qtbot.waitUntil(alice_feed.post_button.isEnabled)
    alice_feed.post_button.click()

    qtbot.waitUntil(lambda: len(bob_feed.cards) == 1)
    card = bob_feed.cards[0]
    assert card.body_label.text() == "Saturday at the lake"
    assert "@alice" in card.author_label.text()
    assert not card.delete_button.isVisibleTo(card)  # not his post
    (file_id,) = card.file_widgets
    thumbnails = bob.controller.files.thumbnails
    qtbot.waitUntil(lambda: thumbnails.state(file_id) == READY)
    preview = card.file_widgets[file_id]
    qtbot.waitUntil(lambda: not preview.icon().isNull())
    assert preview.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly
    assert preview.iconSize().width() > 100  # a picture, not an icon
    qtbot.waitUntil(lambda: alice_feed.composer.toPlainText() == "")
    assert alice.controller.feed.attached == []
    qtbot.waitUntil(lambda: len(alice_feed.cards) == 1)
    assert alice_feed.cards[0].delete_button.isVisibleTo(alice_feed.cards[0])

    card.like_button.click()
    mine = alice_feed.cards[0]
    qtbot.waitUntil(lambda: mine.likes_label.text() == "1 like")
    assert mine.likes_label.toolTip() == "bob"
    qtbot.waitUntil(lambda: card.like_button.isChecked())
    assert card.like_button.text() == "♥ Liked"

    card.comments_button.click()
    assert card.comments_box.isVisibleTo(card)
    qtbot.keyClicks(card.comment_input, "wish I'd been there")
    qtbot.keyClick(card.comment_input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: mine.comments_button.text() == "💬 1 comment")
    mine.comments_button.click()
    assert len(mine.comment_labels) == 1
    assert "wish I'd been there" in mine.comment_labels[0].text()
    assert "bob" in mine.comment_labels[0].text()

    # Carol is nobody's contact: no event, nothing listed, the post not found.
    wait(barrier(carol))
    assert [e for e in carol_log.pending() if e.name.startswith("feed.")] == []
    assert server.request(carol, "feed.list")["posts"] == []
    post_id = mine.post_id
    try:
        server.request(carol, "feed.comments", {"post_id": post_id})
    except ChatError as error:
        assert error.code is ErrorCode.NOT_FOUND
    else:
        raise AssertionError("carol could read the comments of alice's post")


def test_older_posts_come_a_page_at_a_time(make_client: Any, server: Any,
                                           qtbot: Any) -> None:
    """The newest page shows first, newest on top; "Older posts" brings the next
    page until there is no more, then says so."""
    alice = make_client("alice")
    conn = server.user("alice", register=False)
    for n in range(1, 6):
        server.request(conn, "feed.post", {"body": f"post {n}"})
    alice.controller.feed.page_size = 2
    window = _open_feed(qtbot, alice)
    assert _bodies(window) == ["post 5", "post 4"]
    assert window.older_button.isVisibleTo(window)
    window.older_button.click()
    qtbot.waitUntil(lambda: len(window.cards) == 4)
    window.older_button.click()
    qtbot.waitUntil(lambda: len(window.cards) == 5)
    assert _bodies(window) == ["post 5", "post 4", "post 3", "post 2", "post 1"]
    assert not window.older_button.isVisibleTo(window)
    assert window.end_label.isVisibleTo(window)


def test_deleting_a_post_removes_it_for_both(make_client: Any, server: Any,
                                             qtbot: Any) -> None:
    """Alice's Delete (after she confirms) removes her post from her window and,
    live, from her contact bob's; the server no longer lists it."""
    alice = make_client("alice")
    bob = make_client("bob")
    _contacts(server, "alice", "bob")
    conn = server.user("alice", register=False)
    server.request(conn, "feed.post", {"body": "keep me"})
    server.request(conn, "feed.post", {"body": "oops"})
    alice_feed = _open_feed(qtbot, alice)
    bob_feed = _open_feed(qtbot, bob)
    assert _bodies(bob_feed) == ["oops", "keep me"]
    asked: list[bool] = []
    alice_feed.confirm_delete = lambda _parent: asked.append(True) or True
    alice_feed.cards[0].delete_button.click()
    qtbot.waitUntil(lambda: _bodies(alice_feed) == ["keep me"])
    qtbot.waitUntil(lambda: _bodies(bob_feed) == ["keep me"])
    assert asked == [True]
    listed = server.request(server.user("bob", register=False), "feed.list")["posts"]
    assert [p["body"] for p in listed] == ["keep me"]


def test_a_refused_post_shows_the_reason_and_keeps_the_text(make_client: Any, server: Any,
                                                            qtbot: Any) -> None:
    """Past the server's posting budget (twenty at once, then one per 30 s) the post
    is refused: the window says why and how long to wait (the server's
    ``retry_after_ms``), and what was written stays in the composer."""
    alice = make_client("alice")
    conn = server.user("alice", register=False)
    for n in range(20):
        server.request(conn, "feed.post", {"body": f"burst {n}"})
    window = _open_feed(qtbot, alice)
    qtbot.keyClicks(window.composer, "one too many")
    window.post_button.click()
    qtbot.waitUntil(window.error_label.isVisible)
    wait = re.fullmatch(r"Too many requests; try again in (\d+) seconds\.",
                        window.error_label.text())
    assert wait is not None, window.error_label.text()
    assert 2 <= int(wait.group(1)) <= 30
    assert window.composer.toPlainText() == "one too many"
    assert window.post_button.isEnabled()  # the user may try again later


def test_removing_a_contact_hides_their_posts(make_client: Any, server: Any,
                                              qtbot: Any, wait: Any) -> None:
    """When bob stops being alice's contact, his posts leave her feed (the server
    no longer shows them to her)."""
    alice = make_client("alice")
    bob = server.user("bob")
    _contacts(server, "alice", "bob")
    server.request(bob, "feed.post", {"body": "from bob"})
    window = _open_feed(qtbot, alice)
    assert _bodies(window) == ["from bob"]
    server.request(bob, "contact.remove", {"username": "alice"})
    qtbot.waitUntil(lambda: window.cards == [])
    assert window.empty_label.isVisibleTo(window)


def test_an_admin_may_delete_a_contacts_post(make_client: Any, server: Any,
                                             qtbot: Any) -> None:
    """An admin's window offers Delete on others' posts too (the server allows
    it), and the post is gone for its author as well."""
    give_roles(server, "root", ["admin"])
    root = make_client("root", register=False)
    bob = server.user("bob")
    _contacts(server, "root", "bob")
    server.request(bob, "feed.post", {"body": "against the rules"})
    window = _open_feed(qtbot, root)
    card = window.cards[0]
    assert card.delete_button.isVisibleTo(card)
    window.confirm_delete = lambda _parent: True
    card.delete_button.click()
    qtbot.waitUntil(lambda: window.cards == [])
    assert server.request(bob, "feed.list")["posts"] == []


def test_the_posts_author_deletes_a_comment(make_client: Any, server: Any,
                                            qtbot: Any) -> None:
    """*Delete comment* is offered on one's own comments and on every comment
    under one's own post, not on others' comments under others' posts; alice
    deletes bob's comment under her post and it leaves bob's window too."""
    alice = make_client("alice")
    bob = make_client("bob")
    _contacts(server, "alice", "bob")
    alice_conn = server.user("alice", register=False)
    post = server.request(alice_conn, "feed.post", {"body": "thoughts?"})
    server.request(alice_conn, "feed.comment", {"post_id": post["post_id"], "body": "mine"})
    bob_conn = server.user("bob", register=False)
    server.request(bob_conn, "feed.comment", {"post_id": post["post_id"], "body": "meh"})
    alice_feed = _open_feed(qtbot, alice)
    bob_feed = _open_feed(qtbot, bob)

    def deletable(window: FeedWindow) -> list[bool]:
        return [any(a.objectName() == "delete_comment" for a in label.actions())
                for label in window.cards[0].comment_labels]

    assert deletable(alice_feed) == [True, True]
    assert deletable(bob_feed) == [False, True]
    (delete,) = [a for a in alice_feed.cards[0].comment_labels[1].actions()]
    delete.trigger()
    qtbot.waitUntil(lambda: len(bob_feed.cards[0].comment_labels) == 1)
    assert "mine" in bob_feed.cards[0].comment_labels[0].text()
    assert bob_feed.cards[0].comments_button.text() == "💬 1 comment"
    assert [c["body"] for c in server.request(
        bob_conn, "feed.comments", {"post_id": post["post_id"]})["comments"]] == ["mine"]
