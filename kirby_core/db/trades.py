"""The trade tape's storage: the `trades` writer, its daily partitions and their retention.

The table (migration 0008) is partitioned by UTC day on plain PostgreSQL and a hypertable
with TimescaleDB. Rows are deduplicated by (trading pair, exchange trade id): the key is
(trading_pair_id, time, trade_id), and a trade's time never changes.

`write_trades` is `kirby_core.db.daily_copy.DailyCopy.write`, shared with the book samples:
a batch that cannot overlap stored trades of its pairs is COPYed straight into the table,
any other is staged and moved with `ON CONFLICT DO NOTHING` (trades already stored, a
reconnect's overlap or a re-run backfill, and trades repeated within the batch are counted
as duplicates, never written twice and never an error). Measured against the server's own
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
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from kirby_core.db.daily_copy import DailyCopy, DailyWriteResult, RejectedRow
from kirby_core.db.daily_tables import DailyPartitions

log = logging.getLogger(__name__)

TRADES_TABLE = "trades"
TRADES_BY_DAY = DailyPartitions(TRADES_TABLE, "kirby_create_trade_partitions")
TRADE_COLUMNS = ("trading_pair_id", "time", "trade_id", "price", "size", "side")
SIDES = ("buy", "sell")


class TradeRow(NamedTuple):
    trading_pair_id: int
    time: datetime
    """Timezone-aware."""
    trade_id: str
    price: Decimal
    size: Decimal
    side: str
    """The taker's side: 'buy' or 'sell'."""


RejectedTrade = RejectedRow[TradeRow]


class TradeWriteResult(DailyWriteResult[TradeRow]):
    """What `write_trades` did with a batch."""


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


_WRITER = DailyCopy(
    TRADES_TABLE, TRADE_COLUMNS, TRADES_BY_DAY, "trade", _reason, _copy_lines, TradeWriteResult
)


async def write_trades(conn: asyncpg.Connection, rows: Sequence[TradeRow]) -> TradeWriteResult:
    """Store the new trades of `rows`; count the duplicates; set aside (and log) bad rows."""
    return await _WRITER.write(conn, rows)


# --- partitions and retention, from `kirby db migrate` (SQLAlchemy connection) ---
