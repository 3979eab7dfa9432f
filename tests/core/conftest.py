"""Fixtures for the core suite (pytest-twisted, the default reactor).

A test fails if anything logs an error or a failure while it runs (the
``log_errors`` fixture), unless it declares ``expect_logged_errors``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import settings
from twisted.logger import LogLevel, globalLogPublisher

from tests.support.databases import postgres_conninfo, postgres_schema, redis_address
from tests.support.server import RunningServer, start_server, test_config

# Hypothesis profiles (tests/core/test_fuzz_properties.py): "dev" by default;
# "ci" draws the same examples on every run (a CI failure reproduces, and CI is
# not flaky); "long" draws 100 times as many, for a hunt on a quiet machine.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", deadline=None, max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def log_errors(request: pytest.FixtureRequest) -> Any:
    """Collect error-level log events; fail the test if any appeared."""
    seen: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)
    if seen and not request.node.get_closest_marker("expect_logged_errors"):
        from twisted.logger import formatEvent

        details = []
        for event in seen:
            text = formatEvent(event)
            if "log_failure" in event:
                text += "\n" + event["log_failure"].getTraceback()
            details.append(text)
        pytest.fail("errors were logged:\n" + "\n".join(details))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_logged_errors: the test logs errors on purpose")


@pytest_twisted.async_yield_fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A real chatnet server on loopback (TLS, SQLite file in ``tmp_path``)."""
    running = await start_server(test_config(tmp_path / "data"))
    yield running
    await running.stop()


def require_services() -> bool:
    """Whether missing PostgreSQL/Redis must fail tests instead of skipping them."""
    return os.environ.get("CHATNET_REQUIRE_SERVICES") == "1"


@pytest.fixture
def postgres() -> Iterator[str]:
    """The conninfo of a fresh PostgreSQL schema, dropped after the test.

    Skips when PostgreSQL is unreachable, but fails instead when
    ``CHATNET_REQUIRE_SERVICES=1`` (CI must not silently skip the real engine).
    """
    conninfo, reason = postgres_conninfo()
    if conninfo is None:
        if require_services():
            pytest.fail(f"{reason} (and CHATNET_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    with postgres_schema(conninfo) as schema_conninfo:
        yield schema_conninfo


@pytest.fixture
def redis() -> Iterator[dict[str, Any]]:
    """The test Redis server as ``make_server`` overrides joining a fresh cluster:
    ``{"redis": (host, port, 0), "cluster": "test-…"}``. Skips when Redis is
    unreachable, but fails instead when ``CHATNET_REQUIRE_SERVICES=1``."""
    address, reason = redis_address()
    if address is None:
        if require_services():
            pytest.fail(f"{reason} (and CHATNET_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    host, port = address
    yield {"redis": (host, port, 0), "cluster": f"test-{secrets.token_hex(6)}"}


@pytest_twisted.async_yield_fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Any]:
    """A function starting servers with :func:`test_config` overrides; all are
    stopped afterwards. ``await make_server(single_session=True)``."""
    started: list[RunningServer] = []

    async def make(**overrides: Any) -> RunningServer:
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(started)}")
        running = await start_server(test_config(data_dir, **overrides))
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: Any, tmp_path: Path) -> Any:
    """Each database engine in turn: SQLite on a file in ``tmp_path``, PostgreSQL in
    a fresh schema (the ``postgres`` fixture: skipped when unreachable unless
    ``CHATNET_REQUIRE_SERVICES=1``)."""
    from chatnet.store import PostgresEngine, SqliteEngine

    if request.param == "sqlite":
        return SqliteEngine(tmp_path / "store.db")
    return PostgresEngine(request.getfixturevalue("postgres"))


@pytest_twisted.async_yield_fixture
async def store(engine: Any) -> AsyncIterator[Any]:
    """A migrated ChatStore on ``engine``; its pool is closed afterwards."""
    from twisted.internet import reactor

    from chatnet.store import ChatStore, Database

    db = Database(engine, reactor)
    await db.migrate()
    yield ChatStore(db)
    db.close()
