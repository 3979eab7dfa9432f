"""The application icon, drawn in code (no image files to ship), with an unread badge."""

from __future__ import annotations

from qtclient.qt import QColor, QFont, QIcon, QPainter, QPainterPath, QPixmap, QRectF, Qt


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

