"""GET /coverage/candles/... and /coverage/{dataset}/...: per-day completeness of one series.

Every recorded dataset (`kirby_core.datasets.RECORDED_DATASETS`) has coverage: candles per
starlisting, the others (funding, open interest, trades, books) per trading pair under one
route whose `dataset` segment is the dataset's API name with `-` for `_`
(`PAIR_DATASETS`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import PathParameter, QueryParameter

from kirby_api.coverage import DEFAULT_DAYS, MAX_DAYS, DayCoverage, day_coverage
from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_CANDLES, SERVED_DATASETS, ServedDataset
from kirby_api.errors import InvalidParameter
from kirby_api.routes.paths import SERIES_ERRORS, Coin, Exchange, Interval, MarketType, Quote
from kirby_api.series import SeriesCatalog
from kirby_api.window import TIME_ALLOWED, parse_time
from kirby_core.datasets import RECORDED_DATASETS
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.db.coverage import source_window
from kirby_core.db.readers import coverage_interval
from kirby_core.exchanges.registry import live_collection

Day = Annotated[
    str | None,
    QueryParameter(
        description=f"{TIME_ALLOWED}; the UTC day containing it. Default: the last "
        f"{DEFAULT_DAYS} days up to today. At most {MAX_DAYS} days per request.",
    ),
]
_LAST_DAY = date(9999, 12, 30)  # the day after it must still be a date

PAIR_DATASETS: dict[str, ServedDataset] = {
    SERVED_DATASETS[name].channel.replace("_", "-"): SERVED_DATASETS[name]
    for name in RECORDED_DATASETS
    if not SERVED_DATASETS[name].per_starlisting
}
"""The `dataset` segment of /coverage/{dataset}/... -> the trading-pair dataset it names."""
_ALLOWED = ", ".join(PAIR_DATASETS)
CoveredDataset = Annotated[
    str,
    PathParameter(
        description=f"The trading-pair dataset: one of {_ALLOWED} (candles: "
        "/coverage/candles/.../{interval})",
        examples=[Example(value=name) for name in PAIR_DATASETS],
        enum=list(PAIR_DATASETS),
    ),
]


class CoverageMetadata(msgspec.Struct):
    series: str
    dataset: str
    interval: str
    """Rows are expected once per interval (candles: the series'; funding: per settlement;
    open interest: per point of the exchange's history; trades and books: per minute)."""
    start_date: date
    end_date: date
    """Inclusive."""
    source_available_from: datetime | None
    """Oldest time the exchange still serves; null: all of its history."""
    source_note: str
    live_collection: Literal["websocket", "polled", "none"]
    """How the collector takes this series live: pushed on the exchange's WebSocket, polled
    from its REST API once a minute (what its WebSocket lacks: Binance's open interest,
    Coinbase's 1m/15m/1d candles), or not at all."""


class CoverageResponse(msgspec.Struct):
    data: list[DayCoverage]
    metadata: CoverageMetadata


def _days(start_time: str | None, end_time: str | None, now: datetime) -> tuple[date, date]:
    """[first day, day after the last) from the parameters."""
    end = parse_time("end_time", end_time).date() if end_time else now.date()
    end = min(end, _LAST_DAY)
    start = (
        parse_time("start_time", start_time).date()
        if start_time
        else end - timedelta(days=DEFAULT_DAYS - 1)
    )
    if start > end:
        raise InvalidParameter(
            "start_time",
            f"start_time ({start}) is after end_time ({end})",
            "a day at or before end_time",
        )
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidParameter(
            "start_time",
            f"{(end - start).days + 1} days requested; at most {MAX_DAYS} per request",
            f"a range of at most {MAX_DAYS} days",
        )
    return start, end + timedelta(days=1)


async def _coverage(
    database: ConnectionPool,
    dataset: ServedDataset,
    series: Starlisting | TradingPair,
    start_time: str | None,
    end_time: str | None,
) -> CoverageResponse:
    now = datetime.now(UTC)
    start, end = _days(start_time, end_time, now)
    own = series.key.interval if isinstance(series, Starlisting) else "1m"
    exchange, market_type = series.key.exchange, series.key.market_type
    interval = coverage_interval(dataset.name, own, exchange)
    retention = source_window(exchange, dataset.name, interval, now, market_type)
    days = await day_coverage(
        database, dataset, series.id, own, exchange, start, end, retention, now
    )
    metadata = CoverageMetadata(
        series=str(series.key),
        dataset=dataset.name,
        interval=interval,
        start_date=start,
        end_date=end - timedelta(days=1),
        source_available_from=retention.oldest,
        source_note=retention.note,
        live_collection=live_collection(exchange, market_type, dataset.name, own),
    )
    return CoverageResponse(days, metadata)


@get(
    "/coverage/candles/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}/{interval:str}",
    summary="Per-day completeness of a starlisting's candles",
    responses=SERIES_ERRORS,
)
async def get_candle_coverage(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    interval: Interval,
    catalog: NamedDependency[SeriesCatalog],
    database: NamedDependency[ConnectionPool],
    start_time: Day = None,
    end_time: Day = None,
) -> CoverageResponse:
    star = catalog.starlisting(exchange, coin, quote, market_type, interval)
    return await _coverage(database, SERVED_CANDLES, star, start_time, end_time)


@get(
    "/coverage/{dataset:str}/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}",
    summary="Per-day completeness of a trading pair's funding, open interest, trades or books",
    description="Every minute (funding: settlement; open interest: history point) of each "
    "day is present or missing for one reason: unavailable at source, no trades (trades: "
    "also a quiet minute the live feed watched), collector outage, or unexplained. Books "
    "also count the minutes whose book saw a sequence gap (`integrity_gap_minutes`).",
    responses=SERIES_ERRORS,
)
async def get_pair_coverage(
    dataset: CoveredDataset,
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    catalog: NamedDependency[SeriesCatalog],
    database: NamedDependency[ConnectionPool],
    start_time: Day = None,
    end_time: Day = None,
) -> CoverageResponse:
    served = PAIR_DATASETS.get(dataset.lower())
    if served is None:
        raise InvalidParameter(
            "dataset", f"unknown coverage dataset {dataset!r}", f"one of {_ALLOWED}"
        )
    pair = catalog.trading_pair(exchange, coin, quote, market_type)
    return await _coverage(database, served, pair, start_time, end_time)
