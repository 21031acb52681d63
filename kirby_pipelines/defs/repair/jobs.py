"""The `live_repair` job: today's outage windows refetched through the backfill functions.

Requested by `live_gap_repair` (one run per exchange, tagged with its `kirby/exchange` pool,
so it queues behind that exchange's other backfills); see `kirby_pipelines.live_repair`.
"""

import dagster as dg

from kirby_pipelines import live_repair
from kirby_pipelines.resources import KirbyResource


@dg.op(
    name=live_repair.OP,
    description="Refetches each outage's window of today, records it, and classifies the outage.",
)
def repair_outage_windows(
    context: dg.OpExecutionContext, kirby: KirbyResource, config: live_repair.LiveRepairConfig
) -> dg.Output[None]:
    return live_repair.report_repairs(context, kirby.settings(), kirby.url("realtime"), config)


@dg.job(
    name=live_repair.JOB,
    description="Repairs outages of the day under way (windows, not whole-day partitions).",
    executor_def=dg.in_process_executor,
)
def live_repair_job() -> None:
    repair_outage_windows()
