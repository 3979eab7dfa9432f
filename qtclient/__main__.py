"""Start the desktop client: ``chatnet-qt`` or ``python -m qtclient``.

Order matters (TWISTED-NOTES.md 6 and 7): the QApplication first, then
``qreactor.install()`` (it must find that application, or it makes a bare
QCoreApplication and the first widget aborts the process), then the windows,
then ``reactor.run()``, which runs Qt's event loop with Twisted inside it.
"""

from __future__ import annotations

import argparse
import sys

from qtclient.i18n import LANGUAGES


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (all optional: the login window asks for the rest)."""
    parser = argparse.ArgumentParser(prog="chatnet-qt", description="chatnet desktop client")
    parser.add_argument("--language", choices=sorted(LANGUAGES),
                        help="interface language (remembered)")
    parser.add_argument("--settings", metavar="INI",
                        help="keep settings in this INI file instead of the user's store")
    return parser.parse_args(argv)


def _has_display() -> bool:
    """Whether Qt can open windows here: an X or Wayland display, or a platform
    chosen explicitly (Qt would otherwise abort the process with a core dump)."""
    import os

    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY",
                                                 "QT_QPA_PLATFORM"))


def main(argv: list[str] | None = None) -> int:
    """Run the client until the user quits; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not _has_display():
        sys.stderr.write("chatnet-qt: no display found (neither DISPLAY nor WAYLAND_DISPLAY "
                         "is set). Run it in a desktop session, or set QT_QPA_PLATFORM "
                         "(e.g. offscreen) to run without one.\n")
        return 2
    from qtclient.qt import QApplication, QSettings

    app = QApplication(sys.argv[:1])
    app.setApplicationName("chatnet-qt")
    app.setOrganizationName("chatnet")
    app.setStyle("Fusion")
    import qreactor

    qreactor.install()
    from twisted.internet import reactor

    from qtclient.app import ChatApp
    from qtclient.settings import ClientSettings

    store = QSettings(args.settings, QSettings.Format.IniFormat) if args.settings else None
    settings = ClientSettings(store)
    if args.language:
        settings.language = args.language
    client = ChatApp(reactor, settings, on_quit=reactor.stop)
    client.start()
    reactor.run()
    settings.sync()
    # Keep both alive until the loop has ended (an unreferenced QApplication is destroyed).
    del client, app
    return 0


if __name__ == "__main__":
    sys.exit(main())
