"""``chatnet-admin``: manage accounts directly in the server's database.

Works whether or not the server runs (SQLite in WAL mode takes a second
writer; PostgreSQL does anyway)::

    chatnet-admin --data-dir D create-user NAME --password PW [--role admin]
    chatnet-admin --data-dir D list-users
    chatnet-admin --data-dir D reset-password NAME [--password PW]
    chatnet-admin --data-dir D set-role NAME [ROLE ...]      # admin, auditor, bot; none: clear
    chatnet-admin --data-dir D ban NAME [--reason R] [--until 2026-12-31]
    chatnet-admin --data-dir D unban NAME
    chatnet-admin --data-dir D audit [--action A] [--user NAME] [--limit N]
    chatnet-admin --data-dir D list-rooms
    chatnet-admin --data-dir D export 2026-11-01 2026-11-30 [--room ID] [--user NAME]
                                      [--output FILE]   # JSON Lines; default: stdout
    chatnet-admin --data-dir D migrate
    chatnet-admin --data-dir D backup FILE    # a consistent copy while the server runs
    chatnet-admin gen-certs DIR --host chat.example.com [--host …] [--ip 10.0.0.5]

A running server ends a banned user's sessions within seconds (it watches the
database for credential changes), as it does after a password reset.

Without ``--password`` the password is read from the environment variable
``CHATNET_PASSWORD`` or asked for at the terminal (not echoed).
"""

from __future__ import annotations

import argparse
import getpass
import json
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
from chatnet.services.accounts import SERVER_ROLES, AccountService, check_new_password
from chatnet.store import ChatStore, Database, IdGenerator, engine_from_url, now_ms


def datetime_text(ts_ms: int) -> str:
    """``2026-12-06 11:24:05`` (UTC) for a time in ms since the epoch."""
    import datetime

    return datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S")


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
    create.add_argument("--role", choices=sorted(SERVER_ROLES), help="a server role to give")
    create.add_argument("--display-name", help="the shown name (default: the username)")
    commands.add_parser("list-users", help="list accounts")
    reset = commands.add_parser("reset-password",
                                help="set a new password (ends the user's sessions and "
                                "resume tokens)")
    reset.add_argument("name")
    reset.add_argument("--password", help="the new password (default: $CHATNET_PASSWORD, "
                       "or asked for)")
    roles = commands.add_parser("set-role", help="replace a user's server roles")
    roles.add_argument("name")
    roles.add_argument("roles", nargs="*", choices=sorted(SERVER_ROLES), metavar="ROLE",
                       help=f"one of {', '.join(sorted(SERVER_ROLES))}; none clears them")
    ban = commands.add_parser("ban", help="ban a user: sessions end, login is refused")
    ban.add_argument("name")
    ban.add_argument("--reason", help="why (kept in the audit log)")
    ban.add_argument("--until", type=_date, metavar="YYYY-MM-DD",
                     help="the ban ends at the start of that day, UTC (default: never)")
    unban = commands.add_parser("unban", help="lift a ban")
    unban.add_argument("name")
    audit = commands.add_parser("audit", help="the newest audit log entries")
    audit.add_argument("--action", help="only this action, e.g. login.failed, user.banned")
    audit.add_argument("--user", help="only entries about this username")
    audit.add_argument("--limit", type=int, default=50, help="how many (default: 50)")
    commands.add_parser("list-rooms", help="list every room (group and direct)")
    export = commands.add_parser("export", help="messages of a date range as JSON Lines "
                                 "(deleted and expired ones marked), like admin.export")
    export.add_argument("since", type=_date, metavar="FROM", help="first day, YYYY-MM-DD (UTC)")
    export.add_argument("until", type=_date, metavar="TO", help="last day, YYYY-MM-DD (UTC)")
    export.add_argument("--room", type=int, help="only this room id")
    export.add_argument("--user", help="only this sender")
    export.add_argument("--output", help="the file to write (default: standard output)")
    commands.add_parser("migrate", help="bring the database schema up to date and say so")
    backup = commands.add_parser("backup", help="a consistent copy of the database "
                                 "(SQLite's online backup; PostgreSQL: pg_dump)")
    backup.add_argument("file", help="where to write it (must not exist)")
    certs = commands.add_parser("gen-certs", help="a CA and a server certificate for a real "
                                "deployment (files: ca.pem, ca.key, server.pem, server.key)")
    certs.add_argument("dir", help="where to write them (created; files must not exist)")
    certs.add_argument("--host", action="append", default=[], help="a DNS name clients use "
                       "(repeat for several)")
    certs.add_argument("--ip", action="append", default=[], help="an IP address clients use")
    certs.add_argument("--ca-name", default="chatnet CA", help="the CA's name")
    certs.add_argument("--days", type=int, default=825,
                       help="the server certificate's validity (default: 825 days)")
    return top


