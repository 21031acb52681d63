"""`gap_repair`: outages and failed completeness checks become backfills of exactly the
partitions they touch.

Each tick reads the `collection_outages` rows recorded since its cursor and the failed
evaluations of `candles_complete`, `funding_rates_settled_hourly`, `open_interest_complete`
and `training_candles_complete` since its cursor, and requests backfill runs of the asset of
each outage's dataset (candles, funding_rates, open_interest, trades), for series of every
exchange (trades: where it serves trade history),
for the (series, day) partitions involved that the coverage classifier
(`kirby_core.db.coverage`, which the checks also use) calls repairable: an outage already
backfilled asks for nothing. Each run covers one exchange's series and is queued under its
`kirby/exchange` tag. Today's
part of an outage is `live_gap_repair`'s (below); `gap_repair` keeps it in its cursor and
backfills the whole day once it is a partition, unless the classifier then finds nothing
repairable in it (the live repair closed it). The backfill runs the checks again, so a
repaired gap shows green.

`live_gap_repair`: each tick reads the outage rows recorded since its cursor and, for each
one that touches today and ended `repair_settle_seconds` ago, requests a `live_repair` run
for exactly its window of today (`kirby_pipelines.live_repair`); outages not settled yet wait
in its cursor.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import dagster as dg

from kirby_pipelines import automation, catalogs, live_repair
from kirby_pipelines.defs.backfills.assets import (
    candles,
    funding_rates,
    open_interest,
    trades,
    training_candles,
)
from kirby_pipelines.defs.catalog.sensors import UNREACHABLE
from kirby_pipelines.resources import KirbyResource


@dg.sensor(
    name="gap_repair",
    minimum_interval_seconds=60,
    asset_selection=[candles, funding_rates, open_interest, trades, training_candles],
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Backfills the partitions of new collector outages and failed completeness checks.",
)
def gap_repair(
    context: dg.SensorEvaluationContext, kirby: KirbyResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = automation.RepairCursor.parse(context.cursor)
    now = datetime.now(UTC)
    url = kirby.url("realtime")
    try:
        outages = asyncio.run(automation.read_outages(url, cursor.outage_id))
        settled = asyncio.run(automation.settled_days(url, outages, now))
        settled |= asyncio.run(automation.settled_pending(url, cursor.pending, now))
    except UNREACHABLE as exc:
        return dg.SkipReason(f"database unreachable, nothing decided: {exc}")
    failed = automation.failed_checks(context.instance, cursor)
    order = {
        name: catalogs.registered_order(context.instance, name)
        for name in automation.PARTITIONS_OF.values()
    }
    requests, cursor, notes = automation.repairs(cursor, outages, failed, order, now, settled)
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


@dg.sensor(
    name="live_gap_repair",
    minimum_interval_seconds=60,
    job_name=live_repair.JOB,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Refetches the window of today's outages once they have ended and settled.",
)
def live_gap_repair(
    context: dg.SensorEvaluationContext, kirby: KirbyResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = live_repair.LiveRepairCursor.parse(context.cursor)
    settle = timedelta(seconds=kirby.settings().repair_settle_seconds)
    try:
        outages = asyncio.run(automation.read_outages(kirby.url("realtime"), cursor.outage_id))
    except UNREACHABLE as exc:
        return dg.SkipReason(f"database unreachable, nothing decided: {exc}")
    requests, cursor, notes = live_repair.live_repairs(cursor, outages, datetime.now(UTC), settle)
    for note in notes:
        context.log.info(note)
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())
