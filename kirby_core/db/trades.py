"""The trade tape's storage: the `trades` writer, its daily partitions and their retention.

The table (migration 0008) is partitioned by UTC day on plain PostgreSQL and a hypertable
with TimescaleDB. Rows are deduplicated by (trading pair, exchange trade id): the key is
(trading_pair_id, time, trade_id), and a trade's time never changes.

`write_trades` has two paths. When no stored trade of a pair falls within the batch's time
range of that pair (a live flush after the previous one, a first backfill), the batch is
COPYed straight into the table inside a savepoint. Otherwise (or when that copy meets a
repeated trade or an unknown pair) it is COPYed into a temporary staging table and one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` moves the new ones in: trades already stored
(a reconnect's overlap, a re-run backfill) and trades repeated within the batch are counted
as duplicates, never written twice and never an error. Measured against the server's own
`COPY trades FROM '<file>'` by `bench/trades/ingest.py` (bench/README.md). Prices and sizes
are `Decimal`s sent as their exact text. A row the table would refuse (unknown side, price
or size not positive, no trade id, naive time, unknown trading pair) is set aside with its
reason and logged, so one bad row never fails a batch.

Partitions: the writer makes the days its batch needs (`kirby_create_trade_partitions`, a
function of migration 0008, so one definition serves the writer and `kirby db migrate`),
and `kirby db migrate` makes today's and the next `PARTITIONS_AHEAD` days'
(`kirby_core.db.daily_tables`). Retention of
`trades` (`KIRBY_RETENTION=trades=30d`, see `kirby_core.db.retention`) drops the daily
partitions whose every possible row is older than the rule, and nothing else.

`trades` is deliberately not in `kirby_core.datasets.DATASETS`: that tuple declares the
minute tables (one row per series and minute-aligned time, upserted, not deduplicated by
an id). The collector writes the tape with `write_trades`; the API (`kirby_api.datasets`
`SERVED_TRADES`) and the lake (`kirby_core.lake`) take its table and columns from here
(`TRADES_TABLE`, `TRADE_COLUMNS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from kirby_core.db.daily_tables import DailyPartitions, utc_day
from kirby_core.db.writer import MAX_LOGGED_REJECTS

log = logging.getLogger(__name__)

TRADES_TABLE = "trades"
TRADES_BY_DAY = DailyPartitions(TRADES_TABLE, "kirby_create_trade_partitions")
TRADE_COLUMNS = ("trading_pair_id", "time", "trade_id", "price", "size", "side")
SIDES = ("buy", "sell")
TRADE_COPY_CHUNK_ROWS = 5000

_STAGE = "kirby_stage_trades"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (trading_pair_id integer, time timestamptz,"
    " trade_id text, price numeric, size numeric, side text) ON COMMIT DELETE ROWS"
)
_MOVE = f"""
INSERT INTO {TRADES_TABLE} ({", ".join(TRADE_COLUMNS)})
SELECT {", ".join(TRADE_COLUMNS)} FROM {_STAGE} st
WHERE EXISTS (SELECT 1 FROM trading_pairs p WHERE p.id = st.trading_pair_id)
ON CONFLICT DO NOTHING
"""  # noqa: S608
_UNKNOWN_PAIRS = f"""
SELECT DISTINCT trading_pair_id FROM {_STAGE} st
WHERE NOT EXISTS (SELECT 1 FROM trading_pairs p WHERE p.id = st.trading_pair_id)
"""  # noqa: S608
_OVERLAP_PROBE = f"""SELECT EXISTS (
    SELECT 1 FROM unnest($1::integer[], $2::timestamptz[], $3::timestamptz[])
        AS r(id, first_time, last_time)
    WHERE EXISTS (SELECT 1 FROM {TRADES_TABLE} t WHERE t.trading_pair_id = r.id
                  AND t.time BETWEEN r.first_time AND r.last_time))"""  # noqa: S608
_FAILED_COPY = (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError)


class TradeRow(NamedTuple):
    trading_pair_id: int
    time: datetime
    """Timezone-aware."""
    trade_id: str
    price: Decimal
    size: Decimal
    side: str
    """The taker's side: 'buy' or 'sell'."""


@dataclass(frozen=True)
class RejectedTrade:
    row: TradeRow
    reason: str


@dataclass
class TradeWriteResult:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    """Rows already stored, or repeated within the batch."""
    rejected: list[RejectedTrade] = field(default_factory=list)


