"""Fixtures for the Dagster pipelines: a real-time simulator, a persistent temporary Dagster
instance, Kirby's resources pointed at both, and synchronous database helpers.

The simulator runs at real speed from the real clock, because Dagster's daily partitions
follow the real clock too: "yesterday" is a partition and Hyperliquid (simulated) still
serves its 1m candles; "six days ago" is a partition it no longer serves. Rate limits are
off (retries are tested with the adapters). Tests are synchronous: Dagster runs its assets
in this thread, and the assets start their own event loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import dagster as dg
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.resources import KirbyResource
from kirby_pipelines.runs import RANGE_END_TAG, RANGE_START_TAG
from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.conftest import REPO, empty_tables
from tests.s3 import s3_bucket, s3_server  # noqa: F401  # fixtures of the object-storage tests

BTC_1M = "BTC@hyperliquid/USD/perps/1m"
BTC_15M = "BTC@hyperliquid/USD/perps/15m"
SOL_1M = "SOL@hyperliquid/USD/perps/1m"
BTC_PAIR = "BTC@hyperliquid/USD/perps"
BINANCE_BTC_SPOT_1M = "BTC@binance/USDT/spot/1m"
BINANCE_BTC_PERPS_1M = "BTC@binance/USDT/perps/1m"


def today() -> date:
    return datetime.now(UTC).date()


def yesterday() -> date:
    return today() - timedelta(days=1)


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    with run_simulator_in_thread(SimulatorConfig(rate_limits=False)) as server:
        yield server


@pytest.fixture
def pipeline_settings(settings: Settings, sim: SimulatorServer) -> Settings:
    return settings.model_copy(
        update={
            "hyperliquid_rest_url": sim.base_url,
            "hyperliquid_ws_url": sim.ws_url,
            "binance_spot_url": sim.base_url,
            "binance_futures_url": sim.base_url,
            "bybit_rest_url": sim.base_url,
            "http_timeout_seconds": 10.0,
        }
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def resources(pipeline_settings: Settings) -> dict[str, Any]:
    return {"kirby": KirbyResource.of(pipeline_settings), "progress": None}


def run_async(coroutine):
    return asyncio.run(coroutine)


async def _execute(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    return run_async(_execute(url, sql, *args))


def catalogs_synced(urls: DatabaseUrls, instance: dg.DagsterInstance) -> None:
    """Both catalog files synced into their databases and registered as partitions."""

    async def sync() -> None:
        for url, name in (
            (urls.realtime, "starlistings.hyperliquid.yaml"),
            (urls.training, "training_stars.yaml"),
        ):
            conn = await asyncpg.connect(url)
            try:
                await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / name))
            finally:
                await conn.close()

    run_async(sync())
    for url, database in ((urls.realtime, "realtime"), (urls.training, "training")):
        register(instance, run_async(read_series(url, database)))


def empty_databases(urls: DatabaseUrls) -> None:
    async def empty(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await empty_tables(conn)
        finally:
            await conn.close()

    for url in (urls.realtime, urls.training):
        run_async(empty(url))


@pytest.fixture
def catalogs(database_urls: DatabaseUrls, instance: dg.DagsterInstance) -> Iterator[DatabaseUrls]:
    """Both catalogs synced and registered as partitions; every table emptied afterwards."""
    catalogs_synced(database_urls, instance)
    yield database_urls
    empty_databases(database_urls)


def range_tags(first: date, last: date, series: str, last_series: str | None = None) -> dict:
    return {
        RANGE_START_TAG: f"{first.isoformat()}|{series}",
        RANGE_END_TAG: f"{last.isoformat()}|{last_series or series}",
    }


def day_tags(first: date, last: date) -> dict:
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def materialize(
    assets: Sequence[Any],
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    tags: dict[str, str] | None = None,
    *,
    partition_key: str | None = None,
    run_config: dict | None = None,
    selection: Any = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        tags=tags,
        partition_key=partition_key,
        run_config=run_config,
        selection=selection,
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata_values(metadata: dict) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def tick(sensor: Any, instance: dg.DagsterInstance, resources: dict, cursor: str | None = None):
    """One evaluation of `sensor`, its context closed afterwards (it enters the instance)."""
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return sensor(context)


def schedule_tick(schedule: Any, instance: dg.DagsterInstance, resources: dict, when: datetime):
    with dg.build_schedule_context(
        instance=instance, resources=resources, scheduled_execution_time=when
    ) as context:
        return schedule(context)
