"""``--durability {process,power}``: what an acknowledged message survives.

``process`` (default): SQLite ``synchronous=NORMAL`` in WAL mode; ``power``:
``synchronous=FULL``. On PostgreSQL the server's ``fsync`` and
``synchronous_commit`` decide, and a setting that contradicts ``power`` is
warned about at start. Read back from the server's own database connection.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage

from chatnet.tap import Options
from tests.support.chat import create_room, say
from tests.support.databases import postgres_url


async def pragma(running: Any, name: str) -> Any:
    """``PRAGMA name`` on the server's own (only) SQLite connection."""
    return await running.service.store.db.run_interaction(
        "test pragma", lambda txn: txn.scalar(f"PRAGMA {name}"))


class Warnings:
    """Warning-level log events while the block runs."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> Warnings:
        globalLogPublisher.addObserver(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            self.seen.append(event)

    def about(self, text: str) -> list[dict[str, Any]]:
        """The warnings whose ``warning`` field contains ``text``."""
        return [e for e in self.seen if text in str(e.get("warning", ""))]


@pytest.mark.parametrize(("durability", "level"), [("process", 1), ("power", 2)])
@pytest_twisted.ensureDeferred
async def test_sqlite_synchronous_follows_durability(make_server, durability, level):
    """``process`` runs the server's connection at synchronous=NORMAL (1), ``power``
    at FULL (2), both in WAL mode; sends work either way."""
    running = await make_server(durability=durability)
    assert await pragma(running, "synchronous") == level
    assert await pragma(running, "journal_mode") == "wal"
    alice = await running.user("alice")
    room = await create_room(alice)
    assert (await say(alice, room["room_id"], "durable"))["seq"] == 1


def test_durability_option():
    """``twistd chatnet`` defaults to ``process``, takes ``power``, and names the
    option when given anything else."""
    options = Options()
    options.parseOptions([])
    assert options.config.durability == "process"
    options = Options()
    options.parseOptions(["--durability", "power"])
    assert options.config.durability == "power"
    with pytest.raises(usage.UsageError, match="--durability must be one of process, power"):
        Options().parseOptions(["--durability", "disk"])


def with_options(conninfo: str, setting: str) -> str:
    """The conninfo with one more ``-c`` server setting for its sessions."""
    assert "options='" in conninfo
    return conninfo.replace("options='", f"options='-c{setting} ", 1)


@pytest_twisted.ensureDeferred
async def test_postgresql_without_synchronous_commit_is_warned_about_under_power(
        postgres, make_server):
    """On PostgreSQL with ``synchronous_commit=off`` for chatnet's sessions, ``--durability
    power`` logs a warning at start that names the setting; ``process`` does not (a
    crash of chatnet loses nothing PostgreSQL committed)."""
    url = postgres_url(with_options(postgres, "synchronous_commit=off"))
    with Warnings() as logged:
        await make_server(database=url, durability="process")
    assert not logged.about("synchronous_commit")
    with Warnings() as logged:
        running = await make_server(database=url, durability="power")
    [warning] = logged.about("synchronous_commit=off")
    assert warning["durability"] == "power"
    alice = await running.user("alice")
    room = await create_room(alice)
    await say(alice, room["room_id"], "still works")


@pytest_twisted.ensureDeferred
async def test_postgresql_with_synchronous_commit_on_is_not_warned_about(postgres, make_server):
    """With PostgreSQL's default settings (fsync and synchronous_commit on), ``power``
    starts without a durability warning."""
    with Warnings() as logged:
        await make_server(database=postgres_url(postgres), durability="power")
    assert not [e for e in logged.seen if "durability" in str(e.get("log_format", ""))]
