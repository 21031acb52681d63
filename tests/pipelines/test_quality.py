"""Checks on clean data, on planted gaps and bad candles, and the gap repair end to end.

One backfill of yesterday (BTC 1m candles, BTC funding) serves the whole module; each test
restores what it plants, so the order of the tests does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_pipelines import automation
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import candles, funding_rates
from kirby_pipelines.defs.lake.assets import lake_candles
from kirby_pipelines.defs.lake.checks import lake_candles_checks
from kirby_pipelines.defs.repair.sensors import gap_repair
from kirby_pipelines.resources import KirbyResource
from kirby_sim import SimulatorServer
from tests.conftest import REPO
from tests.pipelines.conftest import (
    BTC_1M,
    BTC_PAIR,
    catalogs_synced,
    check_results,
    day_tags,
    empty_databases,
    materialize,
    metadata_values,
    query,
    range_tags,
    tick,
    yesterday,
)

CANDLE_CHECKS = [checks.candles_complete, checks.candles_sanity, checks.candles_live_agrees]


@dataclass
class World:
    settings: Settings
    urls: DatabaseUrls
    instance: dg.DagsterInstance
    resources: dict[str, Any]
    starlisting_id: int
    baseline: dict[str, dg.AssetCheckEvaluation]

    def run_checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        """The candle checks alone, for yesterday's BTC 1m partition."""
        result = materialize(
            [candles, *CANDLE_CHECKS],
            self.instance,
            self.resources,
            range_tags(yesterday(), yesterday(), BTC_1M),
            selection=dg.AssetSelection.checks_for_assets(candles),
        )
        assert result.success
        return check_results(result)

    def candle_times(self, start: datetime, end: datetime) -> list[datetime]:
        rows = query(
            self.urls.realtime,
            "SELECT time FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3"
            " ORDER BY time",
            self.starlisting_id,
            start,
            end,
        )
        return [r["time"] for r in rows]


