"""The Parquet lake: daily exports of each table of each database, plus reference files.

A lake partition is one UTC day of every series of the table, one file per series
(hive path exchange/symbol[/interval]/date). Exports follow the backfills by declarative
automation: yesterday once the daily backfill has written it, and any older day again when
a backfill or a gap repair rewrote it. Open interest has no backfill: its day is exported
half an hour after midnight.
"""

import dagster as dg

from kirby_pipelines import lake_export
from kirby_pipelines.defs.backfills.assets import (
    candles,
    funding_rates,
    trades,
    training_candles,
)
from kirby_pipelines.defs.catalog.assets import realtime_catalog, training_catalog
from kirby_pipelines.defs.live.assets import live_candles, live_funding_rates, live_open_interest
from kirby_pipelines.partitions import DAILY, backfill_asset
from kirby_pipelines.resources import KirbyResource, ProgressParam

LIVE = dg.AssetSelection.assets(live_candles.key, live_funding_rates.key, live_open_interest.key)
REWRITTEN = (
    dg.AutomationCondition.any_deps_updated().ignore(LIVE).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)
"""A day whose backfill partitions were (re)written since it was last exported."""
AFTER_MIDNIGHT = dg.AutomationCondition.on_cron("30 0 * * *")


def _lake_asset(deps: list, automation: dg.AutomationCondition, description: str):
    return backfill_asset(
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        group_name="lake",
        kinds={"parquet"},
        automation_condition=automation,
        description=description,
    )


@_lake_asset([candles, live_candles], REWRITTEN, "Realtime candles, one file per series and day.")
def lake_candles(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@_lake_asset(
    [funding_rates, live_funding_rates],
    REWRITTEN,
    "Funding rates (settled and predicted), one file per trading pair and day.",
)
def lake_funding_rates(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@_lake_asset(
    [live_open_interest], AFTER_MIDNIGHT, "Open interest, one file per trading pair and day."
)
def lake_open_interest(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@_lake_asset(
    [trades],
    # the live tape has no asset event: export yesterday after midnight, and again when the
    # trade backfill (gap repair) rewrote a day
    AFTER_MIDNIGHT | REWRITTEN,
    "The trade tape: every trade of a trading pair and day, one zstd Parquet file each "
    "(time in microseconds, trade_id, price, size, taker side; by time then trade id).",
)
def lake_trades(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@_lake_asset(
    [realtime_catalog],
    AFTER_MIDNIGHT,
    "Order-book samples: one row per trading pair and sampled second (sequence, each side's "
    "prices and sizes best first as lists), one zstd Parquet file per pair and day.",
)
def lake_books(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@_lake_asset([training_candles], REWRITTEN, "Training candles, one file per series and day.")
def lake_training_candles(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: ProgressParam,
    config: lake_export.LakeConfig,
) -> dg.MaterializeResult:
    return lake_export.export(context, kirby, progress, config)


@dg.asset(
    deps=[realtime_catalog, training_catalog],
    group_name="lake",
    kinds={"parquet"},
    automation_condition=dg.AutomationCondition.eager(),
)
def lake_series(kirby: KirbyResource) -> dg.MaterializeResult:
    """Every series of both catalogs (active or not) with its lake names and interval."""
    return lake_export.export_series(kirby)


@dg.asset(
    deps=[live_candles, live_funding_rates, live_open_interest],
    group_name="lake",
    kinds={"parquet"},
    automation_condition=dg.AutomationCondition.on_cron("20 0 * * *"),
)
def lake_collection_outages(kirby: KirbyResource) -> dg.MaterializeResult:
    """The collector's recorded outages (collection_outages), for coverage models."""
    return lake_export.export_outages(kirby)


@_lake_asset(
    [candles, funding_rates, training_candles, live_candles, live_funding_rates, live_open_interest],
    REWRITTEN,
    "Per series and day, expected rows and why the missing ones are missing, as "
    "kirby_core.db.coverage classifies them (read by daily_coverage).",
)
def lake_coverage(context: dg.AssetExecutionContext, kirby: KirbyResource) -> dg.MaterializeResult:
    return lake_export.export_coverage(context, kirby)
