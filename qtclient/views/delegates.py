"""Painting of rooms, messages and members (delegates render; they never change state).

:class:`MessageDelegate` keeps long conversations fast. QListView asks the
height of every row on every layout, and a message's height depends on its
text and the view's width. So the width-independent part (name and time
widths, each line's natural width, reaction chips) is measured once per
message revision, and a height for a width is then arithmetic, except for
the few messages longer than a line, which are wrapped with QTextLayout.
Heights are cached under the row's ``LayoutKey`` (which changes whenever the
message does) for the current width; full layouts (every rectangle, for
painting and clicks) only for the few hundred rows recently painted.

Attached files have a fixed height whatever their state (an image's preview
box is reserved before the image arrives; a download's progress bar is drawn
inside the file's card), so a preview arriving or a download progressing only
repaints, never lays the list out again. Previews come from
:class:`~qtclient.models.thumbnails.ThumbnailCache` (a dictionary lookup per
paint); what is missing is asked for once, after the paint, through
``thumbnail_wanted``.

People are drawn by :func:`paint_avatar`: their profile picture from the
account's :class:`~qtclient.models.avatars.AvatarCache` (a lookup per paint;
the cache asks for what it lacks), else their initial on their colour.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qtclient.i18n import _, ngettext
from qtclient.models.avatars import AvatarCache
from qtclient.models.invites import InviteListModel
from qtclient.models.members import MemberListModel
from qtclient.models.presence import STATE_COLOURS, STATE_NAMES, UNKNOWN
from qtclient.models.rooms import RoomListModel
from qtclient.models.thumbnails import THUMBNAIL_HEIGHT, THUMBNAIL_WIDTH, ThumbnailCache, is_image
from qtclient.models.timeline import FAILED, PENDING, TimelineModel
from qtclient.models.transfers import (
    ACTIVE_STATES,
    DONE,
    RETRY_STATES,
    TransferItem,
    TransfersModel,
)
from qtclient.qt import (
    ID,
    QAbstractItemModel,
    QAbstractItemView,
    QColor,
    QDateTime,
    QEvent,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QHelpEvent,
    QLocale,
    QModelIndex,
    QMouseEvent,
    QObject,
    QPainter,
    QPainterPath,
    QPen,
    QPersistentModelIndex,
    QPixmap,
    QPointF,
    QRect,
    QRectF,
    QSize,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    Qt,
    QTextLayout,
    QTextOption,
    QTimer,
    QToolTip,
    pyqtSignal,
)
from qtclient.transfers import human_size
from qtclient.views.attachments import transfer_status

_Index = QModelIndex | QPersistentModelIndex
_TR = TimelineModel.Roles

# Geometry, in device-independent pixels.
MARGIN = 10            # between the list's edge and the avatars/bubbles
AVATAR = 32            # diameter of the sender's picture (or initial)
LIST_AVATAR = 28       # diameter of a person's picture in the room and member lists
GAP = 8                # between an avatar and its bubble
PAD = 8                # inside a bubble
SPACING = 6            # below each message
DAY_HEIGHT = 30        # the day separator
MARKER_HEIGHT = 24     # the "new messages" line
CHIP_HEIGHT = 24       # a reaction chip
CHIP_GAP = 4
FILE_GAP = 6           # above each attached file
CARD_WIDTH = 300       # an attached file's card, at most
THUMB_GAP = 4          # between an image's preview and its card
PROGRESS_HEIGHT = 3    # a download's progress bar, at the card's bottom
NOTE_GAP = 8           # between the sender's name and the time

_NAME_COLOURS = ("#1a73e8", "#d93025", "#188038", "#a142f4", "#e37400", "#007b83",
                 "#c5221f", "#5f6368")
_OWN_BUBBLE = QColor("#d3e8fd")
_OTHER_BUBBLE = QColor("#f1f3f4")
_MENTION_BUBBLE = QColor("#fff4cf")
_TEXT = QColor("#202124")
_MUTED = QColor("#5f6368")
_INVITE_SELECTED = QColor("#e8f0fe")
_MARKER = QColor("#d93025")
_HIGHLIGHT = QColor("#fde293")   # a message shown from a search result or a date


def name_colour(username: str) -> QColor:
    """A stable colour per user, so a conversation's speakers are told apart."""
    digest = hashlib.blake2b(username.encode(), digest_size=1).digest()[0]
    return QColor(_NAME_COLOURS[digest % len(_NAME_COLOURS)])


def paint_avatar(painter: QPainter, rect: QRect, avatars: AvatarCache | None, username: str,
                 name: str, font: QFont) -> None:
    """Draw someone in the circle ``rect``: their profile picture if ``avatars``
    has it (at the painter's device pixel ratio), else the first letter of
    ``name`` in white on their colour (:func:`name_colour`)."""
    device = painter.device()
    ratio = device.devicePixelRatioF() if device is not None else 1.0
    picture = (avatars.pixmap(username, rect.width(), ratio)
               if avatars is not None and username else None)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    if picture is not None:
        painter.drawPixmap(rect, picture)
    else:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(name_colour(username))
        painter.drawEllipse(rect)
        painter.setPen(QColor("white"))
        painter.setFont(font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, name.strip()[:1].upper() or "?")
    painter.restore()


