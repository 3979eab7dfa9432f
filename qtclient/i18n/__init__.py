"""Translations of the desktop client: gettext catalogues, switched at run time.

Why gettext and not Qt's ``.ts``/``.qm``: the ``.qm`` files need Qt's
``lrelease``, which the PyQt6 wheels do not ship, whereas ``.po`` files are
plain text that Babel (a pure-Python package in the ``gui`` extra) reads and
extracts. The catalogues live beside this file as ``<language>.po``; they are
compiled in memory when first used.

Every visible string goes through :func:`_` (or :func:`ngettext`), called when
the text is *shown*, never cached at import time (use :func:`N_` to mark a
string for extraction and translate it later). :func:`apply_language` in
:mod:`qtclient.i18n.switch` swaps the catalogue and makes Qt send
``QEvent.LanguageChange`` to every widget, which then re-reads its texts, so a
switch needs no restart.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

#: Language codes the client ships, with their names written in themselves
#: (a language's own name is what its speakers look for in a list).
LANGUAGES: dict[str, str] = {"en": "English", "zh_CN": "中文"}
DEFAULT_LANGUAGE = "en"
CATALOGUE_DIR = Path(__file__).resolve().parent

_current: gettext.NullTranslations = gettext.NullTranslations()
_language = DEFAULT_LANGUAGE


def catalogue_path(language: str) -> Path:
    """The ``.po`` file of ``language`` (e.g. ``zh_CN`` -> ``.../i18n/zh_CN.po``)."""
    return CATALOGUE_DIR / f"{language}.po"


@cache
def load_catalogue(language: str) -> gettext.GNUTranslations:
    """Read and compile the catalogue of ``language``.

    Raises:
        KeyError: ``language`` is not one of :data:`LANGUAGES`.
        OSError: its ``.po`` file is missing.
    """
    if language not in LANGUAGES:
        raise KeyError(f"no catalogue for language {language!r}")
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def set_catalogue(language: str) -> None:
    """Make ``language`` the one :func:`_` translates into (no Qt involved).

    Raises:
        KeyError: an unknown language.
    """
    global _current, _language
    _current = load_catalogue(language)
    _language = language


def current_language() -> str:
    """The code of the language texts are translated into (``en``, ``zh_CN``)."""
    return _language


def _(message: str) -> str:
    """``message`` (English source text) in the current language."""
    return _current.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    return _current.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it yet."""
    return message
