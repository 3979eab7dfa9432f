"""The application icon, drawn in code (no image files to ship), with an unread badge."""

from __future__ import annotations

from qtclient.qt import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QRectF, Qt


def app_icon(unread: int = 0, size: int = 64) -> QIcon:
    """A speech bubble on a blue square; with ``unread`` > 0 a red badge with the count."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#1a73e8"))
    painter.drawRoundedRect(QRectF(2, 2, size - 4, size - 4), size * 0.2, size * 0.2)
    painter.setBrush(QColor("white"))
    painter.drawRoundedRect(QRectF(size * 0.2, size * 0.25, size * 0.6, size * 0.4), 6, 6)
    tail = QPainterPath()  # the bubble's tail, bottom left
    tail.moveTo(size * 0.3, size * 0.6)
    tail.lineTo(size * 0.3, size * 0.78)
    tail.lineTo(size * 0.48, size * 0.6)
    tail.closeSubpath()
    painter.drawPath(tail)
    if unread > 0:
        text = "99+" if unread > 99 else str(unread)
        painter.setBrush(QColor("#d93025"))
        badge = QRectF(size * 0.45, 0, size * 0.55, size * 0.45)
        painter.drawEllipse(badge)
        font = QFont()
        font.setBold(True)
        font.setPixelSize(int(size * (0.22 if len(text) > 2 else 0.3)))
        painter.setFont(font)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return QIcon(pixmap)



def paperclip_icon(size: int = 20, colour: str = "#5f6368") -> QIcon:
    """A paperclip (the attach button, the rows of the uploads strip)."""
    return QIcon(paperclip_pixmap(size, colour))


def paperclip_pixmap(size: int = 20, colour: str = "#5f6368", ratio: float = 2.0) -> QPixmap:
    """A paperclip drawn at ``size`` device-independent pixels (``ratio`` for HiDPI)."""
    pixmap = QPixmap(int(size * ratio), int(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    clip = QPainterPath()  # in a 24 x 24 box, upright; turned 45° below
    clip.moveTo(9, 8)
    clip.lineTo(9, 16)
    clip.arcTo(QRectF(9, 13.5, 5, 5), 180, 180)
    clip.lineTo(14, 5)
    clip.arcTo(QRectF(6, 1, 8, 8), 0, 180)
    clip.lineTo(6, 18)
    clip.arcTo(QRectF(6, 13, 11, 10), 180, 180)
    clip.lineTo(17, 8)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size / 24, size / 24)
    painter.translate(12, 12)
    painter.rotate(45)
    painter.scale(0.78, 0.78)
    painter.translate(-11.5, -12)
    pen = QPen(QColor(colour), 2.0)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawPath(clip)
    painter.end()
    return pixmap
