"""Buffered rows to PostgreSQL: one transaction per flush, with its change events.

Every `stream_flush_seconds` (start to start) the flusher takes what is due from the
buffers (all candles and trades, funding/OI of closed minutes, pending outages) and writes
it in one transaction: the
bulk writer's upsert per minute table and `write_trades` for the trade tape (which skips
trades already stored: a reconnect's replay is counted as duplicates, logged, never written
twice), then the change events of each table naming the rows it flushed (numbered rows plus
NOTIFYs delivered by PostgreSQL at commit, together with the rows; `kirby_core.db.notify`
does the payload format and the 8000-byte split; a trades event names per pair the first
and last trade time of the flush, not every trade; events older than
`api_ws_resume_seconds` are deleted in the same transaction), then the outage rows. If the
database cannot be reached the batch goes back into the buffers and the flush is retried
with capped, jittered backoff while the feed keeps being read. If the database refuses the
batch itself (a value out of range, a constraint: retrying cannot help), it is split in
halves until the rows at fault are alone; those are rejected, counted (`refused_rows`) and
logged, the rest stored. When the collector stops, the last flush takes everything (open
minutes too) and retries until `stream_shutdown_seconds` have passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kirby_core.datasets import DATASETS
from kirby_core.db import notify
from kirby_core.db.trades import TradeWriteResult, write_trades
from kirby_core.db.writer import WriteResult, upsert
from kirby_core.errors import StorageRefused, StorageUnavailable
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.buffers import TRADES, Batch, Buffers
from kirby_stream.database import SharedConnection
from kirby_stream.outages import insert_outages
from kirby_stream.stats import Stats

log = logging.getLogger(__name__)


Results = dict[str, WriteResult | TradeWriteResult]
"""Per table, what its write did."""


async def write_batch(
    conn: asyncpg.Connection, batch: Batch, keep_events_seconds: float
) -> Results:
    results: Results = {}
    async with conn.transaction():
        await notify.prune(conn, keep_events_seconds)
        for table, dataset in DATASETS.items():
            rows = batch.rows[table]
            if not rows:
                continue
            results[table] = result = await upsert(conn, dataset, rows)
            rejected = {id(item.row) for item in result.rejected}
            changes: dict[int, list[datetime]] = defaultdict(list)
            for row in rows:
                if id(row) not in rejected:
                    changes[row[0]].append(row[1])
            await notify.notify(conn, table, changes)
        if batch.rows[TRADES]:
            results[TRADES] = await _write_trades(conn, batch.rows[TRADES])
        await insert_outages(conn, batch.outages)
    return results


async def _write_trades(conn: asyncpg.Connection, rows: list[Any]) -> TradeWriteResult:
    """The trade tape's rows, and one change event naming per pair the span they cover."""
    result = await write_trades(conn, rows)
    rejected = {id(item.row) for item in result.rejected}
    spans: dict[int, list[datetime]] = {}
    for row in rows:
        if id(row) in rejected:
            continue
        span = spans.get(row.trading_pair_id)
        if span is None:
            spans[row.trading_pair_id] = [row.time, row.time]
        elif row.time < span[0]:
            span[0] = row.time
        elif row.time > span[1]:
            span[1] = row.time
    await notify.notify(conn, TRADES, spans)
    return result


