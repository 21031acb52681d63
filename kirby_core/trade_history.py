"""Trade history: a trading pair's trades fetched per UTC day and written, and the three
questions asked of a stored day of trades.

- `backfill_trades`: for each day, what the pair's exchange still serves of it (its
  declared `TradeHistory`: Binance back to the listing, OKX spot three months, the others
  nothing) is fetched and written through `kirby_core.db.trades.write_trades` (duplicates
  of stored trades are counted, never written twice). On an exchange whose trade ids are
  sequential, a fetched row whose ids overlap stored trades is left out: Binance's history
  merges a taker's fills into one row `first-last` while its live feed stores each fill,
  and both in one day would count those trades twice. A day the exchange does not serve
  is reported unavailable at source, not as an empty success.
- `trades_vs_candles`: the day's trades rebuilt into 1m candles (count, volume, OHLC)
  against the exchange's own 1m candles stored for the pair.
- `id_gaps`: on a sequential-id exchange, the trade ids missing between the day's first
  and last stored trade.
- `outage_minutes`: the minutes of the day inside recorded `trades` collection outages.

Nothing here knows an exchange by name: each answer comes from its declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

import asyncpg

from kirby_core.backfill import OK, PARTIAL, UNAVAILABLE, RepairWindow
from kirby_core.datasets import CANDLES
from kirby_core.db import trades as trade_store
from kirby_core.db.catalog_store import TradingPair
from kirby_core.exchanges.base import trade_id_span
from kirby_core.exchanges.feeds import Trade
from kirby_core.exchanges.registry import TRADES, ExchangeDeclaration, TradeHistoryClient
from kirby_core.timeutil import DAY, floor_minute


@dataclass
class TradeDayReport:
    day: date
    status: str = OK
    fetched: int = 0
    """Rows the exchange served for the day (an aggregate of several fills is one)."""
    trades: int = 0
    """Trades those rows stand for."""
    written: int = 0
    duplicates: int = 0
    """Rows already stored."""
    overlapping: int = 0
    """Rows left out because stored trades already hold some of their ids."""
    rejected: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    unavailable: tuple[datetime, datetime] | None = None
    """The part of the day the exchange does not serve."""
    note: str = ""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), UTC)
    return start, start + DAY


def trades_in(trade_id: str, sequential: bool) -> int:
    """How many trades a stored row stands for: an aggregate `first-last` of a
    sequential-id exchange counts each fill."""
    span = trade_id_span(trade_id) if sequential else None
    return 1 if span is None else span[1] - span[0] + 1


async def backfill_trades(
    conn: asyncpg.Connection,
    exchange: ExchangeDeclaration,
    client: TradeHistoryClient | None,
    pair: TradingPair,
    days: Sequence[date],
    now: datetime,
    advance: Callable[[TradeDayReport], None] = lambda _: None,
    window: RepairWindow | None = None,
) -> list[TradeDayReport]:
    """Fetch and write `pair`'s trades of each of `days` (up to `now`'s last whole minute;
    `window`: only that part of them, a gap repair of the day under way)."""
    key = pair.key
    history = exchange.trade_history
    sequential = key.market_type in history.sequential_ids
    reports = []
    for day in days:
        start, end = day_bounds(day)
        end = min(end, floor_minute(now))
        if window is not None:
            start, end = max(start, window[0]), max(start, min(end, window[1]))
        report = TradeDayReport(day)
        oldest = exchange.source_window(TRADES, "1m", now, key.market_type).oldest
        served_from = start if oldest is None else max(start, oldest)
        if client is None or served_from >= end:
            report.status, report.unavailable = UNAVAILABLE, (start, end)
            report.note = history.note
        else:
            if served_from > start:
                report.status, report.unavailable = PARTIAL, (start, served_from)
                report.note = history.note
            fetched = await client.fetch_trades(
                key.coin, key.quote, key.market_type, served_from, end
            )
            await _write(conn, pair.id, fetched, sequential, report)
        reports.append(report)
        advance(report)
    return reports


async def _write(
    conn: asyncpg.Connection,
    pair_id: int,
    fetched: Sequence[Trade],
    sequential: bool,
    report: TradeDayReport,
) -> None:
    report.fetched = len(fetched)
    report.trades = sum(trades_in(t.trade_id, sequential) for t in fetched)
    if fetched:
        report.first_time = min(t.time for t in fetched)
        report.last_time = max(t.time for t in fetched)
    rows = fetched
    if sequential and fetched:
        stored = await _stored_spans(conn, pair_id, report.first_time, report.last_time)
        rows = [t for t in fetched if not _overlaps(t.trade_id, stored)]
        report.overlapping = len(fetched) - len(rows)
    result = await trade_store.write_trades(
        conn,
        [trade_store.TradeRow(pair_id, t.time, t.trade_id, t.price, t.size, t.side) for t in rows],
    )
    report.written = result.written
    report.duplicates = result.duplicates
    report.rejected = len(result.rejected)


async def _stored_spans(
    conn: asyncpg.Connection, pair_id: int, first: datetime | None, last: datetime | None
) -> dict[int, int]:
    """first id -> last id of the stored rows of the pair between `first` and `last`, whose
    ids are other than the fetched rows' own (an identical row is a plain duplicate)."""
    rows = await conn.fetch(
        "SELECT trade_id FROM trades WHERE trading_pair_id = $1 AND time BETWEEN $2 AND $3",
        pair_id,
        first,
        last,
    )
    spans: dict[int, int] = {}
    for row in rows:
        span = trade_id_span(row["trade_id"])
        if span is not None:
            spans[span[0]] = span[1]
    return spans


