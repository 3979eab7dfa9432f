"""Screenshots of the desktop client, in English and Chinese, for the README.

``python -m qtclient.screenshots [OUTPUT_DIR]`` (default ``docs/screenshots``)
starts a demo server in this process (see :mod:`qtclient.demo`), drives a
real client to the login window, a busy room, the members panel, a search
and a conversation with files, and saves ``login-<lang>.png``,
``room-<lang>.png``, ``members-<lang>.png``, ``search-<lang>.png`` and
``files-<lang>.png``; then, with a second demo
server, ``accounts.png``: one client signed in to both (the account strip,
each account's unread badge); and ``admin-<lang>.png``, the Administration
window of an admin, in both languages. It runs offscreen when there is no
display.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The window size of every screenshot, in pixels.
WINDOW_SIZE = (1180, 760)
#: Size of the file being uploaded in the files picture (large enough to be
#: caught half-way on a fast machine).
UPLOAD_SIZE = 90 * 1024 * 1024


async def _until(reactor: Any, condition: Callable[[], bool], what: str,
                 timeout: float = 15.0) -> None:
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


async def _settle(reactor: Any, seconds: float = 0.3) -> None:
    """Let layouts and repaints finish before grabbing."""
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def take_screenshots(reactor: Any, out_dir: Path) -> list[Path]:
    """Drive the client through its main screens in each language; save PNGs.

    Returns:
        the files written.
    """
    from qtclient.demo import populate_office, start_demo_server

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="chatnet-shots-") as tmp:
        # A fresh server per language, so that each sees the same unread messages.
        for language in ("en", "zh_CN"):
            demo = await start_demo_server(reactor, Path(tmp) / f"data-{language}")
            try:
                rooms = await populate_office(demo)
                settings_file = Path(tmp) / f"{language}.ini"
                written += await _shoot(reactor, demo, rooms, language, settings_file, out_dir)
            finally:
                await demo.stop()
        written.append(await _shoot_accounts(reactor, Path(tmp), out_dir))
        for language in ("en", "zh_CN"):
            written.append(await shoot_admin(reactor, Path(tmp), out_dir, language))
    return written


class _DemoKeyring:
    """Passwords for the accounts picture, in memory (the keyring API's three
    calls), so that the client signs both accounts in as it does at a start."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords

    def get_password(self, _service: str, username: str) -> str | None:
        return self.passwords.get(username)

    def set_password(self, _service: str, username: str, password: str) -> None:
        self.passwords[username] = password

    def delete_password(self, _service: str, username: str) -> None:
        self.passwords.pop(username, None)


async def _shoot_accounts(reactor: Any, tmp: Path, out_dir: Path) -> Path:
    """Two servers, one client signed in to both: ``accounts.png``."""
    from qtclient.accounts import Account, PasswordStore
    from qtclient.app import ChatApp
    from qtclient.demo import (
        DEMO_PASSWORD,
        populate_community,
        populate_office,
        start_demo_server,
    )
    from qtclient.qt import QSettings
    from qtclient.settings import ClientSettings

    office = await start_demo_server(reactor, tmp / "data-office")
    community = await start_demo_server(reactor, tmp / "data-community")
    try:
        rooms = await populate_office(office)
        await populate_community(community)
        work = Account("localhost", office.port, str(office.ca), "alice", label="Acme office")
        hobby = Account("localhost", community.port, str(community.ca), "alice",
                        label="Kite project")
        settings = ClientSettings(QSettings(str(tmp / "accounts.ini"),
                                            QSettings.Format.IniFormat))
        settings.language = "en"
        settings.save_accounts([work, hobby])
        settings.current_account = work.key
        keyring = _DemoKeyring({work.key: DEMO_PASSWORD, hobby.key: DEMO_PASSWORD})
        client = ChatApp(reactor, settings, passwords=PasswordStore(keyring))
        client.start()
        await _until(reactor, lambda: len(client.units) == 2
                     and all(u.logged_in for u in client.units), "both accounts")
        client.window.resize(*WINDOW_SIZE)
        controller = client.controller
        await _until(reactor, lambda: controller.rooms.room(rooms["design"]) is not None,
                     "the room list")
        controller.open_room(rooms["design"])
        timeline = controller.timeline(rooms["design"])
        await _until(reactor, lambda: timeline.loaded, "the design room")
        strip = client.window.strip
        await _until(reactor, lambda: strip.buttons[hobby.key].unread == 4, "the badge")
        await _settle(reactor)
        client.main_window.timeline.scrollToBottom()
        await _settle(reactor)
        path = out_dir / "accounts.png"
        client.window.grab().save(str(path))
        client.quit()
        await _settle(reactor, 0.5)
        client.window.close()
        return path
    finally:
        await office.stop()
        await community.stop()