class Flusher:
    def __init__(
        self,
        settings: Settings,
        buffers: Buffers,
        database: SharedConnection,
        stats: Stats,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.buffers = buffers
        self.database = database
        self.stats = stats
        self.clock = clock
        self._backoff = Backoff(settings.stream_database_backoff_max_seconds)

    async def run(self, drained: asyncio.Event) -> None:
        """Flush periodically until the intake has `drained` the feed, then flush it all.
        Flushes start every `stream_flush_seconds` (a slow one is followed at once by the
        next), so a message waits at most an interval plus the write it lands in."""
        every = self.settings.stream_flush_seconds
        delay = every
        while not await pause(drained, delay):
            started = time.monotonic()
            ok = await self.flush()
            spent = time.monotonic() - started
            delay = max(every - spent, 0.0) if ok else self._backoff.next_delay()
        await self._final_flush()

    async def flush(self, everything: bool = False, within: float | None = None) -> bool:
        batch = self.buffers.take(self.clock(), everything)
        if not batch:
            return True
        try:
            results = await self._write(batch, within)
        except StorageUnavailable as exc:
            self.buffers.restore(batch)
            self.stats.failed_flushes += 1
            log.warning(
                "event=flush_failed buffered_rows=%d retry=%d cause=%s",
                self.buffers.size,
                self._backoff.attempt + 1,
                exc,
            )
            return False
        self.buffers.finished(batch)
        self._record(batch, results)
        if self._backoff.attempt:
            log.info("event=flush_recovered after_failures=%d", self._backoff.attempt)
        self._backoff.reset()
        return True

    async def _write(self, batch: Batch, within: float | None) -> Results:
        """Store `batch`; rows the database refuses are isolated by bisection and rejected."""
        keep = self.settings.api_ws_resume_seconds
        try:
            return await self.database.run(lambda conn: write_batch(conn, batch, keep), within)
        except StorageRefused as exc:
            halves = _halves(batch)
            if halves is None:
                self._reject(batch, exc)
                return {}
            results: Results = {}
            for half in halves:
                for table, result in (await self._write(half, within)).items():
                    results[table] = _sum(results.get(table), result)
            return results

    def _reject(self, batch: Batch, exc: StorageRefused) -> None:
        for table, rows in batch.rows.items():
            for row in rows:
                self.stats.refused_rows += 1
                log.error("event=row_refused table=%s row=%r cause=%s", table, row, exc)
        for outage in batch.outages:
            log.error("event=outage_refused outage=%r cause=%s", outage, exc)

    def _record(self, batch: Batch, results: Results) -> None:
        stats = self.stats
        committed_at = datetime.now(UTC)
        stats.record_latencies(time.monotonic(), batch.candle_received)
        stats.flushes += 1
        if not self.buffers.outages:  # one waiting to be stored keeps the coverage back
            stats.covered_through = batch.covered_through or stats.covered_through
        stats.outages_recorded += len(batch.outages)
        for table, result in results.items():
            table_stats = stats.table(table)
            table_stats.rows_written += result.written
            table_stats.rows_flushed += result.received
            newest = max(row[1] for row in batch.rows[table])
            if table_stats.last_time is None or newest > table_stats.last_time:
                table_stats.last_time = newest
            table_stats.last_commit_at = committed_at
            # rows the database refused (constraints) came from frames that were not valid
            stats.invalid_messages += len(result.rejected)
            if isinstance(result, TradeWriteResult) and (result.duplicates or result.rejected):
                stats.duplicate_trades += result.duplicates
                log.info(
                    "event=trades_stored received=%d written=%d duplicates=%d rejected=%d",
                    result.received,
                    result.written,
                    result.duplicates,
                    len(result.rejected),
                )

    async def _final_flush(self) -> None:
        deadline = time.monotonic() + self.settings.stream_shutdown_seconds
        while True:
            remaining = deadline - time.monotonic()
            if await self.flush(everything=True, within=max(remaining, 0.1)):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                sizes = self.buffers.sizes()
                log.error(
                    "event=final_flush_failed lost_rows=%s lost_outages=%d",
                    sizes,
                    len(self.buffers.outages),
                )
                return
            await asyncio.sleep(min(self._backoff.next_delay(), remaining))


def _sum(
    total: WriteResult | TradeWriteResult | None, part: WriteResult | TradeWriteResult
) -> WriteResult | TradeWriteResult:
    if total is None:
        return part
    if isinstance(total, TradeWriteResult) and isinstance(part, TradeWriteResult):
        return TradeWriteResult(
            total.received + part.received,
            total.written + part.written,
            total.duplicates + part.duplicates,
            total.rejected + part.rejected,
        )
    assert isinstance(total, WriteResult) and isinstance(part, WriteResult)
    total += part
    return total


def _halves(batch: Batch) -> tuple[Batch, Batch] | None:
    """`batch` split in two (rows and outages alike), or None when it holds one item."""
    items: list[tuple[str | None, Any]] = [
        (table, row) for table, rows in batch.rows.items() for row in rows
    ]
    items += [(None, outage) for outage in batch.outages]
    if len(items) < 2:
        return None
    middle = len(items) // 2
    halves = (Batch(), Batch())
    for half, part in zip(halves, (items[:middle], items[middle:]), strict=True):
        for table, item in part:
            if table is None:
                half.outages.append(item)
            else:
                half.rows[table].append(item)
    return halves
