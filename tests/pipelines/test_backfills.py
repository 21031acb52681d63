"""Backfill assets against the simulator and a real PostgreSQL, run by Dagster in process."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from kirby_core.exchanges import CANDLE_LIMIT, HyperliquidHistory
from kirby_core.settings import Settings
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import candles, funding_rates, training_candles
from kirby_pipelines.partitions import parse_series
from tests.pipelines.conftest import (
    BINANCE_BTC_PERPS_1M,
    BINANCE_BTC_SPOT_1M,
    BTC_1M,
    BTC_15M,
    BTC_PAIR,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    today,
    yesterday,
)

CANDLE_CHECKS = [checks.candles_complete, checks.candles_sanity, checks.candles_live_agrees]


def day_range(day):
    start = datetime.combine(day, time(), UTC)
    return start, start + timedelta(days=1)


async def served_candles(settings: Settings, coin: str, interval: str, start, end):
    async with HyperliquidHistory(settings) as hyperliquid:
        return await hyperliquid.fetch_candles(coin, "USD", "perps", interval, start, end)


def stored_candles(url: str, series: str, start, end) -> list[tuple]:
    key = parse_series(series)
    coin, interval = key.coin, key.interval
    rows = query(
        url,
        """SELECT c.time, c.open, c.high, c.low, c.close, c.volume, c.trade_count
           FROM candles c JOIN starlistings s ON s.id = c.starlisting_id
           JOIN coins co ON co.id = s.coin_id JOIN intervals i ON i.id = s.interval_id
           WHERE co.symbol = $1 AND i.name = $2 AND c.time >= $3 AND c.time < $4
           ORDER BY c.time""",
        coin,
        interval,
        start,
        end,
    )
    return [tuple(r) for r in rows]


def test_candles_backfill_writes_what_the_exchange_serves_and_is_idempotent(
    catalogs, instance, resources, pipeline_settings
) -> None:
    day = yesterday()
    tags = range_tags(day, day, BTC_1M, BTC_15M)  # both series, one run

    result = materialize([candles, *CANDLE_CHECKS], instance, resources, tags)

    assert result.success
    start, end = day_range(day)
    for coin_series, interval in ((BTC_1M, "1m"), (BTC_15M, "15m")):
        served = run_async(served_candles(pipeline_settings, "BTC", interval, start, end))
        assert stored_candles(catalogs.realtime, coin_series, start, end) == [
            tuple(c) for c in served
        ]
    served_1m = run_async(served_candles(pipeline_settings, "BTC", "1m", start, end))
    served_15m = run_async(served_candles(pipeline_settings, "BTC", "15m", start, end))
    [materialization] = [
        m
        for m in result.asset_materializations_for_node("candles")
        if m.partition == f"{day}|{BTC_1M}"
    ]
    meta = metadata_values(materialization.metadata)
    assert meta["rows_fetched"] == meta["rows_written"] == len(served_1m) + len(served_15m)
    assert meta["missing_candles"] == (1440 - len(served_1m)) + (96 - len(served_15m))
    assert meta["missing_minutes"] == (1440 - len(served_1m)) + 15 * (96 - len(served_15m))
    assert meta["first_time"] == start.timestamp()
    assert meta["unavailable_at_source"] == 0
    observations = {
        o.partition: metadata_values(o.metadata)
        for o in result.asset_observations_for_node("candles")
    }
    assert observations[f"{day}|{BTC_1M}"]["rows_fetched"] == len(served_1m)
    assert observations[f"{day}|{BTC_15M}"]["expected"] == 96
    assert all(e.passed for e in result.get_asset_check_evaluations())

    again = materialize([candles], instance, resources, tags)

    assert again.success
    meta = metadata_values(again.asset_materializations_for_node("candles")[0].metadata)
    assert meta["rows_fetched"] == len(served_1m) + len(served_15m)
    assert meta["rows_written"] == 0  # nothing changed
    assert stored_candles(catalogs.realtime, BTC_1M, start, end) == [tuple(c) for c in served_1m]


def test_a_day_older_than_hyperliquid_keeps_is_unavailable_at_source_not_empty_success(
    catalogs, instance, resources
) -> None:
    old, recent = today() - timedelta(days=6), yesterday()

    result = materialize([candles], instance, resources, range_tags(old, recent, BTC_1M))

    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "unavailable at source" in failure.error.message
    oldest_served = datetime.now(UTC) - CANDLE_LIMIT * timedelta(minutes=1)
    unavailable = {
        f"{old + timedelta(days=d)}|{BTC_1M}"
        for d in range(6)
        if day_range(old + timedelta(days=d))[1] <= oldest_served
    }
    assert len(unavailable) >= 2
    assert set(failure.user_failure_data.metadata["unavailable_at_source"].value) == unavailable
    materialized = instance.get_materialized_partitions(dg.AssetKey("candles"))
    assert f"{recent}|{BTC_1M}" in materialized  # what the exchange had was written
    assert not materialized & unavailable
    records = instance.fetch_observations(dg.AssetKey("candles"), limit=100).records
    observed = {
        r.asset_observation.partition: r.asset_observation.metadata["status"].value for r in records
    }
    assert {observed[p] for p in unavailable} == {"unavailable_at_source"}


def test_funding_backfill_fills_settled_rates_and_keeps_live_values(
    catalogs, instance, resources
) -> None:
    day = yesterday()
    noon = datetime.combine(day, time(12), UTC)
    pair_id = query(catalogs.realtime, "SELECT id FROM trading_pairs ORDER BY id LIMIT 1")[0][0]
    query(  # what the live collector wrote for that minute
        catalogs.realtime,
        "INSERT INTO funding_rates (trading_pair_id, time, predicted_funding_rate, mark_price)"
        " VALUES ($1, $2, 0.0000125, 67000.5)",
        pair_id,
        noon,
    )

    result = materialize(
        [funding_rates, checks.funding_rates_settled_hourly],
        instance,
        resources,
        range_tags(day, day, BTC_PAIR),
    )

    assert result.success
    rows = query(
        catalogs.realtime,
        "SELECT time, settled_funding_rate, predicted_funding_rate, mark_price FROM funding_rates"
        " WHERE trading_pair_id = $1 AND time >= $2 AND time < $3 ORDER BY time",
        pair_id,
        *day_range(day),
    )
    assert [r["time"] for r in rows] == [
        datetime.combine(day, time(hour), UTC) for hour in range(24)
    ]
    assert all(r["settled_funding_rate"] is not None for r in rows)
    live = next(r for r in rows if r["time"] == noon)
    assert (live["predicted_funding_rate"], live["mark_price"]) == (
        Decimal("0.0000125"),
        Decimal("67000.5"),
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert metadata_values(evaluation.metadata)["settlements"] == 24


@pytest.mark.parametrize("series", [BINANCE_BTC_SPOT_1M, BINANCE_BTC_PERPS_1M])
def test_training_candles_come_from_binance_with_trade_counts(
    catalogs, instance, resources, series
) -> None:
    day = yesterday()

    result = materialize(
        [training_candles, checks.training_candles_complete],
        instance,
        resources,
        range_tags(day, day, series),
    )

    assert result.success
    market_type = parse_series(series).market_type
    rows = query(
        catalogs.training,
        """SELECT count(*), count(*) FILTER (WHERE trade_count IS NOT NULL), min(c.time)
           FROM candles c JOIN starlistings s ON s.id = c.starlisting_id
           JOIN market_types m ON m.id = s.market_type_id JOIN intervals i ON i.id = s.interval_id
           JOIN coins co ON co.id = s.coin_id
           WHERE m.name = $1 AND i.name = '1m' AND co.symbol = 'BTC'""",
        market_type,
    )
    assert tuple(rows[0]) == (1440, 1440, day_range(day)[0])  # Binance keeps quiet minutes
    assert result.get_asset_check_evaluations()[0].passed
