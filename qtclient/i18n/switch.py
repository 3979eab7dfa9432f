"""Switching the client's language while it runs (the Qt half of :mod:`qtclient.i18n`)."""

from __future__ import annotations

from qtclient.i18n import LANGUAGES, set_catalogue
from qtclient.qt import QApplication, QCoreApplication, QEvent, QLibraryInfo, QLocale, QTranslator

#: The QLocale each shipped language formats dates and numbers with.
_LOCALES: dict[str, tuple[QLocale.Language, QLocale.Country]] = {
    "en": (QLocale.Language.English, QLocale.Country.UnitedStates),
    "zh_CN": (QLocale.Language.Chinese, QLocale.Country.China),
}


class LanguageSwitcher:
    """Applies a language to the running application.

    Our own texts come from the gettext catalogue; Qt's own texts (the
    buttons of standard dialogs, the copy/paste menu of text fields) from the
    ``qtbase_*.qm`` files that the PyQt6 wheel ships, through a QTranslator.
    After the switch every widget receives ``QEvent.LanguageChange`` and
    re-reads its texts (their ``changeEvent``).

    Args:
        app: the running QApplication.
    """

    def __init__(self, app: QApplication) -> None:
        self.app = app
        self._qt_translator: QTranslator | None = None

    def apply(self, language: str) -> None:
        """Switch to ``language`` (a key of :data:`~qtclient.i18n.LANGUAGES`).

        Raises:
            KeyError: an unknown language.
        """
        if language not in LANGUAGES:
            raise KeyError(f"unknown language {language!r}")
        set_catalogue(language)
        QLocale.setDefault(QLocale(*_LOCALES[language]))
        if self._qt_translator is not None:
            QCoreApplication.removeTranslator(self._qt_translator)
            self._qt_translator = None
        if language != "en":
            translator = QTranslator(self.app)
            folder = QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)
            # A missing Qt catalogue only leaves Qt's few own texts in English.
            if translator.load(f"qtbase_{language}", folder):
                QCoreApplication.installTranslator(translator)
                self._qt_translator = translator
        # Installing a translator sends LanguageChange only when it is not
        # empty, and switching back to English installs none: send it ourselves.
        QCoreApplication.sendEvent(self.app, QEvent(QEvent.Type.LanguageChange))
