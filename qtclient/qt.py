"""The one place the desktop client imports PyQt6 (STYLE.md habit 18, after Anki's ``aqt.qt``).

Every other module of :mod:`qtclient` takes its Qt names from here, so that
the binding is chosen once: ``QT_API=pyqt6`` is set before anything imports
``qtpy`` (which ``qreactor`` uses), and a future switch of binding touches one
file.
"""

from __future__ import annotations

import os

# qreactor goes through qtpy; pin qtpy to the binding imported below so both
# sides of the event loop talk to the same Qt.
os.environ.setdefault("QT_API", "pyqt6")

from PyQt6 import sip
from PyQt6.QtCore import (
    QAbstractItemModel,
    QAbstractListModel,
    QByteArray,
    QCoreApplication,
    QDate,
    QDateTime,
    QEvent,
    QItemSelectionModel,
    QLibraryInfo,
    QLocale,
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
    Qt,
    QTimer,
    QTranslator,
    pyqtSignal,
)
from PyQt6.QtGui import (
    QAction,
    QBrush,
    QCloseEvent,
    QColor,
    QContextMenuEvent,
    QCursor,
    QFont,
    QFontDatabase,
    QFontMetrics,
    QGuiApplication,
    QIcon,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QShortcut,
    QTextLayout,
    QTextOption,
)
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStatusBar,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QSystemTrayIcon,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

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
    "QAbstractItemModel",
    "QAbstractItemView",
    "QAbstractListModel",
    "QAction",
    "QApplication",
    "QBrush",
    "QByteArray",
    "QCheckBox",
    "QCloseEvent",
    "QColor",
    "QComboBox",
    "QContextMenuEvent",
    "QCoreApplication",
    "QCursor",
    "QDate",
    "QDateTime",
    "QDialog",
    "QDialogButtonBox",
    "QEvent",
    "QFileDialog",
    "QFont",
    "QFontDatabase",
    "QFontMetrics",
    "QFormLayout",
    "QFrame",
    "QGuiApplication",
    "QHBoxLayout",
    "QIcon",
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
    "QModelIndex",
    "QMouseEvent",
    "QObject",
    "QPainter",
    "QPainterPath",
    "QPalette",
    "QPen",
    "QPersistentModelIndex",
    "QPixmap",
    "QPlainTextEdit",
    "QPoint",
    "QPointF",
    "QPushButton",
    "QRadioButton",
    "QRect",
    "QRectF",
    "QResizeEvent",
    "QSettings",
    "QShortcut",
    "QSize",
    "QSizePolicy",
    "QSortFilterProxyModel",
    "QSpinBox",
    "QSplitter",
    "QStackedWidget",
    "QStatusBar",
    "QStyle",
    "QStyleOptionViewItem",
    "QStyledItemDelegate",
    "QSystemTrayIcon",
    "QTextLayout",
    "QTextOption",
    "QTimer",
    "QToolButton",
    "QTranslator",
    "QVBoxLayout",
    "QWidget",
    "Qt",
    "is_deleted",
    "pyqtSignal",
    "sip",
]