async def shoot_admin(reactor: Any, tmp: Path, out_dir: Path, language: str = "en") -> Path:
    """alice, an admin, in the Administration window's Users tab after banning
    one person, in ``language``: ``admin-en.png`` or ``admin-zh.png``."""
    from qtclient.app import ChatApp
    from qtclient.demo import DEMO_PASSWORD, populate_office, start_demo_server
    from qtclient.qt import QSettings
    from qtclient.settings import ClientSettings

    short = "zh" if language == "zh_CN" else language
    demo = await start_demo_server(reactor, tmp / f"data-admin-{short}")
    try:
        await populate_office(demo)
        store = demo.service.store
        for username, roles in (("alice", ["admin"]), ("erin", ["auditor"])):
            user = await store.user_by_name(username)
            assert user is not None
            await store.set_roles(user.user_id, roles)
        settings = ClientSettings(QSettings(str(tmp / f"admin-{short}.ini"),
                                            QSettings.Format.IniFormat))
        settings.language = language
        client = ChatApp(reactor, settings)
        client.start()
        form = client.login_window
        form.host.setText("localhost")
        form.port.setValue(demo.port)
        form.ca_file.setText(str(demo.ca))
        form.username.setText("alice")
        form.password.setText(DEMO_PASSWORD)
        form.submit()
        await _until(reactor, client.main_window.isVisible, "the main window")
        window = client.open_admin()
        window.resize(920, 520)
        users = window.users
        await _until(reactor, lambda: len(users.items) > 3, "the users")
        users.select_where(lambda u: u["username"] == "dave")
        users.ban_button.click()
        ban = window.form
        assert ban is not None
        ban.fields["reason"].setText("提前泄露了发布日期" if short == "zh"
                                     else "sharing the launch date early")
        ban.accept()
        await _until(reactor, lambda: any(u["username"] == "dave" and u["banned"]
                                          for u in users.items), "the ban")
        await _settle(reactor)
        path = out_dir / f"admin-{short}.png"
        window.grab().save(str(path))
        client.quit()
        await _settle(reactor, 0.5)
        client.window.close()
        form.close()
        return path
    finally:
        await demo.stop()


