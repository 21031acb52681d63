"""The body of the data-quality checks: which partitions a check looks at, the rules of
`kirby_core.quality` applied to each, and one result with a row per partition.

A check runs in the run that materialized its asset and evaluates exactly that run's
partitions; run on its own (from the UI) it evaluates yesterday for every active series.
Its metadata lists each partition's figures and, under `failed_partitions`, the partition
keys that failed: the gap-repair sensor turns those into backfill runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import dagster as dg

from kirby_core import quality
from kirby_core.db import catalog_store, coverage
from kirby_core.db.connection import connect
from kirby_pipelines import catalogs, evidence
from kirby_pipelines.backfills import (
    MAX_TABLE_ROWS,
    BackfilledAsset,
    starlisting_key,
    trading_pair_key,
)
from kirby_pipelines.partitions import (
    CANDLE_PARTITIONS,
    DAILY,
    FUNDING_PARTITIONS,
    OPEN_INTEREST_PARTITIONS,
    TRADE_PARTITIONS,
    TRAINING_CANDLE_PARTITIONS,
    days_by_series,
    partition_key,
    series_key,
)
from kirby_pipelines.resources import KirbyResource
from kirby_pipelines.runs import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

PARTITIONS = {
    "candles": CANDLE_PARTITIONS,
    "funding_rates": FUNDING_PARTITIONS,
    "open_interest": OPEN_INTEREST_PARTITIONS,
    "training_candles": TRAINING_CANDLE_PARTITIONS,
    "trades": TRADE_PARTITIONS,
}


@dataclass(frozen=True)
class Finding:
    partition: str
    passed: bool
    figures: dict[str, Any]


def run_partitions(
    context: dg.AssetCheckExecutionContext, partitions_def: dg.PartitionsDefinition
) -> list[str] | None:
    """The partition keys the run targets (from its tags: a check-only run is not a
    "partitioned run" to Dagster, but carries the same tags), or None."""
    tags = context.op_execution_context.run.tags
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    if RANGE_START_TAG in tags:
        span = dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            keys = partitions_def.get_partition_keys_in_range(
                span, dynamic_partitions_store=context.instance
            )
        else:
            keys = partitions_def.get_partition_keys_in_range(span)
        return [str(key) for key in keys]
    return None


def target_partitions(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> list[str]:
    keys = run_partitions(context, PARTITIONS[dataset.asset])
    if keys is not None:
        return keys
    series = asyncio.run(catalogs.read_series(kirby.url(dataset.database), dataset.database))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    names = (
        [series_key(p.key) for p in series.trading_pairs]
        if dataset.kind in ("funding_rates", "open_interest", "trades")
        else [series_key(s.key) for s in series.starlistings]
    )
    return [partition_key(yesterday, name) for name in names]


def result(
    findings: Sequence[Finding],
    what: str,
    *,
    check: tuple[str, str] | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """One result over `findings`; `check` = (asset, check name) inside a multi-check."""
    failed = [f.partition for f in findings if not f.passed]
    columns = list(findings[0].figures) if findings else []
    lines = ["| partition | passed | " + " | ".join(columns) + " |"]
    lines.append("| --- | --- |" + " ---: |" * len(columns))
    for f in findings[:MAX_TABLE_ROWS]:
        values = " | ".join(str(f.figures[c]) for c in columns)
        lines.append(f"| {f.partition} | {'yes' if f.passed else 'NO'} | {values} |")
    totals = {
        c: sum(f.figures[c] for f in findings)
        for c in columns
        if all(isinstance(f.figures[c], int) for f in findings)
    }
    return dg.AssetCheckResult(
        passed=not failed,
        asset_key=dg.AssetKey(check[0]) if check else None,
        check_name=check[1] if check else None,
        severity=severity,
        description=(
            f"{len(failed)} of {len(findings)} partition(s) fail: {what}"
            if failed
            else f"{len(findings)} partition(s) pass: {what}"
        ),
        metadata={
            "partitions": len(findings),
            "failed_partitions": dg.MetadataValue.json(failed),
            **totals,
            "by_partition": dg.MetadataValue.md("\n".join(lines)),
        },
    )


def run_checks(
    url: str, partitions: Sequence[str], check: Callable[[asyncpg.Connection, str, date], Awaitable]
) -> list[Any]:
    async def main() -> list[Any]:
        conn = await connect(url)
        try:
            found = []
            for series, days in days_by_series(partitions).items():
                for day in days:
                    found.append(await check(conn, series, day))
            return found
        finally:
            await conn.close()

    return asyncio.run(main())


def candles_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, dataset)
    now = datetime.now(UTC)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        key = starlisting_key(series)
        star = await catalog_store.get_starlisting(conn, key)
        found = await _classified(conn, "candles", star.id, key.exchange, key.interval, day, now)
        return Finding(
            partition_key(day, series),
            not found.repairable,
            {
                "expected": found.expected,
                "present": found.present,
                "unavailable_at_source": found.unavailable_at_source,
                "collector_outage": found.collector_outage,
                "no_trades": found.no_trades,
                "unexplained": found.unexplained,
            },
        )

    findings = run_checks(kirby.url(dataset.database), partitions, check)
    return result(
        findings,
        "expected candles present, or missing for a known reason (no trades, "
        "unavailable at source); missing in a collector outage or unexplained fails",
    )


def open_interest_points(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, dataset)
    now = datetime.now(UTC)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        key = trading_pair_key(series)
        pair = await catalog_store.get_trading_pair(conn, key)
        found = await _classified(conn, "open_interest", pair.id, key.exchange, "1m", day, now)
        return Finding(
            partition_key(day, series),
            not found.repairable,
            {
                "expected": found.expected,
                "present": found.present,
                "unavailable_at_source": found.unavailable_at_source,
                "collector_outage": found.collector_outage,
                "unexplained": found.unexplained,
            },
        )

    findings = run_checks(kirby.url(dataset.database), partitions, check)
    return result(
        findings,
        "a point per the exchange's open_interest_interval present, or unavailable at "
        "source; missing in a collector outage or unexplained fails",
    )


async def _classified(
    conn: asyncpg.Connection,
    table: str,
    series_id: int,
    exchange: str,
    interval: str,
    day: date,
    now: datetime,
) -> coverage.ClassifiedDay:
    """The one classifier's verdict on one (series, day)."""
    served_from = coverage.source_window(exchange, table, interval, now).oldest
    [found] = await coverage.classify_days(
        conn, table, series_id, interval, exchange, day, day + timedelta(days=1), now, served_from
    )
    return found