def _overlaps(trade_id: str, stored: dict[int, int]) -> bool:
    """Whether stored rows hold some of `trade_id`'s trades under another id."""
    span = trade_id_span(trade_id)
    if span is None or (span[0] in stored and stored[span[0]] == span[1]):
        return False  # not a span, or the very same row (the writer counts it a duplicate)
    return any(first <= span[1] and span[0] <= last for first, last in stored.items())


# --- checks of a stored day ---------------------------------------------------------------


_BAR_COLUMNS = CANDLES.column_names
"""`MinuteBar`'s fields are the candle table's value columns, in the declared order."""
_CANDLES_OF_PAIR = f"""
SELECT c.time, {", ".join(f"c.{name}" for name in _BAR_COLUMNS)} FROM candles c
JOIN starlistings s ON s.id = c.starlisting_id JOIN intervals i ON i.id = s.interval_id
WHERE s.trading_pair_id = $1 AND i.name = '1m' AND c.time >= $2 AND c.time < $3
"""  # noqa: S608  # identifiers from the dataset declaration only


@dataclass(frozen=True)
class MinuteBar:
    """A 1m candle, from the exchange or rebuilt from trades."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int | None


@dataclass
class CandleComparison:
    minutes_compared: int = 0
    """Minutes with both trades and the exchange's candle."""
    disagreeing: list[tuple[datetime, str]] = field(default_factory=list)
    """(minute, what differs)."""
    trades_without_candle: int = 0
    """Minutes with trades but no stored candle (a candle gap, not the trades')."""
    candles_without_trades: int = 0
    """Minutes whose candle has volume and no stored trade (see the outage check)."""


def rebuild_minutes(
    rows: Iterable[tuple[datetime, str, Decimal, Decimal]], sequential: bool
) -> dict[datetime, MinuteBar]:
    """(time, trade id, price, size) rows, ordered by time then trade id, as 1m candles."""
    bars: dict[datetime, MinuteBar] = {}
    for at, trade_id, price, size in rows:
        minute = floor_minute(at)
        count = trades_in(trade_id, sequential)
        bar = bars.get(minute)
        if bar is None:
            bars[minute] = MinuteBar(price, price, price, price, size, count)
        else:
            bars[minute] = MinuteBar(
                bar.open,
                max(bar.high, price),
                min(bar.low, price),
                price,
                bar.volume + size,
                (bar.trade_count or 0) + count,
            )
    return bars


def rounding(value: Decimal) -> Decimal:
    """How far an exchange's figure, given with `value`'s decimal places, may be from the
    exact sum it rounds: half a unit of its last place."""
    exponent = value.as_tuple().exponent
    places = exponent if isinstance(exponent, int) else 0
    return Decimal(5).scaleb(min(places, 0) - 1)


