"""Backfill assets: exchange history into the databases, partitioned by day x series.

Multi-run backfills of up to 100 days of one series per run (a year is four runs), executed
in process. Each exchange is a concurrency pool (dagster.yaml: one run at a time), so
backfills never add up past its REST weight limit. Every run records, per partition, what
the exchange served and what is missing and why (observations), and its totals as
materialization metadata.
"""

import dagster as dg

from kirby_core.exchanges.registry import BINANCE, BYBIT, HYPERLIQUID
from kirby_pipelines import backfills
from kirby_pipelines.defs.catalog.assets import realtime_catalog, training_catalog
from kirby_pipelines.partitions import (
    CANDLE_PARTITIONS,
    FUNDING_PARTITIONS,
    OPEN_INTEREST_PARTITIONS,
    TRAINING_CANDLE_PARTITIONS,
    backfill_asset,
)
from kirby_pipelines.resources import KirbyResource, ProgressParam


@backfill_asset(
    partitions_def=CANDLE_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
    pool=HYPERLIQUID.pool,
)
def candles(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Hyperliquid candles over REST (ccxt's raw candleSnapshot, paginated over its 5000-candle
    window) upserted into the realtime database. Days older than Hyperliquid keeps are
    reported unavailable at source."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_CANDLES)


@backfill_asset(
    partitions_def=FUNDING_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
    pool=HYPERLIQUID.pool,
)
def funding_rates(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Settled hourly funding from Hyperliquid's funding history (SDK, 500 rows a page), into
    the `settled_*` columns only: the live feed's predicted rate is never overwritten."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_FUNDING_RATES)


@backfill_asset(
    partitions_def=OPEN_INTEREST_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
    pool=BYBIT.pool,
)
def open_interest(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Open-interest history from the pair's exchange (its declared `open_interest_history`,
    a point every `open_interest_interval`: 5 minutes on Binance, Bybit and OKX), into the
    open interest and notional columns only. An exchange that publishes none (Hyperliquid,
    Coinbase), or days older than it keeps, are reported unavailable at source."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_OPEN_INTEREST)


@backfill_asset(
    partitions_def=TRAINING_CANDLE_PARTITIONS,
    deps=[training_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "training"},
    pool=BINANCE.pool,
)
def training_candles(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Binance spot and USD-M klines with trade counts (raw kline calls) into the training
    database."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_TRAINING_CANDLES)
