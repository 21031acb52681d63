"""One backfill run at a time per exchange, through the repository's dagster.yaml and Dagster's
own run queue: runs Kirby requests carry `kirby/exchange`, runs Dagster builds (a UI backfill)
get it from the coordinator, a run over several exchanges' series is failed, not queued, and
`kirby backfill`'s in-process runs wait for their exchange."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from kirby_pipelines.backfill_plans import wait_for_exchange
from kirby_pipelines.partitions import TRADING_PAIRS, name_of
from kirby_pipelines.run_queue import KirbyRunCoordinator
from kirby_pipelines.runs import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG
from tests.pipelines.test_instance_config import instance_from_repository_yaml

PAIRS = [
    "BTC@hyperliquid/USD/perps",
    "BTC@bybit/USDT/perps",
    "ETH@bybit/USDT/perps",
    "BTC@okx/USDT/perps",
]


@pytest.fixture
def queue_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_urls
) -> Iterator[dg.DagsterInstance]:
    """The repository's dagster.yaml over SQLite (an external Kirby database, no Dagster URL)."""
    monkeypatch.setenv("KIRBY_HOME", str(tmp_path / ".kirby"))
    monkeypatch.setenv("KIRBY_DATABASE_URL", database_urls.realtime)
    with instance_from_repository_yaml(tmp_path) as instance:
        instance.add_dynamic_partitions(name_of(TRADING_PAIRS), PAIRS)
        yield instance


ORIGIN = RemoteJobOrigin(
    RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("kirby"), "__repository__"), "__ASSET_JOB"
)
"""Where a queued run's job lives (Dagster queues no run without one)."""


def submitted(instance: dg.DagsterInstance, asset: str, tags: dict[str, str]) -> dg.DagsterRun:
    """A run of `asset` as Dagster creates it, submitted to the instance's coordinator."""
    run = instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags=tags,
            asset_selection=frozenset({dg.AssetKey(asset)}),
            remote_job_origin=ORIGIN,
        )
    )
    return instance.run_coordinator.submit_run(SubmitRunContext(run, None))  # type: ignore[arg-type]


def span(first: str, last: str, day: str = "2026-12-01") -> dict[str, str]:
    return {RANGE_START_TAG: f"{day}|{first}", RANGE_END_TAG: f"{day}|{last}"}


def test_the_queue_lets_one_run_per_exchange_be_in_progress(queue_instance) -> None:
    instance = queue_instance
    assert isinstance(instance.run_coordinator, KirbyRunCoordinator)
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": EXCHANGE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits

    # a Bybit run in progress
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags={EXCHANGE_TAG: "bybit"}
        )
    )
    # queued the way a UI backfill's runs are: no exchange tag, the coordinator adds it
    bybit = submitted(instance, "open_interest", span(PAIRS[1], PAIRS[2]))
    okx = submitted(instance, "open_interest", span(PAIRS[3], PAIRS[3]))
    # Kirby's own request, tagged already
    hyperliquid = submitted(
        instance, "funding_rates", {**span(PAIRS[0], PAIRS[0]), EXCHANGE_TAG: "hyperliquid"}
    )
    assert [r.status for r in (bybit, okx, hyperliquid)] == [dg.DagsterRunStatus.QUEUED] * 3
    assert [r.tags[EXCHANGE_TAG] for r in (bybit, okx, hyperliquid)] == [
        "bybit",
        "okx",
        "hyperliquid",
    ]

    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    dequeued = daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)
    # Bybit's run waits for the one in progress; the other exchanges' go
    assert sorted(r.run_id for r in dequeued) == sorted([okx.run_id, hyperliquid.run_id])


def test_a_run_over_several_exchanges_is_failed_before_it_fetches(queue_instance) -> None:
    # a day over every pair: what Dagster cuts from a UI backfill of fewer days than series
    run = submitted(queue_instance, "funding_rates", span(PAIRS[0], PAIRS[3]))
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert EXCHANGE_TAG not in run.tags
    [failure] = [
        e
        for e in queue_instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
    ]
    assert "covers series of bybit, hyperliquid, okx" in failure.message


def test_runs_without_series_partitions_are_left_alone(queue_instance) -> None:
    lake = submitted(queue_instance, "lake_candles", {RANGE_START_TAG: "2026-12-01"})
    assert lake.status == dg.DagsterRunStatus.QUEUED
    assert EXCHANGE_TAG not in lake.tags


def test_kirby_backfill_waits_while_a_run_of_its_exchange_is_in_progress(instance) -> None:
    """`kirby backfill` runs in process, outside the queue: it waits as the queue would."""
    bybit = instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED, tags={EXCHANGE_TAG: "bybit"}
        )
    )
    waited: list[str] = []

    def wait(exchange: str) -> None:
        waited.append(exchange)
        instance.report_run_canceled(bybit)  # the run in progress ends

    wait_for_exchange(instance, "okx", wait)
    assert waited == []
    wait_for_exchange(instance, "bybit", wait)
    assert waited == ["bybit"]
    assert instance.get_run_by_id(bybit.run_id).status == dg.DagsterRunStatus.CANCELED


def test_dagster_cuts_a_backfill_of_one_exchange_into_runs_of_that_exchange(instance) -> None:
    """How Dagster's multi-run backfill policy cuts a UI selection (the reason for the above):
    fewer days than series gives a run per day over a range of series, which spans exchanges
    unless the backfill holds one exchange's series (what the stack launches)."""
    from dagster._core.definitions.automation_tick_evaluation_context import (
        build_run_requests_with_backfill_policies,
    )
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.definitions.partitions.context import partition_loading_context

    from kirby_pipelines.definitions import defs
    from kirby_pipelines.runs import by_exchange, exchange_of, run_series

    instance.add_dynamic_partitions(name_of(TRADING_PAIRS), PAIRS)
    graph = defs().resolve_asset_graph()
    days = ["2026-12-01", "2026-12-02"]

    def runs(keys: list[str]) -> list[set[str]]:
        wanted = [AssetKeyPartitionKey(dg.AssetKey("open_interest"), key) for key in keys]
        with partition_loading_context(dynamic_partitions_store=instance):
            requests = build_run_requests_with_backfill_policies(wanted, graph, instance)
        return [{exchange_of(s) for s in run_series(r.tags, PAIRS)} for r in requests]

    every = [f"{day}|{pair}" for day in days for pair in PAIRS]
    assert sorted(map(sorted, runs(every))) == [["bybit", "hyperliquid", "okx"]] * 2
    for exchange, keys in by_exchange(every).items():
        assert runs(keys) and all(found == {exchange} for found in runs(keys))
