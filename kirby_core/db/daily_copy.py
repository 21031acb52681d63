"""The one writer of the tables partitioned by day (`trades`, `books`): COPY a batch into
its daily partitions, each row once, bad rows set aside.

A `DailyCopy` names a table, its columns (first the trading pair, then the time), its
`DailyPartitions`, how to tell a row the table would refuse and how to format COPY text;
`write` does the rest, the same for the trade tape and the book samples:

1. rows the table would refuse (`reason`) are set aside with their reason and logged, so one
   bad row never fails a batch;
2. the days the batch needs get their partitions;
3. when no stored row of a pair falls within the batch's time range of that pair (a live
   flush after the previous one, a first backfill), the batch is COPYed straight into the
   table inside a savepoint (`bench/trades/ingest.py` measures this path against the
   server's own COPY);
4. otherwise, or when that copy meets a repeated key or an unknown pair, the batch is
   COPYed into a temporary staging table shaped like the table (`LIKE`) and one
   `INSERT ... SELECT ... ON CONFLICT DO NOTHING` moves the new rows in: rows already stored
   (a reconnect's overlap, a re-run backfill, a retried flush) and rows repeated within the
   batch count as duplicates, never an error; rows of unknown pairs are set aside.

What it does not do: validate anything beyond `reason`, or create the table (migrations).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from kirby_core.db.daily_tables import DailyPartitions, utc_day
from kirby_core.db.writer import MAX_LOGGED_REJECTS

log = logging.getLogger(__name__)

DAILY_CHUNK_ROWS = 5000
"""Rows a COPY chunk carries: the server parses one chunk while the next is formatted."""


class PairRow(Protocol):
    """A row keyed by a trading pair and a time (`TradeRow`, `BookRow`)."""

    @property
    def trading_pair_id(self) -> int: ...

    @property
    def time(self) -> datetime: ...


PairRowT = TypeVar("PairRowT", bound=PairRow)


@dataclass(frozen=True)
class RejectedRow(Generic[PairRowT]):
    row: PairRowT
    reason: str


@dataclass
class DailyWriteResult(Generic[PairRowT]):
    received: int = 0
    written: int = 0
    duplicates: int = 0
    """Rows already stored, or repeated within the batch."""
    rejected: list[RejectedRow[PairRowT]] = field(default_factory=list)


Result = TypeVar("Result", bound=DailyWriteResult[Any])

_FAILED_COPY = (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError)


@dataclass(frozen=True)
class DailyCopy(Generic[PairRowT, Result]):
    """How one daily-partitioned table is written (see the module)."""

    table: str
    columns: tuple[str, ...]
    """In table order, starting with trading_pair_id and time."""
    partitions: DailyPartitions
    noun: str
    """What a row is, in logs: "trade", "book sample"."""
    reason: Callable[[PairRowT], str | None]
    """Why the table would refuse a row, or None."""
    lines: Callable[[Sequence[PairRowT]], list[str]]
    """COPY text lines (tab-separated, newline-terminated) of rows, in `columns` order."""
    result: Callable[..., Result]
    """The result type (`DailyWriteResult` fields as keywords)."""

    @property
    def stage(self) -> str:
        return f"kirby_stage_{self.table}"

    async def write(self, conn: asyncpg.Connection, rows: Sequence[PairRowT]) -> Result:
        """Store the new rows of `rows`; count the duplicates; set aside (and log) bad rows."""
        if not rows:
            return self.result()
        good: list[PairRowT] = []
        rejected: list[RejectedRow[PairRowT]] = []
        refused = self.reason
        for row in rows:
            reason = refused(row)
            if reason is None:
                good.append(row)
            else:
                rejected.append(RejectedRow(row, reason))
        written = 0
        if good:
            async with conn.transaction():
                times = [r.time for r in good]
                await self.partitions.create(conn, utc_day(min(times)), utc_day(max(times)))
                if not await self._overlaps(conn, good) and await self._copied(conn, good):
                    written = len(good)
                else:
                    written, unknown = await self._stage_and_move(conn, good)
                    if unknown:
                        rejected += [
                            RejectedRow(r, "unknown trading_pair_id")
                            for r in good
                            if r.trading_pair_id in unknown
                        ]
                        good = [r for r in good if r.trading_pair_id not in unknown]
        for item in rejected[:MAX_LOGGED_REJECTS]:
            log.warning(
                "%s rejected reason=%r pair=%s time=%s",
                self.noun,
                item.reason,
                item.row.trading_pair_id,
                item.row.time,
            )
        if rejected:
            log.warning("%ss rejected rejected=%d of=%d", self.noun, len(rejected), len(rows))
        return self.result(
            received=len(rows),
            written=written,
            duplicates=len(good) - written,
            rejected=rejected,
        )

    async def _copy_stream(self, rows: Sequence[PairRowT]) -> AsyncIterator[bytes]:
        for start in range(0, len(rows), DAILY_CHUNK_ROWS):
            yield "".join(self.lines(rows[start : start + DAILY_CHUNK_ROWS])).encode()

    async def _overlaps(self, conn: asyncpg.Connection, rows: Sequence[PairRowT]) -> bool:
        """Whether any stored row of a pair falls within the batch's time range of that pair."""
        ranges: dict[int, list[datetime]] = {}
        for row in rows:
            span = ranges.get(row.trading_pair_id)
            if span is None:
                ranges[row.trading_pair_id] = [row.time, row.time]
            elif row.time < span[0]:
                span[0] = row.time
            elif row.time > span[1]:
                span[1] = row.time
        firsts, lasts = zip(*ranges.values(), strict=True)
        overlaps: bool = await conn.fetchval(
            f"""SELECT EXISTS (
                SELECT 1 FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[])
                    AS r(id, first_time, last_time)
                WHERE EXISTS (SELECT 1 FROM {self.table} t WHERE t.trading_pair_id = r.id
                              AND t.time BETWEEN r.first_time AND r.last_time))""",  # noqa: S608
            list(ranges),
            list(firsts),
            list(lasts),
        )
        return overlaps

    async def _copied(self, conn: asyncpg.Connection, rows: Sequence[PairRowT]) -> bool:
        """COPY `rows` straight into the table; False (and nothing written) when one repeats
        a stored or batch row or names an unknown pair."""
        try:
            async with conn.transaction():  # a savepoint: a failed copy leaves no trace
                await conn.copy_to_table(
                    self.table, source=self._copy_stream(rows), columns=list(self.columns)
                )
        except _FAILED_COPY as exc:
            log.debug("fresh %s copy fell back to staging cause=%s", self.noun, exc)
            return False
        return True

    async def _stage_and_move(
        self, conn: asyncpg.Connection, rows: Sequence[PairRowT]
    ) -> tuple[int, set[int]]:
        """(rows written, the batch's unknown trading pairs) through the staging table."""
        stage, columns = self.stage, ", ".join(self.columns)
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {self.table}) ON COMMIT DELETE ROWS"
        )
        await conn.copy_to_table(stage, source=self._copy_stream(rows), columns=list(self.columns))
        status = await conn.execute(
            f"""INSERT INTO {self.table} ({columns}) SELECT {columns} FROM {stage} st
            WHERE EXISTS (SELECT 1 FROM trading_pairs p WHERE p.id = st.trading_pair_id)
            ON CONFLICT DO NOTHING"""  # noqa: S608
        )
        written = int(status.rsplit(" ", 1)[1])
        if written == len(rows):
            return written, set()
        unknown = await conn.fetch(
            f"""SELECT DISTINCT trading_pair_id FROM {stage} st
            WHERE NOT EXISTS (SELECT 1 FROM trading_pairs p WHERE p.id = st.trading_pair_id)"""  # noqa: S608
        )
        return written, {r["trading_pair_id"] for r in unknown}
