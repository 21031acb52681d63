"""The catalogs as assets: each sync registers the active series as partitions.

Re-synced every hour (idempotent: a sync that changes nothing writes nothing), so an edit to
a catalog file reaches the database and the partitions without anyone running a command.
"""

import dagster as dg

from kirby_core.settings import Database
from kirby_pipelines import catalogs
from kirby_pipelines.resources import KirbyResource

HOURLY = dg.AutomationCondition.on_cron("0 * * * *")


def _sync(
    context: dg.AssetExecutionContext, kirby: KirbyResource, database: Database
) -> dg.MaterializeResult:
    report, series = catalogs.sync(kirby.settings(), kirby.url(database), database)
    added = catalogs.register(context.instance, series)
    return dg.MaterializeResult(metadata=catalogs.sync_metadata(report, series, added))


@dg.asset(group_name="catalog", kinds={"postgres"}, automation_condition=HOURLY)
def realtime_catalog(
    context: dg.AssetExecutionContext, kirby: KirbyResource
) -> dg.MaterializeResult:
    """config/starlistings.yaml synced into the realtime database; each active starlisting is a
    `candles` partition, each trading pair a `funding_rates` one."""
    return _sync(context, kirby, "realtime")


@dg.asset(group_name="catalog", kinds={"postgres"}, automation_condition=HOURLY)
def training_catalog(
    context: dg.AssetExecutionContext, kirby: KirbyResource
) -> dg.MaterializeResult:
    """config/training_stars.yaml synced into the training database; each active starlisting
    is a `training_candles` partition."""
    return _sync(context, kirby, "training")
