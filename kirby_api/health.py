"""What /health reports: the database, the stream's heartbeat, per-series data freshness
(every recorded dataset, `kirby_core.datasets.RECORDED_DATASETS`: candles per starlisting;
funding, open interest, trades and books per trading pair).

Overall status: `ok`; `degraded` when the stream's newest heartbeat is older than
`api_stream_stale_seconds` (or there is none), says its collector is degraded (it cannot
reach the exchange, or received nothing for the stall time: `stream.reason` says which) or
stopped, or the LISTEN connection is down — the API still serves stored data; `down` when
the database does not answer (HTTP 503). A failing
database is the expected outcome to report here, so this is the one place that turns a
`StorageError` into data instead of an error response.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import msgspec

from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_DATASETS
from kirby_api.market_data import MarketData
from kirby_api.observability import Freshness
from kirby_api.series import SeriesCatalog
from kirby_core.datasets import RECORDED_DATASETS
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.errors import StorageError
from kirby_core.models import feed_reports


class DatabaseHealth(msgspec.Struct):
    status: Literal["ok", "down"]
    latency_ms: float | None
    error: str | None = None


class ExchangeHealth(msgspec.Struct):
    state: Literal["starting", "running", "degraded", "stopped"]
    last_error: str | None
    """Why its feed is degraded (cannot reach it, a stall, a failed poll)."""


class CollectorHealth(msgspec.Struct):
    collector_id: str
    hostname: str
    heartbeat_at: datetime
    age_seconds: float
    last_message_at: datetime | None
    state: Literal["starting", "running", "degraded", "stopped"]
    last_error: str | None
    """Why the collector is degraded (each degraded exchange's reason)."""
    exchanges: dict[str, ExchangeHealth] = {}
    """Each exchange the collector serves, by name: its own state."""


class StreamHealth(msgspec.Struct):
    status: Literal["ok", "degraded", "stopped", "stale", "missing", "unknown"]
    heartbeat_age_seconds: float | None
    """Age of the newest heartbeat of any collector."""
    stale_after_seconds: float
    collectors: list[CollectorHealth]
    reason: str | None = None
    """Why the stream is degraded (the newest collector's `last_error`)."""


class SeriesFreshness(msgspec.Struct):
    dataset: str
    series: str
    series_id: int
    latest_time: datetime | None
    """Time of the newest stored row (candles: its open time); null: no rows yet."""
    age_seconds: float | None


class ListenerHealth(msgspec.Struct):
    connected: bool
    """The LISTEN connection that feeds WebSocket clients is up."""


class Health(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    checked_at: datetime
    database: DatabaseHealth
    stream: StreamHealth
    listener: ListenerHealth
    freshness: list[SeriesFreshness]


_HEARTBEATS = "SELECT * FROM stream_heartbeats ORDER BY heartbeat_at DESC"


async def probe(
    database: ConnectionPool,
    market: MarketData,
    catalog: SeriesCatalog,
    freshness: Freshness,
    listening: bool,
    stale_after: float,
) -> tuple[Health, list[asyncpg.Record]]:
    """The health, and the collectors' whole heartbeat rows (newest first; their counters
    are what /status adds) from the same read."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    try:
        await database.fetchval("SELECT 1")
        latency = (time.perf_counter() - started) * 1000
        heartbeats = await database.fetch(_HEARTBEATS)
        series = await _freshness(market, catalog, freshness, now)
    except StorageError as exc:
        down = Health(
            status="down",
            checked_at=now,
            database=DatabaseHealth("down", None, str(exc)),
            stream=StreamHealth("unknown", None, stale_after, []),
            listener=ListenerHealth(listening),
            freshness=[],
        )
        return down, []
    collectors = [
        CollectorHealth(
            r["collector_id"],
            r["hostname"],
            r["heartbeat_at"],
            round((now - r["heartbeat_at"]).total_seconds(), 3),
            r["last_message_at"],
            r["state"],
            r["last_error"],
            {
                name: ExchangeHealth(
                    "stopped" if r["state"] == "stopped" else feed.state, feed.last_error
                )
                for name, feed in feed_reports(r["feeds"]).items()
            },
        )
        for r in heartbeats
    ]
    stream_status, reason = _stream_status(collectors[0] if collectors else None, stale_after)
    age = collectors[0].age_seconds if collectors else None
    health = Health(
        status="ok" if stream_status == "ok" and listening else "degraded",
        checked_at=now,
        database=DatabaseHealth("ok", round(latency, 3)),
        stream=StreamHealth(stream_status, age, stale_after, collectors, reason),
        listener=ListenerHealth(listening),
        freshness=series,
    )
    return health, heartbeats


def _stream_status(
    newest: CollectorHealth | None, stale_after: float
) -> tuple[Literal["ok", "degraded", "stopped", "stale", "missing"], str | None]:
    if newest is None:
        return "missing", None
    if newest.age_seconds > stale_after:
        return "stale", None
    if newest.state == "degraded":
        return "degraded", newest.last_error
    if newest.state == "stopped":
        return "stopped", None
    return "ok", None


async def _freshness(
    market: MarketData, catalog: SeriesCatalog, freshness: Freshness, now: datetime
) -> list[SeriesFreshness]:
    stars = [s for s in catalog.starlistings if s.active]
    pairs = [p for p in catalog.trading_pairs if p.active]
    report = []
    for name in RECORDED_DATASETS:  # every dataset Kirby records, trades and books too
        dataset = SERVED_DATASETS[name]
        series: Sequence[Starlisting | TradingPair] = stars if dataset.per_starlisting else pairs
        latest = await market.latest_times(dataset, [s.id for s in series])
        for item in series:
            moment = latest.get(item.id)
            freshness.observe(dataset.name, str(item.key), moment, _interval(item))
            age = round((now - moment).total_seconds(), 3) if moment else None
            report.append(SeriesFreshness(dataset.name, str(item.key), item.id, moment, age))
    return report


def _interval(series: Starlisting | TradingPair) -> str:
    """A series' row interval: a starlisting's own, one minute for funding and OI."""
    return series.key.interval if isinstance(series, Starlisting) else "1m"
