"""``/healthz`` and ``/metrics`` on ``--metrics-port`` (docs/deployment.md), read
over real HTTP with treq."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted
import treq

from tests.support.chat import create_room, say
from tests.support.events import EventLog


async def get(server: Any, path: str) -> tuple[int, str]:
    port = server.service.metrics_port.getHost().port
    response = await treq.get(f"http://127.0.0.1:{port}{path}")
    return response.code, (await response.text())


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus's text format."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"no {name}{labels} in:\n{text}"
    return float(match.group(1))


@pytest_twisted.ensureDeferred
async def test_healthz_and_metrics_report_what_the_server_does(make_server):
    """/healthz says ok (database ok, no Redis); /metrics counts the sessions,
    the deliveries of a message and the latency of msg.send; other paths are 404."""
    server = await make_server(metrics_port=0)
    code, body = await get(server, "/healthz")
    assert code == 200
    assert json.loads(body) == {"status": "ok", "database": "ok", "redis": "off",
                                "sessions": 0}
    alice, bob = await server.user("alice"), await server.user("bob")
    rid = (await create_room(alice, bob))["room_id"]
    bob_events = EventLog(bob, "bob")
    before = sample((await get(server, "/metrics"))[1], "chatnet_deliveries_total")
    await say(alice, rid, "hello")
    await bob_events.next("msg")
    code, text = await get(server, "/metrics")
    assert code == 200
    assert sample(text, "chatnet_sessions") == 2
    assert sample(text, "chatnet_deliveries_total") >= before + 2
    assert sample(text, "chatnet_request_seconds_count", '{op="msg.send"}') == 1
    assert sample(text, "chatnet_database_up") == 1
    assert sample(text, "chatnet_database_retries_total") == 0
    assert "chatnet_redis_up" not in text
    assert (await get(server, "/"))[0] == 404
    assert (await get(server, "/nothing"))[0] == 404