async def _shoot(reactor: Any, demo: Any, rooms: dict[str, int], language: str,
                 settings_file: Path, out_dir: Path) -> list[Path]:
    """One language: the login window, the busy room, the members panel, files."""
    from qtclient.app import ChatApp
    from qtclient.demo import DEMO_PASSWORD
    from qtclient.qt import QSettings, QWidget
    from qtclient.settings import ClientSettings

    short = "zh" if language == "zh_CN" else language
    written: list[Path] = []

    def save(widget: QWidget, name: str) -> None:
        path = out_dir / f"{name}-{short}.png"
        widget.grab().save(str(path))
        written.append(path)

    settings = ClientSettings(QSettings(str(settings_file), QSettings.Format.IniFormat))
    settings.language = language
    client = ChatApp(reactor, settings)
    client.start()
    form = client.login_window
    form.host.setText("localhost")
    form.port.setValue(demo.port)
    form.ca_file.setText("/etc/chatnet/ca.pem")  # a tidy path for the picture
    form.username.setText("alice")
    form.password.setText(DEMO_PASSWORD)
    await _settle(reactor)
    save(form, "login")

    form.ca_file.setText(str(demo.ca))
    form.submit()
    window = client.main_window
    await _until(reactor, window.isVisible, "the main window")
    # The whole window: the account strip, the menu bar and alice's page.
    whole = client.window
    whole.resize(*WINDOW_SIZE)
    controller = client.controller
    joined = [name for name in rooms if not name.startswith("invite:")]
    await _until(reactor, lambda: controller.rooms.rowCount() == len(joined), "the room list")
    await _until(reactor, lambda: controller.invites.rowCount() == len(rooms) - len(joined),
                 "the invitations")
    await _until(reactor, lambda: all(e.peer for e in controller.rooms.rooms() if e.is_direct),
                 "direct rooms")
    controller.open_room(rooms["design"])
    timeline = controller.timeline(rooms["design"])
    await _until(reactor, lambda: timeline.loaded, "the design room")
    demo.people["carol"].notify("msg.typing", {"room_id": rooms["design"], "typing": True})
    await _until(reactor, lambda: bool(window.typing_label.text()), "typing")
    await _settle(reactor)
    window.timeline.scrollToBottom()
    await _settle(reactor)
    save(whole, "room")

    window.members_button.click()
    await _until(reactor, lambda: controller.members.rowCount() == 6, "members")
    await _settle(reactor)
    save(whole, "members")

    # Search: all conversations, the first result opened and highlighted.
    window.members_button.click()
    window.open_search(here=False)
    panel, results = window.search_panel, controller.search_results
    panel.query.setText("截图" if language == "zh_CN" else "palette")
    panel.search_now()
    await _until(reactor, lambda: results.done and results.rowCount() > 0, "search results")
    panel.results.choose(results.index(0))
    await _until(reactor, lambda: window.timeline.highlighted() is not None, "the result")
    await _settle(reactor)
    save(whole, "search")
    window.close_search()
    controller.open_room(rooms["design"])
    window.timeline.show_newest()  # follow what arrives, as at the bottom

    # Files: a picture (with its preview) and a document arrive, and alice is
    # sending a large file (caught half-way).
    design = rooms["design"]
    from qtclient.demo import icon_sheet_png

    picture = await demo.upload("bob", "icon-set-v2.png", icon_sheet_png())
    await demo.say("bob", design, "", attachments=[picture])
    document = await demo.upload("erin", "copy-review-agenda.pdf",
                                 b"%PDF-1.4\n" + bytes(412_000))
    await demo.say("erin", design, "", attachments=[document])
    thumbnails = controller.files.thumbnails
    await _until(reactor, lambda: thumbnails.pixmap(picture) is not None, "the preview")
    big = settings_file.parent / f"screens-{language}" / "screens-v3.zip"
    big.parent.mkdir(exist_ok=True)
    with open(big, "wb") as f:
        f.truncate(UPLOAD_SIZE)
    transfers = controller.files.transfers
    controller.attach_files(design, [str(big)])
    window.timeline.scrollToBottom()
    await _until(reactor, lambda: bool(transfers.items())
                 and 0.3 <= transfers.items()[0].fraction < 0.9, "the upload", timeout=60)
    save(whole, "files")
    controller.cancel_transfer(transfers.items()[0].transfer_id)
    client.quit()
    await _settle(reactor, 0.5)
    whole.close()
    form.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; print where they are."""
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path("docs/screenshots")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtclient.qt import QApplication

    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    import qreactor

    qreactor.install()
    from qtclient.demo import run

    written: list[Path] = []

    async def work(reactor: Any) -> None:
        written.extend(await take_screenshots(reactor, out_dir))

    run(work)
    for path in written:
        print(path)
    del app
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
