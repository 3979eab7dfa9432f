"""``chatnet-admin``: manage accounts directly in the server's database.

Works whether or not the server runs (SQLite in WAL mode takes a second
writer; PostgreSQL does anyway)::

    chatnet-admin --data-dir D create-user NAME --password PW [--role admin]
    chatnet-admin --data-dir D list-users
    chatnet-admin --data-dir D reset-password NAME [--password PW]

Without ``--password`` the password is read from the environment variable
``CHATNET_PASSWORD`` or asked for at the terminal (not echoed).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from chatnet.config import ConfigError, ServerConfig
from chatnet.cred.checkers import PasswordHasher
from chatnet.datadir import prepare_data_dir, private_umask
from chatnet.errors import ChatError
from chatnet.fanout import LocalFanout
from chatnet.services.accounts import AccountService, check_new_password
from chatnet.store import ChatStore, Database, IdGenerator, engine_from_url


def password_from(args: argparse.Namespace) -> str:
    """The password from ``--password``, ``$CHATNET_PASSWORD`` or the terminal.

    Raises:
        UsageError: none of them gives one.
    """
    value = args.password or os.environ.get("CHATNET_PASSWORD")
    if value:
        return str(value)
    if not sys.stdin.isatty():
        raise UsageError("give --password, set CHATNET_PASSWORD, or run in a terminal")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise UsageError("the passwords differ")
    return first


class UsageError(Exception):
    """The command line is wrong; the message says how."""


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``chatnet-admin``."""
    top = argparse.ArgumentParser(prog="chatnet-admin",
                                  description="Manage chatnet accounts in the server's "
                                  "database (the server may be running).")
    top.add_argument("-d", "--data-dir", default="./chatnet-data",
                     help="the server's data directory (default: %(default)s)")
    top.add_argument("--database", default="",
                     help="the server's --database (default: SQLite chatnet.db in the data dir)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create-user", help="create an account")
    create.add_argument("name", help="username: 1-32 of a-z 0-9 . _ -")
    create.add_argument("--password", help="the password (default: $CHATNET_PASSWORD, "
                        "or asked for)")
    create.add_argument("--role", choices=["admin"], help="a server role to give")
    create.add_argument("--display-name", help="the shown name (default: the username)")
    commands.add_parser("list-users", help="list accounts")
    reset = commands.add_parser("reset-password",
                                help="set a new password (ends the user's sessions and "
                                "resume tokens)")
    reset.add_argument("name")
    reset.add_argument("--password", help="the new password (default: $CHATNET_PASSWORD, "
                       "or asked for)")
    return top


async def run(reactor: Any, args: argparse.Namespace, out: Any = sys.stdout) -> int:
    """Run one command; returns the process exit status.

    Raises:
        ChatError: the command was refused (name taken, bad password …).
        UsageError: the data directory is refused (writable by others, owned by
            another user).
    """
    data_dir = Path(args.data_dir)
    # Same rules as the server: what this command creates (a new database,
    # its -wal/-shm) is private, and a data dir others could tamper with is refused.
    private_umask()
    database = str(args.database or "")
    try:
        prepare_data_dir(data_dir, [Path(database.removeprefix("sqlite:"))]
                         if database.startswith("sqlite:") else [])
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    db = Database(engine_from_url(args.database, data_dir), reactor)
    hasher: PasswordHasher | None = None
    try:
        await db.migrate()
        store = ChatStore(db, IdGenerator())
        defaults = ServerConfig()
        hasher = PasswordHasher(reactor, defaults.argon2_time_cost, defaults.argon2_memory_kib)
        # No sessions live in this process: a running server sees the password
        # change in the database and ends the user's sessions itself.
        accounts = AccountService(store, hasher, reactor, False, defaults.token_lifetime,
                                  LocalFanout())
        command = args.command
        if command == "create-user":
            roles = [args.role] if args.role else []
            user = await accounts.create_user(args.name, password_from(args), roles,
                                              args.display_name)
            out.write(f"created {user.username} (id {user.user_id})"
                      f"{' with role ' + ', '.join(user.roles) if user.roles else ''}\n")
        elif command == "list-users":
            users = await store.list_users()
            out.write(f"{'USERNAME':<32} {'DISPLAY NAME':<32} ROLES\n")
            for user in users:
                flags = ",".join(user.roles) + (" banned" if user.banned else "")
                out.write(f"{user.username:<32} {user.display_name:<32} {flags}\n")
            out.write(f"{len(users)} user(s)\n")
        elif command == "reset-password":
            found = await store.user_by_name(args.name.strip().casefold())
            if found is None:
                out.write(f"no user named {args.name!r}\n")
                return 1
            password = password_from(args)
            check_new_password(password)
            await accounts.set_password(found, password, by="admin")
            out.write(f"password of {found.username} changed; their sessions are ended and "
                      "must log in again\n")
        return 0
    finally:
        db.close()
        if hasher is not None:
            hasher.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``chatnet-admin``."""
    args = parser().parse_args(argv)

    async def command(reactor: Any) -> None:
        try:
            status = await run(reactor, args)
        except ChatError as exc:
            sys.stderr.write(f"chatnet-admin: {exc.message}\n")
            status = 1
        except UsageError as exc:
            sys.stderr.write(f"chatnet-admin: {exc}\n")
            status = 2
        if status:
            raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(command(reactor)))
