"""Profile pictures: set in the profile editor, shown wherever the person appears.

The picture in these tests is a solid colour no part of the client paints
(:data:`PICTURE`), so finding its pixels in a grabbed widget proves the
picture is drawn there, and their absence that it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtclient.models.avatars import AvatarCache, circle_of
from qtclient.qt import QColor, QDialogButtonBox, QImage, QMenu, QPixmap, QWidget
from qtclient.views.delegates import name_colour
from tests.gui.helpers import click_room, say, shared_room

#: The colour of the test picture.
PICTURE = QColor(230, 0, 160)


def picture_file(path: Path, colour: QColor = PICTURE, size: int = 300,
                 fmt: str = "PNG") -> Path:
    """A real image file of one colour, written with QImage."""
    image = QImage(size, size, QImage.Format.Format_RGB32)
    image.fill(colour)
    assert image.save(str(path), fmt)
    return path


def pixels_of(image: QImage | QPixmap, colour: QColor) -> int:
    """How many pixels of ``image`` are exactly ``colour``."""
    if isinstance(image, QPixmap):
        image = image.toImage()
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    data = image.constBits()
    assert data is not None
    data.setsize(image.sizeInBytes())
    pixel = bytes((colour.blue(), colour.green(), colour.red(), 0xFF))
    return bytes(data).count(pixel)


def shown(widget: QWidget, colour: QColor = PICTURE) -> int:
    """Pixels of ``colour`` in what ``widget`` draws now."""
    return pixels_of(widget.grab(), colour)


def save_profile(qtbot: Any, app: Any) -> None:
    """Click Save in the profile editor and wait until it closes."""
    editor = app.dialogs["profile_editor"]
    save = editor.buttons.button(QDialogButtonBox.StandardButton.Save)
    assert save.isEnabled()
    save.click()
    qtbot.waitUntil(lambda: "profile_editor" not in app.dialogs, timeout=10000)


def test_a_picture_set_in_the_editor_shows_everywhere_then_is_removed(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Path) -> None:
    """Bob chooses a picture in *Edit profile…* and saves: it is uploaded as an
    avatar and set with ``user.update``. Alice, who shares a room, a direct
    conversation and contacts with him, then sees it in the timeline (his
    message), the members panel, the conversation list (the direct room), the
    Contacts window, his profile card and his post in the Feed window; bob sees
    it beside his own name.
    The file is downloaded once. *Remove picture* brings his initial back."""
    bob = make_client("bob")
    alice = make_client("alice")
    bob_conn = server.user("bob", register=False)
    room_id = shared_room(server, bob_conn, "alice")
    say(server, bob_conn, room_id, "hello from bob")
    server.request(bob_conn, "dm.open", {"username": "alice"})
    server.request(bob_conn, "contact.request", {"username": "alice"})
    server.request(server.user("alice", register=False), "contact.respond",
                   {"username": "bob", "accept": True})
    post = server.request(bob_conn, "feed.post", {"body": "my first post"})
    window = alice.main_window
    timeline = click_room(qtbot, alice, room_id)
    qtbot.waitUntil(lambda: timeline.rowCount() == 1)
    window.members_button.click()
    qtbot.waitUntil(lambda: "bob" in alice.controller.members.usernames())
    qtbot.waitUntil(lambda: alice.controller.rooms.direct_room_with("bob") is not None)
    qtbot.waitUntil(lambda: alice.controller.avatars.file_of("bob") == "")
    bob_colour = name_colour("bob")
    assert shown(window.timeline.viewport()) == 0
    assert shown(window.timeline.viewport(), bob_colour) > 100  # his initial's circle
    alice.main_window.contacts_action.trigger()  # open while the picture arrives
    contacts = alice.dialogs["contacts"]
    qtbot.waitUntil(lambda: contacts.row_of(contacts.contacts_list, "bob") is not None)

    def contact_icon() -> QPixmap:
        item = contacts.row_of(contacts.contacts_list, "bob")
        assert item is not None
        return item.icon().pixmap(28, 28)

    assert pixels_of(contact_icon(), PICTURE) == 0
    window.feed_action.trigger()
    feed = alice.dialogs["feed"]
    qtbot.waitUntil(lambda: feed.card(post["post_id"]) is not None)

    def post_avatar() -> QPixmap:
        card = feed.card(post["post_id"])
        assert card is not None
        return card.avatar_label.pixmap()

    assert pixels_of(post_avatar(), PICTURE) == 0
    assert pixels_of(post_avatar(), bob_colour) > 100  # his initial, meanwhile

    bob.main_window.profile_action.trigger()
    editor = bob.dialogs["profile_editor"]
    editor.choose_picture = lambda _parent: str(picture_file(tmp_path / "me.png"))
    editor.choose_button.click()
    assert pixels_of(editor.preview.pixmap(), PICTURE) > 1000  # the preview, before saving
    save_profile(qtbot, bob)
    profile = server.request(bob_conn, "user.get", {"username": "bob"})
    file_id = profile["avatar_file_id"]
    assert file_id
    info = server.request(bob_conn, "file.info", {"file_id": file_id})
    assert info["purpose"] == "avatar"
    qtbot.waitUntil(lambda: shown(bob.main_window.me_avatar) > 100)

    qtbot.waitUntil(lambda: shown(window.timeline.viewport()) > 300)
    qtbot.waitUntil(lambda: shown(window.members_view.viewport()) > 300)
    qtbot.waitUntil(lambda: shown(window.room_list.viewport()) > 300)
    qtbot.waitUntil(lambda: pixels_of(contact_icon(), PICTURE) > 100)
    qtbot.waitUntil(lambda: pixels_of(post_avatar(), PICTURE) > 100)
    feed.close()
    contacts.close()
    menus = [QMenu()]
    members = alice.controller.members
    actions = {a.objectName(): a for a in window.members_view.member_actions(
        members.index(members.usernames().index("bob")), menus[0])}
    actions["profile"].trigger()
    card = alice.dialogs["profile"]
    qtbot.waitUntil(lambda: card.status_label.isHidden() and card.name_label.text() == "bob")
    assert pixels_of(card.avatar_label.pixmap(), PICTURE) > 1000
    card.close()
    # Fetched once, into the account's cache folder, however many views show it.
    cached = [p.name for p in alice.controller.cache_root.rglob("*") if p.is_file()]
    assert cached == [file_id]

    bob.main_window.profile_action.trigger()
    editor = bob.dialogs["profile_editor"]
    assert editor.remove_button.isEnabled()
    editor.remove_button.click()
    assert pixels_of(editor.preview.pixmap(), PICTURE) == 0
    save_profile(qtbot, bob)
    assert "avatar_file_id" not in server.request(bob_conn, "user.get", {"username": "bob"}) \
        or not server.request(bob_conn, "user.get", {"username": "bob"})["avatar_file_id"]
    qtbot.waitUntil(lambda: shown(window.timeline.viewport()) == 0)
    assert shown(window.timeline.viewport(), bob_colour) > 100
    qtbot.waitUntil(lambda: shown(window.members_view.viewport()) == 0)
    qtbot.waitUntil(lambda: shown(window.room_list.viewport()) == 0)
    assert shown(window.members_view.viewport(), bob_colour) > 100


def test_the_editor_shows_the_servers_refusal_and_checks_lengths(
        make_client: Any, server: Any, qtbot: Any, tmp_path: Path) -> None:
    """A file that is not an image is refused by the server (the editor says
    why, in the server's words, and stays open; nothing changes). A display
    name longer than the server allows cannot be saved; its length is counted
    as the server counts it (64 emoji are 64 characters). Name and status are
    saved with ``user.update`` and show beside the user's name."""
    bob = make_client("bob")
    bob_conn = server.user("bob", register=False)
    bob.main_window.profile_action.trigger()
    editor = bob.dialogs["profile_editor"]
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"these are my notes, not a picture\n" * 10)
    editor.choose_picture = lambda _parent: str(notes)
    editor.choose_button.click()
    assert "cannot be shown" in editor.picture_note.text()
    editor.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "not a PNG, JPEG, WebP or GIF image" in editor.error_label.text(),
                    timeout=10000)
    assert editor.error_label.text().startswith("The server refused it:")
    assert editor.isVisible()
    assert not server.request(bob_conn, "user.get", {"username": "bob"}).get("avatar_file_id")

    save = editor.buttons.button(QDialogButtonBox.StandardButton.Save)
    editor.remove_button.click()  # forget the refused file
    editor.name.setText("B" * 65)
    assert not save.isEnabled()
    assert editor.name_note.text() == "At most 64 characters; this has 65."
    editor.name.setText("   ")
    assert not save.isEnabled()
    editor.name.setText("🐟" * 64)  # 128 UTF-16 units, 64 characters: allowed
    assert save.isEnabled()
    editor.status.setText("x" * 141)
    assert not save.isEnabled()
    editor.status.setText("gone fishing")
    save_profile(qtbot, bob)
    profile = server.request(bob_conn, "user.get", {"username": "bob"})
    assert (profile["display_name"], profile["status_text"]) == ("🐟" * 64, "gone fishing")
    qtbot.waitUntil(lambda: bob.main_window.me_label.text().startswith("🐟"))
    assert bob.main_window.status_text.text() == "gone fishing"


