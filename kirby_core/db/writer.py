"""Bulk upserts of candles, funding rates and open interest.

Rows reach PostgreSQL by COPY, streamed: while the server parses one chunk, Python formats
the next, so a batch loads at about the speed of the server's own `COPY ... FROM file`.
There are two paths:

- fresh: when no stored row shares a key range with the batch (a first backfill), the rows
  are copied straight into the table inside a savepoint;
- merge (otherwise, or when the fresh copy hits a duplicate or a constraint): the rows are
  copied into a temporary staging table, then one statement checks every row against the
  table's constraints and sets aside the ones that would fail (with the reason, so one bad
  row never fails a batch), keeps the last occurrence of a repeated key, merges with
  `COALESCE(EXCLUDED.col, t.col)` so a NULL never erases stored data, and skips rows that
  would not change, so re-running a backfill writes nothing.

Values are `Decimal`s from the exchange's strings, sent as their exact text: no float is
involved. Rejected rows are counted and logged, never dropped silently. This module does
not NOTIFY; the stream does that around its flushes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import asyncpg

from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow

log = logging.getLogger(__name__)

FRESH_PATH_MIN_ROWS = 2000
"""Below this a batch goes straight to the merge path: the fresh-range probe would cost more
than it saves, and small batches (live flushes) usually update existing rows anyway."""
COPY_CHUNK_ROWS = 2000
"""Rows formatted per streamed COPY chunk: small enough for client and server to overlap."""
MAX_LOGGED_REJECTS = 20

_FAILED_COPY = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


@dataclass(frozen=True)
class Rejected:
    row: NamedTuple
    reason: str


@dataclass
class WriteResult:
    received: int = 0
    written: int = 0
    """Rows inserted or changed; unchanged re-upserts are not counted."""
    rejected: list[Rejected] = field(default_factory=list)

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.received += other.received
        self.written += other.written
        self.rejected.extend(other.rejected)
        return self


@dataclass(frozen=True)
class _Table:
    """A market-data table: fixed identifiers only, so the SQL built here is injection-free."""

    name: str
    series: str
    series_table: str
    columns: tuple[tuple[str, str], ...]
    """(column, PostgreSQL type) after (series, time)."""
    checks: tuple[tuple[str, str], ...]
    """(SQL predicate that must hold, reason when it does not)."""

    @property
    def all_columns(self) -> list[str]:
        return [self.series, "time", *(c for c, _ in self.columns)]

    @property
    def stage(self) -> str:
        return f"kirby_stage_{self.name}"

    def create_stage(self) -> str:
        cols = ", ".join(
            f"{c} {t}"
            for c, t in (
                ("ord", "integer"),
                (self.series, "integer"),
                ("time", "timestamptz"),
                *self.columns,
            )
        )
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({cols}) ON COMMIT DELETE ROWS"

    def overlap_probe(self) -> str:
        return f"""SELECT EXISTS (
            SELECT 1 FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[])
                AS r(id, first_time, last_time)
            WHERE EXISTS (SELECT 1 FROM {self.name} t WHERE t.{self.series} = r.id
                          AND t.time BETWEEN r.first_time AND r.last_time))"""  # noqa: S608

    def merge(self) -> str:
        names = [c for c, _ in self.columns]
        keys = f"{self.series}, time"
        cols = ", ".join(names)
        reasons = " ".join(
            f"WHEN NOT coalesce({pred}, false) THEN '{why}'" for pred, why in self.checks
        )
        sets = ", ".join(f"{c} = coalesce(EXCLUDED.{c}, t.{c})" for c in names)
        current = ", ".join(f"t.{c}" for c in names)
        merged = ", ".join(f"coalesce(EXCLUDED.{c}, t.{c})" for c in names)
        return f"""
WITH checked AS (
    SELECT st.*, CASE
        WHEN NOT EXISTS (SELECT 1 FROM {self.series_table} s WHERE s.id = st.{self.series})
            THEN 'unknown {self.series}'
        WHEN time IS NULL OR time <> date_trunc('minute', time) THEN 'time not minute-aligned'
        {reasons} END AS reason
    FROM {self.stage} st
), written AS (
    INSERT INTO {self.name} AS t ({keys}, {cols})
    SELECT DISTINCT ON ({keys}) {keys}, {cols} FROM checked
    WHERE reason IS NULL ORDER BY {keys}, ord DESC
    ON CONFLICT ({keys}) DO UPDATE SET {sets}
    WHERE ({current}) IS DISTINCT FROM ({merged})
    RETURNING 1
)
SELECT (SELECT count(*) FROM written) AS written,
       coalesce(array_agg(ord ORDER BY ord), '{{}}') AS rejected_ord,
       coalesce(array_agg(reason ORDER BY ord), '{{}}') AS rejected_reason