def compare_minutes(
    rebuilt: dict[datetime, MinuteBar], candles: dict[datetime, MinuteBar]
) -> CandleComparison:
    """Rebuilt candles against the exchange's: prices exactly (trades carry the exchange's
    own prices), volume within the candle's rounding (half a unit of its last decimal
    place), trade count where the candle has one."""
    result = CandleComparison()
    for minute, candle in candles.items():
        if minute not in rebuilt and candle.volume > 0:
            result.candles_without_trades += 1
    for minute, bar in sorted(rebuilt.items()):
        found = candles.get(minute)
        if found is None:
            result.trades_without_candle += 1
            continue
        candle = found
        result.minutes_compared += 1
        wrong = [
            f"{name} {getattr(bar, name)} vs {getattr(candle, name)}"
            for name in ("open", "high", "low", "close")
            if getattr(bar, name) != getattr(candle, name)
        ]
        if abs(bar.volume - candle.volume) > rounding(candle.volume):
            wrong.append(f"volume {bar.volume} vs {candle.volume}")
        if candle.trade_count is not None and bar.trade_count != candle.trade_count:
            wrong.append(f"trade count {bar.trade_count} vs {candle.trade_count}")
        if wrong:
            result.disagreeing.append((minute, "; ".join(wrong)))
    return result


async def trades_vs_candles(
    conn: asyncpg.Connection, pair_id: int, day: date, sequential: bool
) -> CandleComparison:
    """The pair's stored trades of `day` rebuilt into 1m candles, against its stored 1m
    candles (the exchange's, live or backfilled)."""
    start, end = day_bounds(day)
    trades = await conn.fetch(
        "SELECT time, trade_id, price, size FROM trades WHERE trading_pair_id = $1"
        " AND time >= $2 AND time < $3 ORDER BY time, trade_id",
        pair_id,
        start,
        end,
    )
    candles = await conn.fetch(_CANDLES_OF_PAIR, pair_id, start, end)
    rebuilt = rebuild_minutes(
        ((r["time"], r["trade_id"], r["price"], r["size"]) for r in trades), sequential
    )
    stored = {r["time"]: MinuteBar(*(r[name] for name in _BAR_COLUMNS)) for r in candles}
    return compare_minutes(rebuilt, stored)


@dataclass(frozen=True)
class IdGaps:
    first_id: int | None
    last_id: int | None
    trades: int
    """Trades the day's rows stand for."""
    missing: int
    """Ids between the first and the last not held by any row."""
    repeated: int
    """Ids held by more than one row."""
    gaps: tuple[tuple[int, int], ...]
    """The missing ids as (first, last) runs, in order."""


def id_gaps(trade_ids: Iterable[str]) -> IdGaps:
    """The gaps in a sequential-id exchange's stored trade ids (rows `first-last` hold each
    id of their span); ids of another form are ignored."""
    spans = sorted(s for s in (trade_id_span(i) for i in trade_ids) if s is not None)
    if not spans:
        return IdGaps(None, None, 0, 0, 0, ())
    gaps: list[tuple[int, int]] = []
    repeated = 0
    reached = spans[0][0] - 1
    for first, last in spans:
        if first > reached + 1:
            gaps.append((reached + 1, first - 1))
        elif first <= reached:
            repeated += min(last, reached) - first + 1
        reached = max(reached, last)
    return IdGaps(
        spans[0][0],
        reached,
        sum(last - first + 1 for first, last in spans),
        sum(last - first + 1 for first, last in gaps),
        repeated,
        tuple(gaps),
    )


async def stored_trade_ids(conn: asyncpg.Connection, pair_id: int, day: date) -> list[str]:
    start, end = day_bounds(day)
    rows = await conn.fetch(
        "SELECT trade_id FROM trades WHERE trading_pair_id = $1 AND time >= $2 AND time < $3",
        pair_id,
        start,
        end,
    )
    return [r["trade_id"] for r in rows]


async def outage_minutes(conn: asyncpg.Connection, pair_id: int, day: date) -> int:
    """Minutes of `day` inside recorded `trades` collection outages of the pair (overlapping
    outages counted once)."""
    start, end = day_bounds(day)
    minutes: int = await conn.fetchval(
        "SELECT count(*) FROM generate_series($2::timestamptz, $3::timestamptz"
        " - interval '1 minute', interval '1 minute') AS m(minute)"
        " WHERE EXISTS (SELECT 1 FROM collection_outages o WHERE o.dataset = $4"
        " AND o.series_id = $1 AND o.start_time < m.minute + interval '1 minute'"
        " AND o.end_time > m.minute)",
        pair_id,
        start,
        end,
        TRADES,
    )
    return minutes
