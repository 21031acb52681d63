"""The bodies of the lake assets: database -> Parquet lake, and what the SQL models read.

Each lake table asset exports whole UTC days of every series of its table (active or not:
whatever the database holds); the reference assets write the series catalog and the
collection outages as single files; the coverage export writes, per day, what the one
classifier (`kirby_core.db.coverage`) says of every series, for `daily_coverage`.
`RELATIONS` tells the SQL model runner where each ref lives and, before anything was
exported, what an empty one looks like.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from kirby_core import lake
from kirby_core.db import catalog_store, coverage
from kirby_core.db.connection import connect
from kirby_core.db.copy_reader import ARROW_TIME
from kirby_core.lake import LAKE_DATASETS, LakeSeries
from kirby_core.settings import Database
from kirby_core.timeutil import INTERVAL_SECONDS
from kirby_pipelines.resources import KirbyResource, Progress, report_progress
from kirby_pipelines.sql_models import Relation, SqlModel

LAKE_ASSETS = {f"lake_{name}": name for name in LAKE_DATASETS}
"""Lake asset -> lake dataset."""


class LakeConfig(dg.Config):
    exact_decimals: bool = False
    """Write prices, sizes and rates as decimal128(38, 18) instead of float64."""


def days_of(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    days, day = [], window.start.date()
    while day < window.end.date():
        days.append(day)
        day += timedelta(days=1)
    return days


async def series_of(url: str, dataset: lake.LakeDataset) -> list[LakeSeries]:
    conn = await connect(url)
    try:
        if dataset.per_interval:
            stars = await catalog_store.list_starlistings(conn, active_only=False)
            return [LakeSeries.of_starlisting(s) for s in stars]
        pairs = await catalog_store.list_trading_pairs(conn, active_only=False)
        return [LakeSeries.of_trading_pair(p) for p in pairs]
    finally:
        await conn.close()


def export(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: Progress | None,
    config: LakeConfig,
) -> dg.MaterializeResult:
    dataset = LAKE_DATASETS[LAKE_ASSETS[context.asset_key.to_user_string()]]
    root = kirby.lake()
    url = kirby.url(dataset.database)
    days = days_of(context)
    series = asyncio.run(series_of(url, dataset))
    files = asyncio.run(
        lake.export_days(url, root, dataset, series, days, exact_decimals=config.exact_decimals)
    )
    report_progress(progress, len(days), f"{dataset.name} {days[0]}..{days[-1]}")
    by_series: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    for f in files:
        name = "/".join(v for v in f.series.hive_values())
        by_series[name] += f.rows
        by_day[f.day.isoformat()] += f.rows
    rows = sum(f.rows for f in files)
    context.log.info(f"{dataset.name}: {rows} rows in {sum(1 for f in files if f.rows)} files")
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "files": sum(1 for f in files if f.rows),
            "days": len(days),
            "rows_by_series": dg.MetadataValue.json(dict(by_series)),
            "rows_by_day": dg.MetadataValue.json(dict(sorted(by_day.items())[-60:])),
            "path": dg.MetadataValue.path(root.uri(dataset.name)),
            "columns": "decimal128(38, 18)" if config.exact_decimals else "float64",
        }
    )


SERIES_SCHEMA = pa.schema(
    [  # type: ignore[arg-type]  # the stubs join the field types to object
        ("database", pa.string()),
        ("dataset", pa.string()),
        ("series_id", pa.int32()),
        ("series", pa.string()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("coin", pa.string()),
        ("quote", pa.string()),
        ("market_type", pa.string()),
        ("interval", pa.string()),
        ("interval_seconds", pa.int32()),
        ("active", pa.bool_()),
    ]
)
OUTAGES_SCHEMA = pa.schema(
    [  # type: ignore[arg-type]  # the stubs join the field types to object
        ("database", pa.string()),
        ("dataset", pa.string()),
        ("series_id", pa.int32()),
        ("start_time", ARROW_TIME),
        ("end_time", ARROW_TIME),
        ("reason", pa.string()),
        ("recorded_at", ARROW_TIME),
    ]
)


async def _series_rows(url: str, database: Database) -> list[dict]:
    conn = await connect(url)
    try:
        stars = await catalog_store.list_starlistings(conn, active_only=False)
        pairs = await catalog_store.list_trading_pairs(conn, active_only=False)
    finally:
        await conn.close()
    held = [d for d in LAKE_DATASETS.values() if d.database == database]
    rows = [
        _series_row(database, d.name, s.id, s.key, s.key.interval, s.active)
        for d in held
        if d.per_interval
        for s in stars
    ]
    rows += [
        _series_row(database, d.name, p.id, p.key, None, p.active)
        for p in pairs
        for d in held
        if not d.per_interval
    ]
    return rows


def _series_row(database, dataset, series_id, key, interval, active) -> dict:
    return {
        "database": database,
        "dataset": dataset,
        "series_id": series_id,
        "series": str(key),
        "exchange": key.exchange,
        "symbol": lake.symbol(key),
        "coin": key.coin,
        "quote": key.quote,
        "market_type": key.market_type,
        "interval": interval,
        "interval_seconds": INTERVAL_SECONDS[interval] if interval else None,
        "active": active,
    }


def export_series(kirby: KirbyResource) -> dg.MaterializeResult:
    urls = kirby.urls()
    rows = asyncio.run(_series_rows(urls.realtime, "realtime"))
    rows += asyncio.run(_series_rows(urls.training, "training"))
    table = pa.Table.from_pylist(rows, schema=SERIES_SCHEMA)
    root = kirby.lake()
    lake.write_table(root, table, root.path("series", lake.FILE_NAME))
    return dg.MaterializeResult(
        metadata={"rows": table.num_rows, "path": root.uri("series", lake.FILE_NAME)}
    )


async def _outages(url: str) -> pa.Table:
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT 'realtime' AS database, dataset, series_id, start_time, end_time, reason,"
            " recorded_at FROM collection_outages ORDER BY id"
        )
    finally:
        await conn.close()
    return pa.Table.from_pylist([dict(r) for r in rows], schema=OUTAGES_SCHEMA)


def export_outages(kirby: KirbyResource) -> dg.MaterializeResult:
    table = asyncio.run(_outages(kirby.url("realtime")))
    root = kirby.lake()
    lake.write_table(root, table, root.path("collection_outages", lake.FILE_NAME))
    return dg.MaterializeResult(
        metadata={"rows": table.num_rows, "path": root.uri("collection_outages", lake.FILE_NAME)}
    )


_COVERAGE_FIELDS: list[pa.Field[Any]] = [
    pa.field("database", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("series_id", pa.int32()),
    pa.field("expected", pa.int64()),
    pa.field("present", pa.int64()),
    pa.field("outage_minutes", pa.int64()),
    *(pa.field(name, pa.int64()) for name in coverage.CLASSES[1:]),
]
COVERAGE_SCHEMA = pa.schema(_COVERAGE_FIELDS)
"""One row per series and day of `kirby_core.db.coverage.classify_days` (dataset named as in
`lake_series`); the `date` comes from the hive path."""


async def _coverage_rows(url: str, database: Database, start: date, end: date) -> list[dict]:
    """Every series of `database` classified over [start, end), by the one classifier."""
    series = [  # the minute datasets: trades and books are classified on demand (/coverage)
        s
        for s in await _series_rows(url, database)
        if not isinstance(LAKE_DATASETS[s["dataset"]].source, lake.RowSource)
    ]
    now = datetime.now(UTC)
    rows = []
    conn = await connect(url)
    try:
        for s in series:
            table = "candles" if s["dataset"] == "training_candles" else s["dataset"]
            interval = s["interval"] or "1m"
            window = coverage.source_window(s["exchange"], table, interval, now)
            days = await coverage.classify_days(
                conn,
                table,
                s["series_id"],
                interval,
                s["exchange"],
                start,
                end,
                now,
                window.oldest,
            )
            for day in days:
                rows.append(
                    {
                        "database": database,
                        "dataset": s["dataset"],
                        "series_id": s["series_id"],
                        "date": day.day,
                        "expected": day.expected,
                        "present": day.present,
                        "outage_minutes": day.outage_minutes,
                        **{name: getattr(day, name) for name in coverage.CLASSES[1:]},
                    }
                )
    finally:
        await conn.close()
    return rows


def export_coverage(
    context: dg.AssetExecutionContext, kirby: KirbyResource
) -> dg.MaterializeResult:
    days = days_of(context)
    start, end = days[0], days[-1] + timedelta(days=1)
    urls = kirby.urls()
    rows = asyncio.run(_coverage_rows(urls.realtime, "realtime", start, end))
    rows += asyncio.run(_coverage_rows(urls.training, "training", start, end))
    root = kirby.lake()
    for day in days:
        table = pa.Table.from_pylist([r for r in rows if r["date"] == day], schema=COVERAGE_SCHEMA)
        lake.write_table(root, table, root.path("coverage", f"date={day}", lake.FILE_NAME))
    return dg.MaterializeResult(
        metadata={
            "rows": len(rows),
            "repairable": sum(1 for r in rows if r["collector_outage"] or r["unexplained"]),
            "path": dg.MetadataValue.path(root.uri("coverage")),
        }
    )


def trades_lake_matches_database(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource, asset: str
) -> tuple[dg.AssetCheckResult, dg.AssetCheckResult]:
    """The trade tape's lake checks per day: (every series-day file holds exactly the
    database's trades, no trade id repeated in a series-day). Many trades share a time, so
    uniqueness is the trade id's, not the time's as in `lake_matches_database`."""
    from kirby_pipelines.partition_checks import Finding, result, run_partitions
    from kirby_pipelines.partitions import DAILY

    dataset = LAKE_DATASETS[LAKE_ASSETS[asset]]
    keys = run_partitions(context, DAILY)
    if keys is not None:
        days = sorted(date.fromisoformat(key) for key in keys)
    else:
        days = [datetime.now(UTC).date() - timedelta(days=1)]
    url = kirby.url(dataset.database)
    start = datetime.combine(days[0], datetime.min.time(), UTC)
    counts, series = asyncio.run(_trade_counts(url, dataset, start, days[-1]))
    rows_found, unique_found = [], []
    for day in days:
        in_lake = lake.tape_counts(kirby.lake(), dataset.name, day)
        database_rows = lake_rows = mismatched = duplicates = 0
        for s in series:
            expected = counts.get((s.series_id, day), 0)
            found_rows, distinct_ids = in_lake.get(s.hive_values(), (0, 0))
            database_rows += expected
            lake_rows += found_rows
            mismatched += int(found_rows != expected)
            duplicates += found_rows - distinct_ids
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
            "each series-day file holds exactly the database's trades",
            check=(asset, f"{asset}_rows_match"),
        ),
        result(
            unique_found,
            "no trade id repeated in a series-day",
            check=(asset, f"{asset}_unique"),
        ),
    )


async def _trade_counts(
    url: str, dataset: lake.LakeDataset, start: datetime, last_day: date
) -> tuple[dict[tuple[int, date], int], list[LakeSeries]]:
    series = await series_of(url, dataset)
    conn = await connect(url)
    try:
        source = dataset.source
        records = await conn.fetch(
            f"SELECT {source.series_column} AS series_id,"  # noqa: S608
            " (time AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
            f" FROM {source.name} WHERE time >= $1 AND time < $2 GROUP BY 1, 2",
            start,
            datetime.combine(last_day, datetime.min.time(), UTC) + timedelta(days=1),
        )
    finally:
        await conn.close()
    return {(r["series_id"], r["day"]): r["n"] for r in records}, series


def _hive_schema(dataset: lake.LakeDataset) -> pa.Schema:
    hive = [pa.field(key, pa.string()) for key in dataset.hive_keys]
    return pa.schema([*dataset.schema(False), *hive, pa.field("date", pa.date32())])


RELATIONS: dict[str, Relation] = {
    **{
        asset: Relation(name, _hive_schema(LAKE_DATASETS[name]))
        for asset, name in LAKE_ASSETS.items()
    },
    "lake_series": Relation("series", SERIES_SCHEMA),
    "lake_collection_outages": Relation("collection_outages", OUTAGES_SCHEMA),
    "lake_coverage": Relation("coverage", COVERAGE_SCHEMA.append(pa.field("date", pa.date32()))),
}


def relations_with(models: list[SqlModel]) -> dict[str, Relation]:
    return {**RELATIONS, **{m.name: Relation(f"models/{m.name}") for m in models}}