FROM checked WHERE reason IS NOT NULL
"""  # noqa: S608


CANDLES = _Table(
    name="candles",
    series="starlisting_id",
    series_table="starlistings",
    columns=(
        ("open", "numeric"),
        ("high", "numeric"),
        ("low", "numeric"),
        ("close", "numeric"),
        ("volume", "numeric"),
        ("trade_count", "integer"),
    ),
    checks=(
        (
            "open IS NOT NULL AND high IS NOT NULL AND low IS NOT NULL AND close IS NOT NULL "
            "AND volume IS NOT NULL",
            "missing open/high/low/close/volume",
        ),
        ("low <= high", "low above high"),
        ("high >= open AND high >= close", "high below open or close"),
        ("low <= open AND low <= close", "low above open or close"),
        ("low > 0", "non-positive price"),
        ("volume >= 0", "negative volume"),
        ("trade_count IS NULL OR trade_count >= 0", "negative trade count"),
    ),
)

FUNDING_RATES = _Table(
    name="funding_rates",
    series="trading_pair_id",
    series_table="trading_pairs",
    columns=(
        ("settled_funding_rate", "numeric"),
        ("settled_premium", "numeric"),
        ("predicted_funding_rate", "numeric"),
        ("premium", "numeric"),
        ("mark_price", "numeric"),
        ("oracle_price", "numeric"),
        ("mid_price", "numeric"),
        ("next_funding_time", "timestamptz"),
    ),
    checks=(
        (
            "(mark_price IS NULL OR mark_price > 0) AND (oracle_price IS NULL OR oracle_price > 0)"
            " AND (mid_price IS NULL OR mid_price > 0)",
            "non-positive price",
        ),
    ),
)

OPEN_INTEREST = _Table(
    name="open_interest",
    series="trading_pair_id",
    series_table="trading_pairs",
    columns=(
        ("open_interest", "numeric"),
        ("notional", "numeric"),
        ("day_base_volume", "numeric"),
        ("day_notional_volume", "numeric"),
    ),
    checks=(
        (
            "(open_interest IS NULL OR open_interest >= 0) AND (notional IS NULL OR notional >= 0)",
            "negative open interest",
        ),
        (
            "(day_base_volume IS NULL OR day_base_volume >= 0) "
            "AND (day_notional_volume IS NULL OR day_notional_volume >= 0)",
            "negative volume",
        ),
    ),
)


async def upsert_candles(conn: asyncpg.Connection, rows: Sequence[CandleRow]) -> WriteResult:
    return await _upsert(conn, CANDLES, rows)


async def upsert_funding_rates(
    conn: asyncpg.Connection, rows: Sequence[FundingRateRow]
) -> WriteResult:
    return await _upsert(conn, FUNDING_RATES, rows)


async def upsert_open_interest(
    conn: asyncpg.Connection, rows: Sequence[OpenInterestRow]
) -> WriteResult:
    return await _upsert(conn, OPEN_INTEREST, rows)


async def _upsert(
    conn: asyncpg.Connection, table: _Table, rows: Sequence[NamedTuple]
) -> WriteResult:
    if not rows:
        return WriteResult()
    async with conn.transaction():
        if len(rows) >= FRESH_PATH_MIN_ROWS and not await _overlaps(conn, table, rows):
            try:
                async with conn.transaction():  # a savepoint: a failed copy leaves no trace
                    await conn.copy_to_table(
                        table.name, source=_copy_stream(rows), columns=table.all_columns
                    )
                return WriteResult(received=len(rows), written=len(rows))
            except _FAILED_COPY as exc:
                log.debug("fresh copy fell back to merge table=%s cause=%s", table.name, exc)
        return await _merge(conn, table, rows)


async def _overlaps(conn: asyncpg.Connection, table: _Table, rows: Sequence[NamedTuple]) -> bool:
    """Whether any stored row falls within the batch's time range of its series."""
    ranges: dict[int, list[datetime]] = {}
    for series, time, *_ in rows:
        span = ranges.get(series)
        if span is None:
            ranges[series] = [time, time]
        elif time < span[0]:
            span[0] = time
        elif time > span[1]:
            span[1] = time
    ids = list(ranges)
    firsts, lasts = zip(*ranges.values(), strict=True)
    overlaps: bool = await conn.fetchval(table.overlap_probe(), ids, list(firsts), list(lasts))
    return overlaps


async def _merge(
    conn: asyncpg.Connection, table: _Table, rows: Sequence[NamedTuple]
) -> WriteResult:
    await conn.execute(table.create_stage())
    await conn.copy_to_table(
        table.stage, source=_copy_stream(rows, numbered=True), columns=["ord", *table.all_columns]
    )
    record = await conn.fetchrow(table.merge())
    assert record is not None  # the merge's final SELECT aggregates: always one row
    rejected = [
        Rejected(rows[ordinal], reason)
        for ordinal, reason in zip(record["rejected_ord"], record["rejected_reason"], strict=True)
    ]
    for item in rejected[:MAX_LOGGED_REJECTS]:
        log.warning("row rejected table=%s reason=%r row=%s", table.name, item.reason, item.row)
    if rejected:
        log.warning(
            "rows rejected table=%s rejected=%d of=%d", table.name, len(rejected), len(rows)
        )
    return WriteResult(received=len(rows), written=record["written"], rejected=rejected)


def _copy_line(values: Sequence[object]) -> str:
    """COPY text format. Values are numbers, datetimes or None: nothing needs escaping."""
    return "\t".join(["\\N" if v is None else str(v) for v in values])


async def _copy_stream(rows: Sequence[NamedTuple], numbered: bool = False) -> AsyncIterator[bytes]:
    for start in range(0, len(rows), COPY_CHUNK_ROWS):
        chunk = rows[start : start + COPY_CHUNK_ROWS]
        if numbered:
            lines = [f"{start + i}\t{_copy_line(row)}" for i, row in enumerate(chunk)]
        else:
            lines = list(map(_copy_line, chunk))
        yield ("\n".join(lines) + "\n").encode()
