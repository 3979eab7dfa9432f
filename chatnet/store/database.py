"""Database access through ``twisted.enterprise.adbapi``: engines, transactions, migrations.

One schema, two engines. SQL is written once with ``?`` placeholders in the
subset SQLite and PostgreSQL share; the engine rewrites what differs. All
database work runs in adbapi's thread pool, one named transaction function
at a time (``run_interaction("send_message", txn_fn, ...)``), so the reactor
never blocks on the database.

SQLite runs with one pooled connection (``cp_max=1``): every transaction is
serialised, which is what makes read-modify-write sequences safe on it.
PostgreSQL runs with several, so every transaction written here uses atomic
SQL (``UPDATE ... SET last_seq = last_seq + 1 RETURNING last_seq``) rather
than read-then-write.

Storage faults (disk full, database locked or read-only, connection lost;
each engine's :meth:`Engine.is_unavailable` says which errors are such) become
:class:`~chatnet.errors.StorageUnavailable` in :meth:`Database.run_interaction`,
so every caller gets ``unavailable`` and the log gets one warning per burst
(:mod:`chatnet.store.faults`).

Group commit: writes that many requests make (``msg.send``, reactions, read
positions) go through :meth:`Database.run_grouped`. Those that arrive while
a grouped transaction is in flight are gathered and run in the next one (one
that fails rolls back alone: the group then runs again, each call in a
savepoint of its own), and every caller is answered after that one commit:
acknowledged still means durable, at one transaction, one thread hop and one
commit per batch instead of per request.
A group locks the rows its calls declared before running them, in key order,
so that several processes' groups on one PostgreSQL cannot deadlock; a
transaction PostgreSQL ends anyway to break a deadlock is run again.

Durability (``--durability``): ``process`` runs SQLite with
``synchronous=NORMAL`` in WAL mode (a commit survives a crash of the server
process, not a power loss); ``power`` runs it with ``synchronous=FULL``. On
PostgreSQL the server's own ``synchronous_commit`` and ``fsync`` decide; they
are checked at start (:meth:`Database.durability_warnings`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatnet.store.faults import StorageFaults

P = ParamSpec("P")
R = TypeVar("R")

#: ``NNN_name.sql`` for both engines, ``NNN_name.sqlite.sql`` /
#: ``NNN_name.postgresql.sql`` where a version needs each engine's own SQL.
_MIGRATION_NAME = re.compile(r"(\d{3})_[a-z0-9_]+(?:\.(sqlite|postgresql))?\.sql")
#: SQLite primary result codes that mean "the storage is unavailable for now":
#: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14})
#: Most transaction functions :meth:`Database.run_grouped` puts in one transaction.
MAX_GROUP = 256
#: Times a transaction that the database ended to break a deadlock (or a
#: serialisation failure) is run again before its caller gets ``unavailable``.
RETRIES = 3
#: The rows a grouped call may declare (:data:`Rows`), in the order a group
#: locks them: table → primary key column.
LOCKABLE = {"rooms": "room_id", "users": "user_id"}
#: What a grouped call will lock: ``(table, key)`` pairs, table one of
#: :data:`LOCKABLE` (``(("rooms", room_id),)`` for a write in a room).
Rows = tuple[tuple[str, int], ...]

#: ``PRAGMA synchronous`` per ``--durability`` level.
SQLITE_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}


#: The PostgreSQL advisory lock key held while migrating (any constant unlikely
#: to be used by another application on the same database: "chatnet" in ASCII).
MIGRATION_LOCK = 0x63686174_6E6574

class IntegrityError(Exception):
    """A uniqueness or foreign-key constraint failed, whatever the engine."""


class Engine(Protocol):
    """What differs between database engines."""

    name: str

    def make_pool(self, reactor: Any) -> adbapi.ConnectionPool:
        """Create the adbapi pool for this engine."""

    def convert(self, sql: str) -> str:
        """Rewrite portable SQL (``?`` placeholders) into this engine's dialect."""

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a constraint violation."""

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a storage fault that passes (full, locked, read-only,
        connection lost) rather than a bug."""

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether the database ended the transaction to let another go on (a
        deadlock victim): running it again is safe and expected to work."""

    def begin(self, cursor: Any) -> None:
        """Open a transaction explicitly (needed on SQLite for DDL)."""

    def lock_rows(self, txn: Txn, table: str, keys: list[int]) -> None:
        """Lock these rows of ``table`` (one of :data:`LOCKABLE`) for the rest of
        the transaction, in ascending key order."""

    def begin_migration(self, cursor: Any) -> None:
        """Open the migration's transaction holding a lock that a second process
        migrating at the same moment waits for (workers starting together)."""

    def durability_warnings(self, txn: Txn, durability: str) -> list[str]:
        """What in the database's settings contradicts ``--durability``."""


