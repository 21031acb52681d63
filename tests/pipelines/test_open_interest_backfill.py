"""The `open_interest` backfill asset against the simulator: a Bybit pair's day of 5-minute
open-interest history written through the writer (twice: the second run writes nothing),
and an exchange that publishes none (Hyperliquid) reported unavailable at source."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg
import dagster as dg

from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.backfills.assets import open_interest
from tests.db.conftest import bybit_catalog
from tests.pipelines.conftest import (
    BTC_PAIR,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    yesterday,
)

BYBIT_PAIR = "BTC@bybit/USDT/perps"


def with_bybit(urls: DatabaseUrls, instance: dg.DagsterInstance) -> None:
    async def sync() -> None:
        conn = await asyncpg.connect(urls.realtime)
        try:
            await catalog_store.sync_catalog(conn, bybit_catalog())
        finally:
            await conn.close()

    run_async(sync())
    register(instance, run_async(read_series(urls.realtime, "realtime")))


def backfill(
    instance: dg.DagsterInstance, resources: dict, series: str
) -> dg.ExecuteInProcessResult:
    return materialize(
        [open_interest], instance, resources, range_tags(yesterday(), yesterday(), series)
    )


def test_a_bybit_day_of_open_interest_is_backfilled_every_5_minutes(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    with_bybit(catalogs, instance)
    result = backfill(instance, resources, BYBIT_PAIR)
    assert result.success
    [materialization] = result.asset_materializations_for_node("open_interest")
    totals = metadata_values(materialization.metadata)
    assert (totals["rows_fetched"], totals["rows_written"], totals["missing_points"]) == (
        288,
        288,
        0,
    )
    assert totals["unavailable_at_source"] == 0

    start = datetime.combine(yesterday(), time(), UTC)
    rows = query(
        catalogs.realtime,
        "SELECT o.time, o.open_interest FROM open_interest o"
        " JOIN trading_pairs p ON p.id = o.trading_pair_id JOIN exchanges e ON e.id = p.exchange_id"
        " WHERE e.name = 'bybit' ORDER BY o.time",
    )
    assert [r["time"] for r in rows] == [start + i * timedelta(minutes=5) for i in range(288)]
    assert all(r["open_interest"] > 0 for r in rows)
    [report] = query(
        catalogs.realtime,
        "SELECT expected, fetched, absent_times, unavailable_start FROM backfill_reports"
        " WHERE dataset = 'open_interest'",
    )
    assert (report["expected"], report["fetched"], report["absent_times"]) == (288, 288, [])
    assert report["unavailable_start"] is None

    again = backfill(instance, resources, BYBIT_PAIR)
    assert again.success
    [materialization] = again.asset_materializations_for_node("open_interest")
    assert metadata_values(materialization.metadata)["rows_written"] == 0


def test_an_exchange_without_open_interest_history_is_unavailable_at_source(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    result = backfill(instance, resources, BTC_PAIR)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert "unavailable at source" in message and BTC_PAIR in message
    assert query(catalogs.realtime, "SELECT count(*) FROM open_interest")[0][0] == 0
    [report] = query(
        catalogs.realtime,
        "SELECT expected, fetched, unavailable_start, unavailable_end FROM backfill_reports"
        " WHERE dataset = 'open_interest'",
    )
    start = datetime.combine(yesterday(), time(), UTC)
    assert (report["expected"], report["fetched"]) == (288, 0)
    assert (report["unavailable_start"], report["unavailable_end"]) == (
        start,
        start + timedelta(days=1),
    )
