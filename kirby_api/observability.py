"""Prometheus metrics and the structured access log.

Each app gets its own registry (tests build many apps in one process). Metrics:

    kirby_api_request_duration_seconds{method,route,status}   histogram, route = template
    kirby_api_ws_connections                                   gauge
    kirby_api_ws_messages_sent_total                           messages written to clients
    kirby_api_ws_messages_dropped_total{reason}                messages a client never got
    kirby_api_ws_closed_total{reason}                          server-side closes by reason
    kirby_api_listen_lag_seconds                               NOTIFY received -> fanned out
    kirby_api_listen_connected / _reconnects_total             the LISTEN connection
    kirby_api_data_age_seconds{dataset,series}                 now - newest row, per series
    kirby_api_rate_limited_total, kirby_api_auth_failures_total
    kirby_api_gc_pause_seconds{generation}                     collector pauses (the loop waits)

The access log is one `kirby_api.access` line per HTTP request: method, path, route,
status, duration, key id, client address. Both come from `observe`, which wraps the app's
outermost handler, so that refusals by the authentication and rate-limit middlewares and
requests no route matches (404, 405) are measured too. Labels stay bounded whatever clients
send: a request no route matched is `route="unmatched"`, an unusual method `method="other"`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

access_log = logging.getLogger("kirby_api.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Freshness(Collector):
    """Newest row time per series, fed by health checks and live notifications."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], datetime] = {}

    def observe(self, dataset: str, series: str, latest: datetime | None) -> None:
        if latest is None:
            return
        current = self._latest.get((dataset, series))
        if current is None or latest > current:
            self._latest[(dataset, series)] = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kirby_api_data_age_seconds",
            "Seconds since the newest row of a series (by its time column).",
            labels=["dataset", "series"],
        )
        now = datetime.now(UTC)
        for (dataset, series), latest in sorted(self._latest.items()):
            family.add_metric([dataset, series], (now - latest).total_seconds())
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.request_seconds = Histogram(
            "kirby_api_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_connections = Gauge(
            "kirby_api_ws_connections", "Open WebSocket connections.", registry=r
        )
        self.ws_sent = Counter(
            "kirby_api_ws_messages_sent", "Messages written to WebSocket clients.", registry=r
        )
        self.ws_dropped = Counter(
            "kirby_api_ws_messages_dropped",
            "Messages a WebSocket client never received (queue overflow, closed client).",
            ["reason"],
            registry=r,
        )
        self.ws_closed = Counter(
            "kirby_api_ws_closed",
            "WebSocket connections closed by the server.",
            ["reason"],
            registry=r,
        )
        self.listen_lag = Histogram(
            "kirby_api_listen_lag_seconds",
            "From a NOTIFY reaching this process to its rows queued for every subscriber.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.listen_connected = Gauge(
            "kirby_api_listen_connected", "1 while the LISTEN connection is up.", registry=r
        )
        self.listen_reconnects = Counter(
            "kirby_api_listen_reconnects", "LISTEN connections re-established.", registry=r
        )
        self.rate_limited = Counter(
            "kirby_api_rate_limited", "Requests refused with 429.", registry=r
        )
        self.auth_failures = Counter(
            "kirby_api_auth_failures", "Requests refused with 401.", registry=r
        )
        self.freshness = Freshness()
        r.register(self.freshness)
        gc_pause = Histogram(
            "kirby_api_gc_pause_seconds",
            "Python garbage-collector passes: the event loop, and every client, waits them out.",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self._gc_pauses = tuple(gc_pause.labels(str(g)) for g in range(3))
        self._gc_started = 0.0

    def observe_gc(self, phase: str, info: dict) -> None:
        """A `gc.callbacks` hook: times each collector pass."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pauses[info["generation"]].observe(time.perf_counter() - self._gc_started)


def observe(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """`app` (a Litestar app's `asgi_handler`) measuring and logging every HTTP request."""

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: the app failed before answering

        async def send_capturing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_capturing)
        finally:
            _record(metrics, scope, status, time.perf_counter() - started)

    return observed


def _record(metrics: Metrics, scope: HTTPScope, status: int, seconds: float) -> None:
    route = scope.get("path_template", "unmatched")  # set by the router on a match only
    method = scope["method"] if scope["method"] in _METHODS else "other"
    metrics.request_seconds.labels(method, route, str(status)).observe(seconds)
    if status == 429:
        metrics.rate_limited.inc()
    elif status == 401:
        metrics.auth_failures.inc()
    user = scope.get("user")
    client = scope.get("client")
    access_log.info(
        "request method=%s path=%s route=%s status=%d duration_ms=%.2f key=%s client=%s",
        scope["method"],
        scope["path"],
        route,
        status,
        seconds * 1000,
        getattr(user, "id", None) or "-",
        client[0] if client else "-",
    )
