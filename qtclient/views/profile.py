"""The user's own profile: display name, status text and picture (docs/protocol.md 4, 7).

:class:`ProfileEditor` is opened from *Chat → Edit profile…* (or a click on the
user's own picture beside their name). It checks the lengths the server
accepts (:data:`~chatnet.wire.ops.MAX_DISPLAY_NAME`,
:data:`~chatnet.wire.ops.MAX_STATUS_TEXT`) before anything is sent, shows a
chosen picture as it will look (a circle cut from its centre square), and
emits what changed as one intent; the controller uploads the picture with
``purpose: avatar`` and calls ``user.update``, then answers with
``profile_saved``: the dialog closes, or shows the server's reason (not an
image, too large) and stays open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatnet.wire.ops import MAX_DISPLAY_NAME, MAX_STATUS_TEXT
from qtclient.i18n import _
from qtclient.models.avatars import circle_of
from qtclient.qt import (
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QImageReader,
    QLabel,
    QLineEdit,
    QPixmap,
    QPushButton,
    QSize,
    Qt,
    QVBoxLayout,
    QWidget,
    pyqtSignal,
)
from qtclient.views.delegates import avatar_pixmap
from qtclient.views.dialogs import _Dialog

if TYPE_CHECKING:
    from qtclient.controller import ChatController

#: The preview's diameter, device-independent pixels.
PREVIEW_SIZE = 96


def ask_for_picture(parent: QWidget) -> str:
    """The file dialog of *Choose picture…*: the image chosen ("" if cancelled)."""
    path, _filter = QFileDialog.getOpenFileName(
        parent, _("Choose a profile picture"), str(Path.home()),
        _("Images (*.png *.jpg *.jpeg *.webp *.gif);;All files (*)"))
    return str(path)


def read_preview(path: str, side: int) -> QPixmap | None:
    """The image at ``path`` decoded at about ``side`` device pixels (JPEG decodes
    at a reduced size; upright as its EXIF says), or None if Qt cannot read it."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and min(size.width(), size.height()) > side:
        reader.setScaledSize(size.scaled(QSize(side, side),
                                         Qt.AspectRatioMode.KeepAspectRatioByExpanding))
    image = reader.read()
    if image.isNull():
        return None
    return QPixmap.fromImage(image)


def length_problem(text: str, limit: int, required: bool) -> str:
    """Why ``text`` (already stripped) cannot be sent, as the server counts it
    (characters, not UTF-16 units), or ""."""
    if required and not text:
        return _("This cannot be empty.")
    if len(text) > limit:
        return _("At most {limit} characters; this has {count}.").format(limit=limit,
                                                                          count=len(text))
    return ""


