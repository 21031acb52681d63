"""The `trades` asset and its checks against the simulator and a real PostgreSQL: a Binance
USD-M pair's day of aggregate trades, rebuilt into 1m candles that agree with Binance's own
(and disagree once a bad trade is planted); trade ids complete, then a gap cut out of them,
recorded as a trades outage, reported, and repaired by `gap_repair` on its exchange's queue;
live fills of a minute beside the backfill's aggregates counted once; an exchange that keeps
no trade history (Hyperliquid) reported unavailable at source."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import asyncpg
import dagster as dg

from kirby_core.db import catalog_store
from kirby_core.db.trades import TradeRow, write_trades
from kirby_core.db.urls import DatabaseUrls
from kirby_core.exchanges.registry import EXCHANGES
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import candles, trades
from kirby_pipelines.defs.repair.sensors import gap_repair
from kirby_pipelines.runs import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG
from kirby_sim import SimulatorConfig
from kirby_sim import binance_futures as fmt
from kirby_sim.market import Market
from kirby_sim.prints import minute_prints
from kirby_sim.universe import BINANCE_USDM_VENUE
from tests.db.conftest import catalog_with_usdt_perp
from tests.pipelines.conftest import (
    BTC_PAIR,
    check_results,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    tick,
    yesterday,
)

PAIR = "BTC@binance/USDT/perps"
STAR_1M = "BTC@binance/USDT/perps/1m"
TRADE_CHECKS = [checks.trades_agree_with_candles, checks.trades_ids_complete, checks.trades_outages]


def binance_pair(urls: DatabaseUrls, instance: dg.DagsterInstance) -> int:
    async def sync() -> int:
        conn = await asyncpg.connect(urls.realtime)
        try:
            await catalog_store.sync_catalog(conn, catalog_with_usdt_perp("binance"))
            pair = await catalog_store.get_trading_pair(
                conn, catalog_store.TradingPairKey("binance", "BTC", "USDT", "perps")
            )
        finally:
            await conn.close()
        return pair.id

    pair_id = run_async(sync())
    register(instance, run_async(read_series(urls.realtime, "realtime")))
    return pair_id


def day_of_trades(
    instance: dg.DagsterInstance, resources: dict, **kwargs
) -> dg.ExecuteInProcessResult:
    tags = range_tags(yesterday(), yesterday(), PAIR)
    return materialize([trades, *TRADE_CHECKS], instance, resources, tags, **kwargs)


def test_a_binance_day_of_trades_agrees_with_its_candles_until_a_bad_trade_is_planted(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    pair_id = binance_pair(catalogs, instance)
    star = materialize(
        [candles], instance, resources, range_tags(yesterday(), yesterday(), STAR_1M)
    )
    assert star.success
    result = day_of_trades(instance, resources)
    assert result.success
    [materialization] = result.asset_materializations_for_node("trades")
    totals = metadata_values(materialization.metadata)
    assert totals["rows_written"] == totals["rows_fetched"] > 0
    assert totals["trades_fetched"] > totals["rows_fetched"]  # aggregates of several fills
    found = check_results(result)
    assert all(e.passed for e in found.values()), {k: e.metadata for k, e in found.items()}
    figures = metadata_values(found["trades_agree_with_candles"].metadata)
    assert figures["minutes_compared"] > 1000 and figures["minutes_disagreeing"] == 0
    [stored] = query(
        catalogs.realtime,
        "SELECT sum(size) AS volume, count(*) AS rows FROM trades WHERE trading_pair_id = $1",
        pair_id,
    )
    [candle_sums] = query(
        catalogs.realtime,
        "SELECT sum(volume) AS volume, sum(trade_count) AS trades FROM candles",
    )
    assert stored["volume"] == candle_sums["volume"]
    assert totals["trades_fetched"] == candle_sums["trades"]
    [report] = query(
        catalogs.realtime,
        "SELECT fetched, unavailable_start FROM backfill_reports WHERE dataset = 'trades'",
    )
    assert (report["fetched"], report["unavailable_start"]) == (candle_sums["trades"], None)

    again = day_of_trades(instance, resources)
    [materialization] = again.asset_materializations_for_node("trades")
    assert metadata_values(materialization.metadata)["rows_written"] == 0

    # a bad trade: one print's size off by one lot
    query(
        catalogs.realtime,
        "UPDATE trades SET size = size + 0.001 WHERE (trading_pair_id, time, trade_id) IN"
        " (SELECT trading_pair_id, time, trade_id FROM trades ORDER BY time LIMIT 1 OFFSET 500)",
    )
    planted = day_of_trades(
        instance, resources, selection=dg.AssetSelection.checks_for_assets(trades)
    )
    agreement = check_results(planted)["trades_agree_with_candles"]
    assert not agreement.passed
    figures = metadata_values(agreement.metadata)
    assert figures["minutes_disagreeing"] == 1
    assert figures["failed_partitions"] == [f"{yesterday().isoformat()}|{PAIR}"]


def test_a_gap_in_sequential_trade_ids_is_reported_and_repaired_on_its_exchange(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    pair_id = binance_pair(catalogs, instance)
    assert day_of_trades(instance, resources).success
    start = datetime.combine(yesterday(), time(12), UTC)
    end = start + timedelta(minutes=15)
    [cut] = query(
        catalogs.realtime,
        "WITH gone AS (DELETE FROM trades WHERE time >= $1 AND time < $2 RETURNING 1)"
        " SELECT count(*) AS n FROM gone",
        start,
        end,
    )
    assert cut["n"] > 0
    query(
        catalogs.realtime,
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('trades', $1, $2, $3, 'planted')",
        pair_id,
        start,
        end,
    )
    gap = day_of_trades(instance, resources, selection=dg.AssetSelection.checks_for_assets(trades))
    found = check_results(gap)
    assert not found["trades_ids_complete"].passed
    assert metadata_values(found["trades_ids_complete"].metadata)["missing_ids"] > 0
    outages = found["trades_outages"]
    assert not outages.passed and outages.severity == dg.AssetCheckSeverity.WARN
    assert metadata_values(outages.metadata)["outage_minutes"] == 15

    sensed = tick(gap_repair, instance, resources)
    [request] = [r for r in sensed.run_requests if r.asset_selection == [dg.AssetKey("trades")]]
    partition = f"{yesterday().isoformat()}|{PAIR}"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (partition, partition)
    assert request.tags[EXCHANGE_TAG] == EXCHANGES["binance"].pool
    repaired = materialize([trades, *TRADE_CHECKS], instance, resources, request.tags)
    assert repaired.success
    [materialization] = repaired.asset_materializations_for_node("trades")
    assert metadata_values(materialization.metadata)["rows_written"] == cut["n"]
    assert check_results(repaired)["trades_ids_complete"].passed


def test_live_fills_beside_the_backfills_aggregates_are_counted_once(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    """The live `trade` stream stores each fill; the backfill's aggregate of those fills is
    left out, so the rebuilt candles still agree."""
    pair_id = binance_pair(catalogs, instance)
    assert materialize(
        [candles], instance, resources, range_tags(yesterday(), yesterday(), STAR_1M)
    ).success
    book = Market(SimulatorConfig().seed).book(BINANCE_USDM_VENUE, "BTCUSDT")
    assert book is not None
    minute = int(datetime.combine(yesterday(), time(9), UTC).timestamp()) // 60
    live = [
        TradeRow(
            pair_id,
            datetime.fromtimestamp(p.time_ms / 1000, UTC),
            str(p.trade_id),
            Decimal(fmt.price(book.instrument, p.price)),
            Decimal(fmt.size(book.instrument, p.size)),
            "buy" if p.buy else "sell",
        )
        for m in (minute, minute + 1)
        for p in minute_prints(book, m, "sequential")
    ]

    async def write() -> None:
        conn = await asyncpg.connect(catalogs.realtime)
        try:
            await write_trades(conn, live)
        finally:
            await conn.close()

    run_async(write())
    result = day_of_trades(instance, resources)
    assert result.success
    [materialization] = result.asset_materializations_for_node("trades")
    totals = metadata_values(materialization.metadata)
    assert totals["rows_overlapping_stored"] > 0  # aggregates of fills stored live
    assert totals["rows_already_stored"] > 0  # single-fill aggregates: the same id
    found = check_results(result)
    assert all(e.passed for e in found.values()), {k: e.metadata for k, e in found.items()}


def test_an_exchange_without_trade_history_is_unavailable_at_source(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    tags = range_tags(yesterday(), yesterday(), BTC_PAIR)
    result = materialize([trades], instance, resources, tags)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert "unavailable at source" in message and BTC_PAIR in message
    assert "no public trade-history endpoint" in message
    [report] = query(
        catalogs.realtime,
        "SELECT fetched, unavailable_start, unavailable_end FROM backfill_reports"
        " WHERE dataset = 'trades'",
    )
    start = datetime.combine(yesterday(), time(), UTC)
    assert (report["fetched"], report["unavailable_start"], report["unavailable_end"]) == (
        0,
        start,
        start + timedelta(days=1),
    )


def test_a_trades_outage_where_the_exchange_keeps_no_history_asks_for_nothing(
    catalogs: DatabaseUrls, instance: dg.DagsterInstance, resources: dict
) -> None:
    start = datetime.combine(yesterday(), time(3), UTC)
    query(
        catalogs.realtime,
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " SELECT 'trades', p.id, $1, $2, 'planted' FROM trading_pairs p"
        " JOIN exchanges e ON e.id = p.exchange_id WHERE e.name = 'hyperliquid'",
        start,
        start + timedelta(minutes=5),
    )
    sensed = tick(gap_repair, instance, resources)
    assert not [r for r in sensed.run_requests if r.asset_selection == [dg.AssetKey("trades")]]
