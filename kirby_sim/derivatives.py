"""Funding, open interest, marks and order books of one Hyperliquid perp, Hyperliquid-shaped.

Funding settles every hour. The premium of hour H is a seeded smooth function plus noise
(8-decimal units); the settled hourly rate follows Hyperliquid's formula on the 8-hour
basis, divided by 8: (premium + clamp(0.0001 - premium, -0.0005, 0.0005)) / 8, which is
why most rows read "0.0000125". The row of hour H is stamped at the start of hour H+1 plus
a few hundred milliseconds of hashed jitter, as in the recorded responses. The live
`funding` of an asset context is the same formula on the running premium of the current
hour: a prediction, not a settled rate.

Open interest and day volumes are smooth functions of time (Hyperliquid publishes no
history of them). Marks, mids, impact prices and book levels sit around the last traded
price, so they agree with the candles.
"""

from __future__ import annotations

import math

import numpy as np

from kirby_sim import hashing
from kirby_sim.candles import CandleBook
from kirby_sim.wire import hl_decimal

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
RATE_DECIMALS = 8
MAX_FUNDING_ROWS = 500
_INTEREST = 10_000  # 0.0001 on the 8-hour basis, in 1e-8 units
_CLAMP = 50_000
_BOOK_DEPTH = 20


def settled_rate(premium: int) -> int:
    clamped = max(-_CLAMP, min(_CLAMP, _INTEREST - premium))
    return round((premium + clamped) / 8)


