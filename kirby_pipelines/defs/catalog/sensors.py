"""`new_series_backfill`: a series that appears in a catalog gets its history, recent first.

Each tick (a minute apart) reads the active series of both databases, registers any that are
not partitions yet, and requests `backfill_new_series_days` of history for each one it has
not seen before (the cursor remembers them). Off by default, like every Kirby sensor: turn it
on in the UI or with `dagster sensor start new_series_backfill`.
"""

import asyncio
from datetime import UTC, datetime

import asyncpg
import dagster as dg

from kirby_pipelines import automation, catalogs
from kirby_pipelines.defs.backfills.assets import candles, funding_rates, training_candles
from kirby_pipelines.resources import KirbyResource

UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dg.sensor(
    name="new_series_backfill",
    minimum_interval_seconds=60,
    asset_selection=[candles, funding_rates, training_candles],
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers new catalog series as partitions and backfills them, recent first.",
)
def new_series_backfill(
    context: dg.SensorEvaluationContext, kirby: KirbyResource
) -> dg.SensorResult | dg.SkipReason:
    settings = kirby.settings()
    urls = kirby.urls()
    try:
        realtime = asyncio.run(catalogs.read_series(urls.realtime, "realtime"))
        training = asyncio.run(catalogs.read_series(urls.training, "training"))
    except UNREACHABLE as exc:
        return dg.SkipReason(f"database unreachable, nothing decided: {exc}")
    added: dict[str, list[str]] = {}
    outdated: dict[str, list[str]] = {}
    for series in (realtime, training):
        for name, keys in catalogs.unregistered(context.instance, series).items():
            added.setdefault(name, []).extend(keys)
        outdated |= catalogs.outdated(context.instance, series)

    def current_order(name: str) -> list[str]:
        gone = set(outdated.get(name, ()))
        registered = catalogs.registered_order(context.instance, name)
        return [key for key in registered if key not in gone] + added.get(name, [])

    order = {name: current_order(name) for name in automation.PARTITIONS_OF.values()}
    known = automation.json_cursor(context.cursor)
    requests, known = automation.new_series(
        automation.active_series(realtime, training),
        order,
        known,
        datetime.now(UTC),
        settings.backfill_new_series_days,
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            *(dg.DeleteDynamicPartitionsRequest(name, keys) for name, keys in outdated.items()),
            *(dg.AddDynamicPartitionsRequest(name, keys) for name, keys in added.items()),
        ],
        cursor=automation.dump_cursor(known),
    )
