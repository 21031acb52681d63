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

Tables, columns and the rules a row must meet come from `kirby_core.datasets`; the reasons
are the table's CHECK constraints part by part. Values are `Decimal`s from the exchange's
strings, sent as their exact text: no float is involved. Rejected rows are counted and
logged, never dropped silently. This module does not NOTIFY; the stream does that around its
flushes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import asyncpg

from kirby_core.datasets import CANDLES, FUNDING_RATES, OPEN_INTEREST, TIME, Dataset
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


def _stage(dataset: Dataset) -> str:
    return f"kirby_stage_{dataset.name}"


def _create_stage(dataset: Dataset) -> str:
    cols = ", ".join(
        f"{c} {t}"
        for c, t in (
            ("ord", "integer"),
            (dataset.series_column, "integer"),
            (TIME.name, TIME.pg_type),
            *((column.name, column.pg_type) for column in dataset.columns),
        )
    )
    return f"CREATE TEMP TABLE IF NOT EXISTS {_stage(dataset)} ({cols}) ON COMMIT DELETE ROWS"


def _overlap_probe(dataset: Dataset) -> str:
    return f"""SELECT EXISTS (
        SELECT 1 FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[])
            AS r(id, first_time, last_time)
        WHERE EXISTS (SELECT 1 FROM {dataset.name} t WHERE t.{dataset.series_column} = r.id
                      AND t.time BETWEEN r.first_time AND r.last_time))"""  # noqa: S608


@cache
def _merge(dataset: Dataset) -> str:
    """The staged rows checked (first failed rule wins), deduplicated and merged.

    The checks are the table's own CHECK constraints, part by part: a part refuses a row
    when it is false, as PostgreSQL's CHECK would; NOT NULL columns are tested first.
    """
    series = dataset.series_column
    names = dataset.column_names
    keys = ", ".join(dataset.key)
    cols = ", ".join(names)
    ((time_predicate, time_reason),) = dataset.time_check.parts
    rules: list[tuple[str, str]] = []
    if dataset.required:
        missing = " OR ".join(f"{c.name} IS NULL" for c in dataset.required)
        rules.append((missing, "missing " + "/".join(c.name for c in dataset.required)))
    rules += [
        (f"({predicate}) IS FALSE", why) for c in dataset.checks for predicate, why in c.parts
    ]
    reasons = " ".join(f"WHEN {when} THEN '{why}'" for when, why in rules)
    sets = ", ".join(f"{c} = coalesce(EXCLUDED.{c}, t.{c})" for c in names)
    current = ", ".join(f"t.{c}" for c in names)
    merged = ", ".join(f"coalesce(EXCLUDED.{c}, t.{c})" for c in names)
    return f"""
WITH checked AS (
    SELECT st.*, CASE
        WHEN NOT EXISTS (SELECT 1 FROM {dataset.series_table} s WHERE s.id = st.{series})
            THEN 'unknown {series}'
        WHEN time IS NULL OR NOT ({time_predicate}) THEN '{time_reason}'
        {reasons} END AS reason
    FROM {_stage(dataset)} st
), written AS (
    INSERT INTO {dataset.name} AS t ({keys}, {cols})
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


async def upsert(conn: asyncpg.Connection, dataset: Dataset, rows: Sequence[Any]) -> WriteResult:
    """Upsert rows of `dataset` (its row type: `CandleRow`, `FundingRateRow`, ...)."""
    return await _upsert(conn, dataset, rows)


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
    conn: asyncpg.Connection, dataset: Dataset, rows: Sequence[NamedTuple]
) -> WriteResult:
    if not rows:
        return WriteResult()
    async with conn.transaction():
        if len(rows) >= FRESH_PATH_MIN_ROWS and not await _overlaps(conn, dataset, rows):
            try:
                async with conn.transaction():  # a savepoint: a failed copy leaves no trace
                    await conn.copy_to_table(
                        dataset.name, source=_copy_stream(rows), columns=list(dataset.all_columns)
                    )
                return WriteResult(received=len(rows), written=len(rows))
            except _FAILED_COPY as exc:
                log.debug("fresh copy fell back to merge table=%s cause=%s", dataset.name, exc)
        return await _stage_and_merge(conn, dataset, rows)


async def _overlaps(conn: asyncpg.Connection, dataset: Dataset, rows: Sequence[NamedTuple]) -> bool:
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
    overlaps: bool = await conn.fetchval(_overlap_probe(dataset), ids, list(firsts), list(lasts))
    return overlaps


async def _stage_and_merge(
    conn: asyncpg.Connection, dataset: Dataset, rows: Sequence[NamedTuple]
) -> WriteResult:
    await conn.execute(_create_stage(dataset))
    await conn.copy_to_table(
        _stage(dataset),
        source=_copy_stream(rows, numbered=True),
        columns=["ord", *dataset.all_columns],
    )
    record = await conn.fetchrow(_merge(dataset))
    assert record is not None  # an aggregate: always one row
    rejected = [
        Rejected(rows[ordinal], reason)
        for ordinal, reason in zip(record["rejected_ord"], record["rejected_reason"], strict=True)
    ]
    for item in rejected[:MAX_LOGGED_REJECTS]:
        log.warning("row rejected table=%s reason=%r row=%s", dataset.name, item.reason, item.row)
    if rejected:
        log.warning(
            "rows rejected table=%s rejected=%d of=%d", dataset.name, len(rejected), len(rows)
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
