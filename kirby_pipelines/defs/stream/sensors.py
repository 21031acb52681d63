"""`stream_supervisor`: keeps exactly one live collector running, through the `stream` job.

Each tick reads the unfinished stream runs and the collectors' heartbeats, applies the rules
in `supervision` and acts: terminates stale runs, marks runs whose worker is gone as
canceled, requests a new run when nothing is healthy. A tick is two short reads (run
storage, one heartbeat query bounded at 10 s) and at most a few run-launcher calls, far
from Dagster's 60 s sensor timeout. With the database unreachable it decides nothing.

Off switches: the sensor starts STOPPED (turn it on in the UI or with `dagster sensor
start stream_supervisor`), and `KIRBY_STREAM_SUPERVISOR_ENABLED=false` makes every tick a
no-op, e.g. while the collector runs outside Dagster or during maintenance.
"""

import time

import dagster as dg

from kirby_core.errors import StorageError
from kirby_pipelines.defs.stream.resources import StreamResource
from kirby_pipelines.defs.stream.supervision import (
    JOB_NAME,
    STREAM_TAGS,
    Memory,
    RunView,
    collector_id,
    plan,
)
from kirby_pipelines.resources import KirbyResource

TICK_SECONDS = 30
RUNS_LOOKED_AT = 50


@dg.sensor(
    name="stream_supervisor",
    job_name=JOB_NAME,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Launches the stream job when no collector is healthy; replaces stale runs.",
)
def stream_supervisor(
    context: dg.SensorEvaluationContext, kirby: KirbyResource, stream: StreamResource
) -> dg.SensorResult | dg.SkipReason:
    settings = kirby.settings()
    if not settings.stream_supervisor_enabled:
        return dg.SkipReason("switched off by KIRBY_STREAM_SUPERVISOR_ENABLED=false")
    instance = context.instance
    records = instance.get_run_records(
        dg.RunsFilter(job_name=JOB_NAME, tags=STREAM_TAGS, statuses=_UNFINISHED),
        limit=RUNS_LOOKED_AT,
    )
    runs = [RunView(r.dagster_run.run_id, r.dagster_run.status, r.start_time) for r in records]
    try:
        beats = stream.heartbeats(settings, [collector_id(run.run_id) for run in runs])
    except StorageError as exc:
        return dg.SkipReason(f"database unreachable, nothing decided: {exc}")
    stale_after = settings.stream_stale_seconds
    fresh = {  # a collector that stopped cleanly beats no more: no need to wait for it
        b.collector_id
        for b in beats
        if b.age.total_seconds() < stale_after and b.state != "stopped"
    }
    decision = plan(time.time(), runs, fresh, stale_after, Memory.from_cursor(context.cursor))
    for run_id in decision.terminate:
        _terminate(context, run_id, stale_after)
    for run_id in decision.force_cancel:
        _mark_canceled(context, run_id, f"still canceling after {stale_after:g} s")
    cursor = decision.memory.to_cursor()
    if decision.launch:
        context.log.info("stream_supervisor: %s", decision.reason)
        return dg.SensorResult(run_requests=[dg.RunRequest(tags=STREAM_TAGS)], cursor=cursor)
    return dg.SensorResult(skip_reason=decision.reason, cursor=cursor)


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _terminate(context: dg.SensorEvaluationContext, run_id: str, stale_after: float) -> None:
    """Ask the run's worker to stop; if it cannot be reached, the run is marked canceled."""
    context.log.warning(
        "stream_supervisor: run %s has had no heartbeat for %g s: terminating", run_id, stale_after
    )
    try:
        delivered = context.instance.run_launcher.terminate(run_id)
    except Exception as exc:  # a gone code server surfaces as gRPC or user-code errors
        context.log.warning("stream_supervisor: terminate %s failed: %s", run_id, exc)
        delivered = False
    if not delivered:
        _mark_canceled(context, run_id, "its worker could not be reached")


def _mark_canceled(context: dg.SensorEvaluationContext, run_id: str, why: str) -> None:
    run = context.instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        context.instance.report_run_canceled(run, f"stream_supervisor: canceled, {why}")
        context.log.warning("stream_supervisor: run %s marked canceled: %s", run_id, why)