def avatar_pixmap(avatars: AvatarCache | None, username: str, name: str, size: int,
                  font: QFont, presence: str | None = None, ratio: float = 1.0) -> QPixmap:
    """Someone's picture (or initial, :func:`paint_avatar`) as a ``size`` x ``size``
    pixmap for labels and list icons, with their presence dot at its lower right
    when ``presence`` is given."""
    pixmap = QPixmap(max(1, round(size * ratio)), max(1, round(size * ratio)))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    paint_avatar(painter, QRect(0, 0, size, size), avatars, username, name, font)
    if presence is not None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        radius = max(4, size // 6)
        _paint_dot(painter, size - radius, size - radius, presence, radius)
    painter.end()
    return pixmap


#: Drawn before the countdown of a burn-after-reading message.
BURN_MARK = "🔥"


def countdown_text(seconds: int) -> str:
    """The time a burn-after-reading message has left: ``0:09``, ``4:59``,
    ``23:59:59`` (never negative)."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock_text(ts: int) -> str:
    """``ts`` (ms since the epoch) as a local time of day, in the current locale."""
    moment = QDateTime.fromMSecsSinceEpoch(ts)
    return QLocale().toString(moment.time(), QLocale.FormatType.ShortFormat)


def day_text(ts: int) -> str:
    """The day of ``ts`` for a separator: "Today", "Yesterday" or the long date."""
    day = datetime.fromtimestamp(ts / 1000).date()
    today = datetime.now().date()
    if day == today:
        return _("Today")
    if (today - day).days == 1:
        return _("Yesterday")
    date = QDateTime.fromMSecsSinceEpoch(ts).date()
    return QLocale().toString(date, QLocale.FormatType.LongFormat)


def _display_text(text: str) -> str:
    """``text`` with its line breaks as Unicode line separators: QTextLayout
    (and so painting) does not break lines at a plain newline."""
    return text.replace("\r\n", "\n").replace("\n", "\u2028")


def _text_size(text: str, font: QFont, width: int) -> tuple[int, int]:
    """(height, widest line) of ``text`` wrapped to ``width`` (breaking long words too)."""
    layout = QTextLayout(_display_text(text), font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    layout.setTextOption(option)
    layout.beginLayout()
    height = 0.0
    widest = 0.0
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(width)
        line.setPosition(QPointF(0, height))
        height += line.height()
        widest = max(widest, line.naturalTextWidth())
    layout.endLayout()
    return int(height + 0.999), int(widest + 0.999)


def _natural_lines(text: str, font: QFont) -> list[tuple[int, int]]:
    """(width, height) of each line of ``text`` without wrapping."""
    layout = QTextLayout(_display_text(text), font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.NoWrap)
    layout.setTextOption(option)
    layout.beginLayout()
    lines = []
    y = 0.0
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(1e6)
        line.setPosition(QPointF(0, y))
        y += line.height()
        lines.append((int(line.naturalTextWidth() + 0.999), line.height()))
    layout.endLayout()
    # Heights are summed as the wrapping path sums them, then rounded up once.
    total = int(sum(h for _w, h in lines) + 0.999)
    rounded = [(w, int(h)) for w, h in lines]
    if rounded:
        rounded[-1] = (rounded[-1][0], total - sum(h for _w, h in rounded[:-1]))
    return rounded


@dataclass(slots=True)
class AttachedFile:
    """A file attached to a message, as a bubble shows it (PROTOCOL.md 7)."""

    file_id: str
    name: str
    size: int
    mime: str

    @property
    def image(self) -> bool:
        """Whether it gets a preview."""
        return is_image(self.mime)


@dataclass(slots=True)
class _Measure:
    """The width-independent part of a message's layout (cached per message revision)."""

    own: bool
    day: bool
    marker: bool
    name_w: int
    note_w: int
    header_h: int
    reply_h: int
    text: str
    lines: list[tuple[int, int]]
    chips: list[tuple[int, str, int, bool]]
    files: list[AttachedFile] = field(default_factory=list)
    card_h: int = 0
    button_w: int = 0
    #: An action (``/me``): the body reads "* Name text", in italics, and the
    #: header has no name (the body says who).
    action: bool = False

    @property
    def header_w(self) -> int:
        """The header's natural width: the name, a gap, the time (and edited mark)."""
        return self.name_w + NOTE_GAP + self.note_w

    @property
    def files_h(self) -> int:
        """Height of the attached files (fixed whatever their state)."""
        return sum(FILE_GAP + (THUMBNAIL_HEIGHT + THUMB_GAP if f.image else 0) + self.card_h
                   for f in self.files)


@dataclass
class FileSpot:
    """Where an attached file is drawn, relative to the item's top-left corner."""

    file: AttachedFile
    card: QRect
    icon: QRect
    name: QRect
    info: QRect
    button: QRect
    thumb: QRect | None = None


@dataclass
class MessageLayout:
    """Where each part of a message goes, relative to the item's top-left corner.

    ``header`` is the whole first line; in it ``name`` (the sender, elided when
    the bubble is too narrow) and ``note`` (the time, "(edited)", "Sending…"),
    which is always wide enough for its whole text: the bubble grows for it.
    """

    height: int
    bubble: QRect = field(default_factory=QRect)
    avatar: QRect | None = None
    header: QRect = field(default_factory=QRect)
    name: QRect = field(default_factory=QRect)
    note: QRect = field(default_factory=QRect)
    reply: QRect | None = None
    body: QRect = field(default_factory=QRect)
    chips: list[tuple[QRect, str, int, bool]] = field(default_factory=list)
    day: QRect | None = None
    marker: QRect | None = None
    files: list[FileSpot] = field(default_factory=list)


class MessageDelegate(QStyledItemDelegate):
    """Paints a message bubble: sender, time, edited mark, reply quote, body,
    attached files (an image's preview; icon, name, size, a Download / Cancel /
    Open / Retry button and a progress bar), reactions; with a day separator
    and a "new messages" line above it when due.

    Attributes:
        transfers: the downloads, read to show each file's state (set by the
            main window; None shows every file as not downloaded).
        thumbnails: image previews, read when painting (None: no previews).
        avatars: profile pictures, read when painting (None: initials only).

    Signals:
        reaction_clicked(msg_id, emoji, on): a reaction chip was clicked
            (``on`` is the new state for the user).
        file_clicked(action, file_id, name, mime, size): a file's button or
            preview was clicked; ``action`` is ``download``, ``cancel``,
            ``open``, ``retry`` or ``preview``.
        thumbnail_wanted(file_id, mime, size): an image is on screen without
            its preview (asked once per file, after the paint).
    """

    reaction_clicked = pyqtSignal(ID, str, bool)
    file_clicked = pyqtSignal(str, str, str, str, ID)
    thumbnail_wanted = pyqtSignal(str, str, ID)

    #: Full layouts kept for painting and clicks (the visible rows and a margin).
    LAYOUT_CACHE = 400

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        #: The width rows are laid out for (the view's viewport); QListView does
        #: not tell sizeHint its width, so the view sets it on resize.
        self.view_width = 0
        self._measures: dict[Any, _Measure] = {}
        self._sizes: dict[Any, int] = {}
        self._sizes_width = 0
        self._layouts: OrderedDict[tuple[Any, int], MessageLayout] = OrderedDict()
        self.transfers: TransfersModel | None = None
        self.thumbnails: ThumbnailCache | None = None
        self.avatars: AvatarCache | None = None
        #: The key of the message drawn highlighted (a search result just
        #: opened), or None; set by the view.
        self.highlight_key: str | None = None
        self._wanted: dict[str, AttachedFile] = {}
        #: The countdown last drawn for each burn-after-reading message, by key
        #: (what a screen reader or a test can read back).
        self.countdowns: dict[str, str] = {}

    def clear_cache(self) -> None:
        """Forget cached sizes (the font or the language changed)."""
        self._measures.clear()
        self._sizes.clear()
        self._layouts.clear()

    # -- layout ------------------------------------------------------------------------------

    def fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        """The fonts a message is drawn with: (body, the sender's name in bold,
        the small one of the time, the reply quote and file details)."""
        body = QFont(option.font)
        bold = QFont(body)
        bold.setBold(True)
        small = QFont(body)
        small.setPointSizeF(max(6.0, body.pointSizeF() * 0.85))
        return body, bold, small

    @staticmethod
    def body_font(m: _Measure, font: QFont) -> QFont:
        """The font of the body: ``font``, in italics for an action."""
        if not m.action:
            return font
        italic = QFont(font)
        italic.setItalic(True)
        return italic

    @staticmethod
    def shown_body(index: _Index) -> str:
        """The body as drawn: "* Name waves" for an action (``/me waves``), else
        the text as sent."""
        action = index.data(_TR.Action)
        return str(action) if action is not None else str(index.data(_TR.Body))

    def layout_for(self, option: QStyleOptionViewItem, index: _Index) -> MessageLayout:
        """The (cached) layout of the message at ``index`` for the view's width."""
        width = self._width(option)
        key = index.data(_TR.LayoutKey)
        layout = self._layouts.get((key, width))
        if layout is not None:
            self._layouts.move_to_end((key, width))
            return layout
        layout = self._place(self._measure_of(key, option, index), width, option.font)
        self._layouts[(key, width)] = layout
        if len(self._layouts) > self.LAYOUT_CACHE:
            self._layouts.popitem(last=False)
        return layout

    def _width(self, option: QStyleOptionViewItem) -> int:
        return max(self.view_width or option.rect.width(), 240)

    def _measure_of(self, key: Any, option: QStyleOptionViewItem, index: _Index) -> _Measure:
        measure = self._measures.get(key)
        if measure is None:
            measure = self._measures[key] = self._measure(option, index)
        return measure

    def _measure(self, option: QStyleOptionViewItem, index: _Index) -> _Measure:
        """Everything about a message's size that does not depend on the width."""
        body_font, bold, small = self.fonts(option)
        action = index.data(_TR.Action) is not None
        # Fractional widths rounded up: a width rounded down is too narrow for
        # its own text, which then gets elided ("11:24 …").
        name_w = 0 if action else math.ceil(QFontMetricsF(bold).horizontalAdvance(
            str(index.data(_TR.SenderName))))
        note_w = math.ceil(QFontMetricsF(small).horizontalAdvance(self.header_note(index)))
        header_h = max(QFontMetrics(bold).height(), QFontMetrics(small).height())
        reply_h = QFontMetrics(small).height() + 6 if index.data(_TR.ReplyTo) is not None else 0
        text = self.shown_body(index)
        fm = QFontMetrics(body_font)
        chips = [(fm.horizontalAdvance(chip_text(emoji, count)) + 16, emoji, count, mine)
                 for emoji, count, mine in index.data(_TR.Reactions) or []]
        files = [AttachedFile(*a) for a in index.data(_TR.Attachments) or []]
        measure = _Measure(own=bool(index.data(_TR.IsOwn)), day=bool(index.data(_TR.DayBreak)),
                           marker=bool(index.data(_TR.NewMarker)), name_w=name_w,
                           note_w=note_w, header_h=header_h, reply_h=reply_h, text=text,
                           lines=[], chips=chips, files=files, action=action)
        if text or not files:
            measure.lines = _natural_lines(text, self.body_font(measure, body_font))
        if files:
            # Room for the name, then the size or state, then the progress bar.
            measure.card_h = fm.height() + QFontMetrics(small).height() + 12 + PROGRESS_HEIGHT
            measure.button_w = max(QFontMetrics(small).horizontalAdvance(t) for t in (
                _("Download"), _("Open"), _("Cancel"), _("Retry"))) + 20
        return measure

    @staticmethod
    def _body_size(m: _Measure, inner: int, font: QFont) -> tuple[int, int]:
        # Most chat messages are shorter than a line: their size needs no wrapping.
        if all(line_w <= inner for line_w, _h in m.lines):
            return sum(h for _w, h in m.lines), max((w for w, _h in m.lines), default=0)
        return _text_size(m.text, font, inner)

    @staticmethod
    def _geometry(m: _Measure, width: int) -> tuple[int, int, int]:
        """(top of the bubble, left edge for others' bubbles, widest bubble)."""
        top = (DAY_HEIGHT if m.day else 0) + (MARKER_HEIGHT if m.marker else 0)
        left = MARGIN if m.own else MARGIN + AVATAR + GAP
        max_bubble = max(160, min(width - left - MARGIN, int(width * 0.78)))
        return top, left, max_bubble

    @staticmethod
    def _content_width(m: _Measure, inner: int, body_w: int) -> int:
        """The bubble's inner width: what its parts need, at most ``inner``, but
        never less than the time needs (the name is elided instead)."""
        files_w = CARD_WIDTH if m.files else 0
        return max(m.note_w, min(inner, max(m.header_w, body_w, 120 if m.reply_h else 0,
                                            files_w)))

    def _height(self, m: _Measure, width: int, font: QFont) -> int:
        """The row height only (what QListView needs for every row, on every layout)."""
        top, _left, max_bubble = self._geometry(m, width)
        body_h, body_w = self._body_size(m, max_bubble - 2 * PAD, self.body_font(m, font))
        content_w = self._content_width(m, max_bubble - 2 * PAD, body_w)
        bubble_h = (PAD + m.header_h + (m.reply_h + 4 if m.reply_h else 2) + body_h
                    + m.files_h + PAD)
        y = top + bubble_h
        if m.chips:
            bubble_w = content_w + 2 * PAD
            y += CHIP_GAP + CHIP_HEIGHT
            x, limit = 0, max(bubble_w, max_bubble)
            for chip_w, *_rest in m.chips:
                if x + chip_w > limit and x > 0:
                    x = 0
                    y += CHIP_HEIGHT + CHIP_GAP
                x += chip_w + CHIP_GAP
        if not m.own:
            y = max(y, top + AVATAR)
        return y + SPACING

    def _place(self, m: _Measure, width: int, font: QFont) -> MessageLayout:
        """Every rectangle of the message for ``width`` (for painting and clicks)."""
        top, left, max_bubble = self._geometry(m, width)
        layout = MessageLayout(height=self._height(m, width, font))
        y = 0
        if m.day:
            layout.day = QRect(0, y, width, DAY_HEIGHT)
            y += DAY_HEIGHT
        if m.marker:
            layout.marker = QRect(0, y, width, MARKER_HEIGHT)
        inner = max_bubble - 2 * PAD
        body_h, body_w = self._body_size(m, inner, self.body_font(m, font))
        content_w = self._content_width(m, inner, body_w)
        bubble_h = (PAD + m.header_h + (m.reply_h + 4 if m.reply_h else 2) + body_h
                    + m.files_h + PAD)
        bubble_w = content_w + 2 * PAD
        bubble_x = width - MARGIN - bubble_w if m.own else left
        layout.bubble = QRect(bubble_x, top, bubble_w, bubble_h)
        if not m.own:
            layout.avatar = QRect(MARGIN, top, AVATAR, AVATAR)
        inner_x, cy = bubble_x + PAD, top + PAD
        layout.header = QRect(inner_x, cy, content_w, m.header_h)
        name_w = max(0, min(m.name_w, content_w - NOTE_GAP - m.note_w))
        layout.name = QRect(inner_x, cy, name_w, m.header_h)
        layout.note = QRect(inner_x + (name_w + NOTE_GAP if name_w else 0), cy, m.note_w,
                            m.header_h)
        cy += m.header_h + 2
        if m.reply_h:
            layout.reply = QRect(inner_x, cy, content_w, m.reply_h)
            cy += m.reply_h + 4
        layout.body = QRect(inner_x, cy, content_w, body_h)
        cy += body_h
        for file in m.files:
            cy += FILE_GAP
            thumb = None
            if file.image:
                thumb = QRect(inner_x, cy, min(content_w, THUMBNAIL_WIDTH), THUMBNAIL_HEIGHT)
                cy += THUMBNAIL_HEIGHT + THUMB_GAP
            card = QRect(inner_x, cy, content_w, m.card_h)
            icon = QRect(card.left() + 8, card.top() + (m.card_h - 34) // 2, 26, 34)
            button = QRect(card.right() - 6 - m.button_w + 1, card.center().y() - 12,
                           m.button_w, 24)
            text_x = icon.right() + 9
            text_w = max(10, button.left() - 8 - text_x)
            half = (m.card_h - PROGRESS_HEIGHT) // 2
            name = QRect(text_x, card.top() + 5, text_w, half - 4)
            info = QRect(text_x, card.top() + half + 1, text_w, half - 5)
            layout.files.append(FileSpot(file, card, icon, name, info, button, thumb))
            cy += m.card_h
        y = top + bubble_h
        if m.chips:
            y += CHIP_GAP
            x, limit = bubble_x, bubble_x + max(bubble_w, max_bubble)
            for chip_w, emoji, count, mine in m.chips:
                if x + chip_w > limit and x > bubble_x:
                    x = bubble_x
                    y += CHIP_HEIGHT + CHIP_GAP
                layout.chips.append((QRect(x, y, chip_w, CHIP_HEIGHT), emoji, count, mine))
                x += chip_w + CHIP_GAP
        if m.own and layout.chips:
            # Own messages sit on the right: so do their reactions.
            shift = bubble_x + bubble_w - max(rect.right() + 1 for rect, *_ in layout.chips)
            layout.chips = [(rect.translated(shift, 0), e, c, k) for rect, e, c, k in layout.chips]
        return layout

    @staticmethod
    def header_note(index: _Index, now_ms: int | None = None) -> str:
        """What follows the sender's name: the time (and "(edited)", and for a
        burn-after-reading message 🔥 and the time it has left at ``now_ms``), or
        the state of a message being sent.

        Without ``now_ms`` the countdown shows the whole ``ttl``: the widest it
        gets, which is what the layout reserves."""
        state = index.data(_TR.State)
        if state == PENDING:
            return _("Sending…")
        if state == FAILED:
            return _("Not sent")
        note = clock_text(int(index.data(_TR.Timestamp) or 0))
        if index.data(_TR.Edited):
            note += " " + _("(edited)")
        ttl = index.data(_TR.Ttl)
        if ttl:
            left = int(ttl)
            if now_ms is not None:
                left = min(left, math.ceil((int(index.data(_TR.ExpiresAt)) - now_ms) / 1000))
            note += f" {BURN_MARK} {countdown_text(left)}"
        return note

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """The height of the message for the view's width (cached per message)."""
        width = self._width(option)
        if width != self._sizes_width:
            self._sizes.clear()  # heights for one width at a time: memory stays bounded
            self._sizes_width = width
        key = index.data(_TR.LayoutKey)
        height = self._sizes.get(key)
        if height is None:
            height = self._sizes[key] = self._height(self._measure_of(key, option, index),
                                                     width, option.font)
        return QSize(width, height)

    # -- painting -----------------------------------------------------------------------------

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem,
              index: _Index) -> None:
        """Draw the message at ``index`` into ``option.rect``."""
        if painter is None:
            return
        layout = self.layout_for(option, index)
        body_font, bold, small = self.fonts(option)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.translate(option.rect.topLeft())
        if self.highlight_key is not None and index.data(_TR.Key) == self.highlight_key:
            top = layout.bubble.top() - SPACING // 2
            painter.fillRect(QRect(0, top, option.rect.width(), layout.height - top),
                             _HIGHLIGHT)
        if layout.day is not None:
            self._paint_rule(painter, layout.day, day_text(int(index.data(_TR.Timestamp) or 0)),
                             _MUTED, small)
        if layout.marker is not None:
            self._paint_rule(painter, layout.marker, _("New messages"), _MARKER, small)
        sender = str(index.data(_TR.Sender))
        name = str(index.data(_TR.SenderName))
        if layout.avatar is not None:
            paint_avatar(painter, layout.avatar, self.avatars, sender, name, bold)
        own = bool(index.data(_TR.IsOwn))
        colour = _OWN_BUBBLE if own else (
            _MENTION_BUBBLE if index.data(_TR.Mentioned) else _OTHER_BUBBLE)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(QPen(option.palette.highlight().color(), 2) if selected
                       else Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(QRectF(layout.bubble), 10, 10)
        # Header.
        painter.setFont(bold)
        painter.setPen(name_colour(sender))
        middle = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        if layout.name.width() > 0:
            painter.drawText(layout.name, middle, QFontMetrics(bold).elidedText(
                name, Qt.TextElideMode.ElideRight, layout.name.width()))
        painter.setFont(small)
        state = index.data(_TR.State)
        painter.setPen(_MARKER if state == FAILED else _MUTED)
        # Never elided: the layout gave the time all the width it needs (and a
        # countdown only gets shorter).
        if index.data(_TR.Ttl) and state not in (PENDING, FAILED):
            note = self.header_note(index, int(time.time() * 1000))
            self.countdowns[str(index.data(_TR.Key))] = note.rpartition(" ")[2]
        else:
            note = self.header_note(index)
        painter.drawText(layout.note, middle, note)
        # Reply quote.
        if layout.reply is not None:
            quoted_sender, quoted = index.data(_TR.ReplyPreview) or ("", "")
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 18))
            painter.drawRect(layout.reply)
            painter.setBrush(_MUTED)
            painter.drawRect(QRect(layout.reply.left(), layout.reply.top(), 3,
                                   layout.reply.height()))
            if not quoted_sender:
                text = _("a message not shown")
            elif quoted.startswith(f"* {quoted_sender} "):
                text = quoted  # an action names its sender already
            else:
                text = f"{quoted_sender}: {quoted}"
            text = "↪ " + " ".join(text.split())
            painter.setPen(_MUTED)
            inner = layout.reply.adjusted(8, 0, -4, 0)
            painter.drawText(inner, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             QFontMetrics(small).elidedText(text, Qt.TextElideMode.ElideRight,
                                                            inner.width()))
        # Body ("* Name waves" in italics for an action).
        action = index.data(_TR.Action) is not None
        if action:
            body_font.setItalic(True)
        painter.setFont(body_font)
        painter.setPen(_MUTED if state == PENDING else _TEXT)
        text_option = QTextOption()
        text_option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        painter.drawText(QRectF(layout.body), _display_text(self.shown_body(index)),
                         text_option)
        if action:
            body_font.setItalic(False)
        for spot in layout.files:
            self._paint_file(painter, spot, body_font, small)
        # Reactions.
        for rect, emoji, count, mine in layout.chips:
            painter.setPen(QPen(QColor("#1a73e8") if mine else QColor("#dadce0"), 1))
            painter.setBrush(QColor("#e8f0fe") if mine else QColor("white"))
            painter.drawRoundedRect(QRectF(rect), CHIP_HEIGHT / 2, CHIP_HEIGHT / 2)
            painter.setPen(_TEXT)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, chip_text(emoji, count))
        painter.restore()

    # -- attached files ----------------------------------------------------------------------

    def download_of(self, file_id: str) -> TransferItem | None:
        """The download of ``file_id`` the bubble reflects, if any."""
        return self.transfers.download_for(file_id) if self.transfers is not None else None

    def file_action(self, file_id: str) -> str:
        """What the file's button does now: ``download``, ``cancel``, ``open`` or ``retry``."""
        download = self.download_of(file_id)
        if download is None:
            return "download"
        if download.state in ACTIVE_STATES:
            return "cancel"
        if download.state == DONE:
            return "open"
        return "retry" if download.state in RETRY_STATES else "download"

    def _paint_file(self, painter: QPainter, spot: FileSpot, font: QFont, small: QFont) -> None:
        file = spot.file
        if spot.thumb is not None:
            self._paint_thumb(painter, spot.thumb, file, small)
        card = spot.card
        painter.setPen(QPen(QColor("#dadce0"), 1))
        painter.setBrush(QColor("white"))
        painter.drawRoundedRect(QRectF(card).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        _paint_file_icon(painter, spot.icon, file.name, small)
        painter.setFont(font)
        painter.setPen(_TEXT)
        painter.drawText(spot.name, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         QFontMetrics(font).elidedText(file.name, Qt.TextElideMode.ElideMiddle,
                                                       spot.name.width()))
        download = self.download_of(file.file_id)
        info = human_size(file.size)
        if download is not None:
            total = download.total or file.size
            info = transfer_status(download.state, download.done, total, download.error,
                                   upload=False)
        painter.setFont(small)
        failed = download is not None and download.state in RETRY_STATES
        painter.setPen(_MARKER if failed else _MUTED)
        painter.drawText(spot.info, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         QFontMetrics(small).elidedText(info, Qt.TextElideMode.ElideRight,
                                                        spot.info.width()))
        action = self.file_action(file.file_id)
        texts = {"download": _("Download"), "cancel": _("Cancel"), "open": _("Open"),
                 "retry": _("Retry")}
        primary = action in ("download", "open")
        painter.setPen(QPen(QColor("#1a73e8"), 1))
        painter.setBrush(QColor("#1a73e8") if primary else QColor("white"))
        painter.drawRoundedRect(QRectF(spot.button), 12, 12)
        painter.setPen(QColor("white") if primary else QColor("#1a73e8"))
        painter.drawText(spot.button, Qt.AlignmentFlag.AlignCenter, texts[action])
        if download is not None and download.state in ACTIVE_STATES:
            bar = QRect(card.left() + 8, card.bottom() - PROGRESS_HEIGHT - 3,
                        card.width() - 16, PROGRESS_HEIGHT)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#e8eaed"))
            painter.drawRect(bar)
            painter.setBrush(QColor("#1a73e8"))
            painter.drawRect(QRect(bar.left(), bar.top(), int(bar.width() * download.fraction),
                                   bar.height()))

    def _paint_thumb(self, painter: QPainter, rect: QRect, file: AttachedFile,
                     small: QFont) -> None:
        thumbnails = self.thumbnails
        pixmap = thumbnails.pixmap(file.file_id) if thumbnails is not None else None
        if pixmap is not None:
            size = pixmap.deviceIndependentSize()
            target = QRectF(rect.left(), rect.top(), min(size.width(), rect.width()),
                            min(size.height(), rect.height()))
            painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
            return
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e8eaed"))
        painter.drawRoundedRect(QRectF(rect), 8, 8)
        state = thumbnails.state(file.file_id) if thumbnails is not None else "failed"
        painter.setFont(small)
        painter.setPen(_MUTED)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter,
                         _("No preview") if state == "failed" else _("Loading preview…"))
        if state is None and file.file_id not in self._wanted:
            if not self._wanted:
                QTimer.singleShot(0, self._ask_for_thumbnails)
            self._wanted[file.file_id] = file

    def _ask_for_thumbnails(self) -> None:
        """After the paint: ask for the previews that were missing (once each)."""
        wanted, self._wanted = self._wanted, {}
        for file in wanted.values():
            if self.thumbnails is not None and self.thumbnails.state(file.file_id) is None:
                self.thumbnail_wanted.emit(file.file_id, file.mime, file.size)

    def file_at(self, option: QStyleOptionViewItem, index: _Index,
                pos: Any) -> tuple[str, AttachedFile] | None:
        """The attached file under ``pos`` (view coordinates) and what clicking does
        there: (``download`` / ``cancel`` / ``open`` / ``retry`` on its button,
        ``preview`` on an image's preview), or None."""
        layout = self.layout_for(option, index)
        local = pos - option.rect.topLeft()
        for spot in layout.files:
            if spot.button.contains(local):
                return self.file_action(spot.file.file_id), spot.file
            if spot.thumb is not None and spot.thumb.contains(local):
                return "preview", spot.file
        return None

    @staticmethod
    def _paint_rule(painter: QPainter, rect: QRect, text: str, colour: QColor,
                    font: QFont) -> None:
        """A horizontal line with a centred label (day separator, new-messages marker)."""
        painter.setFont(font)
        fm = QFontMetrics(font)
        text_w = fm.horizontalAdvance(text) + 16
        mid = rect.center().y()
        painter.setPen(QPen(colour, 1))
        left_end = rect.center().x() - text_w // 2
        painter.drawLine(rect.left() + MARGIN, mid, left_end, mid)
        painter.drawLine(left_end + text_w, mid, rect.right() - MARGIN, mid)
        painter.drawText(QRect(left_end, rect.top(), text_w, rect.height()),
                         Qt.AlignmentFlag.AlignCenter, text)

    # -- clicks --------------------------------------------------------------------------------

    def chip_at(self, option: QStyleOptionViewItem, index: _Index,
                pos: Any) -> tuple[str, bool] | None:
        """The reaction chip under ``pos`` (view coordinates): (emoji, mine), or None."""
        layout = self.layout_for(option, index)
        local = pos - option.rect.topLeft()
        for rect, emoji, _count, mine in layout.chips:
            if rect.contains(local):
                return emoji, mine
        return None

    def helpEvent(self, event: QHelpEvent | None, view: QAbstractItemView | None,
                  option: QStyleOptionViewItem, index: QModelIndex) -> bool:
        """Hovering a reaction chip tells who reacted (or how many, when the server
        sent only counts)."""
        if event is not None and event.type() == QEvent.Type.ToolTip:
            hit = self.chip_at(option, index, event.pos())
            if hit is not None:
                emoji, mine = hit
                counts = {e: n for e, n, _m in index.data(_TR.Reactions) or []}
                users = (index.data(_TR.ReactionUsers) or {}).get(emoji)
                QToolTip.showText(event.globalPos(),
                                  reaction_tooltip(emoji, counts.get(emoji, 0), mine, users),
                                  view)
                return True
        return super().helpEvent(event, view, option, index)

    def editorEvent(self, event: QEvent | None, model: QAbstractItemModel | None,
                    option: QStyleOptionViewItem, index: _Index) -> bool:
        """A click on a reaction chip toggles the user's reaction."""
        if (isinstance(event, QMouseEvent) and event.type() == QEvent.Type.MouseButtonRelease
                and event.button() == Qt.MouseButton.LeftButton):
            spot = self.file_at(option, index, event.position().toPoint())
            if spot is not None:
                action, file = spot
                self.file_clicked.emit(action, file.file_id, file.name, file.mime, file.size)
                return True
            hit = self.chip_at(option, index, event.position().toPoint())
            msg_id = index.data(_TR.MsgId)
            if hit is not None and msg_id is not None:
                emoji, mine = hit
                self.reaction_clicked.emit(int(msg_id), emoji, not mine)
                return True
        return False