def test_a_refused_bmp_keeps_the_old_picture(make_client: Any, server: Any, qtbot: Any,
                                             tmp_path: Path) -> None:
    """A BMP is an image Qt can preview but not one the server takes: the
    refusal is shown and the picture set before stays."""
    bob = make_client("bob")
    bob.main_window.profile_action.trigger()
    editor = bob.dialogs["profile_editor"]
    editor.choose_picture = lambda _parent: str(picture_file(tmp_path / "me.png"))
    editor.choose_button.click()
    save_profile(qtbot, bob)
    qtbot.waitUntil(lambda: shown(bob.main_window.me_avatar) > 100)
    bob.main_window.me_avatar.click()  # one's own picture opens the editor too
    editor = bob.dialogs["profile_editor"]
    qtbot.waitUntil(lambda: pixels_of(editor.preview.pixmap(), PICTURE) > 1000)
    green = QColor(0, 200, 0)
    editor.choose_picture = lambda _parent: str(
        picture_file(tmp_path / "green.bmp", green, fmt="BMP"))
    editor.choose_button.click()
    assert pixels_of(editor.preview.pixmap(), green) > 1000
    editor.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    qtbot.waitUntil(lambda: "The server refused it" in editor.error_label.text(),
                    timeout=10000)
    editor.close()
    assert shown(bob.main_window.me_avatar) > 100


