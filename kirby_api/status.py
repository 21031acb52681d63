"""What the /status page shows, assembled from the probes that already exist.

- database, stream and listener state and per-series freshness: `kirby_api.health.probe`
  (the same reads as /health);
- the collectors' counters (messages, invalid messages, dropped rows, reconnects, rows
  written, buffers): from the heartbeat rows that probe read, which /health reports only
  as liveness;
- per exchange (`exchanges`): the newest collector's feed of it (state, why degraded,
  messages, errors, reconnects, outages) and how many of its series are fresh, lagging or
  empty; each series names its exchange;
- order books (`books`): per trading pair, its `book_integrity` summed over the last
  `BOOK_WINDOW_MINUTES` (updates, gaps, resyncs, stale time, crossed) and its newest
  sample; per exchange, the heartbeat's book counters (`ExchangeStatus.books`);
- per-day coverage of every active series: `kirby_api.coverage.day_coverage`, the same
  reader as the /coverage routes;
- WebSocket clients: the hub's connections and the metrics' counters.

A snapshot is shared for `ttl` seconds by every caller and assembled by one at a time: the
page is public, unmetered and polled, and one snapshot costs a query per series. Nothing
here exposes key ids or secrets; the WebSocket figures are counts only.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
import msgspec

from kirby_api.coverage import DayCoverage, day_coverage
from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_DATASETS
from kirby_api.health import DatabaseHealth, Health, SeriesFreshness, probe
from kirby_api.market_data import MarketData
from kirby_api.observability import Metrics, jsonb_counts
from kirby_api.series import SeriesCatalog
from kirby_api.ws.hub import Hub
from kirby_api.ws.listener import ChangeListener
from kirby_core.datasets import UNPACED_DATASETS
from kirby_core.db.coverage import source_window
from kirby_core.db.readers import coverage_interval
from kirby_core.errors import NotFound
from kirby_core.models import BookReport, feed_reports
from kirby_core.timeutil import floor_time, interval_seconds

DEFAULT_STATUS_DAYS = 3
MAX_STATUS_DAYS = 14
BOOK_WINDOW_MINUTES = 60
_BOOK_INTEGRITY = """
SELECT i.trading_pair_id, sum(i.updates) AS updates, sum(i.gaps) AS gaps,
       sum(i.resyncs) AS resyncs, sum(i.stale_ms) AS stale_ms, sum(i.crossed) AS crossed,
       count(*) AS minutes,
       (SELECT max(b.time) FROM books b
        WHERE b.trading_pair_id = i.trading_pair_id AND b.time >= $1) AS latest_sample
FROM book_integrity i WHERE i.time >= $1
GROUP BY i.trading_pair_id ORDER BY i.trading_pair_id
"""


class CollectorStatus(msgspec.Struct):
    collector_id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    last_message_at: datetime | None
    last_message_age_seconds: float | None
    state: Literal["starting", "running", "degraded", "stopped"]
    last_error: str | None
    """Why the collector is degraded."""
    messages_received: int
    invalid_messages: int
    dropped_rows: int
    """Buffered rows dropped past the memory bound (recorded as outages)."""
    refused_rows: int
    """Rows the database refused (bad data, a constraint): rejected, logged, counted."""
    reconnects: int
    rows_written: dict[str, int]
    """Per table, since the collector started."""
    buffer_sizes: dict[str, int]
    """Rows waiting for the next flush, per table."""
    stale: bool
    """The heartbeat is older than `stream.stale_after_seconds`."""


class ExchangeStatus(msgspec.Struct):
    """One exchange: its feed's state in the newest collector, and its series' freshness."""

    exchange: str
    state: Literal["starting", "running", "degraded", "stopped", "unknown"]
    """unknown: the newest collector does not serve it (yet)."""
    last_error: str | None
    messages_received: int
    invalid_messages: int
    channel_errors: int
    """Errors the exchange itself sent (a refused subscription...)."""
    reconnects: int
    outages: int
    """Outage rows the newest collector recorded for its series."""
    last_message_at: datetime | None
    series: int
    fresh: int
    lagging: int
    quiet: int
    """Trade tapes with no trade in the last minute (`SeriesStatus.state` quiet)."""
    empty: int
    books: BookReport | None = None
    """Its order books' counters in the newest collector (null: it keeps none)."""


class BookStatus(msgspec.Struct):
    """One trading pair's order book over the last `window_minutes` (`book_integrity`)."""

    exchange: str
    pair: str
    trading_pair_id: int
    window_minutes: int
    minutes: int
    """Minutes of the window with integrity counted (the collector kept the book)."""
    updates: int
    gaps: int
    """Sequence gaps found (each one resynced and recorded as a `books` outage)."""
    resyncs: int
    stale_seconds: float
    """Time the book was not trustworthy (after a gap, a lost feed, or too quiet)."""
    crossed: int
    latest_sample: datetime | None
    """Newest stored top-N sample (`books`) within the window."""


