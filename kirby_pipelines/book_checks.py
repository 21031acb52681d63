"""The two order-book checks' bodies: per trading pair and UTC day, over the realtime
database's `books` samples, `book_integrity` counters and `books` collection outages.

- never crossed (ERROR): no stored sample has its best bid at or above its best ask (the
  table refuses one, migration 0010's CHECK) and the collector saw no crossed book
  (`book_integrity.crossed`, which it counts before it resyncs);
- integrity gaps (WARN, reported like outages): minutes with a sequence gap or a resync
  (`book_integrity`), and minutes inside recorded `books` collection outages, with counts.

Findings are named `day|pair` like the backfill partitions; a check run evaluates the last
`BOOK_CHECK_DAYS` days (today included: books are live only, no backfill rewrites them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from kirby_core.db import books, catalog_store
from kirby_core.db.connection import connect
from kirby_pipelines.partition_checks import Finding
from kirby_pipelines.partitions import partition_key, series_key

BOOK_CHECK_DAYS = 2
"""Days a check run evaluates: yesterday and today."""

_BY_PAIR_AND_DAY = f"""
WITH samples AS (
    SELECT trading_pair_id AS pair, (time AT TIME ZONE 'UTC')::date AS day, count(*) AS samples,
           count(*) FILTER (WHERE bid_prices[1] >= ask_prices[1]) AS crossed_samples
    FROM {books.BOOKS_TABLE} WHERE time >= $1 AND time < $2 GROUP BY 1, 2
), integrity AS (
    SELECT trading_pair_id AS pair, (time AT TIME ZONE 'UTC')::date AS day,
           sum(updates) AS updates, sum(crossed) AS crossed_seen,
           count(*) FILTER (WHERE gaps > 0 OR resyncs > 0) AS gap_minutes,
           sum(gaps) AS gaps, sum(resyncs) AS resyncs, sum(stale_ms) AS stale_ms
    FROM {books.INTEGRITY_TABLE} WHERE time >= $1 AND time < $2 GROUP BY 1, 2
), outages AS (
    SELECT o.series_id AS pair, (m AT TIME ZONE 'UTC')::date AS day,
           count(DISTINCT m) AS outage_minutes
    FROM collection_outages o, generate_series(
        date_bin('1 minute', greatest(o.start_time, $1), 'epoch'::timestamptz),
        least(o.end_time, $2) - interval '1 microsecond', interval '1 minute') m
    WHERE o.dataset = $3 AND o.start_time < $2 AND o.end_time > $1
    GROUP BY 1, 2
)
SELECT pair, day, coalesce(s.samples, 0) AS samples,
       coalesce(s.crossed_samples, 0) AS crossed_samples,
       coalesce(i.crossed_seen, 0) AS crossed_seen, coalesce(i.updates, 0) AS updates,
       coalesce(i.gap_minutes, 0) AS gap_minutes, coalesce(i.gaps, 0) AS gaps,
       coalesce(i.resyncs, 0) AS resyncs, coalesce(i.stale_ms, 0) AS stale_ms,
       coalesce(o.outage_minutes, 0) AS outage_minutes
FROM samples s FULL JOIN integrity i USING (pair, day) FULL JOIN outages o USING (pair, day)
ORDER BY day, pair
"""  # noqa: S608  # identifiers: the books module's table names


@dataclass(frozen=True)
class BookDay:
    partition: str
    """day|trading pair."""
    samples: int
    crossed_samples: int
    crossed_seen: int
    updates: int
    gap_minutes: int
    gaps: int
    resyncs: int
    stale_ms: int
    outage_minutes: int


async def read_book_days(url: str, first: date, last: date) -> list[BookDay]:
    """Per pair and day in [first, last]: the figures both checks read."""
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    async with asyncio.timeout(30):
        conn = await connect(url)
        try:
            rows = await conn.fetch(_BY_PAIR_AND_DAY, start, end, books.BOOKS_TABLE)
            names = {
                p.id: series_key(p.key)
                for p in await catalog_store.list_trading_pairs(conn, active_only=False)
            }
        finally:
            await conn.close()
    return [
        BookDay(
            partition_key(r["day"], names.get(r["pair"], f"unknown-{r['pair']}")),
            *(int(r[c]) for c in _FIGURES),
        )
        for r in rows
    ]


_FIGURES = ("samples", "crossed_samples", "crossed_seen", "updates", "gap_minutes", "gaps",
            "resyncs", "stale_ms", "outage_minutes")  # fmt: skip


def check_days(now: datetime) -> tuple[date, date]:
    today = now.date()
    return today - timedelta(days=BOOK_CHECK_DAYS - 1), today


def never_crossed(days: list[BookDay]) -> list[Finding]:
    return [
        Finding(
            d.partition,
            d.crossed_samples == 0 and d.crossed_seen == 0,
            {
                "samples": d.samples,
                "crossed_samples": d.crossed_samples,
                "crossed_seen_by_collector": d.crossed_seen,
            },
        )
        for d in days
    ]


def integrity_gaps(days: list[BookDay]) -> list[Finding]:
    return [
        Finding(
            d.partition,
            d.gap_minutes == 0 and d.outage_minutes == 0,
            {
                "updates": d.updates,
                "gap_minutes": d.gap_minutes,
                "gaps": d.gaps,
                "resyncs": d.resyncs,
                "stale_seconds": d.stale_ms // 1000,
                "outage_minutes": d.outage_minutes,
            },
        )
        for d in days
    ]