@pytest.fixture(scope="module")
def world(
    database_urls: DatabaseUrls, sim: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("quality")
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.chdir(home)  # no .env, no KIRBY_* variable reaches the settings
        for name in [n for n in __import__("os").environ if n.startswith("KIRBY_")]:
            env.delenv(name)
        settings = Settings(
            _env_file=None,
            database_url=database_urls.realtime,
            training_database_url=database_urls.training,
            home=home / ".kirby",
            realtime_catalog=REPO / "config" / "starlistings.hyperliquid.yaml",
            training_catalog=REPO / "config" / "training_stars.yaml",
            lake_dir=home / "lake",
            hyperliquid_rest_url=sim.base_url,
            binance_spot_url=sim.base_url,
            binance_futures_url=sim.base_url,
        )
        catalogs_synced(database_urls, instance)
        resources = {"kirby": KirbyResource.of(settings), "progress": None}
        day = yesterday()
        backfill = materialize(
            [candles, *CANDLE_CHECKS], instance, resources, range_tags(day, day, BTC_1M)
        )
        assert backfill.success
        funding = materialize(
            [funding_rates, checks.funding_rates_settled_hourly],
            instance,
            resources,
            range_tags(day, day, BTC_PAIR),
        )
        assert funding.success
        star = query(
            database_urls.realtime,
            "SELECT s.id FROM starlistings s JOIN coins c ON c.id = s.coin_id"
            " JOIN intervals i ON i.id = s.interval_id WHERE c.symbol = 'BTC' AND i.name = '1m'",
        )[0]["id"]
        baseline = {**check_results(backfill), **check_results(funding)}
        yield World(settings, database_urls, instance, resources, star, baseline)
        empty_databases(database_urls)


def noon() -> datetime:
    return datetime.combine(yesterday(), time(12), UTC)


def test_checks_pass_on_clean_data(world: World) -> None:
    assert set(world.baseline) == {
        "candles_complete",
        "candles_ohlc_sane",
        "candles_timestamps_aligned",
        "candles_live_agrees",
        "funding_rates_settled_hourly",
    }
    assert all(e.passed for e in world.baseline.values())
    complete = metadata_values(world.baseline["candles_complete"].metadata)
    assert complete["expected"] == 1440
    assert complete["present"] + complete["no_trades"] == 1440  # quiet minutes: no candle
    assert complete["unexplained"] == complete["collector_outage"] == 0
    assert complete["failed_partitions"] == []


def test_a_planted_gap_fails_completeness_and_the_sensor_repairs_exactly_that_partition(
    world: World,
) -> None:
    start, end = noon(), noon() + timedelta(minutes=10)
    deleted = world.candle_times(start, end)
    assert len(deleted) >= 9
    query(
        world.urls.realtime,
        "DELETE FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3",
        world.starlisting_id,
        start,
        end,
    )
    # ... and the collector recorded the outage (after the day's backfill)
    query(
        world.urls.realtime,
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('candles', $1, $2, $3, 'planted: connection lost')",
        world.starlisting_id,
        start,
        end,
    )

    found = world.run_checks()

    complete = metadata_values(found["candles_complete"].metadata)
    assert not found["candles_complete"].passed
    assert complete["collector_outage"] == len(deleted)
    assert complete["failed_partitions"] == [f"{yesterday()}|{BTC_1M}"]
    assert found["candles_ohlc_sane"].passed

    first = tick(gap_repair, world.instance, world.resources)

    [request] = first.run_requests
    partition = f"{yesterday()}|{BTC_1M}"
    assert request.asset_selection == [dg.AssetKey("candles")]
    assert (
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
    ) == (partition, partition)
    cursor = automation.RepairCursor.parse(first.cursor)
    assert cursor.outage_id == 1 and cursor.check_records["candles_complete"] > 0

    repair = materialize([candles, *CANDLE_CHECKS], world.instance, world.resources, request.tags)

    assert repair.success
    assert world.candle_times(start, end) == deleted
    assert all(e.passed for e in repair.get_asset_check_evaluations())
    # the same outage and check failure are not repaired twice
    again = tick(gap_repair, world.instance, world.resources, first.cursor)
    assert again.run_requests == []


def test_rows_lost_after_the_backfill_are_unexplained(world: World) -> None:
    lost = noon() + timedelta(hours=3)
    query(
        world.urls.realtime,
        "DELETE FROM candles WHERE starlisting_id = $1 AND time = $2",
        world.starlisting_id,
        lost,
    )
    try:
        found = world.run_checks()
    finally:
        materialize(
            [candles], world.instance, world.resources, range_tags(yesterday(), yesterday(), BTC_1M)
        )
    assert not found["candles_complete"].passed
    figures = metadata_values(found["candles_complete"].metadata)
    assert (figures["unexplained"], figures["collector_outage"]) == (1, 0)


def test_a_spike_fails_ohlc_sanity(world: World) -> None:
    spike = noon() + timedelta(hours=5)
    query(
        world.urls.realtime,
        "UPDATE candles SET high = high * 10 WHERE starlisting_id = $1 AND time = $2",
        world.starlisting_id,
        spike,
    )
    try:
        found = world.run_checks()
    finally:
        materialize(
            [candles], world.instance, world.resources, range_tags(yesterday(), yesterday(), BTC_1M)
        )
    assert not found["candles_ohlc_sane"].passed
    assert metadata_values(found["candles_ohlc_sane"].metadata)["spikes"] == 1
    assert found["candles_timestamps_aligned"].passed


def test_live_candles_that_disagree_with_rest_are_reported(world: World) -> None:
    minute = noon() + timedelta(hours=7)
    query(  # as if the collector had missed the minute's last trades
        world.urls.realtime,
        "UPDATE candles SET volume = volume / 2 WHERE starlisting_id = $1 AND time = $2",
        world.starlisting_id,
        minute,
    )

    result = materialize(
        [candles, *CANDLE_CHECKS],
        world.instance,
        world.resources,
        range_tags(yesterday(), yesterday(), BTC_1M),
    )

    found = check_results(result)
    assert result.success  # a warning, not a failure
    assert not found["candles_live_agrees"].passed
    assert found["candles_live_agrees"].severity == dg.AssetCheckSeverity.WARN
    figures = metadata_values(found["candles_live_agrees"].metadata)
    assert figures["disagreeing"] == 1 and figures["compared"] >= 1400
    assert found["candles_complete"].passed  # and the backfill repaired the value


def test_a_missing_settlement_fails_the_funding_check(world: World) -> None:
    hour = noon() + timedelta(hours=2)
    query(
        world.urls.realtime,
        "UPDATE funding_rates SET settled_funding_rate = NULL WHERE time = $1",
        hour,
    )
    try:
        result = materialize(
            [funding_rates, checks.funding_rates_settled_hourly],
            world.instance,
            world.resources,
            range_tags(yesterday(), yesterday(), BTC_PAIR),
            selection=dg.AssetSelection.checks_for_assets(funding_rates),
        )
    finally:
        materialize(
            [funding_rates],
            world.instance,
            world.resources,
            range_tags(yesterday(), yesterday(), BTC_PAIR),
        )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    figures = metadata_values(evaluation.metadata)
    assert (figures["settlements"], figures["gaps"]) == (23, 1)


def test_the_lake_holds_exactly_the_database_rows(world: World) -> None:
    day = yesterday()
    result = materialize(
        [lake_candles, lake_candles_checks], world.instance, world.resources, day_tags(day, day)
    )

    assert result.success
    stored = query(world.urls.realtime, "SELECT count(*) FROM candles")[0][0]
    assert (
        metadata_values(result.asset_materializations_for_node("lake_candles")[0].metadata)["rows"]
        == stored
    )
    assert all(e.passed for e in result.get_asset_check_evaluations())

    lake_file = next(
        (Path(world.settings.lake_dir) / "candles").glob("**/interval=1m/**/*.parquet")
    )
    lake_file.unlink()
    found = check_results(
        materialize(
            [lake_candles, lake_candles_checks],
            world.instance,
            world.resources,
            day_tags(day, day),
            selection=dg.AssetSelection.checks_for_assets(lake_candles),
        )
    )
    assert not found["lake_candles_rows_match"].passed
    assert metadata_values(found["lake_candles_rows_match"].metadata)["series_mismatched"] == 1
