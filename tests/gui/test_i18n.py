"""Translations: complete catalogues, and a language switch that changes what is shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import qtclient
from qtclient.i18n import LANGUAGES, catalogue_path
from qtclient.qt import QCoreApplication, QFontDatabase
from qtclient.views.delegates import day_text

_KEYWORDS = {"_": None, "ngettext": (1, 2), "N_": None}
_FIELD = re.compile(r"\{[a-z_]+\}")


def _source_messages() -> set[str | tuple[str, ...]]:
    root = Path(qtclient.__file__).parent
    found: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(root), keywords=_KEYWORDS):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_visible_string_is_translated(language: str) -> None:
    """Each string the client marks for translation has a translation in each
    shipped catalogue, keeping the same {placeholders}."""
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    translations = {}
    for message in catalog:
        if message.id:
            key = message.id if isinstance(message.id, str) else tuple(message.id)
            translations[key] = message.string
    messages = _source_messages()
    assert len(messages) > 100
    missing = [m for m in messages if m not in translations or not all(
        [translations[m]] if isinstance(translations[m], str) else translations[m])]
    assert missing == [], f"untranslated in {language}.po: {missing}"
    for message in messages:
        source = message if isinstance(message, str) else message[0]
        strings = translations[message]
        for text in [strings] if isinstance(strings, str) else strings:
            assert set(_FIELD.findall(text)) == set(_FIELD.findall(source)), (language, message)


def test_switching_language_on_the_login_window(make_client: Any, qtbot: Any) -> None:
    """Choosing 中文 on the login window translates it at once, and the choice is kept."""
    app = make_client("alice", login=False)
    form = app.login_window
    assert form.login_button.text() == "Log in"
    form.language.setCurrentIndex(form.language.findData("zh_CN"))
    qtbot.waitUntil(lambda: form.login_button.text() == "登录")
    assert form.windowTitle() == "chatnet — 登录"
    assert form.register.text().startswith("注册此账号")
    assert app.settings.language == "zh_CN"
    form.language.setCurrentIndex(form.language.findData("en"))
    qtbot.waitUntil(lambda: form.login_button.text() == "Log in")


def test_switching_language_in_settings_changes_the_main_window(make_client: Any,
                                                                 qtbot: Any) -> None:
    """From the settings dialog, 中文 applies to the open main window without a
    restart: menus, buttons, the connection state, presence names, day
    separators, and Qt's own texts (from Qt's catalogue)."""
    app = make_client("alice")
    window = app.main_window
    assert window.send_button.text() == "Send"
    assert window.connection_label.text() == "Connected"
    dialog = app.open_settings()
    dialog.language.setCurrentIndex(dialog.language.findData("zh_CN"))
    qtbot.waitUntil(lambda: window.send_button.text() == "发送")
    assert window.connection_label.text() == "已连接"
    assert window.chat_menu.title() == "聊天(&C)"
    assert window.new_room_button.text() == "新建房间"
    assert window.presence_box.itemText(window.presence_box.findData("busy")) == "忙碌"
    assert dialog.windowTitle() == "设置"
    assert day_text(int(app.reactor.seconds() * 1000)) == "今天"
    assert QCoreApplication.translate("QPlatformTheme", "Cancel") == "取消"
    dialog.language.setCurrentIndex(dialog.language.findData("en"))
    qtbot.waitUntil(lambda: window.send_button.text() == "Send")
    assert QCoreApplication.translate("QPlatformTheme", "Cancel") == "Cancel"


def test_a_chinese_font_is_installed() -> None:
    """Chinese text needs a font with CJK glyphs (Debian: fonts-wqy-microhei),
    or it is drawn as empty boxes."""
    assert QFontDatabase.families(QFontDatabase.WritingSystem.SimplifiedChinese)