def candles_sanity(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> tuple[dg.AssetCheckResult, dg.AssetCheckResult]:
    """(OHLC sanity, timestamps aligned and unique) from one pass over each partition."""
    partitions = target_partitions(context, kirby, dataset)

    async def check(conn: asyncpg.Connection, series: str, day: date):
        key = starlisting_key(series)
        star = await catalog_store.get_starlisting(conn, key)
        return partition_key(day, series), await quality.candle_sanity(
            conn, star.id, key.interval, day
        )

    found = run_checks(kirby.url(dataset.database), partitions, check)
    ohlc = [
        Finding(
            pk,
            s.ohlc_passed,
            {
                "rows": s.rows,
                "inconsistent": s.inconsistent,
                "spikes": s.spikes,
                "volume_mismatch": s.volume_mismatch,
            },
        )
        for pk, s in found
    ]
    stamps = [
        Finding(
            pk,
            s.timestamps_passed,
            {"rows": s.rows, "misaligned": s.misaligned, "duplicates": s.duplicates},
        )
        for pk, s in found
    ]
    return (
        result(
            ohlc,
            "prices ordered and positive, no spike, volume and trades agree",
            check=(dataset.asset, f"{dataset.asset}_ohlc_sane"),
        ),
        result(
            stamps,
            "open times on the interval's boundaries, none repeated",
            check=(dataset.asset, f"{dataset.asset}_timestamps_aligned"),
        ),
    )


def candles_live_agrees(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, dataset)
    known = evidence.latest(context.instance, dg.AssetKey(dataset.asset), partitions)
    findings = [
        Finding(
            pk,
            int(meta["live_disagreeing"]) == 0,
            {
                "compared": int(meta["live_compared"]),
                "disagreeing": int(meta["live_disagreeing"]),
                "max_price_diff": float(meta["live_max_price_diff"]),
            },
        )
        for pk, meta in known.items()
    ]
    return result(
        findings,
        "live candles agree with the exchange's REST candles for the same minutes (prices within "
        "0.1%, volume within 1%)",
        severity=dg.AssetCheckSeverity.WARN,
    )


def funding_settled(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, dataset: BackfilledAsset
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, dataset)
    now = datetime.now(UTC)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        key = trading_pair_key(series)
        pair = await catalog_store.get_trading_pair(conn, key)
        pk = partition_key(day, series)
        classes = await _classified(conn, "funding_rates", pair.id, key.exchange, "1m", day, now)
        found = await quality.funding_sanity(
            conn, pair.id, key.exchange, day, now, classes.unavailable_at_source
        )
        return Finding(
            pk,
            found.passed and not classes.repairable,
            {
                "expected": found.expected,
                "settlements": found.settlements,
                "unavailable_at_source": found.unavailable,
                "off_schedule": found.off_schedule,
                "gaps": found.gaps,
                "out_of_range": found.out_of_range,
            },
        )

    findings = run_checks(kirby.url(dataset.database), partitions, check)
    return result(
        findings,
        "one settled rate per settlement of the exchange's funding_interval, on its grid, "
        "within 4%, none missing",
    )


def lake_matches_database(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, asset: str
) -> tuple[dg.AssetCheckResult, dg.AssetCheckResult]:
    """(every series-day of the lake holds exactly the database's rows, no time repeated)."""
    from kirby_core.lake import LAKE_DATASETS
    from kirby_pipelines.lake_export import LAKE_ASSETS, series_of

    dataset = LAKE_DATASETS[LAKE_ASSETS[asset]]
    keys = run_partitions(context, DAILY)
    if keys is not None:
        days = sorted(date.fromisoformat(key) for key in keys)
    else:
        days = [datetime.now(UTC).date() - timedelta(days=1)]
    url = kirby.url(dataset.database)
    lake_root = kirby.lake()

    async def database_counts() -> tuple[list, dict[tuple[int, date], int]]:
        series = await series_of(url, dataset)
        conn = await connect(url)
        try:
            source = dataset.source
            records = await conn.fetch(
                f"SELECT {source.series_column} AS series_id, time::date AS day, count(*) AS n"  # noqa: S608
                f" FROM {source.name} WHERE time >= $1 AND time < $2 GROUP BY 1, 2",
                datetime.combine(days[0], time(), UTC),
                datetime.combine(days[-1], time(), UTC) + timedelta(days=1),
            )
        finally:
            await conn.close()
        return series, {(r["series_id"], r["day"]): r["n"] for r in records}

    series, counts = asyncio.run(database_counts())
    rows_found, unique_found = [], []
    for day in days:
        in_lake = quality.lake_counts(lake_root, dataset.name, day)
        database_rows = lake_rows = mismatched = duplicates = 0
        for s in series:
            expected = counts.get((s.series_id, day), 0)
            found = in_lake.get(s.hive_values())
            database_rows += expected
            lake_rows += found.rows if found else 0
            mismatched += int((found.rows if found else 0) != expected)
            duplicates += (found.rows - found.distinct_times) if found else 0
        figures = {"database_rows": database_rows, "lake_rows": lake_rows}
        rows_found.append(
            Finding(day.isoformat(), mismatched == 0, {**figures, "series_mismatched": mismatched})
        )
        unique_found.append(
            Finding(
                day.isoformat(), duplicates == 0, {"lake_rows": lake_rows, "duplicates": duplicates}
            )
        )
    return (
        result(
            rows_found,
            "each series-day file holds exactly the database's rows",
            check=(asset, f"{asset}_rows_match"),
        ),
        result(
            unique_found, "no open time repeated in a series-day", check=(asset, f"{asset}_unique")
        ),
    )