class SqliteEngine:
    """SQLite in WAL mode, one connection, through the standard ``sqlite3`` module.

    Args:
        path: the database file; created if missing.
        synchronous: the ``PRAGMA synchronous`` level. ``NORMAL`` (default) in WAL
            mode survives a crash of the process; ``FULL`` also survives power loss.
        busy_timeout: seconds a statement waits for a lock held by another
            connection (another process) before it fails with "database is locked".
    """

    name = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "NORMAL",
                 busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = max(1, round(busy_timeout * 1000))

    def make_pool(self, reactor: Any) -> adbapi.ConnectionPool:
        """Create a one-connection pool (serialised transactions)."""
        # IMMEDIATE: the implicit BEGIN before a write takes the write lock first.
        # A deferred one reads, then upgrades; in WAL mode with another process
        # writing (--workers) the upgrade fails at once with "database is locked"
        # (a stale snapshot), without waiting for busy_timeout.
        return adbapi.ConnectionPool(
            "sqlite3", self.path, check_same_thread=False, cp_min=1, cp_max=1,
            isolation_level="IMMEDIATE",
            cp_openfun=self._on_connect, cp_reactor=reactor, cp_noisy=False,
        )

    def _on_connect(self, conn: sqlite3.Connection) -> None:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        for pragma in (f"busy_timeout={self.busy_timeout_ms}", "journal_mode=WAL",
                       f"synchronous={self.synchronous}", "foreign_keys=ON"):
            conn.execute("PRAGMA " + pragma)

    def convert(self, sql: str) -> str:
        """SQLite speaks the portable dialect already."""
        return sql

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an ``sqlite3.IntegrityError``."""
        return isinstance(exc, sqlite3.IntegrityError)

    def is_unavailable(self, exc: BaseException) -> bool:
        """"database is locked", "database or disk is full", "attempt to write a
        readonly database", "disk I/O error", "unable to open database file"."""
        code = getattr(exc, "sqlite_errorcode", None)
        return (isinstance(exc, sqlite3.Error) and isinstance(code, int)
                and code & 0xFF in _SQLITE_UNAVAILABLE)

    def is_retryable(self, exc: BaseException) -> bool:
        """Never: one writer at a time holds the whole database, so SQLite has no
        deadlocks to break."""
        return False

    def begin(self, cursor: Any) -> None:
        """Python's sqlite3 autocommits DDL unless a transaction is opened by hand;
        ``IMMEDIATE`` for the reason given in :meth:`make_pool`."""
        cursor.execute("BEGIN IMMEDIATE")

    def lock_rows(self, txn: Txn, table: str, keys: list[int]) -> None:
        """Nothing: ``BEGIN IMMEDIATE`` already holds the whole database."""

    def begin_migration(self, cursor: Any) -> None:
        """``BEGIN IMMEDIATE``: the write lock at once, so a second process waits
        (``busy_timeout``) and then sees the schema the first one left."""
        cursor.execute("BEGIN IMMEDIATE")

    def durability_warnings(self, txn: Txn, durability: str) -> list[str]:
        """Checks that the connection runs in WAL mode at the ``synchronous`` level
        asked for (``PRAGMA synchronous``: 1 = NORMAL, 2 = FULL)."""
        levels = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
        warnings = []
        mode = str(txn.scalar("PRAGMA journal_mode")).lower()
        if mode != "wal":
            warnings.append(f"SQLite journal_mode is {mode}, not wal")
        level = txn.scalar("PRAGMA synchronous")
        if level != levels[self.synchronous.upper()]:
            warnings.append(f"SQLite synchronous is {level}, not {self.synchronous}")
        return warnings


