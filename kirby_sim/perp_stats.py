"""Funding, open interest, marks and 24-hour statistics of the 8-hourly-funded perps.

Binance USD-M, Bybit linear and OKX swaps settle funding at 00:00, 08:00 and 16:00 UTC.
The premium of funding period P (the 8 hours ending at a settlement) is a seeded smooth
function plus noise (1e-8 units); the settled rate is the usual clamp formula on it:
premium + clamp(0.0001 - premium, -0.0005, 0.0005), so most rows read 0.0001. The live
(predicted) rate is the same formula on the current period's running premium.

Open interest (in base-coin lots) is a smooth function of time, so its history at any
period boundary and its live value agree. Marks sit a tick around the last traded price,
the index divides the premium out. `day_stats` gives the rolling 24 h open, high, low and
volumes from the same minutes as the candles, for every venue's ticker.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from kirby_sim import hashing
from kirby_sim.candles import Bar, CandleBook, merge
from kirby_sim.derivatives import DAY_MS, RATE_DECIMALS
from kirby_sim.intervals import MINUTE_MS

FUNDING_INTERVAL_MS = 8 * 3_600_000
_INTEREST = 10_000  # 0.0001 per period, in 1e-8 units
_CLAMP = 50_000


def period_rate(premium: int) -> int:
    """The funding rate (1e-8 units) a period with `premium` settles at."""
    return premium + max(-_CLAMP, min(_CLAMP, _INTEREST - premium))


class DayStats(NamedTuple):
    """Rolling 24 h up to now: prices in units, volume in lots, quote in 1e-5 units."""

    open: int
    high: int
    low: int
    last: int
    volume: int
    quote: int


def day_stats(book: CandleBook, now_ms: int) -> DayStats:
    minute = now_ms // MINUTE_MS
    forming = book.forming_minute(now_ms)
    closed = _closed_day(book, minute)
    if closed is None:
        return DayStats(forming.open, forming.high, forming.low, forming.close, 0, 0)
    return DayStats(
        open=closed.open,
        high=max(closed.high, forming.high),
        low=min(closed.low, forming.low),
        last=forming.close,
        volume=closed.volume + forming.volume,
        quote=closed.quote + forming.quote,
    )


@functools.lru_cache(maxsize=512)
def _closed_day(book: CandleBook, minute: int) -> Bar | None:
    """The closed minutes of the 24 h ending at `minute`, merged (once per minute)."""
    merged: Bar | None = None
    for bar in book.minute_bars(minute - DAY_MS // MINUTE_MS + 1, minute):
        merged = merge(merged, bar)
    return merged


class FundingRow(NamedTuple):
    time_ms: int
    rate: int
    mark: int


class PerpStats:
    def __init__(self, book: CandleBook, seed: int) -> None:
        self.book = book
        self.instrument = inst = book.instrument
        key = (seed, inst.venue, inst.symbol)
        self._premium_key = hashing.stream_key(*key, "premium")
        self._live_key = hashing.stream_key(*key, "live")
        self._quote_key = hashing.stream_key(*key, "quote")
        draws = hashing.uniform(hashing.stream_key(*key, "phases"), np.arange(4))
        self._phases = [float(value) * 2.0 * math.pi for value in draws]
        self._interest_lots = (
            inst.tier.notional_per_minute * 1440.0 * 2.0 / inst.base_price
        ) * 10.0**inst.size_decimals

    # --- funding ----------------------------------------------------------------------

    def _premiums(self, periods: np.ndarray) -> list[int]:
        angle = 2.0 * np.pi * periods.astype(np.float64)
        smooth = 0.0004 * np.sin(angle / 41.0 + self._phases[0]) + 0.0002 * np.sin(
            angle / 13.0 + self._phases[1]
        )
        noise = 0.0002 * hashing.normal(self._premium_key, periods)
        return [int(v) for v in np.rint((smooth + noise + 0.0001) * 10**RATE_DECIMALS)]

    def funding_rows(self, start_ms: int, end_ms: int) -> list[FundingRow]:
        """Settlements with time in [start_ms, end_ms], ascending (none before listing)."""
        first = max(-(-start_ms // FUNDING_INTERVAL_MS), self.first_settlement_period())
        last = end_ms // FUNDING_INTERVAL_MS
        if last < first:
            return []
        periods = np.arange(first, last + 1, dtype=np.int64)
        premiums = self._premiums(periods - 1)
        return [
            FundingRow(
                period * FUNDING_INTERVAL_MS, period_rate(premium), self._settle_mark(period)
            )
            for period, premium in zip(periods.tolist(), premiums, strict=True)
        ]

    def first_settlement_period(self) -> int:
        return self.instrument.listed_ms // FUNDING_INTERVAL_MS + 1

    def _settle_mark(self, period: int) -> int:
        at = period * FUNDING_INTERVAL_MS
        (bar,) = self.book.minute_bars(at // MINUTE_MS - 1, at // MINUTE_MS)
        return bar.close

    def live_rate(self, now_ms: int) -> int:
        """The predicted rate of the running period (changes once a simulated minute)."""
        period = now_ms // FUNDING_INTERVAL_MS
        premium = self._premiums(np.array([period], dtype=np.int64))[0]
        drift = 0.00006 * (hashing.uniform_one(self._live_key, now_ms // MINUTE_MS) - 0.5)
        return period_rate(premium + round(drift * 10**RATE_DECIMALS))

    @staticmethod
    def next_funding_ms(now_ms: int) -> int:
        return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS

    # --- open interest and prices -------------------------------------------------------

    def open_interest(self, at_ms: int) -> int:
        """Open interest in lots of the base coin at `at_ms` (smooth; one value a second)."""
        second = at_ms // 1000 * 1000
        wave = 1.0 + 0.25 * math.sin(2.0 * math.pi * second / (7 * DAY_MS) + self._phases[2])
        wave *= 1.0 + 0.1 * math.sin(2.0 * math.pi * second / DAY_MS + self._phases[3])
        return round(self._interest_lots * wave)

    def last_price(self, now_ms: int) -> int:
        return self.book.forming_minute(now_ms).close

    def quote(self, now_ms: int) -> tuple[int, int]:
        """Best bid and ask (units) a tick around the last price."""
        last = self.last_price(now_ms)
        tick = self.instrument.tick_units
        bid = last - tick * int(hashing.uniform_one(self._quote_key, now_ms // 1000) < 0.5)
        return bid, bid + tick

    def mark_price(self, now_ms: int) -> int:
        bid, ask = self.quote(now_ms)
        return bid if (now_ms // 1000) % 2 else ask

    def index_price(self, now_ms: int) -> int:
        mark = self.mark_price(now_ms)
        premium = self.live_rate(now_ms) - _INTEREST
        tick = self.instrument.tick_units
        index = mark / (1.0 + premium * 10.0**-RATE_DECIMALS)
        return max(tick, round(index / tick) * tick)
