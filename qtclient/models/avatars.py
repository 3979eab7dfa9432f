"""Profile pictures of the people an account sees, as circles (docs/protocol.md 4, 7).

A profile names its picture by ``avatar_file_id`` (a 256 x 256 PNG the server
made; every logged-in user may download it). :class:`AvatarCache` keeps, per
account:

* which picture each username has, as last heard from a profile (``user.get``,
  ``contact.list``, ``contact.added``, ``user.updated``); "" for none;
* the decoded pictures, the most recently used :data:`AVATAR_LIMIT`, each
  scaled to :data:`MASTER_SIZE` device-independent pixels;
* the circles cut from them, one per (picture, size in device pixels), made
  on first paint and kept as long as their picture.

Delegates call :meth:`AvatarCache.pixmap` on every paint: a dictionary lookup.
What is missing it asks for after the paint, once: the profile of a username
never heard of (``profile_wanted``, the controller sends ``user.get``), or the
file of a picture not loaded (``file_wanted``, the transfer manager downloads
it into the account's cache folder and calls :meth:`AvatarCache.store`). When a
picture arrives or someone's changes, ``changed(username)`` makes views
repaint; until then they draw the initial, as without a picture.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from qtclient.qt import QBrush, QImage, QObject, QPainter, QPixmap, Qt, QTimer, pyqtSignal

#: Decoded pictures kept in memory (about 36 kB each at 96 x 96, four times that on
#: a 2x screen); an evicted one is read again from the cache folder, not downloaded.
AVATAR_LIMIT = 200
#: Usernames whose picture is remembered (a few bytes each).
PROFILE_LIMIT = 5000
#: The side, in device-independent pixels, pictures are decoded at: the largest
#: circle drawn (the profile card and the profile editor).
MASTER_SIZE = 96

#: What :meth:`AvatarCache.state` answers for a picture.
LOADING, FAILED = "loading", "failed"


def circle_of(image: QImage, size: int, ratio: float = 1.0) -> QPixmap:
    """``image`` scaled to fill a ``size`` x ``size`` square (device-independent
    pixels; cropped to the centre if it is not square) and cut to a circle with a
    smooth edge, drawn at ``ratio`` device pixels per pixel (HiDPI screens)."""
    side = max(1, round(size * ratio))
    scaled = image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                          Qt.TransformationMode.SmoothTransformation)
    left, top = (scaled.width() - side) // 2, (scaled.height() - side) // 2
    square = scaled.copy(left, top, side, side)
    circle = QPixmap(side, side)
    circle.fill(Qt.GlobalColor.transparent)
    painter = QPainter(circle)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(square))  # a texture brush: the ellipse's edge is antialiased
    painter.drawEllipse(0, 0, side, side)
    painter.end()
    circle.setDevicePixelRatio(ratio)
    return circle


class AvatarCache(QObject):
    """Who has which profile picture, and those pictures as circles.

    Changed only through its domain methods (:meth:`learn`, :meth:`set_avatar`,
    :meth:`store`, :meth:`mark_failed`, :meth:`refresh`, :meth:`clear`).

    Args:
        limit: decoded pictures kept in memory.
        parent: the owning QObject.

    Signals:
        changed(username): draw ``username``'s picture again (it arrived, or they
            set another or none); "" for everyone (:meth:`clear`).
        profile_wanted(username): a username was drawn whose picture is not
            known; asked once per username (until :meth:`refresh`).
        file_wanted(file_id): a picture was drawn that is not loaded; asked once
            per file (until it is stored, or evicted and drawn again).
    """

    changed = pyqtSignal(str)
    profile_wanted = pyqtSignal(str)
    file_wanted = pyqtSignal(str)

    def __init__(self, limit: int = AVATAR_LIMIT, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.limit = limit
        self._files: OrderedDict[str, str] = OrderedDict()  # username -> file id or ""
        self._images: OrderedDict[str, QImage] = OrderedDict()  # file id -> picture
        self._circles: dict[tuple[str, int], QPixmap] = {}  # (file id, device px) -> circle
        self._states: dict[str, str] = {}  # file id -> LOADING | FAILED
        self._asked: set[str] = set()  # usernames whose profile was asked for
        self._stale: set[str] = set()  # usernames to ask again (after a reconnect)
        self._wanted_profiles: list[str] = []
        self._wanted_files: list[str] = []

    # -- reading -------------------------------------------------------------------------------

    def file_of(self, username: str) -> str | None:
        """The file id of ``username``'s picture, "" for none, None if not known."""
        return self._files.get(username)

    def state(self, file_id: str) -> str | None:
        """:data:`LOADING`, :data:`FAILED`, or None (loaded, or never asked for)."""
        return self._states.get(file_id)

    def image(self, file_id: str) -> QImage | None:
        """The decoded picture ``file_id``, if in memory."""
        return self._images.get(file_id)

    def pixmap(self, username: str, size: int, ratio: float = 1.0) -> QPixmap | None:
        """``username``'s picture as a circle of ``size`` device-independent pixels
        at ``ratio`` device pixels each, or None (no picture, or not here yet:
        draw the initial). What is missing is asked for after the paint."""
        file_id = self._files.get(username)
        if file_id is None or username in self._stale:
            self._want_profile(username)
        if not file_id:
            return None
        key = (file_id, max(1, round(size * ratio)))
        circle = self._circles.get(key)
        if circle is not None:
            return circle
        image = self._images.get(file_id)
        if image is None:
            self._want_file(file_id)
            return None
        self._images.move_to_end(file_id)
        circle = self._circles[key] = circle_of(image, size, ratio)
        return circle

    def __len__(self) -> int:
        return len(self._images)

    def _want_profile(self, username: str) -> None:
        self._stale.discard(username)
        if username and username not in self._asked:
            self._asked.add(username)
            self._later(self._wanted_profiles, username)

    def _want_file(self, file_id: str) -> None:
        if file_id not in self._states:
            self._states[file_id] = LOADING
            self._later(self._wanted_files, file_id)

    def _later(self, queue: list[str], item: str) -> None:
        """Ask once the paint is over (signals from inside a paint could re-enter it)."""
        if not self._wanted_profiles and not self._wanted_files:
            QTimer.singleShot(0, self._ask)
        queue.append(item)

    def _ask(self) -> None:
        profiles, self._wanted_profiles = self._wanted_profiles, []
        files, self._wanted_files = self._wanted_files, []
        for username in profiles:
            self.profile_wanted.emit(username)
        for file_id in files:
            if self._states.get(file_id) == LOADING:
                self.file_wanted.emit(file_id)

    # -- domain changes ------------------------------------------------------------------------

    def learn(self, profile: dict[str, Any]) -> None:
        """A profile arrived (``user.get``, ``user.updated``, a contact's): note its
        picture."""
        username = str(profile.get("username") or "")
        if username:
            self.set_avatar(username, str(profile.get("avatar_file_id") or ""))

    def set_avatar(self, username: str, file_id: str) -> None:
        """``username``'s picture is ``file_id`` ("" for none)."""
        old = self._files.get(username)
        self._files[username] = file_id
        self._files.move_to_end(username)
        self._asked.discard(username)
        self._stale.discard(username)
        while len(self._files) > PROFILE_LIMIT:
            self._files.popitem(last=False)
        if old != file_id:
            self.changed.emit(username)

    def store(self, file_id: str, image: QImage) -> None:
        """The picture ``file_id`` is decoded (at :data:`MASTER_SIZE`, device pixels)."""
        self._images[file_id] = image
        self._images.move_to_end(file_id)
        self._states.pop(file_id, None)
        while len(self._images) > self.limit:
            old, _image = self._images.popitem(last=False)
            self._drop_circles(old)
        self._drop_circles(file_id)
        self._tell_users_of(file_id)

    def mark_failed(self, file_id: str) -> None:
        """The picture ``file_id`` cannot be had (gone, unreadable): its owners are
        drawn with their initial (until :meth:`refresh`)."""
        self._states[file_id] = FAILED
        self._tell_users_of(file_id)

    def refresh(self) -> None:
        """Back after a reconnect: ``user.updated`` events may have been missed, so
        every username is asked about again when next drawn (their pictures stay
        meanwhile); failed pictures are tried again."""
        self._stale = set(self._files)
        self._asked.clear()
        for file_id in [f for f, state in self._states.items() if state == FAILED]:
            del self._states[file_id]
        self.changed.emit("")

    def clear(self) -> None:
        """Forget everything (logout)."""
        self._files.clear()
        self._images.clear()
        self._circles.clear()
        self._states.clear()
        self._asked.clear()
        self._stale.clear()
        self._wanted_profiles.clear()
        self._wanted_files.clear()
        self.changed.emit("")

    def _drop_circles(self, file_id: str) -> None:
        for key in [k for k in self._circles if k[0] == file_id]:
            del self._circles[key]

    def _tell_users_of(self, file_id: str) -> None:
        for username in [u for u, f in self._files.items() if f == file_id]:
            self.changed.emit(username)
