"""``chatnet``: the terminal client, interactive or one-shot.

Interactive::

    chatnet --host chat.example.com --ca ca.pem --user alice
    chatnet --host chat.example.com --pin 3F:A2:...:9C --user alice   # no CA file

asks for the password (or takes ``$CHATNET_PASSWORD``), logs in, prints what
was missed while offline, and gives a prompt. Lines starting with ``/`` are
commands (``/help`` lists them); anything else is sent to the current room.
Incoming messages print above the prompt without disturbing the line being
typed (prompt_toolkit on Twisted's asyncio reactor). The connection heals by
itself (:class:`~chatnet.client.session.ChatSession`).

One-shot, for scripts (the password never goes on the command line)::

    CHATNET_PASSWORD=... chatnet --host H --ca ca.pem --user bot send --room ops "deploy done"
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: Environment variable that may hold the password.
PASSWORD_ENV = "CHATNET_PASSWORD"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``chatnet``."""
    parser = argparse.ArgumentParser(
        prog="chatnet", description="chatnet terminal client (interactive unless a "
        "command such as 'send' is given)")
    parser.add_argument("--host", default="localhost", help="server host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5443, help="server port (default: 5443)")
    parser.add_argument("--ca", help="PEM CA file to trust (the server's <data-dir>/tls/ca.pem "
                        "for its development CA); default: the system's CAs")
    parser.add_argument("--pin", type=_pin, metavar="SHA256",
                        help="accept the server only if its certificate or its CA has this "
                        "SHA-256 fingerprint (hex, colons optional; the server logs its CA's "
                        "at start). With --ca, checked in addition; without --ca, the pinned "
                        "certificate is the only CA trusted")
    parser.add_argument("--cert", help="PEM client certificate (servers with mutual TLS)")
    parser.add_argument("--key", help="PEM key of --cert")
    parser.add_argument("--user", required=True, help="your username")
    parser.add_argument("--timeout", type=_seconds, default=15.0, metavar="SECONDS",
                        help="how long the server has to accept the connection, and then "
                        "again to finish TLS and answer (default: %(default)g)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    send = commands.add_parser("send", help="send one message and exit")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--room", help="room name (joined first if it is public and you are "
                        "not a member) or room id")
    target.add_argument("--to", help="a username: send as a direct message")
    send.add_argument("text", nargs="+", help="the message; '-' reads it from standard input")
    return parser


def _seconds(text: str) -> float:
    """argparse type of ``--timeout``: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def message_text(words: list[str], stdin: Any = None) -> str:
    """The text of ``chatnet send``: the words joined by spaces, or standard input
    for ``-`` (read up to one character past the server's body limit, so that a
    huge input is refused without being held whole; a final newline is dropped).

    Raises:
        SystemExit: the text is empty or longer than the limit (status 2).
    """
    from chatnet.wire.ops import MAX_BODY

    if words == ["-"]:
        stream = stdin if stdin is not None else sys.stdin
        text = stream.read(MAX_BODY + 2)
        if text.endswith("\n"):
            text = text[:-1]
    else:
        text = " ".join(words)
    if len(text) > MAX_BODY:
        sys.stderr.write(f"chatnet: the message is longer than {MAX_BODY:,} characters; send "
                         "a long text as a file\n")
        raise SystemExit(2)
    if not text.strip():
        sys.stderr.write("chatnet: the message is empty\n")
        raise SystemExit(2)
    return text


def _pin(text: str) -> str:
    """argparse type of ``--pin``: the text, once it is known to be a fingerprint."""
    from chatnet.wire.certs import parse_pin  # cryptography only: no reactor is chosen

    try:
        parse_pin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def read_password(prompt: str = "Password: ") -> str:
    """The password from ``$CHATNET_PASSWORD`` or the terminal (never from argv).

    Raises:
        SystemExit: neither is available.
    """
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        sys.stderr.write(f"chatnet: set {PASSWORD_ENV} or run in a terminal\n")
        raise SystemExit(2)
    return getpass.getpass(prompt)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``chatnet``."""
    args = build_parser().parse_args(argv)
    if args.command == "send":
        args.text = [message_text(args.text)]
    password = read_password()
    # prompt_toolkit runs on asyncio, so Twisted runs on the same asyncio loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    from chatnet.cli.terminal import run_interactive, run_send

    runner: Callable[[Any, argparse.Namespace, str], Awaitable[int]] = (
        run_send if args.command == "send" else run_interactive)

    async def program(reactor: Any) -> None:
        status = await runner(reactor, args, password)
        if status:
            raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(program(reactor)))


def clock_text(ts_ms: int) -> str:
    """``HH:MM`` in local time for a wire timestamp (ms since epoch)."""
    return time.strftime("%H:%M", time.localtime(ts_ms / 1000))
