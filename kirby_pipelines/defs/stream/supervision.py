"""The supervisor's rules: what one `stream_supervisor` tick decides from what it sees.

Inputs are the unfinished runs of the `stream` job and which collectors have a fresh
heartbeat (any collector: a standalone `kirby stream` counts). A stream run writes its
heartbeat as collector `dagster-<run id>`.

- A fresh heartbeat anywhere means the stream is healthy: nothing is launched.
- A run that is queued or starting, or started less than `stale_after` ago (still
  connecting), holds the seat: nothing is launched, it gets its chance.
- A started run without a fresh heartbeat is suspect on the first tick and terminated on
  the next one if still stale, so a single missed beat (a database hiccup as the tick
  reads) never kills a working collector.
- A run stuck in CANCELING for `stale_after` (its worker died, nobody will report its end)
  is marked canceled so that it frees the run-concurrency slot.
- With no healthy collector and no run holding the seat, one run is requested; the
  `kirby/stream` tag limit in dagster.yaml queues it until a terminated run has finished.

What a tick must remember for the next one (suspects, runs being canceled) lives in the
sensor cursor. Everything here is pure; `sensors.py` does the reading and the acting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from dagster import DagsterRunStatus

JOB_NAME = "stream"
STREAM_TAG = "kirby/stream"
STREAM_TAGS = {STREAM_TAG: "collector"}
"""Every stream run carries it; dagster.yaml allows one in-progress run with it."""

_WAITING = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)


def collector_id(run_id: str) -> str:
    return f"dagster-{run_id}"


@dataclass(frozen=True)
class RunView:
    run_id: str
    status: DagsterRunStatus
    started_at: float | None
    """Epoch seconds, once the run has started."""


@dataclass(frozen=True)
class Memory:
    suspects: dict[str, float] = field(default_factory=dict)
    """Run id -> when it was first seen started without a fresh heartbeat."""
    canceling: dict[str, float] = field(default_factory=dict)
    """Run id -> when it was first seen canceling."""

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Memory:
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        return cls(dict(raw.get("suspects", {})), dict(raw.get("canceling", {})))

    def to_cursor(self) -> str:
        return json.dumps({"suspects": self.suspects, "canceling": self.canceling})


@dataclass(frozen=True)
class Plan:
    launch: bool
    terminate: list[str]
    force_cancel: list[str]
    memory: Memory
    reason: str


def plan(
    now: float,
    runs: Iterable[RunView],
    fresh_collectors: set[str],
    stale_after: float,
    memory: Memory,
) -> Plan:
    suspects: dict[str, float] = {}
    canceling: dict[str, float] = {}
    terminate: list[str] = []
    force_cancel: list[str] = []
    holding: list[str] = []
    for run in runs:
        run_id = run.run_id
        if run.status == DagsterRunStatus.CANCELING:
            canceling[run_id] = since = memory.canceling.get(run_id, now)
            if now - since >= stale_after:
                force_cancel.append(run_id)
        elif run.status in _WAITING:
            holding.append(f"run {run_id} is {run.status.value.lower()}")
        elif run.status == DagsterRunStatus.STARTED:
            if collector_id(run_id) in fresh_collectors:
                holding.append(f"run {run_id} is healthy")
            elif run.started_at is None or now - run.started_at < stale_after:
                holding.append(f"run {run_id} is starting its collector")
            elif run_id in memory.suspects:
                terminate.append(run_id)
                canceling[run_id] = now
            else:
                suspects[run_id] = now
                holding.append(f"run {run_id} has no fresh heartbeat; terminated next tick if so")
    launch = not fresh_collectors and not holding
    if fresh_collectors:
        reason = f"healthy: {', '.join(sorted(fresh_collectors))}"
    elif holding:
        reason = "; ".join(holding)
    else:
        reason = "no healthy collector: launching a stream run"
    return Plan(launch, terminate, force_cancel, Memory(suspects, canceling), reason)
