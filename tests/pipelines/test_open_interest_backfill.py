"""The `open_interest` backfill asset against the simulator: a Bybit pair's day of 5-minute
open-interest history written through the writer (twice: the second run writes nothing),
an exchange that publishes none (Hyperliquid) reported unavailable at source, and a
backfilled day complete by the coverage count, its gaps repaired by the gap-repair sensor."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg
import dagster as dg
import pytest

from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.timeutil import DAY
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import open_interest
from kirby_pipelines.defs.repair.sensors import gap_repair
from kirby_pipelines.runs import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG
from tests.db.conftest import catalog_with_usdt_perp
from tests.pipelines.conftest import (
    BTC_PAIR,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    tick,
    yesterday,
)

BYBIT_PAIR = "BTC@bybit/USDT/perps"
BINANCE_PAIR = "BTC@binance/USDT/perps"


def with_pair(urls: DatabaseUrls, instance: dg.DagsterInstance, exchange: str) -> None:
    async def sync() -> None:
        conn = await asyncpg.connect(urls.realtime)
        try:
            await catalog_store.sync_catalog(conn, catalog_with_usdt_perp(exchange))
        finally:
            await conn.close()

    run_async(sync())
    register(instance, run_async(read_series(urls.realtime, "realtime")))


def backfill(
    instance: dg.DagsterInstance, resources: dict, series: str, days: int = 1
) -> dg.ExecuteInProcessResult:
    """A run over the `days` days up to yesterday of `series`."""
    tags = range_tags(yesterday() - timedelta(days=days - 1), yesterday(), series)
    return materialize([open_interest], instance, resources, tags)


def test_a_bybit_day_of_open_interest_is_backfilled_every_5_minutes(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    with_pair(catalogs, instance, "bybit")
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


def test_binance_days_older_than_its_30_days_are_unavailable_at_source(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    kept_from = datetime.now(UTC) - timedelta(days=30)
    if kept_from + timedelta(minutes=10) >= datetime.combine(kept_from.date(), time(), UTC) + DAY:
        pytest.skip("the 30 days kept start in a day's last minutes: no day is partly kept")
    with_pair(catalogs, instance, "binance")
    gone = yesterday() - timedelta(days=30)  # wholly before the 30 days Binance keeps
    partly = gone + timedelta(days=1)  # its start before them, the rest served
    result = backfill(instance, resources, BINANCE_PAIR, days=31)
    assert not result.success  # names the unavailable partition, writes the rest
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert f"{gone.isoformat()}|{BINANCE_PAIR}" in message
    assert f"{partly.isoformat()}|{BINANCE_PAIR}" not in message
    reports = {
        r["day"]: r
        for r in query(
            catalogs.realtime,
            "SELECT day, expected, fetched, unavailable_start, unavailable_end, absent_times"
            " FROM backfill_reports WHERE dataset = 'open_interest'",
        )
    }
    start = datetime.combine(gone, time(), UTC)
    assert (reports[gone]["expected"], reports[gone]["fetched"]) == (288, 0)
    assert reports[gone]["unavailable_end"] == start + timedelta(days=1)
    served = reports[partly]
    assert 0 < served["fetched"] < 288 and served["absent_times"] == []
    # every expected point of the partly kept day either fetched or before what it keeps
    first_kept = served["unavailable_end"]
    assert served["fetched"] == (start + timedelta(days=2) - first_kept) // timedelta(minutes=5)
    stored = query(
        catalogs.realtime,
        "SELECT min(time), count(*) FROM open_interest WHERE time >= $1 AND time < $2",
        start + timedelta(days=1),
        start + timedelta(days=2),
    )[0]
    assert (stored[0], stored[1]) == (first_kept, served["fetched"])
    # the 29 whole days after it: every 5-minute point
    later = query(
        catalogs.realtime,
        "SELECT count(*) FROM open_interest WHERE time >= $1",
        start + timedelta(days=2),
    )[0][0]
    assert later == 29 * 288


def test_a_backfilled_day_is_complete_and_a_gap_in_it_is_repaired_on_its_exchange(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    with_pair(catalogs, instance, "bybit")
    tags = range_tags(yesterday(), yesterday(), BYBIT_PAIR)
    first = materialize([open_interest, checks.open_interest_complete], instance, resources, tags)
    assert first.success
    [evaluation] = first.get_asset_check_evaluations()
    figures = metadata_values(evaluation.metadata)
    # 288 points of 5-minute history: the day is whole, not 288 of 1440 minutes
    assert evaluation.passed, figures
    assert (figures["expected"], figures["present"], figures["unexplained"]) == (288, 288, 0)

    # the collector lost 15 minutes (three points) and recorded the outage
    start = datetime.combine(yesterday(), time(12), UTC)
    end = start + timedelta(minutes=15)
    query(catalogs.realtime, "DELETE FROM open_interest WHERE time >= $1 AND time < $2", start, end)
    query(
        catalogs.realtime,
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " SELECT 'open_interest', p.id, $1, $2, 'planted' FROM trading_pairs p"
        " JOIN exchanges e ON e.id = p.exchange_id WHERE e.name = 'bybit'",
        start,
        end,
    )
    gap = materialize(
        [open_interest, checks.open_interest_complete],
        instance,
        resources,
        tags,
        selection=dg.AssetSelection.checks_for_assets(open_interest),
    )
    [evaluation] = gap.get_asset_check_evaluations()
    figures = metadata_values(evaluation.metadata)
    assert not evaluation.passed
    assert (figures["collector_outage"], figures["failed_partitions"]) == (
        3,
        [f"{yesterday()}|{BYBIT_PAIR}"],
    )

    [request] = tick(gap_repair, instance, resources).run_requests
    partition = f"{yesterday()}|{BYBIT_PAIR}"
    assert request.asset_selection == [dg.AssetKey("open_interest")]
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (partition, partition)
    assert request.tags[EXCHANGE_TAG] == "bybit"

    repair = materialize(
        [open_interest, checks.open_interest_complete], instance, resources, request.tags
    )
    assert repair.success
    assert all(e.passed for e in repair.get_asset_check_evaluations())