def generate_certificates(args: argparse.Namespace, out: Any) -> int:
    """``gen-certs``: a CA (10 years) and a server certificate (``--days``) for the
    given names, written 0600 (keys) / 0644; prints the options to use.

    Raises:
        UsageError: no name given, a bad address, or a file exists.
    """
    import ipaddress

    from chatnet.wire.certs import make_ca, make_leaf

    if not args.host and not args.ip:
        raise UsageError("give at least one --host or --ip the clients will connect to")
    for address in args.ip:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"--ip {address!r} is not an IP address") from None
    if not 1 <= args.days <= 3650:
        raise UsageError("--days must be 1-3650")
    folder = Path(args.dir)
    names = ("ca.pem", "ca.key", "server.pem", "server.key")
    taken = [name for name in names if (folder / name).exists()]
    if taken:
        raise UsageError(f"{folder / taken[0]} exists; give a new directory")
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(args.ca_name, days=3650)
    leaf = make_leaf(ca, (args.host or args.ip)[0], hostnames=args.host, addresses=args.ip,
                     days=args.days)
    for name, data, private in (("ca.pem", ca.cert_pem(), False),
                                ("ca.key", ca.key_pem(), True),
                                ("server.pem", leaf.cert_pem() + ca.cert_pem(), False),
                                ("server.key", leaf.key_pem(), True)):
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    out.write(f"wrote {', '.join(str(folder / n) for n in names)}\n"
              f"server: twistd chatnet --tls-cert {folder / 'server.pem'} "
              f"--tls-key {folder / 'server.key'}\n"
              f"clients: --ca {folder / 'ca.pem'}  or  --pin {ca.fingerprint()}\n"
              f"keep {folder / 'ca.key'} offline: whoever has it can impersonate the server\n")
    return 0


def _date(text: str) -> int:
    """argparse type of ``--until``: a date, as ms since the epoch (UTC midnight)."""
    import datetime

    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-31") from None
    start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    return int(start.timestamp() * 1000)