class StreamStatus(msgspec.Struct):
    status: Literal["ok", "degraded", "stopped", "stale", "missing", "unknown"]
    stale_after_seconds: float
    collectors: list[CollectorStatus]
    reason: str | None = None
    """Why the stream is degraded, as /health says."""


class SeriesStatus(msgspec.Struct):
    exchange: str
    dataset: str
    series: str
    series_id: int
    interval: str
    latest_time: datetime | None
    """Newest stored row (candles: its open time); null: no rows yet."""
    age_seconds: float | None
    lag_seconds: float | None
    """How far the newest row is behind the current interval's open (0: it is stored)."""
    state: Literal["fresh", "lagging", "quiet", "empty"]
    """lagging: at least one whole interval is missing at the end; quiet: the same of a
    series with no cadence (the trade tape, `UNPACED_DATASETS`): no trade in that time,
    which its exchange's feed state tells from lag."""


class SeriesCoverage(msgspec.Struct):
    dataset: str
    series: str
    interval: str
    days: list[DayCoverage]
    """Oldest first, today last."""


class ClientsStatus(msgspec.Struct):
    connections: int
    keys: int
    """Distinct API keys holding a connection (0 with authentication off)."""
    subscriptions: int
    """Starlisting subscriptions over all connections."""
    messages_sent: int
    messages_dropped: int
    listener_connected: bool
    """The LISTEN connection that feeds live rows is up."""


