"""Partitions shared by Kirby's assets: UTC days, and days x series.

Backfill assets are partitioned by day x series (a starlisting, or a trading pair); the
series dimension is dynamic: syncing a catalog registers each active series as a partition
key, coin first (`series_key`: `BTC@hyperliquid/USD/perps/1m`), because the Dagster UI
shortens long keys in the middle and `hyperliquid/…USD/perps/1m` hid which coin it was.
Keys of the older `hyperliquid/BTC/USD/perps/1m` spelling are translated where they are
stored (`current_key`: dynamic partitions at the next sync, sensor cursors when read).
Lake exports and SQL models are partitioned by day only: one partition covers every series
of that day. Days start where the database's data can (`FIRST_DAYS`), not at one date for
everything.

Days end yesterday (no `end_offset`): a day is a partition once it is complete, so daily
automation always targets a whole day. Today's gaps wait for midnight; Hyperliquid keeps
3.5 days of 1m candles, long enough for that.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import dagster as dg

from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.settings import Database

FIRST_DAYS: dict[Database, str] = {
    "realtime": "2023-05-12",
    "training": "2020-01-01",
}
"""The first day a partition can hold data, per database, declared here only; every day
dimension derives from it. realtime: Hyperliquid's candle and funding history begins on
2023-05-12 (its daily candles reach back that far; the 1m ones only ~3.5 days, which the
backfills report as unavailable at source). training: Kirby's training set starts in 2020
(Binance spot history reaches 2017, USDⓈ-M futures 2019-09); move it earlier here to backfill
older years."""

REALTIME_DAYS = dg.DailyPartitionsDefinition(start_date=FIRST_DAYS["realtime"])
TRAINING_DAYS = dg.DailyPartitionsDefinition(start_date=FIRST_DAYS["training"])
DAYS = {"realtime": REALTIME_DAYS, "training": TRAINING_DAYS}
DAILY = DAYS[min(FIRST_DAYS, key=FIRST_DAYS.__getitem__)]
"""Days of the lake exports and SQL models, from the earliest first day: one day axis for all
of them, because one run (`kirby export`, a lake backfill) exports every table and builds the
models, and Dagster runs only assets of one partitions definition together."""
STARLISTINGS = dg.DynamicPartitionsDefinition(name="starlistings")
"""Realtime candle series (hyperliquid/BTC/USD/perps/1m)."""
TRADING_PAIRS = dg.DynamicPartitionsDefinition(name="trading_pairs")
"""Realtime funding-rate and open-interest series (hyperliquid/BTC/USD/perps)."""
TRAINING_STARLISTINGS = dg.DynamicPartitionsDefinition(name="training_starlistings")
"""Training candle series (binance/BTC/USDT/spot/1m)."""


def name_of(partitions: dg.DynamicPartitionsDefinition) -> str:
    """The name of one of the definitions above (Dagster's type allows none; these have one)."""
    assert partitions.name is not None
    return partitions.name


def by_day_and(
    days: dg.DailyPartitionsDefinition, series: dg.DynamicPartitionsDefinition
) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"date": days, "series": series})


CANDLE_PARTITIONS = by_day_and(REALTIME_DAYS, STARLISTINGS)
FUNDING_PARTITIONS = by_day_and(REALTIME_DAYS, TRADING_PAIRS)
OPEN_INTEREST_PARTITIONS = FUNDING_PARTITIONS
"""Open interest is a trading pair's too: the same days x pairs as funding."""
TRADE_PARTITIONS = FUNDING_PARTITIONS
"""Trades are a trading pair's too (issue 15): the same days x pairs."""
TRAINING_CANDLE_PARTITIONS = by_day_and(TRAINING_DAYS, TRAINING_STARLISTINGS)

MAX_DAYS_PER_RUN = 100
"""A backfill run covers up to 100 days of one series: a year is four runs. One history
client (the series' exchange's) and one database connection serve the run."""
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(MAX_DAYS_PER_RUN)


def backfill_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset(backfill_policy=BACKFILL_POLICY, ...)` without its BetaWarning: the
    parameter is marked beta in 1.13, although multi-run backfills are the documented way to
    batch partitions (and `filterwarnings = error` would turn the warning into a failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        decorator = dg.asset(
            backfill_policy=kwargs.pop("backfill_policy", BACKFILL_POLICY), **kwargs
        )

    def apply(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return decorator(fn)

    return apply


SeriesKey = StarlistingKey | TradingPairKey


def series_key(key: SeriesKey) -> str:
    """The partition key of a series: `BTC@hyperliquid/USD/perps/1m` (a starlisting),
    `BTC@hyperliquid/USD/perps` (a trading pair)."""
    rest = [key.exchange, key.quote, key.market_type]
    if isinstance(key, StarlistingKey):
        rest.append(key.interval)
    return f"{key.coin}@{'/'.join(rest)}"


def parse_series(text: str) -> SeriesKey:
    """The series of a partition key, in either spelling (`series_key`'s or the older
    `exchange/coin/quote/market_type[/interval]`)."""
    if "@" in text:
        coin, rest = text.split("@", 1)
        exchange, *others = rest.split("/")
        parts = [exchange, coin, *others]
    else:
        parts = text.split("/")
    if len(parts) == 5:
        return StarlistingKey(*parts)
    if len(parts) == 4:
        return TradingPairKey(*parts)
    raise ValueError(f"not a series partition key: {text!r}")


def current_key(text: str) -> str:
    """A stored series key in today's spelling."""
    return series_key(parse_series(text))


def partition_key(day: date, series: str) -> str:
    """The multi-partition key string of (day, series): dimensions in name order."""
    return f"{day.isoformat()}|{series}"


def days_by_series(keys: Iterable[str | dg.MultiPartitionKey]) -> dict[str, list[date]]:
    """Multi-partition keys grouped by series, days ascending."""
    grouped: dict[str, set[date]] = {}
    for key in keys:
        day, series = str(key).split("|", 1)
        grouped.setdefault(series, set()).add(date.fromisoformat(day))
    return {series: sorted(days) for series, days in grouped.items()}


def day_ranges(days: Sequence[date], max_days: int) -> list[tuple[date, date]]:
    """Runs of consecutive days as inclusive (first, last) pairs, each at most `max_days`."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges:
            first, last = ranges[-1]
            if day == last + timedelta(days=1) and (day - first).days < max_days:
                ranges[-1] = (first, day)
                continue
        ranges.append((day, day))
    return ranges
