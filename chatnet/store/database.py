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
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger

P = ParamSpec("P")
R = TypeVar("R")

_MIGRATION_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


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

    def begin(self, cursor: Any) -> None:
        """Open a transaction explicitly (needed on SQLite for DDL)."""


class SqliteEngine:
    """SQLite in WAL mode, one connection, through the standard ``sqlite3`` module.

    Args:
        path: the database file; created if missing.
        synchronous: the ``PRAGMA synchronous`` level. ``NORMAL`` (default) in WAL
            mode survives a crash of the process; ``FULL`` also survives power loss.
    """

    name = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self.synchronous = synchronous

    def make_pool(self, reactor: Any) -> adbapi.ConnectionPool:
        """Create a one-connection pool (serialised transactions)."""
        return adbapi.ConnectionPool(
            "sqlite3", self.path, check_same_thread=False, cp_min=1, cp_max=1,
            cp_openfun=self._on_connect, cp_reactor=reactor, cp_noisy=False,
        )

    def _on_connect(self, conn: sqlite3.Connection) -> None:
        for pragma in ("journal_mode=WAL", f"synchronous={self.synchronous}",
                       "foreign_keys=ON", "busy_timeout=5000"):
            conn.execute("PRAGMA " + pragma)

    def convert(self, sql: str) -> str:
        """SQLite speaks the portable dialect already."""
        return sql

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an ``sqlite3.IntegrityError``."""
        return isinstance(exc, sqlite3.IntegrityError)

    def begin(self, cursor: Any) -> None:
        """Python's sqlite3 autocommits DDL unless a transaction is opened by hand."""
        cursor.execute("BEGIN")


class PostgresEngine:
    """PostgreSQL through psycopg 3 (the ``cluster`` extra).

    Args:
        conninfo: a libpq connection string or URL, e.g.
            ``postgresql://127.0.0.1:5432/test``.
        pool_size: the number of pooled connections.
    """

    name = "postgresql"

    def __init__(self, conninfo: str, pool_size: int = 8) -> None:
        self.conninfo = conninfo
        self.pool_size = pool_size

    def make_pool(self, reactor: Any) -> adbapi.ConnectionPool:
        """Create a pool of ``pool_size`` psycopg connections that reconnects."""
        return adbapi.ConnectionPool(
            "psycopg", self.conninfo, cp_min=1, cp_max=self.pool_size, cp_reconnect=True,
            cp_good_sql="SELECT 1", cp_reactor=reactor, cp_noisy=False,
        )

    def convert(self, sql: str) -> str:
        """Rewrite ``?`` placeholders to psycopg's ``%s`` (escaping literal ``%``)."""
        return sql.replace("%", "%%").replace("?", "%s")

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a psycopg ``IntegrityError``."""
        import psycopg

        return isinstance(exc, psycopg.IntegrityError)

    def begin(self, cursor: Any) -> None:
        """psycopg opens the transaction by itself."""


def engine_from_url(database: str, data_dir: Path) -> SqliteEngine | PostgresEngine:
    """Pick the engine for a ``--database`` value.

    Args:
        database: ``""`` (SQLite file ``chatnet.db`` in the data dir),
            ``sqlite:PATH``, or a ``postgresql://`` / ``postgres://`` URL.
        data_dir: the server's data directory.

    Returns:
        the engine.

    Raises:
        ValueError: the value is none of the above.
    """
    if not database:
        return SqliteEngine(data_dir / "chatnet.db")
    if database.startswith("sqlite:"):
        return SqliteEngine(database.removeprefix("sqlite:"))
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresEngine(database)
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


def migrations() -> list[tuple[int, str, str]]:
    """The schema deltas shipped in ``chatnet/store/schema``, oldest first.

    Returns:
        ``[(version, filename, sql)]``.
    """
    found = []
    for entry in resources.files("chatnet.store").joinpath("schema").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
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
    """

    log = Logger()

    def __init__(self, engine: Engine, reactor: IReactorCore | IReactorThreads | None = None):
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.engine = engine
        self.pool = engine.make_pool(reactor)

    def run_interaction(
        self, name: str, fn: Callable[Concatenate[Txn, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> Deferred[R]:
        """Run ``fn(txn, *args, **kwargs)`` as one transaction in a pool thread.

        Args:
            name: what the transaction does, for logs.
            fn: a synchronous function of a :class:`Txn`; it commits when it
                returns and rolls back when it raises.

        Returns:
            a Deferred firing with ``fn``'s result, or failing with its exception.
        """
        engine = self.engine

        def interaction(cursor: Any) -> R:
            return fn(Txn(cursor, engine), *args, **kwargs)

        d: Deferred[R] = self.pool.runInteraction(interaction)
        return d

    async def migrate(self) -> int:
        """Bring the schema up to date in one transaction.

        Returns:
            the schema version now in force.

        Raises:
            RuntimeError: the database has a newer schema than this code knows.
        """
        known = migrations()

        def apply(txn: Txn) -> int:
            txn.engine.begin(txn.cursor)
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

    def close(self) -> None:
        """Close the pool's connections (waits for running transactions)."""
        self.pool.close()
