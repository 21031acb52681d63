"""Individual trades ("prints") of any instrument, consistent with its 1m candles.

Each trade event of a minute (`PriceSeries.events_of`) becomes that event's share of the
minute's trade count, all at the event's price, sharing its volume; so the prints of a
closed minute add up to exactly the candle's trade count and volume, and their prices
span its high and low with the last one at its close. The first trade prints the open (an
exchange's candle opens at its first trade), unless it is the only print of its event's
price (then the minute's open has no trade: it happens only in minutes of very few trades).

Trade ids, the same on every replay, in one of two numberings:
- by minute (`ids="minute"`): minute x 10000 plus the trade's position in the minute;
  increasing, with gaps between minutes (OKX, Bybit, Coinbase);
- sequential (`ids="sequential"`, Binance): consecutive, each trade the previous one's id
  plus one. Binance's run from the listing; the simulator's restart at each UTC day
  (day x `IDS_PER_DAY` + the trades of the day before it), so a day's ids are consecutive
  while computing one needs only that day's minutes.
"""

from __future__ import annotations

import functools
from itertools import accumulate
from typing import Literal, NamedTuple

from kirby_sim.candles import CandleBook
from kirby_sim.intervals import MINUTE_MS
from kirby_sim.prices import MinuteEvents

IDS_PER_MINUTE = 10_000
IDS_PER_DAY = 1_000_000_000
MINUTES_PER_DAY = 1440
MAX_REPLAY_MINUTES = 5
"""A client that falls further behind gets the trades of the last few minutes only."""

Numbering = Literal["minute", "sequential"]


class Print(NamedTuple):
    time_ms: int
    trade_id: int
    price: int
    size: int
    buy: bool
    """True when the taker bought."""


@functools.lru_cache(maxsize=256)
def _day_offsets(book: CandleBook, day: int) -> tuple[int, ...]:
    """Trades of `day` before each of its minutes (and the day's total last)."""
    first = day * MINUTES_PER_DAY
    bars = book.minute_bars(first, first + MINUTES_PER_DAY)
    counts = [0] * MINUTES_PER_DAY
    for bar in bars:
        counts[bar.open_ms // MINUTE_MS - first] = bar.trades
    return (0, *accumulate(counts))


def first_id(book: CandleBook, minute: int, ids: Numbering = "minute") -> int:
    """The id of the first trade of `minute` (whether or not the minute has one)."""
    if ids == "minute":
        return minute * IDS_PER_MINUTE
    day, index = divmod(minute, MINUTES_PER_DAY)
    return day * IDS_PER_DAY + _day_offsets(book, day)[index]


def minute_prints(book: CandleBook, minute: int, ids: Numbering = "minute") -> list[Print]:
    """Every trade of `minute`, oldest first (the minute's whole replay: closed minutes
    only, or filter by time)."""
    if minute * MINUTE_MS < book.instrument.listed_ms:
        return []
    events = book.series.events_of(minute)
    base = first_id(book, minute, ids) if events.offsets_ms else 0
    rows: list[Print] = []
    for step, offset in enumerate(events.offsets_ms):
        at = minute * MINUTE_MS + offset
        before = events.cum_trades[step - 1] if step else 0
        count = events.cum_trades[step] - before
        volume = events.cum_volume[step] - (events.cum_volume[step - 1] if step else 0)
        for number in range(count):
            size = volume // count + (1 if number < volume % count else 0)
            rows.append(
                Print(
                    at,
                    base + before + number,
                    events.prices[step],
                    size,
                    events.buy_side[step],
                )
            )
    if rows and rows[0].price != events.open and _spare(rows[0].price, events):
        rows[0] = rows[0]._replace(price=events.open)
    return rows


def _spare(price: int, events: MinuteEvents) -> bool:
    """Whether the first trade's price is printed by another trade of the minute too (so the
    first trade may print the open instead)."""
    first_count = events.cum_trades[0]
    return first_count >= 2 or price in events.prices[1:]


def prints(book: CandleBook, after_ms: int, upto_ms: int, ids: Numbering = "minute") -> list[Print]:
    """Trades with time in (after_ms, upto_ms], oldest first, of the last
    `MAX_REPLAY_MINUTES` minutes at most (a live feed's replay)."""
    first_minute = max(after_ms // MINUTE_MS, upto_ms // MINUTE_MS - MAX_REPLAY_MINUTES)
    return prints_between(book, first_minute * MINUTE_MS - 1, after_ms, upto_ms, ids)


def prints_between(
    book: CandleBook, floor_ms: int, after_ms: int, upto_ms: int, ids: Numbering = "minute"
) -> list[Print]:
    """Trades with time in (max(floor_ms, after_ms), upto_ms], oldest first (a history
    endpoint: no replay limit)."""
    after_ms = max(after_ms, floor_ms)
    first_minute = max(after_ms // MINUTE_MS, -(-book.instrument.listed_ms // MINUTE_MS))
    return [
        row
        for minute in range(first_minute, upto_ms // MINUTE_MS + 1)
        for row in minute_prints(book, minute, ids)
        if after_ms < row.time_ms <= upto_ms
    ]


def last_id_before(book: CandleBook, first_minute: int, stop_minute: int) -> int:
    """The sequential id of the last trade in minutes [first_minute, stop_minute), or -1
    when they have none."""
    minute = stop_minute
    while minute > first_minute:
        day, index = divmod(minute - 1, MINUTES_PER_DAY)
        offsets = _day_offsets(book, day)
        start = max(first_minute - day * MINUTES_PER_DAY, 0)
        if offsets[index + 1] > offsets[start]:
            return day * IDS_PER_DAY + offsets[index + 1] - 1
        minute = day * MINUTES_PER_DAY
    return -1
