"""Data-quality checks of the backfilled tables, evaluated per partition of the run.

Completeness tells "collector outage" and unexplained gaps (failures, repaired by the
gap-repair sensor) from "no trades" and "unavailable at source" (facts, not failures).
Live-vs-backfill agreement warns rather than fails: the backfill has already replaced the
live values by the exchange's, the check says how good the live collector was.
"""

import dagster as dg

from kirby_pipelines import backfills, partition_checks, trade_backfills
from kirby_pipelines.defs.backfills.assets import (
    candles,
    funding_rates,
    open_interest,
    trades,
    training_candles,
)
from kirby_pipelines.resources import KirbyResource


def _sanity_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            f"{asset}_ohlc_sane",
            asset=asset,
            description="Prices ordered and positive, no spike, volume and trade count agree.",
        ),
        dg.AssetCheckSpec(
            f"{asset}_timestamps_aligned",
            asset=asset,
            description="Open times on the interval's boundaries, none repeated.",
        ),
    ]


@dg.asset_check(
    asset=candles, description="Every expected candle present or missing for a known reason."
)
def candles_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return partition_checks.candles_complete(context, kirby, backfills.BACKFILLED_CANDLES)


@dg.multi_asset_check(specs=_sanity_specs("candles"))
def candles_sanity(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    yield from partition_checks.candles_sanity(context, kirby, backfills.BACKFILLED_CANDLES)


@dg.asset_check(
    asset=candles, description="Live candles agree with REST candles of the same minutes."
)
def candles_live_agrees(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return partition_checks.candles_live_agrees(context, kirby, backfills.BACKFILLED_CANDLES)


@dg.asset_check(
    asset=funding_rates,
    description="One settled rate per settlement of the exchange's funding interval, in range.",
)
def funding_rates_settled_hourly(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return partition_checks.funding_settled(context, kirby, backfills.BACKFILLED_FUNDING_RATES)


@dg.asset_check(
    asset=open_interest,
    description="A point per open-interest interval of the exchange, or a known reason.",
)
def open_interest_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return partition_checks.open_interest_points(context, kirby, backfills.BACKFILLED_OPEN_INTEREST)


@dg.asset_check(asset=training_candles, description="Every expected candle present.")
def training_candles_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return partition_checks.candles_complete(context, kirby, backfills.BACKFILLED_TRAINING_CANDLES)


@dg.multi_asset_check(specs=_sanity_specs("training_candles"))
def training_candles_sanity(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    yield from partition_checks.candles_sanity(
        context, kirby, backfills.BACKFILLED_TRAINING_CANDLES
    )


@dg.asset_check(
    asset=trades,
    description="1m candles rebuilt from the day's trades agree with the exchange's 1m candles.",
)
def trades_agree_with_candles(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return trade_backfills.agree_with_candles(context, kirby)


@dg.asset_check(
    asset=trades,
    description="No trade id missing in a day, where the exchange's trade ids are sequential.",
)
def trades_ids_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return trade_backfills.ids_complete(context, kirby)


@dg.asset_check(
    asset=trades, description="Minutes of the day inside recorded trades collection outages."
)
def trades_outages(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    return trade_backfills.outages(context, kirby)
