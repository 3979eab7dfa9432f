"""The one top-level window: the account strip, and the shown account's page.

Layout::

    +----+---------------------------------------------------------------+
    |    | Chat  Accounts                                                |
    | AC | (the current account's MainWindow: rooms · conversation ·     |
    |  3 |  members, and its own status bar with its connection state)   |
    | BL |                                                               |
    |    |                                                               |
    | +  |                                                               |
    +----+---------------------------------------------------------------+

Every account's :class:`~qtclient.views.main_window.MainWindow` lives in a
``QStackedWidget``: switching only raises another page, so each keeps its
open room, scroll position, draft and live connection. The menu bar holds
the shown account's *Chat* menu and the *Accounts* menu (add one, and
Ctrl+1 … Ctrl+9 to switch). The window title sums the unread messages of
all accounts.
"""

from __future__ import annotations

from qtclient.i18n import _, ngettext
from qtclient.qt import (
    QAction,
    QCloseEvent,
    QEvent,
    QHBoxLayout,
    QKeySequence,
    QMainWindow,
    QMenu,
    QStackedWidget,
    QWidget,
    pyqtSignal,
)
from qtclient.views.accounts import STRIP_WIDTH, AccountStrip
from qtclient.views.icons import app_icon
from qtclient.views.main_window import MainWindow

#: Accounts reachable with Ctrl+1 … Ctrl+9.
SHORTCUT_ACCOUNTS = 9


class AppWindow(QMainWindow):
    """Holds the account strip and one page per account; reports focus and closing.

    Signals:
        account_chosen(key): a click in the strip, or Ctrl+<n>.
        add_account_requested(): "+" or *Accounts → Add an account…*.
        sign_in_requested(key), remove_requested(key): from an account's menu
            in the strip.
        quit_requested(): the window was closed (TWISTED-NOTES.md 7: the app
            stops the reactor; Qt would not quit by itself under qreactor).
        active_changed(bool): the window gained or lost the focus.
        user_input(): focus came or went (the idle timer counts it as input).
    """

    account_chosen = pyqtSignal(str)
    add_account_requested = pyqtSignal()
    sign_in_requested = pyqtSignal(str)
    remove_requested = pyqtSignal(str)
    quit_requested = pyqtSignal()
    active_changed = pyqtSignal(bool)
    user_input = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowIcon(app_icon())
        self.resize(1100 + STRIP_WIDTH, 720)
        self.pages: dict[str, MainWindow] = {}
        self.titles: dict[str, str] = {}
        self.current = ""
        self.unread = 0
        self.strip = AccountStrip()
        self.strip.chosen.connect(self.account_chosen)
        self.strip.add_requested.connect(self.add_account_requested)
        self.strip.sign_in_requested.connect(self.sign_in_requested)
        self.strip.remove_requested.connect(self.remove_requested)
        self.stack = QStackedWidget()
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.strip)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.accounts_menu = QMenu(self)
        self.add_account_action = QAction(self)
        self.add_account_action.triggered.connect(self.add_account_requested)
        self._account_actions: list[QAction] = []
        self._chat_menu: QMenu | None = None
        menu_bar = self.menuBar()
        assert menu_bar is not None
        menu_bar.addMenu(self.accounts_menu)
        self.retranslate()

    # -- accounts ------------------------------------------------------------------------------

    def add_page(self, key: str, initials: str, title: str, page: MainWindow) -> None:
        """Add an account's page (after the others) and its button."""
        self.pages[key] = page
        self.titles[key] = title
        self.stack.addWidget(page)
        self.strip.add_account(key, initials, title)
        self._rebuild_accounts_menu()

    def remove_page(self, key: str) -> None:
        """Take an account's page and button away (the page is not deleted)."""
        page = self.pages.pop(key, None)
        self.titles.pop(key, None)
        if page is not None:
            self.stack.removeWidget(page)
            if self._chat_menu is page.chat_menu:
                self._set_chat_menu(None)
        self.strip.remove_account(key)
        if self.current == key:
            self.current = ""
        self._rebuild_accounts_menu()

    def show_page(self, key: str) -> None:
        """Show ``key``'s page; its Chat menu goes into the menu bar."""
        page = self.pages[key]
        self.current = key
        self.stack.setCurrentWidget(page)
        self.strip.set_current(key)
        self._set_chat_menu(page.chat_menu)
        for action in self._account_actions:
            action.setChecked(action.data() == key)

    def _set_chat_menu(self, menu: QMenu | None) -> None:
        menu_bar = self.menuBar()
        assert menu_bar is not None
        if self._chat_menu is not None:
            menu_bar.removeAction(self._chat_menu.menuAction())
        self._chat_menu = menu
        if menu is not None:
            menu_bar.insertMenu(self.accounts_menu.menuAction(), menu)

    def _rebuild_accounts_menu(self) -> None:
        """*Accounts*: "Add an account…", then each account (Ctrl+<n> for the first nine)."""
        self.accounts_menu.clear()
        self.accounts_menu.addAction(self.add_account_action)
        for action in self._account_actions:
            self.removeAction(action)
            action.deleteLater()
        self._account_actions = []
        if self.pages:
            self.accounts_menu.addSeparator()
        for n, (key, title) in enumerate(self.titles.items(), start=1):
            action = QAction(title, self)
            action.setData(key)
            action.setCheckable(True)
            action.setChecked(key == self.current)
            if n <= SHORTCUT_ACCOUNTS:
                action.setShortcut(QKeySequence(f"Ctrl+{n}"))
            action.triggered.connect(lambda _checked=False, k=key: self.account_chosen.emit(k))
            self.accounts_menu.addAction(action)
            # Also on the window, so the shortcut works with the menu bar hidden.
            self.addAction(action)
            self._account_actions.append(action)

    def account_action(self, n: int) -> QAction:
        """The *Accounts* menu's action for the ``n``-th account (1-based)."""
        return self._account_actions[n - 1]

    def set_unread(self, total: int) -> None:
        """The title: "chatnet", with the unread count of all accounts."""
        self.unread = total
        title = _("chatnet")
        if total:
            title = ngettext("{title} ({n} unread)", "{title} ({n} unread)", total).format(
                title=title, n=total)
        self.setWindowTitle(title)

    # -- Qt events -----------------------------------------------------------------------------

    def retranslate(self) -> None:
        """Set every text in the current language."""
        self.accounts_menu.setTitle(_("&Accounts"))
        self.add_account_action.setText(_("Add an account…"))
        self.set_unread(self.unread)

    def changeEvent(self, event: QEvent | None) -> None:
        """Language switches re-translate; focus changes are reported."""
        if event is not None:
            if event.type() == QEvent.Type.LanguageChange:
                self.retranslate()
            elif event.type() == QEvent.Type.ActivationChange:
                self.active_changed.emit(self.isActiveWindow())
                self.user_input.emit()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent | None) -> None:
        """Closing the window quits the program."""
        self.quit_requested.emit()
        super().closeEvent(event)
