"""Order-book storage: the `books` writer (sampled top-N levels), the `book_integrity`
writer (counters per pair and minute), `books`' daily partitions and their retention.

The tables are migration 0010's. `books` is partitioned by UTC day on plain PostgreSQL and a
hypertable with TimescaleDB, keyed by (trading_pair_id, time): one sample per pair and
second. `book_integrity` is a plain table keyed by (trading_pair_id, minute).

`write_books` is `kirby_core.db.daily_copy.DailyCopy.write`, shared with the trade tape: a
batch of samples newer than the pairs' stored ones (every live flush) is COPYed straight
into the table, any other is staged and moved with `ON CONFLICT DO NOTHING`, so a sample
already stored (a retried flush) is counted as a duplicate, never an error. Prices and sizes
are `Decimal`s sent as their exact text in `numeric[]` literals. A sample the table would
refuse (naive or fractional time, a side's prices not strictly best first, a level not
positive, a crossed book, more than `MAX_LEVELS` levels a side, an unknown pair) is set
aside with its reason and logged.

`write_book_integrity` upserts each (pair, minute)'s counters as the collector's running
totals of that minute: a later flush of the same minute replaces the row, so writing the
same totals twice changes nothing.

Partitions: the writer makes the days its batch needs (`kirby_create_book_partitions`, from
migration 0010) and `kirby db migrate` makes today's and the next `PARTITIONS_AHEAD` days'
(`kirby_core.db.daily_tables`).
Retention `books=<N>d` (`kirby_core.db.retention`) drops the daily partitions whose every
possible row is older than N days, and nothing else (`book_integrity` stays).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from kirby_core.books.book import Level
from kirby_core.db.daily_copy import DailyCopy, DailyWriteResult, RejectedRow
from kirby_core.db.daily_tables import DailyPartitions

log = logging.getLogger(__name__)

BOOKS_TABLE = "books"
BOOKS_BY_DAY = DailyPartitions(BOOKS_TABLE, "kirby_create_book_partitions")
INTEGRITY_TABLE = "book_integrity"
BOOK_COLUMNS = ("trading_pair_id", "time", "sequence", "bid_prices", "bid_sizes", "ask_prices",
           "ask_sizes")  # fmt: skip
INTEGRITY_COUNTERS = ("updates", "gaps", "resyncs", "stale_ms", "crossed")
MAX_LEVELS = 1000
"""Levels a side a stored sample may hold (migration 0010's CHECK)."""


_UPSERT_INTEGRITY = f"""
INSERT INTO {INTEGRITY_TABLE} (trading_pair_id, time, {", ".join(INTEGRITY_COUNTERS)})
SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::integer[], $4::integer[],
                     $5::integer[], $6::integer[], $7::integer[])
    AS r(trading_pair_id, time, {", ".join(INTEGRITY_COUNTERS)})
WHERE EXISTS (SELECT 1 FROM trading_pairs p WHERE p.id = r.trading_pair_id)
ON CONFLICT (trading_pair_id, time) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in INTEGRITY_COUNTERS)}
"""  # noqa: S608


class BookRow(NamedTuple):
    """One sample of one pair's book."""

    trading_pair_id: int
    time: datetime
    """The sample instant: a whole second, timezone-aware."""
    sequence: int | None
    """The exchange's update id the book had reached; None where it has none."""
    bids: tuple[Level, ...]
    """Best (highest) first."""
    asks: tuple[Level, ...]
    """Best (lowest) first."""


class IntegrityRow(NamedTuple):
    """One pair's book integrity over one minute (running totals while the minute lasts)."""

    trading_pair_id: int
    time: datetime
    """The minute's start, timezone-aware."""
    updates: int
    gaps: int
    resyncs: int
    stale_ms: int
    """Milliseconds of the minute the book was not trustworthy (0..60000)."""
    crossed: int


RejectedBook = RejectedRow[BookRow]


class BookWriteResult(DailyWriteResult[BookRow]):
    """What `write_books` did with a batch."""


def _side_reason(levels: tuple[Level, ...], name: str, better: str) -> str | None:
    if len(levels) > MAX_LEVELS:
        return f"{len(levels)} {name} levels; at most {MAX_LEVELS}"
    previous: Decimal | None = None
    for price, size in levels:
        if not (price.is_finite() and price > 0):
            return f"{name} price {price} is not positive"
        if not (size.is_finite() and size > 0):
            return f"{name} size {size} at {price} is not positive"
        if previous is not None and not (price < previous if better == "<" else price > previous):
            return f"{name} price {price} after {previous}: {name} must be best first"
        previous = price
    return None


def book_reason(row: BookRow) -> str | None:
    """Why the table would refuse `row` (or a sample that is not a book), or None."""
    if row.time.tzinfo is None:
        return f"time {row.time} has no timezone"
    if row.time.microsecond:
        return f"time {row.time} is not a whole second"
    reason = _side_reason(row.bids, "bid", "<") or _side_reason(row.asks, "ask", ">")
    if reason is not None:
        return reason
    if row.bids and row.asks and row.bids[0][0] >= row.asks[0][0]:
        return f"crossed: best bid {row.bids[0][0]} >= best ask {row.asks[0][0]}"
    return None


def _array(values: Sequence[Decimal]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _copy_lines(rows: Sequence[BookRow]) -> list[str]:
    lines = []
    for pair, time, sequence, bids, asks in rows:
        time = time.astimezone(UTC)
        number = r"\N" if sequence is None else str(sequence)
        lines.append(
            f"{pair}\t{time:%Y-%m-%d %H:%M:%S}+00\t{number}"
            f"\t{_array([p for p, _ in bids])}\t{_array([s for _, s in bids])}"
            f"\t{_array([p for p, _ in asks])}\t{_array([s for _, s in asks])}\n"
        )
    return lines


_WRITER = DailyCopy(
    BOOKS_TABLE,
    BOOK_COLUMNS,
    BOOKS_BY_DAY,
    "book sample",
    book_reason,
    _copy_lines,
    BookWriteResult,
)


async def write_books(conn: asyncpg.Connection, rows: Sequence[BookRow]) -> BookWriteResult:
    """Store the new samples of `rows`; count the duplicates; set aside (and log) bad rows."""
    return await _WRITER.write(conn, rows)


def integrity_reason(row: IntegrityRow) -> str | None:
    if row.time.tzinfo is None:
        return f"time {row.time} has no timezone"
    if row.time.second or row.time.microsecond:
        return f"time {row.time} is not a minute's start"
    for name in INTEGRITY_COUNTERS:
        if getattr(row, name) < 0:
            return f"{name} {getattr(row, name)} is negative"
    if row.stale_ms > 60000:
        return f"stale_ms {row.stale_ms} is more than a minute"
    return None


async def write_book_integrity(conn: asyncpg.Connection, rows: Sequence[IntegrityRow]) -> int:
    """Upsert each (pair, minute)'s counters (the latest totals win); returns the rows
    written. Rows of unknown pairs or with impossible counters are logged and skipped."""
    good = []
    for row in rows:
        reason = integrity_reason(row)
        if reason is None:
            good.append(row)
        else:
            log.warning("book integrity rejected reason=%r row=%s", reason, row)
    if not good:
        return 0
    columns = list(zip(*good, strict=True))
    status = await conn.execute(_UPSERT_INTEGRITY, *(list(c) for c in columns))
    written = int(status.rsplit(" ", 1)[1])
    if written < len(good):
        log.warning("book integrity rows of unknown pairs skipped=%d", len(good) - written)
    return written


# --- partitions and retention, from `kirby db migrate` (SQLAlchemy connection) ---