class Status(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    """As /health: degraded when the stream is stale, degraded or stopped, or the listener
    is down."""
    checked_at: datetime
    database: DatabaseHealth
    stream: StreamStatus
    exchanges: list[ExchangeStatus]
    """Per exchange, by name: its feed and its series at a glance."""
    series: list[SeriesStatus]
    coverage: list[SeriesCoverage]
    websocket: ClientsStatus
    books: list[BookStatus] = msgspec.field(default_factory=list)
    """Per trading pair whose book the collector keeps: integrity of the last hour."""


class StatusBoard:
    def __init__(
        self,
        database: ConnectionPool,
        market: MarketData,
        catalog: SeriesCatalog,
        hub: Hub,
        listener: ChangeListener,
        metrics: Metrics,
        stale_after: float,
        ttl: float = 1.0,
    ) -> None:
        self._database = database
        self._market = market
        self._catalog = catalog
        self._hub = hub
        self._listener = listener
        self._metrics = metrics
        self._stale_after = stale_after
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._cached: dict[int, tuple[float, Status]] = {}
        """days -> (expiry on the monotonic clock, snapshot); at most MAX_STATUS_DAYS entries."""

    async def snapshot(self, days: int = DEFAULT_STATUS_DAYS) -> Status:
        """The status with `days` of coverage (today included), at most `ttl` seconds old."""
        async with self._lock:  # one assembly at a time; callers meanwhile get its result
            cached = self._cached.get(days)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            status = await self._assemble(days)
            self._cached[days] = (time.monotonic() + self._ttl, status)
            return status

    async def _assemble(self, days: int) -> Status:
        health, heartbeats = await probe(
            self._database,
            self._market,
            self._catalog,
            self._metrics.freshness,
            self._listener.connected.is_set(),
            self._stale_after,
        )
        now = health.checked_at
        series = [self._series(item, now) for item in health.freshness]
        down = health.status == "down"
        return Status(
            status=health.status,
            checked_at=now,
            database=health.database,
            stream=StreamStatus(
                health.stream.status,
                self._stale_after,
                self._collectors(health, heartbeats, now),
                health.stream.reason,
            ),
            exchanges=self._exchanges(heartbeats, series),
            series=series,
            coverage=[] if down else await self._coverage(series, days, now),
            websocket=self._clients(health.listener.connected),
            books=[] if down else await self._books(now),
        )

    async def _books(self, now: datetime) -> list[BookStatus]:
        rows = await self._database.fetch(
            _BOOK_INTEGRITY, now - timedelta(minutes=BOOK_WINDOW_MINUTES)
        )
        report = []
        for row in rows:
            try:
                key = self._catalog.trading_pair_by_id(row["trading_pair_id"]).key
            except NotFound:  # a pair no longer in the catalog
                continue
            report.append(
                BookStatus(
                    exchange=key.exchange,
                    pair=str(key),
                    trading_pair_id=row["trading_pair_id"],
                    window_minutes=BOOK_WINDOW_MINUTES,
                    minutes=row["minutes"],
                    updates=row["updates"],
                    gaps=row["gaps"],
                    resyncs=row["resyncs"],
                    stale_seconds=row["stale_ms"] / 1000,
                    crossed=row["crossed"],
                    latest_sample=row["latest_sample"],
                )
            )
        return report

    def _collectors(
        self, health: Health, rows: list[asyncpg.Record], now: datetime
    ) -> list[CollectorStatus]:
        """`health`'s collectors (ages computed there) with the counters of their rows."""
        collectors = []
        for beat, row in zip(health.stream.collectors, rows, strict=True):
            last = beat.last_message_at
            collectors.append(
                CollectorStatus(
                    collector_id=beat.collector_id,
                    hostname=beat.hostname,
                    pid=row["pid"],
                    started_at=row["started_at"],
                    heartbeat_at=beat.heartbeat_at,
                    heartbeat_age_seconds=beat.age_seconds,
                    last_message_at=last,
                    last_message_age_seconds=_age(now, last),
                    state=beat.state,
                    last_error=beat.last_error,
                    messages_received=row["messages_received"],
                    invalid_messages=row["invalid_messages"],
                    dropped_rows=row["dropped_rows"],
                    refused_rows=row["refused_rows"],
                    reconnects=row["reconnects"],
                    rows_written=jsonb_counts(row["rows_written"]),
                    buffer_sizes=jsonb_counts(row["buffer_sizes"]),
                    stale=beat.age_seconds > self._stale_after,
                )
            )
        return collectors

    def _exchanges(
        self, rows: list[asyncpg.Record], series: list[SeriesStatus]
    ) -> list[ExchangeStatus]:
        feeds = feed_reports(rows[0]["feeds"]) if rows else {}
        stopped = bool(rows) and rows[0]["state"] == "stopped"
        by_exchange: dict[str, list[SeriesStatus]] = {}
        for item in series:
            by_exchange.setdefault(item.exchange, []).append(item)
        report = []
        for name in sorted(set(feeds) | set(by_exchange)):
            feed = feeds.get(name)
            mine = by_exchange.get(name, [])
            states = [item.state for item in mine]
            report.append(
                ExchangeStatus(
                    exchange=name,
                    state="unknown" if feed is None else "stopped" if stopped else feed.state,
                    last_error=None if feed is None else feed.last_error,
                    messages_received=0 if feed is None else feed.messages_received,
                    invalid_messages=0 if feed is None else feed.invalid_messages,
                    channel_errors=0 if feed is None else feed.channel_errors,
                    reconnects=0 if feed is None else feed.reconnects,
                    outages=0 if feed is None else feed.outages,
                    last_message_at=None if feed is None else feed.last_message_at,
                    series=len(mine),
                    fresh=states.count("fresh"),
                    lagging=states.count("lagging"),
                    quiet=states.count("quiet"),
                    empty=states.count("empty"),
                    books=None if feed is None else feed.books,
                )
            )
        return report

    def _series(self, item: SeriesFreshness, now: datetime) -> SeriesStatus:
        dataset = SERVED_DATASETS[item.dataset]
        interval = "1m"
        if dataset.per_starlisting:
            key = self._catalog.starlisting_by_id(item.series_id).key
            interval, exchange = key.interval, key.exchange
        else:
            exchange = self._catalog.trading_pair_by_id(item.series_id).key.exchange
        lag = None
        state: Literal["fresh", "lagging", "quiet", "empty"] = "empty"
        if item.latest_time is not None:
            lag = max((floor_time(now, interval) - item.latest_time).total_seconds(), 0.0)
            if lag <= interval_seconds(interval):
                state = "fresh"
            else:
                state = "quiet" if item.dataset in UNPACED_DATASETS else "lagging"
        return SeriesStatus(
            exchange,
            item.dataset,
            item.series,
            item.series_id,
            interval,
            item.latest_time,
            item.age_seconds,
            lag,
            state,
        )

    async def _coverage(
        self, series: list[SeriesStatus], days: int, now: datetime
    ) -> list[SeriesCoverage]:
        end = now.date() + timedelta(days=1)
        start = end - timedelta(days=days)
        report = []
        for item in series:
            dataset = SERVED_DATASETS[item.dataset]
            key = (
                self._catalog.starlisting_by_id(item.series_id).key
                if dataset.per_starlisting
                else self._catalog.trading_pair_by_id(item.series_id).key
            )
            exchange = key.exchange
            retention = source_window(exchange, dataset.name, item.interval, now, key.market_type)
            found = await day_coverage(
                self._database,
                dataset,
                item.series_id,
                item.interval,
                exchange,
                start,
                end,
                retention,
                now,
            )
            # funding: the exchange's settlements
            counted_in = coverage_interval(dataset.name, item.interval, exchange)
            report.append(SeriesCoverage(item.dataset, item.series, counted_in, found))
        return report

    def _clients(self, listening: bool) -> ClientsStatus:
        clients = tuple(self._hub.clients)
        registry = self._metrics.registry
        sent = registry.get_sample_value("kirby_api_ws_messages_sent_total") or 0.0
        dropped = sum(
            sample.value
            for metric in self._metrics.ws_dropped.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        return ClientsStatus(
            connections=len(clients),
            keys=sum(1 for key in self._hub.per_key if key is not None),
            subscriptions=sum(len(client.subscriptions) for client in clients),
            messages_sent=int(sent),
            messages_dropped=int(dropped),
            listener_connected=listening,
        )


def _age(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else round((now - moment).total_seconds(), 3)
