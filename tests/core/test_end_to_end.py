"""The end-to-end tests of messages, rooms, presence and contacts, blocking, the
feed and search, run again against PostgreSQL and against two nodes of a
cluster (PostgreSQL + Redis) instead of one process on SQLite.

The tests are the modules' own, those that take the ``server`` fixture (put in
this module's namespace below, so pytest collects them here too); only the
``server`` fixture differs. With two nodes, consecutive
connections alternate between the nodes (:class:`RunningCluster`), so alice and
bob of a test talk through Redis.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.core import (
    test_blocks,
    test_feed,
    test_messages,
    test_presence_contacts,
    test_rooms,
    test_search,
    test_smoke,
)
from tests.support.databases import postgres_url
from tests.support.server import RunningCluster, start_server, test_config

#: Tests about one engine's own machinery, not the end-to-end behaviour.
_ENGINE_SPECIFIC = {"test_the_server_runs_the_search_indexer"}

# Every test of those modules that runs against the ``server`` fixture.
for _module in (test_blocks, test_feed, test_messages, test_presence_contacts, test_rooms,
                test_search, test_smoke):
    for _name, _test in vars(_module).items():
        if (_name.startswith("test_") and _name not in _ENGINE_SPECIFIC
                and "server" in inspect.signature(_test).parameters):
            globals()[_name] = _test


@pytest.fixture(params=["postgresql", "two-nodes"])
def deployment(request: Any) -> dict[str, Any]:
    """``make_server`` overrides for each deployment."""
    settings = {"database": postgres_url(request.getfixturevalue("postgres"))}
    if request.param == "two-nodes":
        settings.update(request.getfixturevalue("redis"))
        settings["nodes"] = 2
    return settings


@pytest_twisted.async_yield_fixture
async def server(deployment: dict[str, Any], tmp_path: Path) -> AsyncIterator[Any]:
    """The deployment under test, started; stopped afterwards."""
    settings = dict(deployment)
    nodes = settings.pop("nodes", 1)
    data_dir = tmp_path / "data"
    started = [await start_server(test_config(data_dir, **settings)) for _ in range(nodes)]
    running: Any = started[0] if nodes == 1 else RunningCluster(started)
    yield running
    await running.stop()


