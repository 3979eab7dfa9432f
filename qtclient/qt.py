"""The one place the desktop client imports PyQt6 (STYLE.md habit 18, after Anki's ``aqt.qt``).

Every other module of :mod:`qtclient` takes its Qt names from here, so that
the binding is chosen once: ``QT_API=pyqt6`` is set before anything imports
``qtpy`` (which ``qreactor`` uses), and a future switch of binding touches one
file.
"""

from __future__ import annotations

import os
from typing import Any

# qreactor goes through qtpy; pin qtpy to the binding imported below so both
# sides of the event loop talk to the same Qt.
os.environ.setdefault("QT_API", "pyqt6")

from PyQt6 import sip
from PyQt6.QtCore import (
    QAbstractItemModel,
    QAbstractListModel,
    QBuffer,
    QByteArray,
    QCoreApplication,
    QDate,
    QDateTime,
    QEvent,
    QIODevice,
    QItemSelectionModel,
    QLibraryInfo,
    QLocale,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSettings,
    QSize,
    QSortFilterProxyModel,
    QStandardPaths,
    Qt,
    QTimer,
    QTranslator,
    QUrl,
    pyqtSignal,
)
from PyQt6.QtGui import (
    QAction,
    QBrush,
    QCloseEvent,
    QColor,
    QContextMenuEvent,
    QCursor,
    QDesktopServices,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QFontDatabase,
    QFontMetrics,
    QFontMetricsF,
    QGuiApplication,
    QHelpEvent,
    QIcon,
    QImage,
    QImageReader,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QShortcut,
    QTextCharFormat,
    QTextLayout,
    QTextOption,
)
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QCalendarWidget,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QProgressDialog,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStatusBar,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)


def multimedia() -> Any:
    """``PyQt6.QtMultimedia`` (sound devices), or None where it cannot load: it links
    the system's libpulse (Debian ``libpulse0``), and the client runs without sound."""
    try:
        from PyQt6 import QtMultimedia
    except ImportError:
        return None
    return QtMultimedia


ItemRole = Qt.ItemDataRole
#: Signal argument type for chatnet ids: 63-bit integers (PROTOCOL.md ids), which
#: a plain ``int`` signal argument (C++ int, 32 bits) would truncate.
ID = "qint64"
USER_ROLE = Qt.ItemDataRole.UserRole.value


def is_deleted(obj: object) -> bool:
    """Whether the C++ side of a Qt object is gone (TWISTED-NOTES.md 6).

    Network callbacks can outlive the widgets they were meant for (a window
    closed while a request was in flight); they check this before touching one.
    """
    return isinstance(obj, sip.simplewrapper) and sip.isdeleted(obj)


__all__ = [
    "ID",
    "USER_ROLE",
    "ItemRole",
    "QAbstractButton",
    "QAbstractItemModel",
    "QAbstractItemView",
    "QAbstractListModel",
    "QAction",
    "QApplication",
    "QBrush",
    "QBuffer",
    "QByteArray",
    "QCalendarWidget",
    "QCheckBox",
    "QCloseEvent",
    "QColor",
    "QComboBox",
    "QContextMenuEvent",
    "QCoreApplication",
    "QCursor",
    "QDate",
    "QDateEdit",
    "QDateTime",
    "QDateTimeEdit",
    "QDesktopServices",
    "QDialog",
    "QDialogButtonBox",
    "QDragEnterEvent",
    "QDragMoveEvent",
    "QDropEvent",
    "QEvent",
    "QFileDialog",
    "QFont",
    "QFontDatabase",
    "QFontMetrics",
    "QFontMetricsF",
    "QFormLayout",
    "QFrame",
    "QGuiApplication",
    "QHBoxLayout",
    "QHeaderView",
    "QHelpEvent",
    "QIODevice",
    "QIcon",
    "QImage",
    "QImageReader",
    "QItemSelectionModel",
    "QKeyEvent",
    "QKeySequence",
    "QLabel",
    "QLibraryInfo",
    "QLineEdit",
    "QListView",
    "QListWidget",
    "QListWidgetItem",
    "QLocale",
    "QMainWindow",
    "QMenu",
    "QMessageBox",
    "QMimeData",
    "QModelIndex",
    "QMouseEvent",
    "QObject",
    "QPaintEvent",
    "QPainter",
    "QPainterPath",
    "QPalette",
    "QPen",
    "QPersistentModelIndex",
    "QPixmap",
    "QPlainTextEdit",
    "QPoint",
    "QPointF",
    "QProgressBar",
    "QProgressDialog",
    "QPushButton",
    "QRadioButton",
    "QRect",
    "QRectF",
    "QResizeEvent",
    "QScrollArea",
    "QSettings",
    "QShortcut",
    "QSize",
    "QSizePolicy",
    "QSortFilterProxyModel",
    "QSpinBox",
    "QSplitter",
    "QStackedWidget",
    "QStandardPaths",
    "QStatusBar",
    "QStyle",
    "QStyleOptionViewItem",
    "QStyledItemDelegate",
    "QSystemTrayIcon",
    "QTabWidget",
    "QTableWidget",
    "QTableWidgetItem",
    "QTextCharFormat",
    "QTextLayout",
    "QTextOption",
    "QTimer",
    "QToolButton",
    "QToolTip",
    "QTranslator",
    "QUrl",
    "QVBoxLayout",
    "QWidget",
    "Qt",
    "is_deleted",
    "multimedia",
    "pyqtSignal",
    "sip",
]
