"""``/healthz`` and Prometheus ``/metrics`` over plain HTTP (``--metrics-port``).

A separate port, plain HTTP, bound to loopback by default: for a load balancer's
health check and a Prometheus scraper on the operator's network, never for
chat clients. Nothing here is on the chat path: the figures are read from the
server's own counters when scraped (:class:`ServerCollector`); only request
latencies are observed as requests finish (:class:`ServerMetrics`).

``/healthz`` answers JSON ``{status, database, redis, sessions, node?}``:

- ``ok`` (200): the database answers and, in a cluster, Redis is connected;
- ``degraded`` (200): Redis is unreachable; this node still serves its own
  sessions (events do not reach other nodes) and reconnects by itself;
- ``unavailable`` (503): the database does not answer within
  :data:`DATABASE_CHECK_TIMEOUT` seconds, or the server is still starting or
  stopping; requests that need it fail with ``unavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.twisted import MetricsResource
from twisted.internet.defer import Deferred
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

if TYPE_CHECKING:
    from chatnet.server import ChatnetService

#: Seconds the database has to answer ``SELECT 1`` for ``/healthz``.
DATABASE_CHECK_TIMEOUT = 2.0
#: Upper bounds of the request latency histogram, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """The metrics of one server (its own registry: several servers may share a
    process, as in the tests).

    Args:
        service: the running server, read at each scrape.

    Attributes:
        registry: what ``/metrics`` exposes.
        request_seconds: histogram of request handling time by op, seconds.
    """

    def __init__(self, service: ChatnetService) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "chatnet_request_seconds", "Time from a request's arrival to its answer, by op",
            ["op"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(ServerCollector(service))

    def request_done(self, op: str, seconds: float) -> None:
        """Record one answered request."""
        self.request_seconds.labels(op).observe(seconds)


class ServerCollector:
    """Reads the server's own counters when Prometheus scrapes.

    Args:
        service: the server.
    """

    def __init__(self, service: ChatnetService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        """The current figures (prometheus_client's collector protocol)."""
        service = self.service
        fanout = service.fanout
        sessions = fanout.all_sessions()
        yield GaugeMetricFamily("chatnet_sessions", "Logged-in sessions on this node",
                                value=len(sessions))
        yield GaugeMetricFamily("chatnet_users_online", "Users with a session on this node",
                                value=len(fanout.online_users()))
        yield GaugeMetricFamily(
            "chatnet_output_queued_bytes",
            "Bytes waiting in the outboxes of slow readers on this node",
            value=sum(getattr(s, "queued_bytes", 0) for s in sessions))
        yield CounterMetricFamily("chatnet_deliveries", "Event frames written to sessions",
                                  value=fanout.deliveries)
        factory = service.factory
        yield CounterMetricFamily("chatnet_connections_refused",
                                  "Connections closed before login by the admission limits",
                                  value=factory.refused)
        db = service.store.db
        yield GaugeMetricFamily("chatnet_database_up",
                                "1 if the last database check succeeded",
                                value=1 if service.health.database_up else 0)
        yield GaugeMetricFamily("chatnet_database_pending",
                                "Writes waiting for the next group commit",
                                value=db.pending_writes())
        yield CounterMetricFamily("chatnet_database_retries",
                                  "Transactions run again after the database ended them "
                                  "to break a deadlock", value=db.retried)
        bus = getattr(fanout, "bus", None)
        if bus is not None:
            yield GaugeMetricFamily("chatnet_redis_up", "1 if the cluster bus is connected",
                                    value=1 if bus.connected else 0)
            yield CounterMetricFamily("chatnet_bus_published", "Events published to Redis",
                                      value=bus.published)
            yield CounterMetricFamily("chatnet_bus_dropped",
                                      "Events not published: Redis unreachable or behind",
                                      value=bus.dropped)
            yield CounterMetricFamily("chatnet_bus_received", "Events received from Redis",
                                      value=bus.received)


class HealthCheck:
    """Answers ``/healthz`` (see the module docstring).

    Args:
        service: the server.

    Attributes:
        database_up: what the last database check found.
    """

    def __init__(self, service: ChatnetService) -> None:
        self.service = service
        self.database_up = False

    async def check(self) -> tuple[int, dict[str, Any]]:
        """Check now; returns ``(HTTP status, body map)``."""
        service = self.service
        reactor = service.reactor
        try:
            d = service.store.db.run_interaction("health", lambda t: t.scalar("SELECT 1"))
            await d.addTimeout(DATABASE_CHECK_TIMEOUT, reactor)
            self.database_up = True
        except Exception:
            self.database_up = False
        fanout = service.fanout
        bus = getattr(fanout, "bus", None)
        redis = "off" if bus is None else ("ok" if bus.connected else "down")
        started = service.running and service.port is not None
        if not self.database_up or not started:
            status, code = "unavailable", 503
        elif redis == "down":
            status, code = "degraded", 200
        else:
            status, code = "ok", 200
        body: dict[str, Any] = {"status": status,
                                "database": "ok" if self.database_up else "down",
                                "redis": redis, "sessions": len(fanout.all_sessions())}
        if bus is not None:
            body["node"] = getattr(fanout, "node", None)
        return code, body


class HealthResource(Resource):
    """``GET /healthz``."""

    isLeaf = True

    def __init__(self, health: HealthCheck) -> None:
        super().__init__()
        self.health = health

    def render_GET(self, request: Request) -> Any:
        """Answer once the checks are done."""
        d = Deferred.fromCoroutine(self.health.check())

        def answer(result: tuple[int, dict[str, Any]]) -> None:
            code, body = result
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            request.write(json.dumps(body).encode() + b"\n")
            request.finish()

        d.addCallback(answer)
        return NOT_DONE_YET


class _Root(Resource):
    """``/healthz`` and ``/metrics``; anything else is 404."""

    def getChild(self, path: bytes, request: Any) -> Any:
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        return notFound().render(request)  # type: ignore[no-any-return]


def metrics_site(metrics: ServerMetrics, health: HealthCheck) -> Site:
    """The HTTP site: ``/healthz`` and ``/metrics``; anything else is 404."""
    root = _Root()
    root.putChild(b"healthz", HealthResource(health))
    root.putChild(b"metrics", MetricsResource(registry=metrics.registry))
    site = Site(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
