"""The `stream` job: one op that runs the live collector until the run is cancelled.

The op hands the collector to a background thread (`kirby_stream.collector_thread`) and
keeps the main thread, where Dagster delivers its interrupt: when the run is terminated the
interrupt leaves the `with` block, which stops the collector the orderly way (stop
reading, flush, last heartbeat) before the run ends. The op is a plain function, not a
generator: a generator suspended at a `yield` would receive the interrupt in Dagster's frame,
outside the `with` block, and the process could end without the final flush. About once a
minute the op logs an `AssetObservation` per live asset (live_candles, live_funding_rates,
live_open_interest, declared in defs/live) with the rows written, the latest row time, the
lag and the collector's state (`collector_state`; `collector_error` says why it is degraded,
e.g. "cannot reach api.hyperliquid.xyz: …", which is also logged as a warning). The
collector's heartbeat id is `dagster-<run id>`, which is how the supervisor tells a stale run.
Runs carry the `kirby/stream` tag; dagster.yaml allows one in progress.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from kirby_pipelines import live
from kirby_pipelines.defs.stream.resources import StreamResource
from kirby_pipelines.defs.stream.supervision import JOB_NAME, STREAM_TAGS, collector_id
from kirby_pipelines.resources import KirbyResource
from kirby_stream import Stats, collector_thread

LIVE_ASSETS = {table: asset for asset, table in live.LIVE_TABLES.items()}
"""Table -> the external asset (defs/live) that stands for it."""


@dg.op(description="Runs the live collector until the run is cancelled.")
def collect_stream(
    context: dg.OpExecutionContext, kirby: KirbyResource, stream: StreamResource
) -> None:
    settings = kirby.settings()
    with collector_thread(settings, collector_id(context.run_id)) as running:
        previous: Stats | None = None
        while running.wait(stream.observation_seconds):
            stats = running.stats()
            for observation in observations(stats, previous):
                context.log_event(observation)
            context.log.info(
                f"stream: {stats.messages_received} messages, {stats.reconnects} reconnects, "
                f"{stats.invalid_messages} invalid, {stats.outages_recorded} outage rows, "
                f"{stats.dropped_rows} rows dropped, {stats.refused_rows} refused, "
                f"buffers {stats.buffer_sizes}"
            )
            if stats.state == "degraded":
                context.log.warning(f"stream DEGRADED: {stats.last_error}")
            previous = stats


def observations(stats: Stats, previous: Stats | None) -> Iterator[dg.AssetObservation]:
    now = datetime.now(UTC)
    for table, current in stats.tables.items():
        before = previous.tables[table].rows_written if previous else 0
        metadata: dict[str, dg.RawMetadataValue] = {
            "rows_written": current.rows_written,
            "rows_written_since_last_observation": current.rows_written - before,
            "collector_id": stats.collector_id,
            "collector_state": stats.state,
        }
        if stats.last_error is not None:
            metadata["collector_error"] = stats.last_error
        if current.last_time is not None:
            metadata["last_time"] = dg.MetadataValue.timestamp(current.last_time)
        if current.last_commit_at is not None:
            metadata["lag_seconds"] = round((now - current.last_commit_at).total_seconds(), 3)
        if table == "candles":
            p99 = stats.latency_percentile(0.99)
            if p99 is not None:
                metadata["message_to_commit_p99_seconds"] = p99
        yield dg.AssetObservation(asset_key=LIVE_ASSETS[table], metadata=metadata)


@dg.job(
    name=JOB_NAME,
    tags=STREAM_TAGS,
    executor_def=dg.in_process_executor,
    description="The live collector (kirby stream) as a long-running run; see stream_supervisor.",
)
def stream_job() -> None:
    collect_stream()
