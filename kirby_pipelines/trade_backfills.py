"""The `trades` asset's body and its checks: each partition (trading pair x day) fetched
from the pair's exchange through its declared trade history (`TradeHistory`), written, and
reported; then three per-partition checks on the realtime database.

A run covers days x pairs of one exchange (its `kirby/exchange` tag). Every partition gets a
backfill report (`backfill_reports`, dataset `trades`) and a materialization with its
figures; partitions the exchange does not serve (Bybit, Coinbase and Hyperliquid keep no
trade history; OKX three months; Binance perps and spot since the listing) fail the run,
named, after the served ones are recorded: "unavailable at source", never an empty success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime

import asyncpg
import dagster as dg

from kirby_core import trade_history
from kirby_core.backfill import UNAVAILABLE, RepairWindow
from kirby_core.db import catalog_store, coverage
from kirby_core.db.connection import connect
from kirby_core.exchanges.registry import TRADES, TradeHistoryClient, declaration
from kirby_core.settings import Settings
from kirby_pipelines.backfills import BACKFILLED_TRADES, MAX_TABLE_ROWS, trading_pair_key
from kirby_pipelines.partition_checks import Finding, result, run_checks, target_partitions
from kirby_pipelines.partitions import days_by_series, partition_key
from kirby_pipelines.resources import KirbyResource, Progress, report_progress

Reports = dict[str, list[trade_history.TradeDayReport]]


def materialize_trades(
    context: dg.AssetExecutionContext, kirby: KirbyResource, progress: Progress | None
) -> dg.MaterializeResult:
    plan = days_by_series(context.partition_keys)
    url = kirby.url(BACKFILLED_TRADES.database)

    def advance(series: str) -> Callable[[trade_history.TradeDayReport], None]:
        return lambda report: report_progress(progress, 1, f"{series} {report.day}")

    results = asyncio.run(fetch_trade_days(kirby.settings(), url, plan, datetime.now(UTC), advance))
    unavailable, served = [], []
    for series, reports in results.items():
        for report in reports:
            key = partition_key(report.day, series)
            context.log.info(
                f"{series} {report.day}: {report.fetched} rows ({report.trades} trades) fetched,"
                f" {report.written} written, {report.duplicates} already stored,"
                f" {report.overlapping} overlapping stored trades; {report.status}"
            )
            if report.status == UNAVAILABLE:
                unavailable.append(key)
            else:
                served.append((key, report))
    if unavailable:
        for key, report in served:  # the run fails: what it did fetch, per partition
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key, partition=key, metadata=_day(report)
                )
            )
        notes = sorted({r.note for reports in results.values() for r in reports if r.note})
        raise dg.Failure(
            description=(
                f"{len(unavailable)} partition(s) unavailable at source: "
                f"{', '.join(unavailable[:20])}{' ...' if len(unavailable) > 20 else ''}"
                f" ({'; '.join(notes)})"
            ),
            metadata={"unavailable_at_source": dg.MetadataValue.json(unavailable)},
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata=_totals(results))


async def fetch_trade_days(
    settings: Settings,
    url: str,
    plan: dict[str, list[date]],
    now: datetime,
    advance: Callable[[str], Callable[[trade_history.TradeDayReport], None]],
    window: RepairWindow | None = None,
) -> Reports:
    """Fetch, write and record `plan` (pair -> days); `window`: only that part of the days
    (a repair of today's outage, `live_repair`), its report merged into the day's."""
    results: Reports = {}
    clients: dict[str, TradeHistoryClient] = {}
    conn = await connect(url)
    try:
        async with AsyncExitStack() as opened:
            for series, days in plan.items():
                key = trading_pair_key(series)
                exchange = declaration(key.exchange)
                if exchange is None:
                    raise ValueError(f"{series}: exchange {key.exchange!r} is not declared")
                make = exchange.trade_history.client
                if make is not None and exchange.name not in clients:
                    clients[exchange.name] = await opened.enter_async_context(make(settings))
                pair = await catalog_store.get_trading_pair(conn, key)
                reports = await trade_history.backfill_trades(
                    conn,
                    exchange,
                    clients.get(exchange.name),
                    pair,
                    days,
                    now,
                    advance(series),
                    window,
                )
                await _record(conn, pair.id, reports, window)
                results[series] = reports
    finally:
        await conn.close()
    return results


async def _record(
    conn: asyncpg.Connection,
    pair_id: int,
    reports: list[trade_history.TradeDayReport],
    window: RepairWindow | None = None,
) -> None:
    """Per-day reports into `backfill_reports`: `expected` and `fetched` count trades (a
    window's merged into its day's)."""
    served = [
        coverage.ServedDay(r.day, r.trades, r.trades, r.first_time, r.last_time, (), r.unavailable)
        for r in reports
    ]
    if window is None:
        await coverage.record_backfill(conn, TRADES, pair_id, served)
    else:
        for day in served:
            await coverage.record_window_backfill(conn, TRADES, pair_id, day, window)


def _day(report: trade_history.TradeDayReport) -> dict[str, dg.RawMetadataValue]:
    return {
        "rows_fetched": report.fetched,
        "trades_fetched": report.trades,
        "rows_written": report.written,
        "rows_already_stored": report.duplicates,
        "rows_overlapping_stored": report.overlapping,
        "status": report.status,
    }


def _totals(results: Reports) -> dict[str, dg.RawMetadataValue]:
    reports = [(s, r) for s, days in results.items() for r in days]
    lines = ["| series | day | rows | trades | written | already stored | status |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for series, r in reports[:MAX_TABLE_ROWS]:
        lines.append(
            f"| {series} | {r.day} | {r.fetched} | {r.trades} | {r.written} |"
            f" {r.duplicates + r.overlapping} | {r.status} |"
        )
    return {
        "series": dg.MetadataValue.json(sorted(results)),
        "partitions": len(reports),
        "rows_fetched": sum(r.fetched for _, r in reports),
        "trades_fetched": sum(r.trades for _, r in reports),
        "rows_written": sum(r.written for _, r in reports),
        "rows_already_stored": sum(r.duplicates for _, r in reports),
        "rows_overlapping_stored": sum(r.overlapping for _, r in reports),
        "rows_rejected": sum(r.rejected for _, r in reports),
        "days": dg.MetadataValue.md("\n".join(lines)),
    }


# --- checks -------------------------------------------------------------------------------


def _sequential(series: str) -> bool:
    key = trading_pair_key(series)
    exchange = declaration(key.exchange)
    return exchange is not None and key.market_type in exchange.trade_history.sequential_ids


def agree_with_candles(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, BACKFILLED_TRADES)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        pair = await catalog_store.get_trading_pair(conn, trading_pair_key(series))
        found = await trade_history.trades_vs_candles(conn, pair.id, day, _sequential(series))
        for minute, what in found.disagreeing[:5]:
            context.log.warning(f"{series} {minute:%Y-%m-%d %H:%M}: {what}")
        return Finding(
            partition_key(day, series),
            not found.disagreeing,
            {
                "minutes_compared": found.minutes_compared,
                "minutes_disagreeing": len(found.disagreeing),
                "trades_without_candle": found.trades_without_candle,
                "candles_without_trades": found.candles_without_trades,
            },
        )

    return result(
        run_checks(kirby.url("realtime"), partitions, check),
        "1m candles rebuilt from trades agree with the exchange's (count, volume, OHLC) "
        "within its rounding",
    )


def ids_complete(
    context: dg.AssetCheckExecutionContext, kirby: KirbyResource
) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, BACKFILLED_TRADES)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        pair = await catalog_store.get_trading_pair(conn, trading_pair_key(series))
        if not _sequential(series):
            return Finding(partition_key(day, series), True, {"sequential": 0, "missing_ids": 0})
        gaps = trade_history.id_gaps(await trade_history.stored_trade_ids(conn, pair.id, day))
        if gaps.gaps:
            context.log.warning(f"{series} {day}: missing trade ids {list(gaps.gaps[:10])}")
        return Finding(
            partition_key(day, series),
            gaps.missing == 0 and gaps.repeated == 0,
            {"sequential": 1, "missing_ids": gaps.missing, "repeated_ids": gaps.repeated},
        )

    return result(
        run_checks(kirby.url("realtime"), partitions, check),
        "no trade id missing between a day's first and last, where the exchange's ids are "
        "sequential (others pass, unchecked)",
    )


def outages(context: dg.AssetCheckExecutionContext, kirby: KirbyResource) -> dg.AssetCheckResult:
    partitions = target_partitions(context, kirby, BACKFILLED_TRADES)

    async def check(conn: asyncpg.Connection, series: str, day: date) -> Finding:
        pair = await catalog_store.get_trading_pair(conn, trading_pair_key(series))
        minutes = await trade_history.outage_minutes(conn, pair.id, day)
        return Finding(partition_key(day, series), minutes == 0, {"outage_minutes": minutes})

    return result(
        run_checks(kirby.url("realtime"), partitions, check),
        "minutes inside recorded trades collection outages (repaired by gap_repair where the "
        "exchange serves trade history)",
        severity=dg.AssetCheckSeverity.WARN,
    )
