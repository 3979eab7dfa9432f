"""Start the desktop client: ``chatnet-qt`` or ``python -m qtclient``.

Order matters (TWISTED-NOTES.md 6 and 7): the QApplication first, then
``qreactor.install()`` (it must find that application, or it makes a bare
QCoreApplication and the first widget aborts the process), then the windows,
then ``reactor.run()``, which runs Qt's event loop with Twisted inside it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from qtclient.i18n import LANGUAGES

if TYPE_CHECKING:
    from qtclient.settings import LoginDefaults


#: The environment variable a password may come from (as for the terminal
#: client, ``chatnet``): never from the command line, where others can read it.
PASSWORD_ENV = "CHATNET_PASSWORD"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (all optional: the login window asks for the rest)."""
    parser = argparse.ArgumentParser(
        prog="chatnet-qt", description="chatnet desktop client",
        epilog=f"With --user and ${PASSWORD_ENV} set, the client logs in at once "
               "(e.g. in a kiosk or a test); otherwise the options fill in the login window.")
    parser.add_argument("--language", choices=sorted(LANGUAGES),
                        help="interface language (remembered)")
    parser.add_argument("--settings", metavar="INI",
                        help="keep settings in this INI file instead of the user's store")
    parser.add_argument("--host", help="server host (default: the last one used)")
    parser.add_argument("--port", type=int, help="server port (default: the last one used)")
    parser.add_argument("--ca", metavar="PEM",
                        help="CA file to trust (the server's <data-dir>/tls/ca.pem "
                             "for a development server)")
    parser.add_argument("--user", help="your username")
    return parser.parse_args(argv)


def command_line_login(args: argparse.Namespace, defaults: LoginDefaults) -> LoginDefaults | None:
    """The login form as the command line fills it (``defaults`` for what it
    leaves out), or None when it names none of host, port, CA and user."""
    from qtclient.settings import LoginDefaults

    if args.host is None and args.port is None and args.ca is None and args.user is None:
        return None
    return LoginDefaults(host=args.host if args.host is not None else defaults.host,
                         port=args.port if args.port is not None else defaults.port,
                         ca_file=args.ca if args.ca is not None else defaults.ca_file,
                         username=(args.user if args.user is not None
                                   else defaults.username).strip().lower())


def _has_display() -> bool:
    """Whether Qt can open windows here: an X or Wayland display, or a platform
    chosen explicitly (Qt would otherwise abort the process with a core dump)."""
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
    # Taken out of the environment so that programs the client starts (Open
    # on a downloaded file) do not inherit it.
    password = os.environ.pop(PASSWORD_ENV, "")
    client = ChatApp(reactor, settings, on_quit=reactor.stop)
    client.start(command_line_login(args, settings.login_defaults()), password)
    reactor.run()
    settings.sync()
    # Keep both alive until the loop has ended (an unreferenced QApplication is destroyed).
    del client, app
    return 0


if __name__ == "__main__":
    sys.exit(main())
