"""The body shared by the four backfill assets: which series and days a run covers, the
exchange clients (each series' exchange declaration opens its own, once per run), the
per-day reports, and how they become Dagster events.

A run covers a rectangle of days x series (its partition keys). For every partition it
writes the day's report to `backfill_reports` (what coverage classifies with, see
`kirby_core.db.coverage`) and records an observation with it (see `evidence`: the UI's view
and the live-vs-backfill check); the materialization carries
the run's totals and a per-day table. A day older than the exchange keeps is not an empty
success: the run records the days it did fetch as materialized, then fails naming the days
that are unavailable at source, which Dagster shows as failed partitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import dagster as dg

from kirby_core.backfill import (
    UNAVAILABLE,
    BackfillResult,
    DayReport,
    RepairWindow,
    backfill_candles,
    backfill_funding_rates,
    backfill_open_interest,
    candle_source,
)
from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.db import catalog_store, coverage
from kirby_core.db.connection import connect
from kirby_core.exchanges.registry import (
    ExchangeDeclaration,
    FundingHistoryClient,
    HistoryClient,
    OpenInterestHistoryClient,
    declaration,
)
from kirby_core.settings import Database, Settings
from kirby_core.timeutil import interval_seconds
from kirby_pipelines import evidence
from kirby_pipelines.partitions import days_by_series, parse_series, partition_key
from kirby_pipelines.resources import KirbyResource, Progress, report_progress

MAX_TABLE_ROWS = 60
"""Rows of a Markdown table in a run's metadata (backfill reports, check findings); the
observations keep them all."""


@dataclass(frozen=True)
class BackfilledAsset:
    asset: str
    database: Database
    kind: str
    """candles (realtime), training_candles, funding_rates, open_interest or trades."""
    table: str
    """The market dataset it fills (`kirby_core.datasets`)."""


BACKFILLED_CANDLES = BackfilledAsset("candles", "realtime", "candles", "candles")
BACKFILLED_FUNDING_RATES = BackfilledAsset(
    "funding_rates", "realtime", "funding_rates", "funding_rates"
)
BACKFILLED_OPEN_INTEREST = BackfilledAsset(
    "open_interest", "realtime", "open_interest", "open_interest"
)
BACKFILLED_TRAINING_CANDLES = BackfilledAsset(
    "training_candles", "training", "training_candles", "candles"
)
BACKFILLED_TRADES = BackfilledAsset("trades", "realtime", "trades", "trades")
"""Run by `trade_backfills` (trades are rows of their own, not minute rows)."""
BACKFILLED = {
    a.asset: a
    for a in (
        BACKFILLED_CANDLES,
        BACKFILLED_FUNDING_RATES,
        BACKFILLED_OPEN_INTEREST,
        BACKFILLED_TRAINING_CANDLES,
        BACKFILLED_TRADES,
    )
}
"""Backfill asset name -> what it backfills."""


def starlisting_key(key: str) -> StarlistingKey:
    parsed = parse_series(key)
    if not isinstance(parsed, StarlistingKey):
        raise ValueError(f"not a starlisting partition key: {key!r}")
    return parsed


def trading_pair_key(key: str) -> TradingPairKey:
    parsed = parse_series(key)
    if not isinstance(parsed, TradingPairKey):
        raise ValueError(f"not a trading pair partition key: {key!r}")
    return parsed


def run(
    context: dg.AssetExecutionContext,
    kirby: KirbyResource,
    progress: Progress | None,
    dataset: BackfilledAsset,
) -> dg.MaterializeResult:
    settings = kirby.settings()
    url = kirby.url(dataset.database)
    plan = days_by_series(context.partition_keys)
    now = datetime.now(UTC)

    def advance(series: str) -> Callable[[DayReport], None]:
        return lambda report: report_progress(progress, 1, f"{series} {report.day}")

    results = asyncio.run(fetch_all(settings, url, dataset, plan, now, advance))
    at = datetime.now(UTC)
    for series, result in results.items():
        for report in result.days:
            key = partition_key(report.day, series)
            context.log_event(evidence.observation(context.asset_key, key, report, at))
            context.log.info(
                f"{series} {report.day}: {report.fetched} fetched of {report.expected} expected,"
                f" {report.missing} missing, {report.unavailable} unavailable at source"
            )
    unavailable = [
        partition_key(r.day, series)
        for series, result in results.items()
        for r in result.days
        if r.status == UNAVAILABLE
    ]
    if unavailable:
        for series, result in results.items():
            for report in result.days:
                if report.status != UNAVAILABLE:
                    context.log_event(
                        dg.AssetMaterialization(
                            asset_key=context.asset_key,
                            partition=partition_key(report.day, series),
                            metadata=evidence.day_metadata(report, at),
                        )
                    )
        raise dg.Failure(
            description=(
                f"{len(unavailable)} partition(s) unavailable at source (the exchange no longer "
                f"has, or never had, these days): {', '.join(unavailable[:20])}"
                + (" ..." if len(unavailable) > 20 else "")
            ),
            metadata={"unavailable_at_source": dg.MetadataValue.json(unavailable)},
            allow_retries=False,
        )
    return dg.MaterializeResult(metadata=_totals(dataset, results))


async def fetch_all(
    settings: Settings,
    url: str,
    dataset: BackfilledAsset,
    plan: dict[str, list],
    now: datetime,
    advance: Callable[[str], Callable[[DayReport], None]],
    window: RepairWindow | None = None,
) -> dict[str, BackfillResult]:
    """Fetch, write and record `plan` (series -> days); `window`: only that part of the
    days (a repair of today's outage, `live_repair`), its report merged into the day's."""
    results: dict[str, BackfillResult] = {}
    candle_clients: dict[str, HistoryClient] = {}
    funding_clients: dict[str, FundingHistoryClient] = {}
    interest_clients: dict[str, OpenInterestHistoryClient] = {}
    conn = await connect(url)
    try:
        async with AsyncExitStack() as clients:
            for series, days in plan.items():
                key = parse_series(series)
                exchange = _declared(key.exchange)
                if dataset.table == "candles":
                    if exchange.name not in candle_clients:
                        opened = exchange.history_client(settings)
                        candle_clients[exchange.name] = await clients.enter_async_context(opened)
                    source = candle_source(exchange, candle_clients[exchange.name])
                    star = await catalog_store.get_starlisting(conn, starlisting_key(series))
                    results[series] = await backfill_candles(
                        conn, source, star, days, now, advance(series), window
                    )
                    await _record(conn, dataset.table, star.id, results[series], window)
                elif dataset.table == "open_interest":
                    opened_interest = exchange.open_interest_history
                    if opened_interest is not None and exchange.name not in interest_clients:
                        interest_clients[exchange.name] = await clients.enter_async_context(
                            opened_interest(settings)
                        )
                    pair = await catalog_store.get_trading_pair(conn, trading_pair_key(series))
                    # What it keeps as of now, not the run's start: earlier series took time.
                    kept = exchange.source_window(dataset.table, "1m", datetime.now(UTC))
                    results[series] = await backfill_open_interest(
                        conn,
                        interest_clients.get(exchange.name),  # None: it publishes none
                        pair,
                        days,
                        now,
                        advance(series),
                        step=exchange.open_interest_interval,
                        served_from=kept.oldest,
                        window=window,
                    )
                    await _record(conn, dataset.table, pair.id, results[series], window)
                else:
                    if exchange.funding_history is None:
                        raise ValueError(
                            f"{series}: {exchange.name} declares no funding-rate history"
                        )
                    if exchange.name not in funding_clients:
                        opened_funding = exchange.funding_history(settings)
                        funding_clients[exchange.name] = await clients.enter_async_context(
                            opened_funding
                        )
                    pair = await catalog_store.get_trading_pair(conn, trading_pair_key(series))
                    results[series] = await backfill_funding_rates(
                        conn,
                        funding_clients[exchange.name],
                        pair,
                        days,
                        now,
                        advance(series),
                        settlement=exchange.funding_interval,
                        window=window,
                    )
                    await _record(conn, dataset.table, pair.id, results[series], window)
    finally:
        await conn.close()
    return results


def _declared(exchange: str) -> ExchangeDeclaration:
    found = declaration(exchange)
    if found is None:
        raise ValueError(f"exchange {exchange!r} has no declaration in the exchange registry")
    return found


async def _record(
    conn: asyncpg.Connection,
    table: str,
    series_id: int,
    result: BackfillResult,
    window: RepairWindow | None = None,
) -> None:
    """The run's per-day reports into `backfill_reports`, where coverage reads them (a
    window's merged into its day's)."""
    served = [
        coverage.ServedDay(
            r.day,
            r.expected,
            r.fetched,
            r.first_time,
            r.last_time,
            r.absent_times,
            r.unavailable_window,
        )
        for r in result.days
    ]
    if window is None:
        await coverage.record_backfill(conn, table, series_id, served)
    else:
        for day in served:
            await coverage.record_window_backfill(conn, table, series_id, day, window)


def _totals(
    dataset: BackfilledAsset, results: dict[str, BackfillResult]
) -> dict[str, dg.RawMetadataValue]:
    reports = [(series, r) for series, result in results.items() for r in result.days]
    firsts = [r.first_time for _, r in reports if r.first_time is not None]
    lasts = [r.last_time for _, r in reports if r.last_time is not None]
    metadata: dict[str, dg.RawMetadataValue] = {
        "series": dg.MetadataValue.json(sorted(results)),
        "partitions": len(reports),
        "rows_fetched": sum(r.fetched for _, r in reports),
        "rows_written": sum(result.write.written for result in results.values()),
        "rows_rejected": sum(len(result.write.rejected) for result in results.values()),
        "unavailable_at_source": sum(r.unavailable for _, r in reports),
        "live_rows_compared": sum(r.compared for _, r in reports),
        "live_rows_disagreeing": sum(r.disagreeing for _, r in reports),
    }
    if dataset.kind == "funding_rates":
        metadata["missing_settlements"] = sum(r.missing for _, r in reports)
    elif dataset.kind == "open_interest":
        metadata["missing_points"] = sum(r.missing for _, r in reports)
    else:
        minutes = {s: interval_seconds(starlisting_key(s).interval) // 60 for s in results}
        metadata["missing_candles"] = sum(r.missing for _, r in reports)
        metadata["missing_minutes"] = sum(r.missing * minutes[s] for s, r in reports)
    if firsts:
        metadata["first_time"] = dg.MetadataValue.timestamp(min(firsts))
        metadata["last_time"] = dg.MetadataValue.timestamp(max(lasts))
    lines = ["| series | day | fetched | expected | missing | unavailable | live disagreeing |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for series, r in reports[:MAX_TABLE_ROWS]:
        lines.append(
            f"| {series} | {r.day} | {r.fetched} | {r.expected} | {r.missing} |"
            f" {r.unavailable} | {r.disagreeing} |"
        )
    if len(reports) > MAX_TABLE_ROWS:
        lines.append(f"| ... {len(reports) - MAX_TABLE_ROWS} more (see the observations) | |||||")
    metadata["days"] = dg.MetadataValue.md("\n".join(lines))
    return metadata
