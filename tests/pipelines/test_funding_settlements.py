"""Funding coverage follows the exchange's declared `funding_interval`: a Bybit pair that
settles every 8 h reads complete with 3 settlements a day, in the classifier and in the
Dagster funding check, and one missing settlement reads missing (Hyperliquid's hourly
funding is covered by tests/pipelines/test_quality.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import asyncpg
import dagster as dg

from kirby_core.db import catalog_store, coverage
from kirby_core.db.urls import DatabaseUrls
from kirby_core.db.writer import upsert_funding_rates
from kirby_core.exchanges.registry import funding_interval
from kirby_core.models import FundingRateRow
from kirby_core.timeutil import interval_delta
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import funding_rates
from tests.db.conftest import bybit_catalog
from tests.pipelines.conftest import (
    check_results,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    yesterday,
)

BYBIT_PAIR = "BTC@bybit/USDT/perps"


def plant(url: str, settlements: list[datetime]) -> int:
    """Sync the catalog, write `settlements` of the Bybit pair; its trading pair id."""

    async def write() -> int:
        conn = await asyncpg.connect(url)
        try:
            await catalog_store.sync_catalog(conn, bybit_catalog())
            [pair] = [
                p for p in await catalog_store.list_trading_pairs(conn) if p.key.exchange == "bybit"
            ]
            await upsert_funding_rates(
                conn,
                [
                    FundingRateRow(pair.id, t, settled_funding_rate=Decimal("0.0001"))
                    for t in settlements
                ],
            )
            return pair.id
        finally:
            await conn.close()

    return run_async(write())


def classified(url: str, pair_id: int) -> coverage.ClassifiedDay:
    async def classify() -> coverage.ClassifiedDay:
        conn = await asyncpg.connect(url)
        try:
            day = yesterday()
            [found] = await coverage.classify_days(
                conn,
                "funding_rates",
                pair_id,
                "1m",
                "bybit",
                day,
                day + timedelta(days=1),
                datetime.now(UTC),
                None,
            )
            return found
        finally:
            await conn.close()

    return run_async(classify())


def funding_check(instance: dg.DagsterInstance, resources: dict) -> dg.AssetCheckEvaluation:
    result = materialize(
        [funding_rates, checks.funding_rates_settled_hourly],
        instance,
        resources,
        range_tags(yesterday(), yesterday(), BYBIT_PAIR),
        selection=dg.AssetSelection.checks_for_assets(funding_rates),
    )
    return check_results(result)["funding_rates_settled_hourly"]


def test_bybit_funding_settles_every_8_hours_and_reads_complete_with_3_a_day(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    assert funding_interval("bybit") == "8h"
    start = datetime.combine(yesterday(), time(), UTC)
    settlements = [start + i * interval_delta("8h") for i in range(3)]
    pair_id = plant(catalogs.realtime, settlements)
    register(instance, run_async(read_series(catalogs.realtime, "realtime")))

    day = classified(catalogs.realtime, pair_id)
    assert (day.expected, day.present, day.missing, day.repairable) == (3, 3, 0, False)
    evaluation = funding_check(instance, resources)
    figures = metadata_values(evaluation.metadata)
    assert evaluation.passed, figures
    assert (figures["expected"], figures["settlements"], figures["gaps"]) == (3, 3, 0)
    assert figures["off_schedule"] == 0

    # one settlement gone: missing (unexplained, repairable), and the check fails
    query(
        catalogs.realtime,
        "UPDATE funding_rates SET settled_funding_rate = NULL WHERE trading_pair_id = $1"
        " AND time = $2",
        pair_id,
        settlements[1],
    )
    day = classified(catalogs.realtime, pair_id)
    assert (day.expected, day.present, day.missing, day.unexplained) == (3, 2, 1, 1)
    assert day.repairable
    evaluation = funding_check(instance, resources)
    figures = metadata_values(evaluation.metadata)
    assert not evaluation.passed
    assert (figures["settlements"], figures["gaps"]) == (2, 1)


def test_a_bybit_settlement_off_its_8_hour_grid_fails_the_check(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    start = datetime.combine(yesterday(), time(), UTC)
    plant(catalogs.realtime, [start, start + timedelta(hours=8), start + timedelta(hours=17)])
    register(instance, run_async(read_series(catalogs.realtime, "realtime")))

    evaluation = funding_check(instance, resources)
    figures = metadata_values(evaluation.metadata)
    assert not evaluation.passed
    assert (figures["settlements"], figures["off_schedule"]) == (3, 1)
