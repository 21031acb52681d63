"""Partitions as the Dagster UI shows them: days start where each database's data can, series
keys put the coin first (older keys translated), and a UI backfill's runs are as README says."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest

from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_pipelines import automation, catalogs
from kirby_pipelines.definitions import defs as load_defs
from kirby_pipelines.partitions import FIRST_DAYS, current_key, parse_series, series_key


def _first_day(partitions_def: dg.PartitionsDefinition) -> date:
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        (days,) = [d.partitions_def for d in partitions_def.partitions_defs if d.name == "date"]
        partitions_def = days
    assert isinstance(partitions_def, dg.DailyPartitionsDefinition)
    return partitions_def.start.date()


@pytest.mark.parametrize(
    ("asset", "database"),
    [
        ("candles", "realtime"),
        ("funding_rates", "realtime"),
        ("training_candles", "training"),
        # one day axis for the lake and the models (exported and built together): the earliest
        ("lake_candles", "training"),
        ("lake_training_candles", "training"),
        ("merged_training_dataset", "training"),
        ("daily_coverage", "training"),
    ],
)
def test_days_start_where_the_data_can(asset: str, database: str) -> None:
    graph = load_defs().resolve_asset_graph()
    first = _first_day(graph.get(dg.AssetKey(asset)).partitions_def)
    assert first == date.fromisoformat(FIRST_DAYS[database])


def test_first_days() -> None:
    assert FIRST_DAYS == {"realtime": "2023-05-12", "training": "2020-01-01"}


def _runs(asset: str, days: list[str], series: list[str]) -> list[set[str]]:
    """The runs Dagster's backfill daemon makes of a UI backfill: partition keys per run."""
    from dagster._core.definitions.automation_tick_evaluation_context import (
        build_run_requests_with_backfill_policies,
    )
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.definitions.partitions.context import partition_loading_context

    graph = load_defs().resolve_asset_graph()
    partitions_def = graph.get(dg.AssetKey(asset)).partitions_def
    with (
        dg.DagsterInstance.ephemeral() as instance,
        partition_loading_context(dynamic_partitions_store=instance),
    ):
        instance.add_dynamic_partitions("starlistings", SERIES)
        keys = [f"{day}|{s}" for day in days for s in series]
        requests = build_run_requests_with_backfill_policies(
            [AssetKeyPartitionKey(dg.AssetKey(asset), key) for key in keys], graph, instance
        )
        return [
            {
                str(key)
                for key in partitions_def.get_partition_keys_in_range(
                    dg.PartitionKeyRange(
                        r.tags["dagster/asset_partition_range_start"],
                        r.tags["dagster/asset_partition_range_end"],
                    ),
                    dynamic_partitions_store=instance,
                )
            }
            for r in requests
        ]


SERIES = [
    "BTC@hyperliquid/USD/perps/1m",
    "BTC@hyperliquid/USD/perps/15m",
    "SOL@hyperliquid/USD/perps/1m",
]
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


def test_a_ui_backfill_of_more_days_than_series_is_one_run_per_series() -> None:
    """What README says: Dagster groups a multi-partition backfill by the dimension with
    fewer selected keys; with more days than series, each run is one series' days."""
    runs = _runs("candles", DAYS, SERIES[:2])
    assert sorted(runs, key=sorted) == sorted(
        [{f"{d}|{s}" for d in DAYS} for s in SERIES[:2]], key=sorted
    )


def test_a_ui_backfill_of_more_series_than_days_is_one_run_per_day() -> None:
    runs = _runs("candles", DAYS[:1], SERIES)
    assert runs == [{f"{DAYS[0]}|{s}" for s in SERIES}]


@pytest.mark.parametrize(
    ("key", "text", "legacy"),
    [
        (
            StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1m"),
            "BTC@hyperliquid/USD/perps/1m",
            "hyperliquid/BTC/USD/perps/1m",
        ),
        (
            TradingPairKey("hyperliquid", "SOL", "USD", "perps"),
            "SOL@hyperliquid/USD/perps",
            "hyperliquid/SOL/USD/perps",
        ),
        (
            StarlistingKey("binance", "ETH", "USDT", "spot", "1d"),
            "ETH@binance/USDT/spot/1d",
            "binance/ETH/USDT/spot/1d",
        ),
    ],
)
def test_series_keys_put_the_coin_first(key, text: str, legacy: str) -> None:
    assert series_key(key) == text
    assert parse_series(text) == key
    assert parse_series(legacy) == key
    assert current_key(legacy) == current_key(text) == text


def test_a_sync_translates_registered_keys_of_the_older_spelling() -> None:
    star = Starlisting(1, StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1m"), 1, 60, True)
    pair = TradingPair(1, TradingPairKey("hyperliquid", "BTC", "USD", "perps"), True)
    series = catalogs.DatabaseSeries("realtime", (star,), (pair,))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("starlistings", ["hyperliquid/BTC/USD/perps/1m"])
        instance.add_dynamic_partitions("trading_pairs", ["hyperliquid/BTC/USD/perps"])
        added = catalogs.register(instance, series)
        assert added == {
            "starlistings": ["BTC@hyperliquid/USD/perps/1m"],
            "trading_pairs": ["BTC@hyperliquid/USD/perps"],
        }
        assert instance.get_dynamic_partitions("starlistings") == ["BTC@hyperliquid/USD/perps/1m"]
        assert instance.get_dynamic_partitions("trading_pairs") == ["BTC@hyperliquid/USD/perps"]


def test_sensor_cursors_of_the_older_spelling_are_translated() -> None:
    known = automation.json_cursor(
        json.dumps({"candles": ["hyperliquid/BTC/USD/perps/1m", "BTC@hyperliquid/USD/perps/1m"]})
    )
    assert known == {"candles": ["BTC@hyperliquid/USD/perps/1m"]}
    repair = automation.RepairCursor.parse(
        json.dumps({"pending": [["funding_rates", "hyperliquid/SOL/USD/perps", "2024-05-01"]]})
    )
    assert repair.pending == [("funding_rates", "SOL@hyperliquid/USD/perps", "2024-05-01")]