def _reason(row: TradeRow) -> str | None:
    """Why the table would refuse `row` (its CHECK constraints and types), or None."""
    if row.side not in SIDES:
        return f"side {row.side!r} is not one of {', '.join(SIDES)}"
    if not row.trade_id:
        return "no trade id"
    if not (row.price > 0):
        return f"price {row.price} is not positive"
    if not (row.size > 0):
        return f"size {row.size} is not positive"
    if row.time.tzinfo is None:
        return f"time {row.time} has no timezone"
    return None


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def _copy_lines(rows: Sequence[TradeRow]) -> list[str]:
    """COPY text lines. Formatting is most of the writer's client time, so: a UTC minute's
    text is made once (`str(datetime)` costs ~4 us, the seconds alone ~1 us), and only trade
    ids (the one free-text column) are escaped, and only when they need it."""
    minutes: dict[tuple[int, int, int, int, int], str] = {}
    lines = []
    for pair, time, trade_id, price, size, side in rows:
        if time.tzinfo is not UTC:
            time = time.astimezone(UTC)
        key = (time.year, time.month, time.day, time.hour, time.minute)
        minute = minutes.get(key)
        if minute is None:
            minute = minutes[key] = f"{time:%Y-%m-%d %H:%M:}"
        if _NEEDS_ESCAPE.search(trade_id):
            trade_id = trade_id.translate(_COPY_ESCAPES)
        lines.append(
            f"{pair}\t{minute}{time.second:02}.{time.microsecond:06}+00\t{trade_id}"
            f"\t{price}\t{size}\t{side}\n"
        )
    return lines


async def _copy_stream(rows: Sequence[TradeRow]) -> AsyncIterator[bytes]:
    """Streamed: the server parses one chunk while the next is formatted."""
    for start in range(0, len(rows), TRADE_COPY_CHUNK_ROWS):
        yield "".join(_copy_lines(rows[start : start + TRADE_COPY_CHUNK_ROWS])).encode()


async def _overlaps(conn: asyncpg.Connection, rows: Sequence[TradeRow]) -> bool:
    """Whether any stored trade of a pair falls within the batch's time range of that pair."""
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
    overlaps: bool = await conn.fetchval(_OVERLAP_PROBE, list(ranges), list(firsts), list(lasts))
    return overlaps


async def _copied(conn: asyncpg.Connection, rows: Sequence[TradeRow]) -> bool:
    """COPY `rows` straight into the table; False (and nothing written) when one repeats a
    stored or batch trade or names an unknown pair."""
    try:
        async with conn.transaction():  # a savepoint: a failed copy leaves no trace
            await conn.copy_to_table(
                TRADES_TABLE, source=_copy_stream(rows), columns=list(TRADE_COLUMNS)
            )
    except _FAILED_COPY as exc:
        log.debug("fresh trade copy fell back to staging cause=%s", exc)
        return False
    return True


async def _stage_and_move(
    conn: asyncpg.Connection, rows: Sequence[TradeRow]
) -> tuple[int, set[int]]:
    """(rows written, the batch's unknown trading pairs) through the staging table."""
    await conn.execute(_CREATE_STAGE)
    await conn.copy_to_table(_STAGE, source=_copy_stream(rows), columns=list(TRADE_COLUMNS))
    status = await conn.execute(_MOVE)
    written = int(status.rsplit(" ", 1)[1])
    if written == len(rows):
        return written, set()
    return written, {r["trading_pair_id"] for r in await conn.fetch(_UNKNOWN_PAIRS)}


async def write_trades(conn: asyncpg.Connection, rows: Sequence[TradeRow]) -> TradeWriteResult:
    """Store the new trades of `rows`; count the duplicates; set aside (and log) bad rows."""
    if not rows:
        return TradeWriteResult()
    good: list[TradeRow] = []
    rejected: list[RejectedTrade] = []
    for row in rows:
        reason = _reason(row)
        if reason is None:
            good.append(row)
        else:
            rejected.append(RejectedTrade(row, reason))
    written = 0
    if good:
        async with conn.transaction():
            times = [r.time for r in good]
            await TRADES_BY_DAY.create(conn, utc_day(min(times)), utc_day(max(times)))
            if not await _overlaps(conn, good) and await _copied(conn, good):
                written = len(good)
            else:
                written, unknown = await _stage_and_move(conn, good)
                if unknown:
                    rejected += [
                        RejectedTrade(r, "unknown trading_pair_id")
                        for r in good
                        if r.trading_pair_id in unknown
                    ]
                    good = [r for r in good if r.trading_pair_id not in unknown]
    for item in rejected[:MAX_LOGGED_REJECTS]:
        log.warning("trade rejected reason=%r row=%s", item.reason, item.row)
    if rejected:
        log.warning("trades rejected rejected=%d of=%d", len(rejected), len(rows))
    return TradeWriteResult(
        received=len(rows),
        written=written,
        duplicates=len(good) - written,
        rejected=rejected,
    )


# --- partitions and retention, from `kirby db migrate` (SQLAlchemy connection) ---