class ProfileEditor(_Dialog):
    """Edit one's display name, status text and profile picture.

    Args:
        state: the account's controller, read for the current profile and the
            pictures (``avatars``).
        parent: the main window.

    Attributes:
        choose_picture: asks for an image file (returns "" if cancelled); tests
            replace it instead of driving a native dialog.
        picture: the image chosen to become the picture ("" if none).
        remove_picture: whether the current picture is to be removed.

    Signals:
        save_requested(changes): keyword arguments for
            :meth:`ChatController.update_profile` (only what changed).
    """

    save_requested = pyqtSignal(dict)

    def __init__(self, state: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.choose_picture: Callable[[QWidget], str] = ask_for_picture
        self.picture = ""
        self.remove_picture = False
        self.busy = False
        me = state.me
        self.original_name = state.display_names.get(me, me)
        self.original_status = state.status_text
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.choose_button = QPushButton()
        self.choose_button.clicked.connect(self._choose)
        self.remove_button = QPushButton()
        self.remove_button.clicked.connect(self._remove)
        self.picture_note = QLabel()
        self.picture_note.setWordWrap(True)
        self.picture_note.setStyleSheet("color: #5f6368;")
        # Room for two lines, whatever it says (a wrapped label does not grow its dialog).
        self.picture_note.setMinimumHeight(2 * self.picture_note.fontMetrics().lineSpacing() + 4)
        self.picture_note.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.name = QLineEdit(self.original_name)
        self.name_note = QLabel()
        self.status = QLineEdit(self.original_status)
        self.status_note = QLabel()
        for note in (self.name_note, self.status_note):
            note.setStyleSheet("color: #d93025;")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        picture_buttons = QVBoxLayout()
        picture_buttons.addStretch(1)
        picture_buttons.addWidget(self.choose_button)
        picture_buttons.addWidget(self.remove_button)
        picture_buttons.addStretch(1)
        picture = QHBoxLayout()
        picture.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignTop)
        picture.addSpacing(12)
        picture.addLayout(picture_buttons, 1)
        self.name_label, self.status_label = QLabel(), QLabel()
        self.form = QFormLayout()
        self.form.addRow(self.name_label, self.name)
        self.form.addRow("", self.name_note)
        self.form.addRow(self.status_label, self.status)
        self.form.addRow("", self.status_note)
        layout = QVBoxLayout(self)
        layout.addLayout(picture)
        layout.addWidget(self.picture_note)
        layout.addSpacing(8)
        layout.addLayout(self.form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(460)
        self.name.textChanged.connect(self._check)
        self.status.textChanged.connect(self._check)
        state.avatars.changed.connect(self._avatar_changed)
        state.profile_saved.connect(self.saved)
        self.finished.connect(self._stop_following)
        self.retranslate()

    def _stop_following(self, _result: int) -> None:
        with contextlib.suppress(TypeError, RuntimeError):
            self.state.avatars.changed.disconnect(self._avatar_changed)
            self.state.profile_saved.disconnect(self.saved)

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.setWindowTitle(_("Edit profile"))
        self.choose_button.setText(_("Choose picture…"))
        self.remove_button.setText(_("Remove picture"))
        self.name_label.setText(_("Display name:"))
        self.status_label.setText(_("Status:"))
        self.status.setPlaceholderText(_("Set a status message"))
        self._show_picture()
        self._check()

    # -- the picture ---------------------------------------------------------------------------

    def has_picture(self) -> bool:
        """Whether the profile will have a picture if saved now."""
        current = bool(self.state.avatars.file_of(self.state.me))
        return bool(self.picture) or (current and not self.remove_picture)

    def _choose(self) -> None:
        path = self.choose_picture(self)
        if path:
            self.picture = path
            self.remove_picture = False
            self.error_label.clear()
            self._show_picture()
            self._check()

    def _remove(self) -> None:
        self.picture = ""
        self.remove_picture = bool(self.state.avatars.file_of(self.state.me))
        self.error_label.clear()
        self._show_picture()
        self._check()

    def _avatar_changed(self, username: str) -> None:
        if username in ("", self.state.me) and not self.picture:
            self._show_picture()
            self._check()

    def _show_picture(self) -> None:
        """The preview: the chosen image, else the current picture (or the initial)."""
        ratio = self.devicePixelRatioF()
        me = self.state.me
        name = self.name.text().strip() or me
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 2.5)
        font.setBold(True)
        note = _("The server keeps the centre square of the picture, at 256 by 256 "
                 "pixels.")
        if self.picture:
            image = read_preview(self.picture, round(PREVIEW_SIZE * ratio))
            if image is not None:
                pixmap = circle_of(image.toImage(), PREVIEW_SIZE, ratio)
            else:
                pixmap = avatar_pixmap(None, me, name, PREVIEW_SIZE, font, ratio=ratio)
                note = _("This file cannot be shown here; the server will check it.")
            note = f"{Path(self.picture).name}: {note}"
        else:
            avatars = None if self.remove_picture else self.state.avatars
            pixmap = avatar_pixmap(avatars, me, name, PREVIEW_SIZE, font, ratio=ratio)
        self.preview.setPixmap(pixmap)
        self.picture_note.setText(note)
        self.remove_button.setEnabled(self.has_picture() and not self.busy)

    # -- the texts -----------------------------------------------------------------------------

    def changes(self) -> dict[str, Any]:
        """What saving would send: ``update_profile``'s keyword arguments."""
        changes: dict[str, Any] = {}
        name, status = self.name.text().strip(), self.status.text().strip()
        if name != self.original_name:
            changes["display_name"] = name
        if status != self.original_status:
            changes["status_text"] = status
        if self.picture:
            changes["picture"] = self.picture
        elif self.remove_picture:
            changes["remove_picture"] = True
        return changes

    def _check(self) -> bool:
        """Show what the server would refuse in the texts; Save only without it."""
        name_problem = length_problem(self.name.text().strip(), MAX_DISPLAY_NAME, True)
        status_problem = length_problem(self.status.text().strip(), MAX_STATUS_TEXT, False)
        self.name_note.setText(name_problem)
        self.name_note.setVisible(bool(name_problem))
        self.status_note.setText(status_problem)
        self.status_note.setVisible(bool(status_problem))
        ok = not name_problem and not status_problem
        self._fit()
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        if save is not None:
            save.setEnabled(ok and not self.busy)
        return ok

    def _fit(self) -> None:
        """Grow (or shrink) to what the texts now need: notes and errors come and go,
        and a wrapped label does not ask its window for room by itself."""
        layout = self.layout()
        if layout is None:
            return
        layout.activate()
        needed = (layout.totalHeightForWidth(self.width()) if layout.hasHeightForWidth()
                  else layout.totalMinimumSize().height())
        self.resize(self.width(), max(needed, layout.totalMinimumSize().height()))

    # -- saving --------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.busy or not self._check():
            return
        changes = self.changes()
        if not changes:
            self.accept()
            return
        self._set_busy(True)
        self.error_label.setStyleSheet("color: #5f6368;")
        self.error_label.setText(_("Uploading the picture…") if self.picture
                                 else _("Saving…"))
        self.save_requested.emit(changes)

    def saved(self, reason: str) -> None:
        """The controller's answer: "" closes the dialog; a reason is shown (the
        server's own sentence for a refused picture) and the dialog stays."""
        if not self.busy:
            return
        self._set_busy(False)
        if not reason:
            self.accept()
            return
        self.error_label.setStyleSheet("color: #d93025;")
        self.error_label.setText(reason)
        self._fit()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in (self.choose_button, self.name, self.status):
            widget.setEnabled(not busy)
        self.remove_button.setEnabled(self.has_picture() and not busy)
        self._check()
