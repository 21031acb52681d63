"""Supervision of the live collector: the rules, and the sensor against real processes.

The rules are a pure function, tested by table. The sensor is then evaluated tick by tick
(no daemon) against a temporary Dagster instance, the test PostgreSQL and real collectors:
a standalone `kirby stream`, and stream runs executed by `dagster job execute` the way a
run worker executes them, killed with SIGKILL like a crashed worker or code server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_pipelines.definitions import defs as load_defs
from kirby_pipelines.defs.stream.resources import StreamResource
from kirby_pipelines.defs.stream.sensors import stream_supervisor
from kirby_pipelines.defs.stream.supervision import (
    STREAM_TAGS,
    Memory,
    RunView,
    collector_id,
    plan,
)
from kirby_pipelines.resources import KirbyResource
from kirby_sim import SimulatorServer
from tests.conftest import REPO
from tests.pipelines.conftest import empty_databases, query, run_async
from tests.stream.helpers import KIRBY_STREAM

S = dg.DagsterRunStatus
STALE = 60.0
NOW = 10_000.0


# --- the definitions ---------------------------------------------------------------------


def test_the_code_location_has_the_stream_job_and_its_supervisor() -> None:
    definitions = load_defs()
    dg.Definitions.validate_loadable(definitions)
    job = definitions.resolve_job_def("stream")
    assert job.tags == STREAM_TAGS
    assert job.executor_def == dg.in_process_executor
    assert [node.name for node in job.nodes] == ["collect_stream"]
    sensor = definitions.resolve_sensor_def("stream_supervisor")
    assert sensor.job_name == "stream"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 30
    assert {"kirby", "stream"} <= set(definitions.resources)


# --- the rules --------------------------------------------------------------------------


def run(run_id: str, status: dg.DagsterRunStatus, started_ago: float | None = 300.0) -> RunView:
    return RunView(run_id, status, None if started_ago is None else NOW - started_ago)


@pytest.mark.parametrize(
    ("runs", "fresh", "memory", "launch", "terminate", "force", "reason"),
    [
        # nothing anywhere: launch
        ([], set(), Memory(), True, [], [], "no healthy collector"),
        # a standalone `kirby stream` is healthy: nothing to do
        ([], {"host-1-2"}, Memory(), False, [], [], "healthy: host-1-2"),
        # a queued or starting run holds the seat
        ([run("a", S.QUEUED, None)], set(), Memory(), False, [], [], "run a is queued"),
        ([run("a", S.STARTING, None)], set(), Memory(), False, [], [], "run a is starting"),
        # a run still connecting (started < stale_after ago) gets its chance
        ([run("a", S.STARTED, 10)], set(), Memory(), False, [], [], "starting its collector"),
        # a healthy run
        ([run("a", S.STARTED)], {"dagster-a"}, Memory(), False, [], [], "healthy: dagster-a"),
        # stale once: suspect, wait a tick
        ([run("a", S.STARTED)], set(), Memory(), False, [], [], "terminated next tick"),
        # stale twice: terminate and launch its replacement (queued behind it)
        ([run("a", S.STARTED)], set(), Memory({"a": NOW - 30}), True, ["a"], [], "launching"),
        # recovered between ticks: forgiven
        ([run("a", S.STARTED)], {"dagster-a"}, Memory({"a": NOW - 30}), False, [], [], "healthy"),
        # canceling for a while: its worker is gone, free the slot
        (
            [run("a", S.CANCELING)],
            set(),
            Memory(canceling={"a": NOW - STALE}),
            True,
            [],
            ["a"],
            "launching",
        ),
        ([run("a", S.CANCELING)], set(), Memory(), True, [], [], "launching"),
    ],
)
def test_supervision_rules(
    runs: list[RunView],
    fresh: set[str],
    memory: Memory,
    launch: bool,
    terminate: list[str],
    force: list[str],
    reason: str,
) -> None:
    decided = plan(NOW, runs, fresh, STALE, memory)
    assert (decided.launch, decided.terminate, decided.force_cancel) == (launch, terminate, force)
    assert reason in decided.reason
    assert Memory.from_cursor(decided.memory.to_cursor()) == decided.memory


def test_a_suspect_is_remembered_in_the_cursor_and_dropped_once_gone() -> None:
    first = plan(NOW, [run("a", S.STARTED)], set(), STALE, Memory())
    assert first.memory.suspects == {"a": NOW}
    gone = plan(NOW + 30, [], set(), STALE, first.memory)
    assert gone.memory == Memory() and gone.launch


# --- the sensor against real collectors --------------------------------------------------

STALE_SECONDS = 1.5
HEARTBEAT_SECONDS = 0.3


@dataclass
class Supervisor:
    """Ticks the real sensor the way the daemon would, keeping its cursor."""

    instance: dg.DagsterInstance
    resources: dict[str, Any]
    cursor: str | None = None
    skipped: list[str] = field(default_factory=list)

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        result = stream_supervisor(context)
        if isinstance(result, dg.SkipReason):
            self.skipped.append(result.skip_message or "")
            return []
        self.cursor = result.cursor
        if result.skip_reason is not None:
            self.skipped.append(result.skip_reason.skip_message or "")
        return list(result.run_requests or [])


@pytest.fixture
def realtime_catalog(database_urls: DatabaseUrls) -> Iterator[str]:
    async def sync() -> None:
        import asyncpg

        conn = await asyncpg.connect(database_urls.realtime)
        try:
            await catalog_store.sync_catalog(
                conn, load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
            )
        finally:
            await conn.close()

    run_async(sync())
    yield database_urls.realtime
    empty_databases(database_urls)


@pytest.fixture
def environment(
    realtime_catalog: str, sim: SimulatorServer, tmp_path: Path, instance: dg.DagsterInstance
) -> dict[str, str]:
    """What a collector process (standalone or a run worker) is started with."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")}
    return {
        **base,
        "DAGSTER_HOME": os.environ["DAGSTER_HOME"],  # the test instance's directory
        "KIRBY_DATABASE_URL": realtime_catalog,
        "KIRBY_HYPERLIQUID_WS_URL": sim.ws_url,
        "KIRBY_HOME": str(tmp_path / ".kirby"),
        "KIRBY_STREAM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    }


@pytest.fixture
def supervisor(
    settings: Settings, realtime_catalog: str, instance: dg.DagsterInstance
) -> Supervisor:
    supervised = settings.model_copy(update={"stream_stale_seconds": STALE_SECONDS})
    return Supervisor(instance, {"kirby": KirbyResource.of(supervised), "stream": StreamResource()})


def wait_for(condition: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.05)
    return value


def heartbeat_age(url: str, collector: str) -> float | None:
    rows = query(
        url,
        "SELECT extract(epoch FROM now() - heartbeat_at) AS age FROM stream_heartbeats"
        " WHERE collector_id = $1",
        collector,
    )
    return float(rows[0]["age"]) if rows else None


def fresh(url: str, collector: str) -> bool:
    age = heartbeat_age(url, collector)
    return age is not None and age < 2 * HEARTBEAT_SECONDS


def stale(url: str, collector: str) -> bool:
    age = heartbeat_age(url, collector)
    return age is None or age > STALE_SECONDS


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a process whose output goes to `log` (kept by pytest for a failed test)."""
    with log.open("w") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def execute_stream_run(env: dict[str, str], request: dg.RunRequest, log: Path) -> subprocess.Popen:
    """Execute a run request the way a run worker does, in its own process."""
    location = REPO / "tests" / "pipelines" / "stream_location.py"
    return spawn(
        [
            str(Path(sys.executable).with_name("dagster")),
            "job",
            "execute",
            "-f",
            str(location),
            "-a",
            "defs",
            "-j",
            "stream",
            "--tags",
            json.dumps(request.tags),
        ],
        env,
        log,
    )


LIVE_ASSETS = {"live_candles", "live_funding_rates", "live_open_interest"}


def observed_assets(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION
    ).records
    return {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}


def started_run(instance: dg.DagsterInstance, known: set[str]) -> str:
    runs = instance.get_runs(dg.RunsFilter(job_name="stream", statuses=[S.STARTED]))
    new = [r.run_id for r in runs if r.run_id not in known]
    return new[0] if new else ""


def test_supervisor_keeps_one_collector_alive_and_replaces_a_killed_one(
    supervisor: Supervisor,
    environment: dict[str, str],
    realtime_catalog: str,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    url = realtime_catalog
    # no collector at all: launch
    (request,) = supervisor.tick()
    assert request.tags == STREAM_TAGS

    # a standalone `kirby stream` with a fresh heartbeat is healthy; killed, it is not
    logs = tmp_path / "logs"
    logs.mkdir()
    standalone = spawn(
        [sys.executable, "-c", KIRBY_STREAM, "stream"], environment, logs / "standalone.log"
    )
    try:
        beat = wait_for(lambda: query(url, "SELECT collector_id FROM stream_heartbeats"))
        standalone_id = beat[0]["collector_id"]
        wait_for(lambda: fresh(url, standalone_id))
        assert supervisor.tick() == []
        assert supervisor.skipped[-1] == f"healthy: {standalone_id}"
    finally:
        standalone.kill()
        standalone.wait()
    wait_for(lambda: stale(url, standalone_id))
    (request,) = supervisor.tick()

    # the launched run collects, and counts as healthy
    worker = execute_stream_run(environment, request, logs / "run_a.log")
    try:
        run_a = wait_for(lambda: started_run(instance, set()))
        wait_for(lambda: fresh(url, collector_id(run_a)))
        assert supervisor.tick() == []
        assert supervisor.skipped[-1] == f"healthy: {collector_id(run_a)}"
    finally:
        worker.kill()  # the worker dies without a word: its run stays STARTED
        worker.wait()
    assert instance.get_run_by_id(run_a).status == S.STARTED

    # stale on one tick: suspect; still stale on the next: canceled and replaced
    wait_for(lambda: stale(url, collector_id(run_a)))
    assert supervisor.tick() == []
    assert "terminated next tick" in supervisor.skipped[-1]
    (request,) = supervisor.tick()
    assert instance.get_run_by_id(run_a).status == S.CANCELED

    # the replacement collects; canceling it (as Dagster does) flushes and ends it cleanly
    worker = execute_stream_run(environment, request, logs / "run_b.log")
    try:
        run_b = wait_for(lambda: started_run(instance, {run_a}))
        wait_for(lambda: fresh(url, collector_id(run_b)))
        assert supervisor.tick() == []
        assert supervisor.skipped[-1] == f"healthy: {collector_id(run_b)}"
        # the op logs the three observations one after another: cancel after the third
        wait_for(lambda: observed_assets(instance, run_b) == LIVE_ASSETS)
        instance.report_run_canceling(instance.get_run_by_id(run_b))
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert instance.get_run_by_id(run_b).status == S.CANCELED
    assert observed_assets(instance, run_b) == LIVE_ASSETS
    # its collector stopped in order: last flush written, then a last heartbeat saying so
    (beat,) = query(
        url, "SELECT * FROM stream_heartbeats WHERE collector_id = $1", collector_id(run_b)
    )
    assert set(json.loads(beat["buffer_sizes"]).values()) == {0}
    assert json.loads(beat["rows_written"])["funding_rates"] >= 2


def test_supervisor_switched_off_or_blind_decides_nothing(
    settings: Settings, instance: dg.DagsterInstance, realtime_catalog: str
) -> None:
    off = settings.model_copy(update={"stream_supervisor_enabled": False})
    switched_off = Supervisor(
        instance, {"kirby": KirbyResource.of(off), "stream": StreamResource()}
    )
    assert switched_off.tick() == []
    assert switched_off.skipped == ["switched off by KIRBY_STREAM_SUPERVISOR_ENABLED=false"]

    unreachable = settings.model_copy(
        update={"database_url": "postgresql://kirby@127.0.0.1:9/kirby"}
    )
    blind = Supervisor(
        instance, {"kirby": KirbyResource.of(unreachable), "stream": StreamResource()}
    )
    assert blind.tick() == []
    assert blind.skipped[0].startswith("database unreachable, nothing decided")


def test_a_collector_that_stopped_cleanly_is_replaced_without_waiting(
    supervisor: Supervisor, realtime_catalog: str
) -> None:
    """Its last heartbeat is fresh but says `stopped`: nothing is collecting any more."""
    query(
        realtime_catalog,
        "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at,"
        " state) VALUES ('standalone', 'box', 1, now(), now(), 'stopped')",
    )
    [request] = supervisor.tick()
    assert request.tags == STREAM_TAGS
