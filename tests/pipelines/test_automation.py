"""Sensors, the schedule and declarative automation, evaluated without a daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import asyncpg
import dagster as dg
import pytest

from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store
from kirby_core.exchanges import CANDLE_LIMIT
from kirby_pipelines import automation
from kirby_pipelines.definitions import defs as load_defs
from kirby_pipelines.defs.backfills.schedules import (
    daily_candles,
    daily_funding_rates,
    daily_training_candles,
)
from kirby_pipelines.defs.catalog.sensors import new_series_backfill
from kirby_pipelines.defs.live.sensors import live_data
from kirby_pipelines.partitions import STARLISTINGS
from kirby_pipelines.runs import PRIORITY_TAG, RANGE_END_TAG, RANGE_START_TAG
from tests.pipelines.conftest import (
    BTC_1M,
    BTC_15M,
    BTC_PAIR,
    SOL_1M,
    catalogs_synced,
    empty_databases,
    query,
    run_async,
    schedule_tick,
    today,
    yesterday,
)
from tests.pipelines.conftest import tick as sensor_tick

START, END = RANGE_START_TAG, RANGE_END_TAG


def new_series_backfill_tick(instance, resources, cursor=None):
    return sensor_tick(new_series_backfill, instance, resources, cursor)


def span(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[START], request.tags[END]


def test_new_series_are_registered_and_backfilled_recent_days_first(
    database_urls, instance, resources, pipeline_settings
) -> None:
    catalogs_synced(database_urls, dg.DagsterInstance.ephemeral())  # synced by `kirby catalog`
    try:
        tick = new_series_backfill_tick(instance, resources)

        added = {r.partitions_def_name: r.partition_keys for r in tick.dynamic_partitions_requests}
        assert BTC_1M in added["starlistings"] and BTC_PAIR in added["trading_pairs"]
        assert len(added["training_starlistings"]) == 24
        by_asset: dict[str, list[dg.RunRequest]] = {}
        for request in tick.run_requests:
            by_asset.setdefault(request.asset_selection[0].to_user_string(), []).append(request)
        btc_1m = [r for r in by_asset["candles"] if r.tags[START].endswith(BTC_1M)]
        # Hyperliquid keeps 5000 1m candles: only the days it still serves, newest first
        oldest = (datetime.now(UTC) - CANDLE_LIMIT * timedelta(minutes=1)).date()
        assert span(btc_1m[0]) == (f"{oldest}|{BTC_1M}", f"{yesterday()}|{BTC_1M}")
        btc_15m = [r for r in by_asset["candles"] if r.tags[START].endswith(BTC_15M)]
        days = pipeline_settings.backfill_new_series_days
        assert [span(r) for r in btc_15m] == [
            (f"{yesterday() - timedelta(days=6)}|{BTC_15M}", f"{yesterday()}|{BTC_15M}"),
            (
                f"{yesterday() - timedelta(days=days - 1)}|{BTC_15M}",
                f"{yesterday() - timedelta(days=7)}|{BTC_15M}",
            ),
        ]
        assert [int(r.tags[PRIORITY_TAG]) for r in btc_15m] == [0, -1]
        assert len(by_asset["funding_rates"]) == 2 * 2  # 2 pairs, 2 chunks each
        assert len(by_asset["training_candles"]) == 24 * 2

        for name, keys in added.items():
            instance.add_dynamic_partitions(name, keys)
        again = new_series_backfill_tick(instance, resources, tick.cursor)
        assert again.run_requests == [] and again.dynamic_partitions_requests == []

        # a coin added to the catalog is noticed on the next tick, alone
        catalog = parse_catalog(
            {
                "exchanges": [{"name": "hyperliquid"}],
                "coins": [{"symbol": c} for c in ("BTC", "SOL", "ETH")],
                "quote_currencies": [{"symbol": "USD"}],
                "market_types": [{"name": "perps"}],
                "starlistings": [
                    {
                        "exchange": "hyperliquid",
                        "coin": c,
                        "quote": "USD",
                        "market_type": "perps",
                        "intervals": ["1m", "15m", "4h", "1d"],
                    }
                    for c in ("BTC", "SOL", "ETH")
                ],
            },
            "test",
        )

        async def sync() -> None:
            conn = await asyncpg.connect(database_urls.realtime)
            try:
                await catalog_store.sync_catalog(conn, catalog)
            finally:
                await conn.close()

        run_async(sync())
        third = new_series_backfill_tick(instance, resources, again.cursor)
        [eth] = third.dynamic_partitions_requests[:1]
        assert eth.partition_keys == [
            f"ETH@hyperliquid/USD/perps/{i}" for i in ("1m", "15m", "4h", "1d")
        ]
        assert {r.tags[START].split("|")[1] for r in third.run_requests} == {
            *eth.partition_keys,
            "ETH@hyperliquid/USD/perps",
        }
    finally:
        empty_databases(database_urls)


def test_daily_schedules_ask_for_yesterday_of_every_active_series(
    catalogs, instance, resources
) -> None:
    when = datetime.combine(today(), time(0, 15), UTC)
    day = yesterday()

    [candles] = schedule_tick(daily_candles, instance, resources, when)
    [funding] = schedule_tick(daily_funding_rates, instance, resources, when)
    [training] = schedule_tick(daily_training_candles, instance, resources, when)

    assert span(candles) == (
        f"{day}|BTC@hyperliquid/USD/perps/1m",
        f"{day}|SOL@hyperliquid/USD/perps/1d",
    )  # all 8, one run
    assert span(funding) == (f"{day}|{BTC_PAIR}", f"{day}|SOL@hyperliquid/USD/perps")
    assert span(training)[0] == f"{day}|BTC@binance/USDT/perps/1m"
    assert candles.asset_selection == [dg.AssetKey("candles")]


def test_repairs_wait_for_a_day_to_be_complete_and_skip_what_the_exchange_lost() -> None:
    now = datetime.now(UTC)
    order = {
        STARLISTINGS.name: [BTC_1M, SOL_1M],
        "trading_pairs": [BTC_PAIR],
        "training_starlistings": [],
    }
    midnight = datetime.combine(today(), time(), UTC)
    outages = [
        automation.RecordedOutage(
            7, "candles", BTC_1M, midnight - timedelta(hours=1), midnight + timedelta(minutes=5)
        ),
        automation.RecordedOutage(8, "open_interest", BTC_PAIR, midnight, midnight),
        automation.RecordedOutage(
            9,
            "candles",
            SOL_1M,
            midnight - timedelta(days=9),
            midnight - timedelta(days=9) + timedelta(minutes=3),
        ),
    ]
    failed = [
        automation.FailedCheck(
            41,
            "funding_rates_settled_hourly",
            "funding_rates",
            (f"{yesterday() - timedelta(days=2)}|{BTC_PAIR}",),
        )
    ]

    requests, cursor, notes = automation.repairs(
        automation.RepairCursor(), outages, failed, order, now
    )

    assert sorted((r.asset_selection[0].to_user_string(), *span(r)) for r in requests) == [
        ("candles", f"{yesterday()}|{BTC_1M}", f"{yesterday()}|{BTC_1M}"),
        ("funding_rates", *(f"{yesterday() - timedelta(days=2)}|{BTC_PAIR}",) * 2),
    ]
    assert cursor.pending == [("candles", BTC_1M, today().isoformat())]
    assert (cursor.outage_id, cursor.check_records) == (9, {"funding_rates_settled_hourly": 41})
    assert any("Hyperliquid publishes no open-interest history" in n for n in notes)
    assert any("no longer served" in n for n in notes)

    tomorrow = now + timedelta(days=1)
    later, cursor, _ = automation.repairs(
        automation.RepairCursor.parse(cursor.dump()), [], [], order, tomorrow
    )
    assert [span(r) for r in later] == [(f"{today()}|{BTC_1M}", f"{today()}|{BTC_1M}")]
    assert cursor.pending == []


@pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")
def test_lake_and_models_follow_rewritten_days(instance) -> None:
    definitions = load_defs()
    day = yesterday() - timedelta(days=3)
    instance.add_dynamic_partitions(STARLISTINGS.name, [BTC_1M])
    first = dg.evaluate_automation_conditions(definitions, instance)
    assert first.total_requested == 0

    instance.report_runless_asset_event(
        dg.AssetMaterialization("candles", partition=f"{day}|{BTC_1M}")
    )
    second = dg.evaluate_automation_conditions(definitions, instance, cursor=first.cursor)

    # the rewritten day's export, and the models built on it, in the same tick
    requested = {
        key: second.get_requested_partitions(dg.AssetKey(key))
        for key in (
            "lake_candles",
            "lake_coverage",
            "merged_training_dataset",
            "daily_coverage",
            "cross_exchange_minutes",
        )
    }
    assert requested == {key: {day.isoformat()} for key in requested}
    assert second.total_requested == 5
    for key in requested:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day.isoformat()))
    third = dg.evaluate_automation_conditions(definitions, instance, cursor=second.cursor)
    assert third.total_requested == 0


def test_live_data_sensor_reports_new_rows_for_freshness(catalogs, instance, resources) -> None:
    pair = query(catalogs.realtime, "SELECT id FROM trading_pairs ORDER BY id LIMIT 1")[0][0]
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    query(
        catalogs.realtime,
        "INSERT INTO open_interest (trading_pair_id, time, open_interest) VALUES ($1, $2, 5)",
        pair,
        minute,
    )

    tick = sensor_tick(live_data, instance, resources)

    [event] = tick.asset_events
    assert event.asset_key == dg.AssetKey("live_open_interest")
    assert event.metadata["rows_last_hour"].value == 1
    assert json.loads(tick.cursor) == {"live_open_interest": minute.isoformat()}
    again = sensor_tick(live_data, instance, resources, tick.cursor)
    assert again.asset_events == []
    spec = next(a for a in load_defs().assets if getattr(a, "key", None) == event.asset_key)
    assert spec.freshness_policy is not None