async def run(reactor: Any, args: argparse.Namespace, out: Any = sys.stdout) -> int:
    """Run one command; returns the process exit status.

    Raises:
        ChatError: the command was refused (name taken, bad password …).
        UsageError: the data directory is refused (writable by others, owned by
            another user).
    """
    if args.command == "gen-certs":
        return generate_certificates(args, out)
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
        elif command in ("set-role", "ban", "unban"):
            found = await store.user_by_name(args.name.strip().casefold())
            if found is None:
                out.write(f"no user named {args.name!r}\n")
                return 1
            now = now_ms()
            details: dict[str, Any] = {"by": "chatnet-admin"}
            if command == "set-role":
                await store.set_roles(found.user_id, args.roles)
                action = "role.changed"
                details.update(roles=sorted(set(args.roles)), before=sorted(found.roles))
                out.write(f"{found.username} now has role(s): "
                          f"{', '.join(sorted(set(args.roles))) or 'none'}\n")
            elif command == "ban":
                if args.until is not None and args.until <= now:
                    raise UsageError("--until must be in the future")
                await store.set_ban(found.user_id, True, args.reason, args.until, now)
                action = "user.banned"
                details.update({k: v for k, v in (("reason", args.reason),
                                                  ("until", args.until)) if v is not None})
                out.write(f"{found.username} is banned; a running server ends their sessions "
                          "within seconds\n")
            else:
                await store.set_ban(found.user_id, False, None, None, now)
                action = "user.unbanned"
                out.write(f"{found.username} is no longer banned\n")
            await store.audit(store.ids.next_id(), now, action, user_id=found.user_id,
                              username=found.username, details=details)
        elif command == "list-rooms":
            rooms, after = [], 0
            while True:
                chunk = await store.rooms_page("", after, 500)
                rooms += chunk
                if len(chunk) < 500:
                    break
                after = chunk[-1][0].room_id
            out.write(f"{'ROOM ID':<20} {'KIND':<7} {'VISIBILITY':<10} {'MEMBERS':>7}  NAME\n")
            for room, banned in rooms:
                out.write(f"{room.room_id:<20} {room.kind:<7} {room.visibility:<10} "
                          f"{room.members_count:>7}  {room.name}"
                          f"{'  (banned)' if banned else ''}\n")
            out.write(f"{len(rooms)} room(s)\n")
        elif command == "export":
            until = args.until + 86_400_000  # the whole last day
            if until <= args.since:
                raise UsageError("TO is before FROM")
            if args.output and Path(args.output).exists():
                raise UsageError(f"{args.output} exists; give a new file name")
            target = open(args.output, "x", encoding="utf-8") if args.output else out  # noqa: SIM115
            count, after = 0, 0
            try:
                while True:
                    batch = await store.export_page(args.since, until, args.room,
                                                    args.user.casefold() if args.user else None,
                                                    after, 1000)
                    if not batch:
                        break
                    target.write("".join(json.dumps(m, ensure_ascii=False) + "\n"
                                         for m in batch))
                    count += len(batch)
                    after = batch[-1]["msg_id"]
                    if args.output:
                        sys.stderr.write(f"\r{count} message(s)…")
            finally:
                if args.output:
                    target.close()
            await store.audit(store.ids.next_id(), now_ms(), "export",
                              details={"by": "chatnet-admin", "since": args.since,
                                       "until": until, "messages": count})
            if args.output:
                sys.stderr.write(f"\r{count} message(s) written to {args.output}\n")
        elif command == "migrate":
            version = await db.migrate()
            out.write(f"database schema at version {version}\n")
        elif command == "backup":
            target_path = Path(args.file)
            if target_path.exists():
                raise UsageError(f"{target_path} exists; give a new file name")
            await backup_database(reactor, db, database, data_dir, target_path)
            out.write(f"database copied to {target_path}\n")
        elif command == "audit":
            entries = await store.audit_page(None, None, args.action,
                                             args.user.casefold() if args.user else None,
                                             None, max(1, min(args.limit, 10_000)))
            for entry in entries:
                when = datetime_text(entry["ts"])
                extra = json.dumps(entry.get("details") or {}, ensure_ascii=False)
                out.write(f"{when}  {entry['action']:<18} {entry.get('username') or '-':<20} "
                          f"{entry.get('peer') or '-':<16} {extra}\n")
            out.write(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}\n")
        return 0
    finally:
        db.close()
        if hasher is not None:
            hasher.stop()


async def backup_database(reactor: Any, db: Database, database: str, data_dir: Path,
                          target: Path) -> None:
    """A consistent copy of the database while the server may be writing:
    SQLite's online backup API (in a thread), or ``pg_dump`` for PostgreSQL.

    Raises:
        UsageError: pg_dump is missing or failed.
    """
    from twisted.internet.threads import deferToThread

    if db.engine.name == "sqlite":
        import sqlite3

        source_path = (Path(database.removeprefix("sqlite:")) if database.startswith("sqlite:")
                       else data_dir / "chatnet.db")

        def copy() -> None:
            with sqlite3.connect(source_path) as source, sqlite3.connect(target) as copy_to:
                source.backup(copy_to)
            os.chmod(target, 0o600)

        await deferToThread(copy)
        return
    import shutil
    import subprocess

    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise UsageError("pg_dump is not installed (Debian: postgresql-client)")
    done = await deferToThread(subprocess.run, [pg_dump, "--format=custom",
                                                f"--file={target}", database],
                               capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"pg_dump failed: {done.stderr.strip()}")


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