def chip_text(emoji: str, count: int) -> str:
    """A reaction chip's label: the emoji and a short count (``👍 3``, ``🎉 1.2k``, ``🎉 26k``)."""
    if count < 1000:
        return f"{emoji} {count}"
    if count < 10_000:
        return f"{emoji} {count / 1000:.1f}k"
    return f"{emoji} {count // 1000}k"


#: Names a reaction chip's tooltip lists before "and N more".
TOOLTIP_NAMES = 10


def reaction_tooltip(emoji: str, count: int, mine: bool, users: list[str] | None) -> str:
    """Who reacted with ``emoji``: their names (display names, as the model gives
    them), or only how many when the message came summarised (``users`` None)."""
    if users is None:
        if mine:
            return ngettext("You and {n} other reacted with {emoji}",
                            "You and {n} others reacted with {emoji}",
                            count - 1).format(n=count - 1, emoji=emoji) if count > 1 else \
                _("You reacted with {emoji}").format(emoji=emoji)
        return ngettext("{n} person reacted with {emoji}", "{n} people reacted with {emoji}",
                        count).format(n=count, emoji=emoji)
    names = ", ".join(users[:TOOLTIP_NAMES])
    more = len(users) - TOOLTIP_NAMES
    if more > 0:
        return ngettext("{names} and {n} other reacted with {emoji}",
                        "{names} and {n} others reacted with {emoji}",
                        more).format(names=names, n=more, emoji=emoji)
    return _("{names} reacted with {emoji}").format(names=names, emoji=emoji)


