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
    kirby_api_data_behind_seconds{dataset,series}              newest row -> current interval
    kirby_api_rate_limited_total, kirby_api_auth_failures_total
    kirby_api_gc_pause_seconds{generation}                     collector pauses (the loop waits)
    kirby_api_database_up                                      1 when the scrape's probe answered
    kirby_api_stream_stale_after_seconds                       the API's staleness threshold

Collector metrics, per exchange, read from the database on each scrape (`Operations`): the
newest `stream_heartbeats` row (a replica of the API reports the same values as every other,
so rules aggregate with `max by (exchange)`), and `collection_outages` summed:

    kirby_collector_heartbeat_age_seconds{exchange}            now - newest heartbeat
    kirby_collector_last_message_age_seconds{exchange}         now - last frame received
    kirby_collector_lag_seconds{exchange}                      now - covered_through (stored)
    kirby_collector_state{exchange,state}                      1 for the current state
    kirby_collector_reconnects_total{exchange}                 of the current collector run
    kirby_collector_dropped_rows_total / _refused_rows_total{exchange}
    kirby_collector_buffered_rows{exchange,buffer}             rows waiting to be flushed
    kirby_collector_outages_total{exchange,dataset}            outage records
    kirby_collector_outage_seconds_total{exchange,dataset}     their summed length
    kirby_collector_book_updates_total{exchange}               depth updates applied
    kirby_collector_book_gaps_total / _resyncs_total{exchange}  sequence gaps, resyncs done
    kirby_collector_book_crossed_total{exchange}               updates that left a crossed book
    kirby_collector_book_snapshots_refused_total{exchange}     REST snapshots refused (429/418)
    kirby_collector_book_stale_seconds_total{exchange}         time books were not trustworthy
    kirby_collector_books{exchange,state}                      books kept (`kept`), `whole` now

One collector serves every exchange: the exchanges are those of its heartbeat's `feeds`.
State, reconnects and the last message are each exchange's own; heartbeat age, lag, dropped
and refused rows and buffers are the collector's, reported under each exchange it serves.

The access log is one `kirby_api.access` line per HTTP request: method, path, route,
status, duration, key id, client address. Both come from `observe`, which wraps the app's
outermost handler, so that refusals by the authentication and rate-limit middlewares and
requests no route matches (404, 405) are measured too. Labels stay bounded whatever clients
send: a request no route matched is `route="unmatched"`, an unusual method `method="other"`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kirby_core.models import feed_reports
from kirby_core.timeutil import floor_time

