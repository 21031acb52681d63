"""Run requests for backfill partitions: rectangles of days x series, recent days first.

A request names one asset and a partition-key range whose two ends are (first day, first
series) and (last day, last series): Dagster reads it as the rectangle between them, which
is what a multi-run backfill launches too. Series are grouped into blocks that are
contiguous in the dynamic partitions' order, so a range never sweeps in a series that was
not asked for, and that hold one exchange's series only (a run never mixes exchanges); days
into runs of at most `MAX_DAYS_PER_RUN`. Every request carries `EXCHANGE_TAG`, the exchange's
pool name: dagster.yaml lets one run per value be in progress, whoever launched it
(`run_queue.KirbyRunCoordinator` tags the runs Dagster builds itself, UI backfills).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from kirby_core.db import coverage
from kirby_core.db.readers import coverage_interval
from kirby_core.exchanges.registry import declaration
from kirby_pipelines.backfills import BACKFILLED
from kirby_pipelines.partitions import MAX_DAYS_PER_RUN, day_ranges, parse_series, partition_key

# Dagster's own tags for a run over a partition range (dagster._core.storage.tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PRIORITY_TAG = "dagster/priority"
REASON_TAG = "kirby/reason"
PARTITION_TAG = "dagster/partition"
EXCHANGE_TAG = "kirby/exchange"
"""The exchange a backfill run fetches from, by its declaration's `pool` name: dagster.yaml
allows one run in progress per value, so backfills never add up past its REST weight limit."""


def exchange_of(series: str) -> str:
    """The pool name of the exchange of `series` (a partition key)."""
    exchange = parse_series(series).exchange
    declared = declaration(exchange)
    if declared is None:
        raise ValueError(f"{series}: exchange {exchange!r} has no declaration in the registry")
    return declared.pool


def exchange_tags(series: Sequence[str]) -> dict[str, str]:
    """`EXCHANGE_TAG` of a run over `series`; ValueError when they are of several exchanges."""
    exchanges = sorted({exchange_of(s) for s in series})
    if len(exchanges) != 1:
        raise ValueError(
            f"a backfill run fetches from one exchange; these series are of {exchanges}: "
            + ", ".join(sorted(series)[:10])
        )
    return {EXCHANGE_TAG: exchanges[0]}


def by_exchange(keys: Sequence[str]) -> dict[str, list[str]]:
    """Partition keys (day|series) grouped by their series' exchange (pool name), in order:
    one backfill per exchange, so the runs Dagster cuts from it never mix exchanges."""
    grouped: dict[str, list[str]] = {}
    for key in keys:
        grouped.setdefault(exchange_of(key.split("|", 1)[1]), []).append(key)
    return grouped


def run_series(tags: Mapping[str, str], order: Sequence[str]) -> list[str]:
    """The series a backfill run covers, from its partition tags (a single partition, or
    the rectangle of a range: every series between its two ends in `order`, the dynamic
    partitions' order); empty when the run names no series partition."""
    if PARTITION_TAG in tags and "|" in tags[PARTITION_TAG]:
        return [tags[PARTITION_TAG].split("|", 1)[1]]
    if RANGE_START_TAG not in tags or "|" not in tags[RANGE_START_TAG]:
        return []
    first = tags[RANGE_START_TAG].split("|", 1)[1]
    last = tags[RANGE_END_TAG].split("|", 1)[1]
    if first not in order or last not in order:
        return sorted({first, last})
    start, end = sorted((order.index(first), order.index(last)))
    return list(order[start : end + 1])


def series_blocks(series: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """`series` split into runs that are contiguous in `order` and of one exchange (unknown
    ones left out)."""
    position = {key: i for i, key in enumerate(order)}
    wanted = sorted((position[s], s) for s in set(series) if s in position)
    blocks: list[list[str]] = []
    previous = None
    for index, key in wanted:
        same_exchange = bool(blocks) and exchange_of(key) == exchange_of(blocks[-1][0])
        if previous is not None and index == previous + 1 and same_exchange:
            blocks[-1].append(key)
        else:
            blocks.append([key])
        previous = index
    return blocks


def backfill_requests(
    asset: str,
    series: Sequence[str],
    days: Sequence[date],
    *,
    order: Sequence[str],
    reason: str,
    run_key: str | None = None,
    newest_first: bool = False,
    priority: int = 0,
    max_days: int = MAX_DAYS_PER_RUN,
) -> list[dg.RunRequest]:
    """One request per (series block, day range); with `newest_first`, the most recent
    week is one small run that comes first, and older ranges get lower priorities (the
    queue runs them last)."""
    ranges = _newest_first(days, max_days) if newest_first else day_ranges(days, max_days)
    requests = []
    for block in series_blocks(series, order):
        for rank, (first, last) in enumerate(ranges):
            tags = {
                RANGE_START_TAG: partition_key(first, block[0]),
                RANGE_END_TAG: partition_key(last, block[-1]),
                REASON_TAG: reason,
                **exchange_tags(block),
                PRIORITY_TAG: str(priority - rank if newest_first else priority),
            }
            requests.append(
                dg.RunRequest(
                    run_key=f"{run_key}:{block[0]}:{first}:{last}" if run_key else None,
                    asset_selection=[dg.AssetKey(asset)],
                    tags=tags,
                )
            )
    return requests


FIRST_RUN_DAYS = 7
"""With newest_first, the first run covers the most recent week: it lands in a minute or two."""


def _newest_first(days: Sequence[date], max_days: int) -> list[tuple[date, date]]:
    ordered = sorted(set(days), reverse=True)
    recent, older = ordered[:FIRST_RUN_DAYS], ordered[FIRST_RUN_DAYS:]
    return list(reversed(day_ranges(recent, max_days))) + list(
        reversed(day_ranges(older, max_days))
    )


def recent_days(last: date, count: int) -> list[date]:
    return [last - timedelta(days=i) for i in range(count)]


def serves_none(asset: str, series: str, now: datetime) -> str | None:
    """Why the series' exchange serves none of backfill `asset`'s data (it publishes no such
    history: Hyperliquid's and Coinbase's open interest), or None when it serves some."""
    window = _window(asset, series, now)
    return window.note if window.oldest is not None and window.oldest >= now else None


def _window(asset: str, series: str, now: datetime) -> coverage.SourceWindow:
    dataset = BACKFILLED[asset].table
    key = parse_series(series)
    interval = coverage_interval(dataset, getattr(key, "interval", "1m"), key.exchange)
    # the market type decides trades (Binance serves both; OKX spot only)
    return coverage.source_window(key.exchange, dataset, interval, now, key.market_type)


def still_served(asset: str, series: str, days: Sequence[date], now: datetime) -> list[date]:
    """The days of which the series' exchange still serves some of backfill `asset`'s data,
    as its declaration says (`source_window`: Hyperliquid's latest 5000 candles of the
    interval; its settled funding and Binance's candles all)."""
    oldest = _window(asset, series, now).oldest
    if oldest is None:
        return list(days)
    return [d for d in days if datetime.combine(d + timedelta(days=1), time(), UTC) > oldest]