def test_the_cache_is_bounded_and_draws_for_the_screen(qapp: Any, qtbot: Any) -> None:
    """The cache keeps its last ``limit`` pictures; one evicted is asked for
    again when drawn. Circles are made at the screen's pixel ratio, round
    (corners transparent), and a change of picture is announced."""
    cache = AvatarCache(limit=3)
    wanted: list[str] = []
    cache.file_wanted.connect(wanted.append)
    changed: list[str] = []
    cache.changed.connect(changed.append)
    image = QImage(96, 96, QImage.Format.Format_RGB32)
    image.fill(PICTURE)
    for n in range(5):
        cache.set_avatar(f"user{n}", f"f{n}")
        cache.store(f"f{n}", image)
    assert len(cache) == 3
    assert changed.count("user4") == 2  # its picture named, then arrived
    circle = cache.pixmap("user4", 32, 2.0)
    assert circle is not None
    assert (circle.width(), circle.devicePixelRatio()) == (64, 2.0)
    corner = circle.toImage().pixelColor(0, 0)
    assert corner.alpha() == 0
    assert circle.toImage().pixelColor(32, 32) == PICTURE
    assert cache.pixmap("user0", 32) is None  # evicted: asked for once, after the paint
    assert cache.pixmap("user0", 32) is None
    qtbot.waitUntil(lambda: wanted == ["f0"])
    cache.set_avatar("user4", "")
    assert cache.pixmap("user4", 32) is None
    assert circle_of(image, 10).width() == 10