class Derivatives:
    def __init__(self, book: CandleBook, seed: int) -> None:
        self.book = book
        self.instrument = inst = book.instrument
        key = (seed, inst.venue, inst.symbol)
        self._premium_key = hashing.stream_key(*key, "premium")
        self._jitter_key = hashing.stream_key(*key, "jitter")
        self._live_key = hashing.stream_key(*key, "live")
        self._quote_key = hashing.stream_key(*key, "quote")
        self._gap_key = hashing.stream_key(*key, "gaps")
        self._book_key = hashing.stream_key(*key, "book")
        draws = hashing.uniform(hashing.stream_key(seed, inst.symbol, "ctx"), np.arange(5))
        self._phases = [float(value) * 2.0 * math.pi for value in draws]
        self._notional_per_day = inst.tier.notional_per_minute * 1440.0
        self._hour_premium: tuple[int, int] = (-1, 0)

    # --- funding ----------------------------------------------------------------------

    def _premiums(self, hours: np.ndarray) -> list[int]:
        angle = 2.0 * np.pi * hours.astype(np.float64)
        smooth = 0.0004 * np.sin(angle / 127.0 + self._phases[0]) + 0.0003 * np.sin(
            angle / 37.0 + self._phases[1]
        )
        noise = 0.00025 * hashing.normal(self._premium_key, hours)
        return [int(v) for v in np.rint((smooth + noise + 0.0001) * 10**RATE_DECIMALS)]

    def funding_rows(self, start_ms: int, end_ms: int, limit: int = MAX_FUNDING_ROWS) -> list[dict]:
        """Settled rows with time in [start_ms, end_ms], ascending, at most `limit`."""
        first_hour = max(start_ms, self.instrument.listed_ms) // HOUR_MS - 1
        last_hour = end_ms // HOUR_MS
        if last_hour < first_hour:
            return []
        hours = np.arange(first_hour, min(last_hour, first_hour + limit + 2) + 1, dtype=np.int64)
        jitter = (hashing.uniform(self._jitter_key, hours) * 800).astype(np.int64)
        rows = []
        for hour, lag, premium in zip(
            hours.tolist(), jitter.tolist(), self._premiums(hours), strict=True
        ):
            stamp = (hour + 1) * HOUR_MS + lag
            if start_ms <= stamp <= end_ms and hour * HOUR_MS >= self.instrument.listed_ms:
                rows.append(
                    {
                        "coin": self.instrument.symbol,
                        "fundingRate": hl_decimal(settled_rate(premium), RATE_DECIMALS),
                        "premium": hl_decimal(premium, RATE_DECIMALS),
                        "time": stamp,
                    }
                )
        return rows[:limit]

    def live_premium(self, now_ms: int) -> int:
        """The current hour's running premium: the hour's premium plus per-second drift."""
        hour = now_ms // HOUR_MS
        if self._hour_premium[0] != hour:
            self._hour_premium = (hour, self._premiums(np.array([hour], dtype=np.int64))[0])
        drift = 0.00009 * (hashing.uniform_one(self._live_key, now_ms // 1000) - 0.5)
        return self._hour_premium[1] + round(drift * 10**RATE_DECIMALS)

    # --- context ----------------------------------------------------------------------

    def _wave(self, now_ms: int, period_ms: float, phase: int) -> float:
        return math.sin(2.0 * math.pi * now_ms / period_ms + self._phases[phase])

    def _quote(self, now_ms: int) -> tuple[int, int]:
        """Best bid and ask (units) around the last traded price."""
        last = self.book.forming_minute(now_ms).close
        step = self.instrument.price_step(last)
        bid = last - step * int(hashing.uniform_one(self._quote_key, now_ms // 1000) < 0.5)
        return bid, bid + step

    def mid(self, now_ms: int) -> str:
        bid, ask = self._quote(now_ms)
        return hl_decimal((bid + ask) * 5, self.instrument.price_decimals + 1)

    def asset_context(self, now_ms: int) -> dict[str, object]:
        """An activeAssetCtx / metaAndAssetCtxs entry; premium, mid and impact prices are
        null now and then, as on the real feed."""
        inst = self.instrument
        decimals = inst.price_decimals
        bid, ask = self._quote(now_ms)
        mark = bid if self._wave(now_ms, 7_000.0, 4) < 0 else ask
        premium = self.live_premium(now_ms)
        oracle = round(mark / (1.0 + premium * 10.0**-RATE_DECIMALS))
        oracle_step = inst.price_step(oracle)
        oracle = round(oracle / oracle_step) * oracle_step
        missing = hashing.uniform_one(self._gap_key, now_ms // 1000) < 0.02
        impact = self.instrument.price_step(bid) * 3
        open_interest = self._notional_per_day * 2.0 / inst.base_price
        open_interest *= 1.0 + 0.25 * self._wave(now_ms, 7 * DAY_MS, 2)
        open_interest *= 1.0 + 0.1 * self._wave(now_ms, DAY_MS, 3)
        day_notional = self._notional_per_day * (1.0 + 0.2 * self._wave(now_ms, 5 * DAY_MS, 4))
        mark_price = mark * 10.0**-decimals
        lots = 10**inst.size_decimals
        previous_day = self.book.forming_minute(now_ms - DAY_MS).close
        return {
            "funding": hl_decimal(settled_rate(premium), RATE_DECIMALS),
            "openInterest": hl_decimal(round(open_interest * lots), inst.size_decimals),
            "prevDayPx": hl_decimal(previous_day, decimals),
            "dayNtlVlm": hl_decimal(round(day_notional * 10_000), 4),
            "premium": None if missing else hl_decimal(premium, RATE_DECIMALS),
            "oraclePx": hl_decimal(oracle, decimals),
            "markPx": hl_decimal(mark, decimals),
            "midPx": None if missing else hl_decimal((bid + ask) * 5, decimals + 1),
            "impactPxs": None
            if missing
            else [hl_decimal(bid - impact, decimals), hl_decimal(ask + impact, decimals)],
            "dayBaseVlm": hl_decimal(round(day_notional / mark_price * lots), inst.size_decimals),
        }

    def l2_book(self, now_ms: int) -> dict[str, object]:
        """Twenty levels a side around the last price, sizes hashed per level and second."""
        inst = self.instrument
        bid, ask = self._quote(now_ms)
        second = now_ms // 1000
        draws = hashing.quarters(self._book_key, second * 64 + np.arange(2 * _BOOK_DEPTH))
        gaps, sizes, counts, _ = (draw.tolist() for draw in draws)
        typical_lots = max(1.0, inst.volume_per_minute * 10**inst.size_decimals / 10.0)
        sides: list[list[dict[str, object]]] = [[], []]
        for side, (price, direction) in enumerate(((bid, -1), (ask, 1))):
            for level in range(_BOOK_DEPTH):
                draw = side * _BOOK_DEPTH + level
                if level:
                    price += direction * inst.price_step(price) * (1 + int(gaps[draw] * 3))
                lots = max(1, round(typical_lots * -math.log1p(-0.99 * sizes[draw])))
                sides[side].append(
                    {
                        "px": hl_decimal(price, inst.price_decimals),
                        "sz": hl_decimal(lots, inst.size_decimals),
                        "n": 1 + int(counts[draw] * 4),
                    }
                )
        return {"coin": inst.symbol, "time": now_ms, "levels": sides}
