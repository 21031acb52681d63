"""Backfill assets: exchange history into the databases, partitioned by day x series.

Multi-run backfills of up to 100 days of one series per run (a year is four runs), executed
in process. A run covers series of one exchange and carries its `kirby/exchange` tag
(`runs.EXCHANGE_TAG`, the declaration's pool name; dagster.yaml: one run at a time per
exchange), so backfills never add up past its REST weight limit. Every run records, per
partition, what the exchange served and what is missing and why (observations), and its
totals as materialization metadata.
"""

import dagster as dg

from kirby_pipelines import backfills, trade_backfills
from kirby_pipelines.defs.catalog.assets import realtime_catalog, training_catalog
from kirby_pipelines.partitions import (
    CANDLE_PARTITIONS,
    FUNDING_PARTITIONS,
    OPEN_INTEREST_PARTITIONS,
    TRADE_PARTITIONS,
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
)
def candles(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Candles over REST from each series' exchange (its declared history client: ccxt's raw
    klines with the exchange's page limit; Hyperliquid's candleSnapshot over its 5000-candle
    window) upserted into the realtime database. Days older than the exchange keeps are
    reported unavailable at source."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_CANDLES)


@backfill_asset(
    partitions_def=FUNDING_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
)
def funding_rates(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Settled funding from each pair's exchange (its declared `funding_history`, one rate per
    `funding_interval`), into the `settled_*` columns only: the live feed's predicted rate is
    never overwritten."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_FUNDING_RATES)


@backfill_asset(
    partitions_def=OPEN_INTEREST_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
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
)
def training_candles(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Binance spot and USD-M klines with trade counts (raw kline calls) into the training
    database."""
    return backfills.run(context, kirby, progress, backfills.BACKFILLED_TRAINING_CANDLES)


@backfill_asset(
    partitions_def=TRADE_PARTITIONS,
    deps=[realtime_catalog],
    group_name="backfills",
    kinds={"postgres", "python"},
    tags={"kirby/database": "realtime"},
)
def trades(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: ProgressParam
) -> dg.MaterializeResult:
    """Every trade of a trading pair's day from its exchange's declared trade history
    (Binance aggTrades, spot and USD-M, since the listing; OKX spot history-trades, three
    months), written to the realtime database's `trades` beside the live tape (deduplicated
    by trade id). Exchanges that keep no trade history (Hyperliquid, Bybit, Coinbase: recent
    trades only) and days older than the exchange keeps are reported unavailable at source."""
    return trade_backfills.materialize_trades(context, kirby, progress)
