"""Daily backfills: yesterday, complete, for every active series, a quarter past midnight
(trades: every pair whose exchange keeps trade history).

One schedule per backfill asset (each targets its own job: they are partitioned by
different series). The live collector fills each day as it happens; this run re-reads the
closed day from the exchange (idempotent: unchanged rows are not rewritten), fills what the
stream missed, and runs the checks. The lake and the SQL models follow by declarative
automation.
"""

import asyncio
from datetime import timedelta

import dagster as dg

from kirby_core.settings import Database
from kirby_pipelines import automation, catalogs
from kirby_pipelines.defs.backfills.assets import (
    candles,
    funding_rates,
    trades,
    training_candles,
)
from kirby_pipelines.defs.catalog.sensors import UNREACHABLE
from kirby_pipelines.resources import KirbyResource


def _daily(asset: dg.AssetsDefinition, database: Database) -> dg.ScheduleDefinition:
    name = asset.key.to_user_string()
    job = dg.define_asset_job(f"{name}_backfill", selection=[asset])

    @dg.schedule(
        name=f"daily_{name}",
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        target=job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Backfills yesterday of every active {name} series.",
    )
    def _schedule(
        context: dg.ScheduleEvaluationContext, kirby: KirbyResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        try:
            series = asyncio.run(catalogs.read_series(kirby.url(database), database))
        except UNREACHABLE as exc:
            return dg.SkipReason(f"database unreachable: {exc}")
        active = automation.active_series(series, series)[name]
        order = catalogs.registered_order(context.instance, automation.PARTITIONS_OF[name])
        day = context.scheduled_execution_time.date() - timedelta(days=1)
        requests = automation.daily(
            {name: active},
            {automation.PARTITIONS_OF[name]: order},
            day,
            context.scheduled_execution_time,
        )
        return requests or dg.SkipReason(
            f"no active {name} series is a partition yet, or none is served by its exchange"
        )

    return _schedule


daily_candles = _daily(candles, "realtime")
daily_funding_rates = _daily(funding_rates, "realtime")
daily_training_candles = _daily(training_candles, "training")
daily_trades = _daily(trades, "realtime")