def _paint_file_icon(painter: QPainter, rect: QRect, name: str, font: QFont) -> None:
    """A page with a folded corner and the file's extension on it."""
    fold = 8
    page = QPainterPath()
    x, y, w, h = rect.left(), rect.top(), rect.width(), rect.height()
    page.moveTo(x, y)
    page.lineTo(x + w - fold, y)
    page.lineTo(x + w, y + fold)
    page.lineTo(x + w, y + h)
    page.lineTo(x, y + h)
    page.closeSubpath()
    painter.setPen(QPen(QColor("#1a73e8"), 1))
    painter.setBrush(QColor("#e8f0fe"))
    painter.drawPath(page)
    painter.drawLine(x + w - fold, y, x + w - fold, y + fold)
    painter.drawLine(x + w - fold, y + fold, x + w, y + fold)
    extension = name.rsplit(".", 1)[1][:4].upper() if "." in name.strip(".") else ""
    if extension:
        tiny = QFont(font)
        tiny.setBold(True)
        tiny.setPixelSize(8)
        painter.setFont(tiny)
        painter.setPen(QColor("#1a73e8"))
        painter.drawText(QRect(x, y + h // 2 - 2, w, h // 2), Qt.AlignmentFlag.AlignCenter,
                         extension)


def _paint_dot(painter: QPainter, centre_x: int, centre_y: int, state: str,
               radius: int = 6) -> None:
    """A presence dot of ``radius`` with a white ring (so it reads on a picture);
    a hollow grey ring when the presence is not known."""
    colour = QColor(STATE_COLOURS.get(state, STATE_COLOURS["offline"]))
    if state == UNKNOWN:
        painter.setPen(QPen(colour, 2))
        painter.setBrush(QColor("white"))
        painter.drawEllipse(QRectF(centre_x - radius + 1, centre_y - radius + 1,
                                   2 * radius - 2, 2 * radius - 2))
        return
    painter.setPen(QPen(QColor("white"), 2))
    painter.setBrush(colour)
    painter.drawEllipse(QRectF(centre_x - radius, centre_y - radius, 2 * radius, 2 * radius))


def _paint_person(painter: QPainter, rect: QRect, avatars: AvatarCache, username: str,
                  name: str, presence: str, font: QFont) -> None:
    """A list row's person: a :data:`LIST_AVATAR` picture (or initial) centred
    vertically at the row's left, the presence dot at its lower right."""
    box = QRect(rect.left() + 6, rect.center().y() - LIST_AVATAR // 2 + 1, LIST_AVATAR,
                LIST_AVATAR)
    small = QFont(font)
    small.setBold(True)
    paint_avatar(painter, box, avatars, username, name, small)
    _paint_dot(painter, box.right() - 2, box.bottom() - 2, presence, 5)


class RoomDelegate(QStyledItemDelegate):
    """A room row: the other person's picture with their presence dot (direct)
    or ``#`` (group), name, unread badge.

    Attributes:
        avatars: profile pictures (None: a direct room shows only the dot).
    """

    ROW_HEIGHT = 40
    #: Where the name begins, from the row's left.
    TEXT_LEFT = 42

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.avatars: AvatarCache | None = None

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Rows of one height (the list uses uniform item sizes)."""
        return QSize(option.rect.width(), self.ROW_HEIGHT)

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem,
              index: _Index) -> None:
        """Draw the room at ``index``."""
        if painter is None:
            return
        roles = RoomListModel.Roles
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, option.palette.highlight())
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(rect, QColor(0, 0, 0, 12))
        text_colour = (option.palette.highlightedText().color() if selected
                       else option.palette.text().color())
        font = QFont(option.font)
        unread = int(index.data(roles.Unread) or 0)
        cx, cy = rect.left() + 18, rect.center().y()
        presence = str(index.data(roles.Presence) or "offline")
        if index.data(roles.IsDirect) and self.avatars is not None:
            _paint_person(painter, rect, self.avatars, str(index.data(roles.Peer) or ""),
                          str(index.data() or ""), presence, font)
        elif index.data(roles.IsDirect):
            _paint_dot(painter, cx, cy, presence)
        else:
            painter.setPen(text_colour)
            painter.setFont(font)
            painter.drawText(QRect(cx - 10, rect.top(), 20, rect.height()),
                             Qt.AlignmentFlag.AlignCenter, "#")
        badge_w = 0
        if unread:
            badge = "99+" if unread > 99 else str(unread)
            small = QFont(font)
            small.setBold(True)
            small.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
            fm = QFontMetrics(small)
            badge_w = max(22, fm.horizontalAdvance(badge) + 12)
            badge_rect = QRect(rect.right() - 8 - badge_w, cy - 10, badge_w, 20)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#d93025"))
            painter.drawRoundedRect(QRectF(badge_rect), 10, 10)
            painter.setPen(QColor("white"))
            painter.setFont(small)
            painter.drawText(badge_rect, Qt.AlignmentFlag.AlignCenter, badge)
        name_rect = QRect(rect.left() + self.TEXT_LEFT, rect.top(),
                          rect.width() - self.TEXT_LEFT - badge_w - 16, rect.height())
        font.setBold(unread > 0)
        painter.setFont(font)
        painter.setPen(text_colour)
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         QFontMetrics(font).elidedText(str(index.data() or ""),
                                                       Qt.TextElideMode.ElideRight,
                                                       name_rect.width()))
        painter.restore()


def role_text(role: str) -> str:
    """A member role in the current language."""
    texts = {"owner": _("Owner"), "moderator": _("Moderator"), "member": _("Member")}
    return texts.get(role, role)


def one_line(text: str) -> str:
    """A name as one line: control characters dropped, runs of white space made one
    space (so that padding cannot push what follows out of sight)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class MemberDelegate(QStyledItemDelegate):
    """A member row: presence dot, display name *and* ``@username`` on the first
    line, presence below, role tag.

    Display names are free text and anyone may take someone else's; the
    username is unique. So the ``@username`` is drawn first, in full (up to
    two thirds of the row), and the display name gets the room that is left,
    elided: no name, however long or padded, can hide whose row it is.
    """

    MIN_HEIGHT = 40
    #: Where the text begins, from the row's left (after the picture).
    TEXT_LEFT = 42

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        #: Profile pictures (None: a presence dot where the picture would be).
        self.avatars: AvatarCache | None = None

    @staticmethod
    def _fonts(option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        font = QFont(option.font)
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        return font, small

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Two lines of text (name and username, then presence) with padding;
        measured, since CJK fallback fonts have taller lines."""
        font, small = self._fonts(option)
        height = QFontMetrics(font).height() + QFontMetrics(small).height() + 14
        return QSize(option.rect.width(), max(self.MIN_HEIGHT, height))

    @staticmethod
    def first_line(index: _Index, font: QFont, width: int) -> tuple[str, str]:
        """The first line's two parts for ``width`` pixels: the display name (elided,
        "" when it is the username) and ``@username`` (whole, unless the row is
        narrower than that)."""
        roles = MemberListModel.Roles
        username = str(index.data(roles.Username) or "")
        name = one_line(str(index.data(roles.DisplayName) or ""))
        metrics = QFontMetrics(font)
        handle = metrics.elidedText(f"@{username}", Qt.TextElideMode.ElideRight,
                                    max(width * 2 // 3, width - metrics.averageCharWidth() * 8))
        if not name or name == username:
            return "", handle
        room = width - metrics.horizontalAdvance(handle) - metrics.horizontalAdvance("  ")
        shown = metrics.elidedText(name, Qt.TextElideMode.ElideRight, max(0, room))
        return shown, handle

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem,
              index: _Index) -> None:
        """Draw the member at ``index``."""
        if painter is None:
            return
        roles = MemberListModel.Roles
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, option.palette.highlight())
        presence = str(index.data(roles.Presence) or "offline")
        font, small = self._fonts(option)
        if self.avatars is not None:
            _paint_person(painter, rect, self.avatars, str(index.data(roles.Username) or ""),
                          str(index.data(roles.DisplayName) or ""), presence, font)
        else:
            _paint_dot(painter, rect.left() + 16, rect.center().y(), presence)
        role = str(index.data(roles.Role) or "member")
        tag = role_text(role) if role != "member" else ""
        tag_w = QFontMetrics(small).horizontalAdvance(tag) + 12 if tag else 0
        text_colour = (option.palette.highlightedText().color() if selected
                       else option.palette.text().color())
        muted = _MUTED if not selected else text_colour
        name_h, sub_h = QFontMetrics(font).height(), QFontMetrics(small).height()
        top = rect.top() + (rect.height() - name_h - sub_h - 2) // 2
        line = QRect(rect.left() + self.TEXT_LEFT, top, rect.width() - self.TEXT_LEFT - 8 - tag_w,
                     name_h)
        name, handle = self.first_line(index, font, line.width())
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setFont(font)
        x = line.left()
        if name:
            painter.setPen(text_colour)
            painter.drawText(QRect(x, line.top(), line.width(), name_h), left, name)
            x += QFontMetrics(font).horizontalAdvance(name + "  ")
            painter.setPen(muted)
        else:
            painter.setPen(text_colour)
        painter.drawText(QRect(x, line.top(), line.right() - x + 1, name_h), left, handle)
        sub_rect = QRect(line.left(), top + name_h + 2, line.width(), sub_h)
        painter.setFont(small)
        painter.setPen(muted)
        painter.drawText(sub_rect, left, QFontMetrics(small).elidedText(
            _(STATE_NAMES.get(presence, presence)), Qt.TextElideMode.ElideRight,
            sub_rect.width()))
        if tag:
            tag_rect = QRect(rect.right() - 6 - tag_w, rect.center().y() - 10, tag_w, 20)
            painter.setPen(QPen(QColor("#1a73e8"), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(tag_rect), 6, 6)
            painter.setPen(QColor("#1a73e8"))
            painter.drawText(tag_rect, Qt.AlignmentFlag.AlignCenter, tag)
        painter.restore()


class InviteDelegate(QStyledItemDelegate):
    """An invitation row: ``# room`` in bold, and who invited (by username, which
    cannot be imitated) with the room's size below."""

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Two lines of text with padding."""
        font = QFont(option.font)
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        height = QFontMetrics(font).height() + QFontMetrics(small).height() + 12
        return QSize(option.rect.width(), height)

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem,
              index: _Index) -> None:
        """Draw the invitation at ``index``."""
        if painter is None:
            return
        roles = InviteListModel.Roles
        painter.save()
        rect = option.rect
        # The invitation Join and Decline answer: marked lightly, so that it does
        # not look like the room that is open.
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, _INVITE_SELECTED)
        text_colour = option.palette.text().color()
        font = QFont(option.font)
        font.setBold(True)
        small = QFont(option.font)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.85))
        name_h, sub_h = QFontMetrics(font).height(), QFontMetrics(small).height()
        top = rect.top() + (rect.height() - name_h - sub_h - 2) // 2
        inner = QRect(rect.left() + 10, top, rect.width() - 16, name_h)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setFont(font)
        painter.setPen(text_colour)
        painter.drawText(inner, left, QFontMetrics(font).elidedText(
            "# " + one_line(str(index.data() or "")), Qt.TextElideMode.ElideRight,
            inner.width()))
        members = int(index.data(roles.MembersCount) or 0)
        detail = _("invited by @{user}").format(user=index.data(roles.By)) + " · " + \
            ngettext("{n} member", "{n} members", members).format(n=members)
        painter.setFont(small)
        painter.setPen(_MUTED)
        sub = QRect(inner.left(), top + name_h + 2, inner.width(), sub_h)
        painter.drawText(sub, left, QFontMetrics(small).elidedText(
            detail, Qt.TextElideMode.ElideRight, sub.width()))
        painter.restore()
