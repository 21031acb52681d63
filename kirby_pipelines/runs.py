"""Run requests for backfill partitions: rectangles of days x series, recent days first.

A request names one asset and a partition-key range whose two ends are (first day, first
series) and (last day, last series): Dagster reads it as the rectangle between them, which
is what a multi-run backfill launches too. Series are grouped into blocks that are
contiguous in the dynamic partitions' order, so a range never sweeps in a series that was
not asked for; days into runs of at most `MAX_DAYS_PER_RUN`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from kirby_core.db import coverage
from kirby_core.db.readers import coverage_interval
from kirby_pipelines.backfills import BACKFILLED
from kirby_pipelines.partitions import MAX_DAYS_PER_RUN, day_ranges, parse_series, partition_key

# Dagster's own tags for a run over a partition range (dagster._core.storage.tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PRIORITY_TAG = "dagster/priority"
REASON_TAG = "kirby/reason"


def series_blocks(series: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """`series` split into runs that are contiguous in `order` (unknown ones left out)."""
    position = {key: i for i, key in enumerate(order)}
    wanted = sorted((position[s], s) for s in set(series) if s in position)
    blocks: list[list[str]] = []
    previous = None
    for index, key in wanted:
        if previous is not None and index == previous + 1:
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


def still_served(asset: str, series: str, days: Sequence[date], now: datetime) -> list[date]:
    """The days of which the series' exchange still serves some of backfill `asset`'s data,
    as its declaration says (`source_window`: Hyperliquid's latest 5000 candles of the
    interval; its settled funding and Binance's candles all)."""
    dataset = BACKFILLED[asset].table
    key = parse_series(series)
    interval = coverage_interval(dataset, getattr(key, "interval", "1m"), key.exchange)
    oldest = coverage.source_window(key.exchange, dataset, interval, now).oldest
    if oldest is None:
        return list(days)
    return [d for d in days if datetime.combine(d + timedelta(days=1), time(), UTC) > oldest]
