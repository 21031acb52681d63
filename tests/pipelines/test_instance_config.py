"""The repository's dagster.yaml: queued runs with one stream run at a time, and Dagster's
storage in PostgreSQL: KIRBY_DAGSTER_DATABASE_URL's, or with no URL configured at all the
embedded server's; SQLite only beside an external Kirby database without a Dagster URL.
A partitioned run is recorded over a few kept connections, not one per event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator

from kirby_core.db import embedded
from kirby_core.db.urls import with_database
from kirby_pipelines.runs import RANGE_END_TAG, RANGE_START_TAG
from tests.conftest import REPO
from tests.pipelines.conftest import run_async


async def execute_sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _event_batching_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kirby's storage turns on Dagster's batch writes in the environment: undone after."""
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)


async def sessions_opened(url: str) -> int:
    """Connections ever made to the database (each ended one's count is flushed at its exit)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()


def instance_from_repository_yaml(base_dir: Path) -> dg.DagsterInstance:
    """What `dagster dev` builds in the repository root: its dagster.yaml, state elsewhere."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(base_dir), config_dir=str(REPO)))


def test_runs_are_queued_with_one_stream_run_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / ".kirby"
    monkeypatch.setenv("KIRBY_HOME", str(home))
    try:
        with instance_from_repository_yaml(tmp_path) as instance:
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            queue = instance.get_concurrency_config().run_queue_config
            assert {"key": "kirby/stream", "limit": 1} in queue.tag_concurrency_limits
            # no URL configured at all: the embedded server, database kirby_dagster
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert embedded.is_running(home)
            run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
            assert instance.get_run_by_id(run.run_id) is not None
    finally:
        embedded.stop(home)


def test_external_kirby_database_without_dagster_url_uses_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_urls
) -> None:
    monkeypatch.setenv("KIRBY_HOME", str(tmp_path / ".kirby"))
    monkeypatch.setenv("KIRBY_DATABASE_URL", database_urls.realtime)
    with instance_from_repository_yaml(tmp_path) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert (tmp_path / ".kirby" / "dagster").is_dir()


@pytest.fixture
def dagster_database(pg_server: str) -> Iterator[str]:
    name = f"kirby_dagster_test_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")
    run_async(execute_sql(admin, f'CREATE DATABASE "{name}"'))
    yield with_database(pg_server, name)
    run_async(execute_sql(admin, f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_dagster_keeps_its_state_in_postgres_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_database: str
) -> None:
    # a bare postgresql:// URL, as Kirby's other URL settings: the driver is named for it
    monkeypatch.setenv("KIRBY_DAGSTER_DATABASE_URL", dagster_database)
    with instance_from_repository_yaml(tmp_path) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), tags={"a": "b"})
        # a run worker rebuilds the instance from its serialized ref: same storage
        with dg.DagsterInstance.from_ref(instance.get_ref()) as worker_view:
            assert worker_view.get_run_by_id(run.run_id).tags["a"] == "b"


DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAYS)
def daily_export(context) -> None:
    context.log.info("exporting %s", context.partition_key_range)


def test_a_partitioned_run_is_recorded_over_a_few_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_database: str
) -> None:
    # 60 days: 60 planned and 60 materialization events. dagster-postgres alone opens a
    # connection for each (more than 120 sessions); Kirby's storage keeps its connections.
    monkeypatch.setenv("KIRBY_DAGSTER_DATABASE_URL", dagster_database)
    with instance_from_repository_yaml(tmp_path) as instance:
        before = run_async(sessions_opened(dagster_database))
        result = dg.materialize(
            [daily_export],
            instance=instance,
            tags={RANGE_START_TAG: "2026-01-01", RANGE_END_TAG: "2026-03-01"},
        )
        opened = run_async(sessions_opened(dagster_database)) - before
        assert result.success
        days = DAYS.get_partition_keys_in_range(dg.PartitionKeyRange("2026-01-01", "2026-03-01"))
        assert len(days) == 60
        materialized = result.asset_materializations_for_node("daily_export")
        assert sorted(m.partition for m in materialized) == days
        assert instance.get_materialized_partitions(daily_export.key) == set(days)
    assert opened < 15, opened
