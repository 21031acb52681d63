"""Partitions as the Dagster UI shows them: days start where each database's data can."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from kirby_pipelines.definitions import defs as load_defs
from kirby_pipelines.partitions import FIRST_DAYS


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
        ("lake_candles", "realtime"),
        ("lake_funding_rates", "realtime"),
        ("lake_open_interest", "realtime"),
        ("training_candles", "training"),
        ("lake_training_candles", "training"),
        ("merged_training_dataset", "training"),  # reads both: from the earliest
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