class PostgresEngine:
    """PostgreSQL through psycopg 3 (the ``cluster`` extra).

    Args:
        conninfo: a libpq connection string or URL, e.g.
            ``postgresql://127.0.0.1:5432/test``.
        pool_size: the number of pooled connections.
        lock_timeout: seconds a statement waits for a lock held by another
            session before it fails (``lock_timeout``; PostgreSQL's default is to
            wait for ever, which would let one stuck session stall every pooled
            connection); None keeps the server's setting.
    """

    name = "postgresql"

    def __init__(self, conninfo: str, pool_size: int = 8,
                 lock_timeout: float | None = 5.0) -> None:
        self.conninfo = conninfo
        self.pool_size = pool_size
        self.lock_timeout = lock_timeout

    def make_pool(self, reactor: Any) -> adbapi.ConnectionPool:
        """Create a pool of ``pool_size`` psycopg connections that reconnects."""
        return adbapi.ConnectionPool(
            "psycopg", self.conninfo, cp_min=1, cp_max=self.pool_size, cp_reconnect=True,
            cp_good_sql="SELECT 1", cp_reactor=reactor, cp_noisy=False,
            cp_openfun=self._on_connect,
        )

    def _on_connect(self, conn: Any) -> None:
        if self.lock_timeout is not None:
            # SET cannot take a bind parameter; the value is a number we made.
            conn.execute(f"SET lock_timeout = {max(1, round(self.lock_timeout * 1000))}")
            conn.commit()

    def convert(self, sql: str) -> str:
        """Rewrite ``?`` placeholders to psycopg's ``%s`` (escaping literal ``%``)."""
        return sql.replace("%", "%%").replace("?", "%s")

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a psycopg ``IntegrityError``."""
        import psycopg

        return isinstance(exc, psycopg.IntegrityError)

    def is_unavailable(self, exc: BaseException) -> bool:
        """psycopg's ``OperationalError`` (connection lost, server shutting down,
        disk full, lock timeout …), a read-only transaction (SQLSTATE 25006, e.g.
        a standby or ``default_transaction_read_only``), and adbapi's
        ``ConnectionLost``."""
        import psycopg

        return (isinstance(exc, psycopg.OperationalError | adbapi.ConnectionLost)
                or getattr(exc, "sqlstate", None) == "25006")

    def is_retryable(self, exc: BaseException) -> bool:
        """A deadlock victim (SQLSTATE 40P01) or a serialisation failure (40001)."""
        return getattr(exc, "sqlstate", None) in ("40P01", "40001")

    def begin(self, cursor: Any) -> None:
        """psycopg opens the transaction by itself."""

    def lock_rows(self, txn: Txn, table: str, keys: list[int]) -> None:
        """``SELECT … ORDER BY key FOR UPDATE``: the rows are locked in key order."""
        column = LOCKABLE[table]
        txn.execute(f"SELECT 1 FROM {table} WHERE {column} = ANY(?) ORDER BY {column} "
                    "FOR UPDATE", (keys,))

    def begin_migration(self, cursor: Any) -> None:
        """A transaction-scoped advisory lock: a second process migrating at the
        same moment waits, then sees the schema the first one left."""
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def durability_warnings(self, txn: Txn, durability: str) -> list[str]:
        """With ``power``, PostgreSQL must flush each commit to disk itself:
        ``fsync`` on and ``synchronous_commit`` not ``off``. (With ``process``
        every commit is in PostgreSQL anyway, so a crash of chatnet loses nothing.)"""
        if durability != "power":
            return []
        warnings = []
        fsync = str(txn.scalar("SHOW fsync"))
        if fsync != "on":
            warnings.append(f"PostgreSQL runs with fsync={fsync}: a power loss or OS crash "
                            "can lose or corrupt committed messages")
        synchronous_commit = str(txn.scalar("SHOW synchronous_commit"))
        if synchronous_commit == "off":
            warnings.append("PostgreSQL runs with synchronous_commit=off: a power loss or OS "
                            "crash can lose the last acknowledged messages; set it to 'on' "
                            "for this database or role")
        return warnings


def engine_from_url(database: str, data_dir: Path, durability: str = "process",
                    busy_timeout: float = 5.0) -> SqliteEngine | PostgresEngine:
    """Pick the engine for a ``--database`` value.

    Args:
        database: ``""`` (SQLite file ``chatnet.db`` in the data dir),
            ``sqlite:PATH``, or a ``postgresql://`` / ``postgres://`` URL.
        data_dir: the server's data directory.
        durability: ``process`` or ``power`` (``--durability``).
        busy_timeout: seconds to wait for a lock (``--db-busy-timeout``).

    Returns:
        the engine.

    Raises:
        ValueError: the value is none of the above.
    """
    synchronous = SQLITE_SYNCHRONOUS[durability]
    if not database:
        return SqliteEngine(data_dir / "chatnet.db", synchronous, busy_timeout)
    if database.startswith("sqlite:"):
        return SqliteEngine(database.removeprefix("sqlite:"), synchronous, busy_timeout)
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresEngine(database, lock_timeout=busy_timeout)
    raise ValueError(
        f"--database must be empty, sqlite:PATH or a postgresql:// URL, not {database!r}"
    )


class Txn:
    """A transaction handed to a named transaction function (runs in a pool thread).

    Args:
        cursor: the DB-API cursor of the transaction.
        engine: the engine, which converts SQL and classifies errors.
    """

    def __init__(self, cursor: Any, engine: Engine) -> None:
        self.cursor = cursor
        self.engine = engine

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Txn:
        """Run one statement with ``?`` placeholders.

        Raises:
            IntegrityError: a constraint failed.
        """
        try:
            self.cursor.execute(self.engine.convert(sql), tuple(args))
        except Exception as exc:
            if self.engine.is_integrity_error(exc):
                raise IntegrityError(str(exc)) from exc
            raise
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments."""
        rows = [tuple(r) for r in rows]
        if rows:
            try:
                self.cursor.executemany(self.engine.convert(sql), rows)
            except Exception as exc:
                if self.engine.is_integrity_error(exc):
                    raise IntegrityError(str(exc)) from exc
                raise

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of the last statement, or None."""
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        """All remaining rows of the last statement."""
        return [tuple(r) for r in self.cursor.fetchall()]

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run a query and return the first column of its first row (None if no row)."""
        row = self.execute(sql, args).fetchone()
        return row[0] if row is not None else None

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement."""
        return int(self.cursor.rowcount)


def optional_filters(conditions: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """``" AND cond"`` for each ``(cond, value)`` whose value is given (not None),
    and those values, in order: the optional filters of a query."""
    given = [(condition, value) for condition, value in conditions if value is not None]
    return "".join(f" AND {c}" for c, _v in given), [v for _c, v in given]


def migrations(engine: str = "sqlite") -> list[tuple[int, str, str]]:
    """The schema deltas shipped in ``chatnet/store/schema`` for ``engine``
    (``sqlite`` or ``postgresql``), oldest first: the shared files, and the
    engine's own where a version has one per engine.

    Returns:
        ``[(version, filename, sql)]``.
    """
    found = []
    for entry in resources.files("chatnet.store").joinpath("schema").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match and match.group(2) in (None, engine):
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    return found


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class Database:
    """An adbapi connection pool plus the engine that speaks to it.

    Args:
        engine: :class:`SqliteEngine` or :class:`PostgresEngine`.
        reactor: the reactor whose thread pool runs the transactions.

    Attributes:
        grouped_transactions: transactions :meth:`run_grouped` has run.
        grouped_calls: calls they carried (calls per transaction is how much
            group commit saves).
    """

    log = Logger()

    def __init__(self, engine: Engine, reactor: IReactorCore | IReactorThreads | None = None):
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.engine = engine
        self.pool = engine.make_pool(reactor)
        self.faults = StorageFaults(reactor)
        self._group: list[_Grouped] = []
        self._group_running = False
        self.grouped_transactions = 0
        self.grouped_calls = 0
        #: Transactions run again after the database ended them (deadlock victims).
        self.retried = 0

    def run_interaction(
        self, name: str, fn: Callable[Concatenate[Txn, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> Deferred[R]:
        """Run ``fn(txn, *args, **kwargs)`` as one transaction in a pool thread.

        Args:
            name: what the transaction does, for logs.
            fn: a synchronous function of a :class:`Txn`; it commits when it
                returns and rolls back when it raises.

        Returns:
            a Deferred firing with ``fn``'s result, or failing with its exception;
            a storage fault (:meth:`Engine.is_unavailable`) fails it with
            :class:`~chatnet.errors.StorageUnavailable` instead. A transaction
            the database ended to break a deadlock (:meth:`Engine.is_retryable`)
            is run again, up to :data:`RETRIES` times, before it counts as one.
        """
        engine = self.engine

        def interaction(cursor: Any) -> R:
            return fn(Txn(cursor, engine), *args, **kwargs)

        def done(result: R) -> R:
            if self.faults.failing:
                self.faults.succeeded(name)
            return result

        def failed(failure: Failure) -> Failure:
            error = failure.value
            if error is not None and engine.is_unavailable(error):
                raise self.faults.failed(name, error) from error
            return failure

        def attempt(retries: int) -> Deferred[R]:
            d: Deferred[R] = self.pool.runInteraction(interaction)
            if retries:
                def again(failure: Failure) -> Failure | Deferred[R]:
                    if failure.value is not None and engine.is_retryable(failure.value):
                        self.retried += 1
                        return attempt(retries - 1)
                    return failure

                d.addErrback(again)
            return d

        d = attempt(RETRIES)
        d.addCallbacks(done, failed)
        return d

    def run_grouped(self, name: str, rows: Rows, fn: Callable[Concatenate[Txn, P], R],
                    *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        """Run ``fn(txn, *args, **kwargs)`` in a transaction shared with the other
        grouped calls of the moment (group commit, module docstring).

        If no grouped transaction is in flight, one starts now with this call
        alone; otherwise the call waits for the next, which takes every call
        that waited (at most :data:`MAX_GROUP`) in arrival order. One that raises
        is rolled back alone and its Deferred fails with its exception, the
        others go on (the group is run again, each call in a savepoint). Every
        Deferred fires after the commit (or fails if the commit fails, or if any
        of them meets a storage fault, which aborts the whole transaction: then
        each fails with :class:`~chatnet.errors.StorageUnavailable`).

        A group first locks every row its calls declared (``rows``), table by
        table and in key order, so that two processes' groups (workers or
        nodes on one PostgreSQL) never lock the same rows in opposite orders:
        a deadlock would end one of them, and PostgreSQL notices one only after
        ``deadlock_timeout`` (1 s by default).

        Args:
            name: what the call does, for logs.
            rows: the rows ``fn`` writes or whose writes it depends on, as
                ``(table, key)`` pairs (:data:`Rows`); everything else it
                writes must belong to those rows (a room's messages and
                members belong to the room's row).
            fn: as for :meth:`run_interaction`; it must not commit or roll back,
                and must have no effect outside the transaction: when a call of
                its group raises, the group runs again, each call in a
                savepoint of its own.

        Returns:
            a Deferred firing with ``fn``'s result after the commit.
        """
        grouped = _Grouped(name, rows, fn, args, kwargs)
        self._group.append(grouped)
        if not self._group_running:
            self._run_group()
        return grouped.done

    def _run_group(self) -> None:
        batch, self._group = self._group[:MAX_GROUP], self._group[MAX_GROUP:]
        self._group_running = True
        self.grouped_transactions += 1
        self.grouped_calls += len(batch)
        engine = self.engine

        def transaction(txn: Txn) -> list[tuple[bool, Any]]:
            if len(batch) == 1:
                # Alone, a call needs no savepoint: if it raises, the transaction
                # rolls back as a whole, and run_interaction reports that.
                only = batch[0]
                return [(True, only.fn(txn, *only.args, **only.kwargs))]
            declared: dict[str, set[int]] = {}
            for grouped in batch:
                for table, key in grouped.rows:
                    declared.setdefault(table, set()).add(key)

            def begin() -> None:
                engine.begin(txn.cursor)  # savepoints must not open (and commit) it
                for table in LOCKABLE:  # one order for every process
                    if table in declared:
                        engine.lock_rows(txn, table, sorted(declared[table]))

            # Calls seldom fail: run them all without a savepoint, and only if
            # one raises, roll the transaction back and run them again, each in
            # a savepoint of its own (no savepoint statements in the usual case;
            # SQLite also keeps no sub-journal then).
            begin()
            try:
                values = [grouped.fn(txn, *grouped.args, **grouped.kwargs)
                          for grouped in batch]
            except Exception as exc:
                if engine.is_unavailable(exc):
                    raise  # the whole transaction fails, and every call with it
                txn.execute("ROLLBACK")
                begin()
            else:
                return [(True, value) for value in values]
            outcomes: list[tuple[bool, Any]] = []
            for grouped in batch:
                txn.execute("SAVEPOINT grouped")
                try:
                    value = grouped.fn(txn, *grouped.args, **grouped.kwargs)
                except Exception as exc:
                    if engine.is_unavailable(exc):
                        raise  # the whole transaction fails, and every call with it
                    txn.execute("ROLLBACK TO SAVEPOINT grouped")
                    outcomes.append((False, exc))
                else:
                    outcomes.append((True, value))
                txn.execute("RELEASE SAVEPOINT grouped")
            return outcomes

        def committed(outcomes: list[tuple[bool, Any]]) -> None:
            for grouped, (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    grouped.done.callback(value)
                else:
                    grouped.done.errback(Failure(value))

        def failed(failure: Failure) -> None:
            for grouped in batch:
                grouped.done.errback(failure)

        def next_group(_: object) -> None:
            self._group_running = False
            if self._group:
                self._run_group()

        # One name for every batch, whatever it holds: a burst of storage faults
        # ends once a grouped transaction succeeds again (chatnet.store.faults).
        d = self.run_interaction("grouped", transaction)
        d.addCallbacks(committed, failed)
        d.addBoth(next_group)

    def pending_writes(self) -> int:
        """Writes waiting for the next group commit (:meth:`run_grouped`)."""
        return len(self._group)

    async def migrate(self, up_to: int | None = None) -> int:
        """Bring the schema up to date in one transaction.

        Args:
            up_to: stop at this version (tests that build a database as an
                older chatnet left it); None applies every version.

        Returns:
            the schema version now in force.

        Raises:
            RuntimeError: the database has a newer schema than this code knows
                (than ``up_to``, when given).
        """
        known = [m for m in migrations(self.engine.name) if up_to is None or m[0] <= up_to]

        def apply(txn: Txn) -> int:
            txn.engine.begin_migration(txn.cursor)
            txn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            current = txn.scalar("SELECT MAX(version) FROM schema_version") or 0
            newest = known[-1][0] if known else 0
            if current > newest:
                raise RuntimeError(
                    f"database schema version {current} is newer than this chatnet ({newest})"
                )
            for version, filename, sql in known:
                if version <= current:
                    continue
                for statement in _statements(sql):
                    txn.execute(statement)
                txn.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)",
                            (version, filename))
                current = version
            return int(current)

        version: int = await self.run_interaction("migrate", apply)
        self.log.info("database schema at version {version} ({engine})", version=version,
                      engine=self.engine.name)
        return version

    async def durability_warnings(self, durability: str) -> list[str]:
        """What in the engine's settings contradicts ``--durability`` (``process``
        or ``power``), in plain language; empty when all is as asked."""
        return await self.run_interaction(
            "durability", lambda txn: self.engine.durability_warnings(txn, durability))

    def close(self) -> None:
        """Close the pool's connections (waits for running transactions)."""
        self.pool.close()


@dataclass
class _Grouped:
    """One call waiting for a grouped transaction (:meth:`Database.run_grouped`)."""

    name: str
    rows: Rows
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: Deferred[Any] = field(default_factory=Deferred)
