"""Database engines for tests: SQLite files and throw-away PostgreSQL schemas.

PostgreSQL is the local server at 127.0.0.1:5432 (trust auth, database
``test``; override with ``CHATNET_TEST_PG``, a libpq conninfo without
``options``). Each test gets its own schema, created before and dropped after,
selected through ``options=-csearch_path=...`` in the conninfo so that
chatnet's unqualified SQL lands in it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

BASE_CONNINFO = os.environ.get("CHATNET_TEST_PG", "host=127.0.0.1 port=5432 dbname=test")
#: Roles tried, in order, when the conninfo names none.
_USERS = ("postgres", "root")


@cache
def postgres_conninfo() -> tuple[str | None, str]:
    """A working conninfo for the test PostgreSQL server.

    Returns:
        ``(conninfo, "")`` if a connection succeeded, else ``(None, reason)``.
    """
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a test dependency
        return None, f"psycopg is not installed ({exc})"
    candidates = ([BASE_CONNINFO] if "user=" in BASE_CONNINFO
                  else [f"{BASE_CONNINFO} user={u}" for u in _USERS])
    reasons = []
    for conninfo in candidates:
        try:
            with psycopg.connect(conninfo, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return conninfo, ""
        except Exception as exc:
            reasons.append(f"{conninfo}: {exc}".strip())
    return None, "PostgreSQL is not reachable: " + "; ".join(reasons)


@contextmanager
def postgres_schema(conninfo: str) -> Iterator[str]:
    """Create a fresh schema; yield a conninfo whose search_path is that schema;
    drop the schema (and everything in it) afterwards."""
    import psycopg

    schema = "chatnet_test_" + secrets.token_hex(6)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{conninfo} options='-csearch_path={schema}'"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def postgres_url(conninfo: str) -> str:
    """The same connection as a ``postgresql://`` URL (for ``--database``)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    host = params.pop("host", "127.0.0.1")
    port = params.pop("port", "5432")
    dbname = params.pop("dbname", "test")
    user = params.pop("user", "")
    from urllib.parse import quote, urlencode

    query = urlencode({k: v for k, v in params.items()}, quote_via=quote)
    auth = f"{quote(user)}@" if user else ""
    return f"postgresql://{auth}{host}:{port}/{dbname}" + (f"?{query}" if query else "")


#: The Redis server for cluster tests: ``host:port`` (``CHATNET_TEST_REDIS``).
REDIS_ADDRESS = os.environ.get("CHATNET_TEST_REDIS", "127.0.0.1:6379")


@cache
def redis_address() -> tuple[tuple[str, int] | None, str]:
    """The test Redis server as ``((host, port), "")``, or ``(None, reason)`` when
    nothing answers PING there."""
    import socket

    host, _, port = REDIS_ADDRESS.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except (OSError, ValueError) as exc:
        return None, f"Redis is not reachable at {REDIS_ADDRESS}: {exc}"
    if not answer.startswith(b"+PONG"):
        return None, f"{REDIS_ADDRESS} does not answer like Redis: {answer[:40]!r}"
    return (host, int(port)), ""