access_log = logging.getLogger("kirby_api.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Freshness(Collector):
    """Newest row time per series, fed by health checks and live notifications.

    A series whose interval a health check told (`observe(..., interval=...)`) also reports
    how far it is behind: from its newest row to the open of the current interval, 0 when
    that interval's row is stored (as /status's `lag_seconds`).
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], datetime] = {}
        self._intervals: dict[tuple[str, str], str] = {}

    def observe(
        self, dataset: str, series: str, latest: datetime | None, interval: str | None = None
    ) -> None:
        if interval is not None:
            self._intervals[(dataset, series)] = interval
        if latest is None:
            return
        current = self._latest.get((dataset, series))
        if current is None or latest > current:
            self._latest[(dataset, series)] = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "kirby_api_data_age_seconds",
            "Seconds since the newest row of a series (by its time column).",
            labels=["dataset", "series"],
        )
        behind = GaugeMetricFamily(
            "kirby_api_data_behind_seconds",
            "Seconds from a series' newest row to the open of its current interval "
            "(0: the current interval's row is stored).",
            labels=["dataset", "series"],
        )
        now = datetime.now(UTC)
        for (dataset, series), latest in sorted(self._latest.items()):
            age.add_metric([dataset, series], (now - latest).total_seconds())
            interval = self._intervals.get((dataset, series))
            if interval is not None:
                lag = max((floor_time(now, interval) - latest).total_seconds(), 0.0)
                behind.add_metric([dataset, series], lag)
        yield age
        yield behind


class BackupAges(Collector):
    """When each database's newest complete backup was taken, as read from the backup
    location's manifests by `Runtime`'s backup watch (no database with no backup)."""

    def __init__(self) -> None:
        self.taken_at: dict[str, datetime] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "kirby_backup_last_success_timestamp_seconds",
            "Unix time the newest complete backup of a database was taken (its manifest).",
            labels=["database"],
        )
        for database, taken_at in sorted(self.taken_at.items()):
            gauge.add_metric([database], taken_at.timestamp())
        yield gauge


OUTAGES_BY_EXCHANGE = """
SELECT e.name AS exchange, o.dataset, count(*) AS outages,
       sum(extract(epoch FROM o.end_time - o.start_time))::float8 AS seconds
FROM collection_outages o
LEFT JOIN starlistings s ON o.dataset = 'candles' AND s.id = o.series_id
JOIN trading_pairs p
    ON p.id = CASE WHEN o.dataset = 'candles' THEN s.trading_pair_id ELSE o.series_id END
JOIN exchanges e ON e.id = p.exchange_id
GROUP BY e.name, o.dataset
"""
"""Outage records per exchange and dataset (a candle outage names a starlisting, the others
a trading pair)."""

_STATES = ("starting", "running", "degraded", "stopped")


class Operations(Collector):
    """The collector's gauges and counters, as the latest scrape read them from the database.

    `update` replaces the whole picture; after a scrape whose database did not answer, the
    collector families are empty (unknown, not zero) and `kirby_api_database_up` is 0.
    """

    def __init__(self) -> None:
        self._database_up: bool | None = None
        self._stale_after: float | None = None
        self._heartbeat: asyncpg.Record | None = None
        self._outages: Sequence[asyncpg.Record] = ()
        self._read_at = datetime.now(UTC)

    def update(
        self,
        database_up: bool,
        heartbeats: Sequence[asyncpg.Record],
        outages: Sequence[asyncpg.Record],
        now: datetime,
        stale_after: float,
    ) -> None:
        """`heartbeats`: the `stream_heartbeats` rows, newest first; `stale_after`: the
        heartbeat age past which /health calls the stream stale (the alert uses it too)."""
        self._database_up = database_up
        self._stale_after = stale_after
        self._heartbeat = heartbeats[0] if heartbeats else None
        self._outages = outages
        self._read_at = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "kirby_api_database_up", "1 when the database answered this scrape's probe."
        )
        if self._database_up is not None:
            up.add_metric([], 1.0 if self._database_up else 0.0)
        yield up
        stale_after = GaugeMetricFamily(
            "kirby_api_stream_stale_after_seconds",
            "Heartbeat age past which the API calls the stream stale (api_stream_stale_seconds).",
        )
        if self._stale_after is not None:
            stale_after.add_metric([], self._stale_after)
        yield stale_after
        yield from self._collector_families()
        outages = CounterMetricFamily(
            "kirby_collector_outages",
            "Outage records (a gap the collector could not fill), per exchange and dataset.",
            labels=["exchange", "dataset"],
        )
        outage_seconds = CounterMetricFamily(
            "kirby_collector_outage_seconds",
            "Summed length of the recorded outages.",
            labels=["exchange", "dataset"],
        )
        for row in self._outages:
            labels = [row["exchange"], row["dataset"]]
            outages.add_metric(labels, float(row["outages"]))
            outage_seconds.add_metric(labels, float(row["seconds"]))
        yield outages
        yield outage_seconds

    def _collector_families(self) -> Iterator[Metric]:
        labels = ["exchange"]
        age = GaugeMetricFamily(
            "kirby_collector_heartbeat_age_seconds",
            "Seconds since the collector's newest heartbeat.",
            labels=labels,
        )
        last_message = GaugeMetricFamily(
            "kirby_collector_last_message_age_seconds",
            "Seconds since the collector last received a frame from the exchange.",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "kirby_collector_lag_seconds",
            "Seconds from the time through which the collector's data is stored to now.",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "kirby_collector_state",
            "1 for the collector's current state (starting, running, degraded, stopped).",
            labels=["exchange", "state"],
        )
        reconnects = CounterMetricFamily(
            "kirby_collector_reconnects",
            "Exchange connections re-established by the current collector run.",
            labels=labels,
        )
        dropped = CounterMetricFamily(
            "kirby_collector_dropped_rows",
            "Buffered rows dropped past the memory bound by the current run.",
            labels=labels,
        )
        refused = CounterMetricFamily(
            "kirby_collector_refused_rows",
            "Rows the database refused from the current run.",
            labels=labels,
        )
        buffered = GaugeMetricFamily(
            "kirby_collector_buffered_rows",
            "Rows (or frames, outages) waiting in the collector for its next flush.",
            labels=["exchange", "buffer"],
        )
        beat = self._heartbeat
        if beat is not None:
            now = self._read_at
            for name, feed in feed_reports(beat["feeds"]).items():
                # One collector serves every exchange: its heartbeat, lag and buffers are
                # each exchange's; state, reconnects and the last message are the feed's own.
                exchange = [name]
                age.add_metric(exchange, (now - beat["heartbeat_at"]).total_seconds())
                if feed.last_message_at is not None:
                    seconds = (now - feed.last_message_at).total_seconds()
                    last_message.add_metric(exchange, seconds)
                if beat["covered_through"] is not None:
                    lag.add_metric(exchange, (now - beat["covered_through"]).total_seconds())
                current = "stopped" if beat["state"] == "stopped" else feed.state
                for option in _STATES:
                    state.add_metric([name, option], 1.0 if current == option else 0.0)
                reconnects.add_metric(exchange, float(feed.reconnects))
                dropped.add_metric(exchange, float(beat["dropped_rows"]))
                refused.add_metric(exchange, float(beat["refused_rows"]))
                for buffer, size in sorted(jsonb_counts(beat["buffer_sizes"]).items()):
                    buffered.add_metric([name, buffer], float(size))
        yield from (age, last_message, lag, state, reconnects, dropped, refused, buffered)
        yield from self._book_families()

    def _book_families(self) -> Iterator[Metric]:
        """Each exchange's order books (`FeedReport.books`) in the newest heartbeat."""
        counters = {
            name: CounterMetricFamily(f"kirby_collector_book_{name}", text, labels=["exchange"])
            for name, text in _BOOK_COUNTERS.items()
        }
        stale = CounterMetricFamily(
            "kirby_collector_book_stale_seconds",
            "Seconds books were not trustworthy (after a gap, a lost feed, or too quiet).",
            labels=["exchange"],
        )
        kept = GaugeMetricFamily(
            "kirby_collector_books",
            "Order books the collector keeps (state=kept) and those whole now (state=whole).",
            labels=["exchange", "state"],
        )
        beat = self._heartbeat
        for name, feed in feed_reports(beat["feeds"] if beat else None).items():
            books = feed.books
            if books is None:
                continue
            for counter, family in counters.items():
                family.add_metric([name], float(getattr(books, counter)))
            stale.add_metric([name], books.stale_ms / 1000)
            kept.add_metric([name, "kept"], float(books.books))
            kept.add_metric([name, "whole"], float(books.whole))
        yield from (*counters.values(), stale, kept)


_BOOK_COUNTERS = {
    "updates": "Depth updates applied to the collector's order books.",
    "gaps": "Sequence gaps found in the exchange's depth stream (each one resynced).",
    "resyncs": "Books made whole again by a new snapshot after a gap or a lost feed.",
    "crossed": "Depth updates after which a book was crossed (never stored).",
    "snapshots_refused": "REST depth snapshots the exchange refused (429/418), each retried "
    "after its Retry-After.",
}


def jsonb_counts(raw: str | bytes | Mapping[str, Any] | None) -> dict[str, int]:
    """A jsonb counter object of a heartbeat row (asyncpg hands jsonb over as text)."""
    if raw is None:
        return {}
    decoded = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return {str(name): int(value) for name, value in decoded.items()}


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
        self.operations = Operations()
        r.register(self.operations)
        self.backups = BackupAges()
        r.register(self.backups)
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
