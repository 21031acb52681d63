"""Individual trades ("prints") of any instrument, consistent with its 1m candles.

Each trade event of a minute (`PriceSeries.events_of`) becomes that event's share of the
minute's trade count, all at the event's price, sharing its volume; so the prints of a
closed minute add up to exactly the candle's trade count and volume, and their prices
span its high and low with the last one at its close. Trade ids are minute x 10000 plus
the trade's position in the minute: increasing, and the same on every replay.
"""

from __future__ import annotations

from typing import NamedTuple

from kirby_sim.candles import CandleBook
from kirby_sim.intervals import MINUTE_MS

IDS_PER_MINUTE = 10_000
MAX_REPLAY_MINUTES = 5
"""A client that falls further behind gets the trades of the last few minutes only."""


class Print(NamedTuple):
    time_ms: int
    trade_id: int
    price: int
    size: int
    buy: bool
    """True when the taker bought."""


def prints(book: CandleBook, after_ms: int, upto_ms: int) -> list[Print]:
    """Trades with time in (after_ms, upto_ms], oldest first."""
    first_minute = max(after_ms // MINUTE_MS, upto_ms // MINUTE_MS - MAX_REPLAY_MINUTES)
    first_minute = max(first_minute, -(-book.instrument.listed_ms // MINUTE_MS))
    rows: list[Print] = []
    for minute in range(first_minute, upto_ms // MINUTE_MS + 1):
        events = book.series.events_of(minute)
        for step, offset in enumerate(events.offsets_ms):
            at = minute * MINUTE_MS + offset
            if not after_ms < at <= upto_ms:
                continue
            before = events.cum_trades[step - 1] if step else 0
            count = events.cum_trades[step] - before
            volume = events.cum_volume[step] - (events.cum_volume[step - 1] if step else 0)
            for number in range(count):
                size = volume // count + (1 if number < volume % count else 0)
                rows.append(
                    Print(
                        at,
                        minute * IDS_PER_MINUTE + before + number,
                        events.prices[step],
                        size,
                        events.buy_side[step],
                    )
                )
    return rows
