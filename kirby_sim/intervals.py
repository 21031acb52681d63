"""Candle intervals of the simulated venues, in epoch milliseconds.

Fixed-length intervals defer to `kirby_core.timeutil` (weeks open on Monday). Both venues
also publish the calendar month `1M`, which timeutil leaves out on purpose; the month
arithmetic lives here because only the simulator has to produce such candles.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kirby_core.timeutil import (
    datetime_to_ms,
    floor_time,
    interval_seconds,
    ms_to_datetime,
)

MINUTE_MS = 60_000
MONTH = "1M"

HYPERLIQUID_INTERVALS: tuple[str, ...] = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
BINANCE_INTERVALS: tuple[str, ...] = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)


def floor_open(interval: str, ms: int) -> int:
    """Open time of the `interval` candle containing `ms`."""
    if interval == MONTH:
        moment = ms_to_datetime(ms)
        return datetime_to_ms(datetime(moment.year, moment.month, 1, tzinfo=UTC))
    return datetime_to_ms(floor_time(ms_to_datetime(ms), interval))


def next_open(interval: str, open_ms: int) -> int:
    """Open time of the candle after the one opening at `open_ms`."""
    if interval == MONTH:
        moment = ms_to_datetime(open_ms)
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        return datetime_to_ms(datetime(year, month, 1, tzinfo=UTC))
    return open_ms + interval_seconds(interval) * 1000


def shift_open(interval: str, open_ms: int, count: int) -> int:
    """Open time `count` candles before (negative) or after `open_ms`."""
    if interval != MONTH:
        return open_ms + count * interval_seconds(interval) * 1000
    moment = ms_to_datetime(open_ms)
    months = moment.year * 12 + moment.month - 1 + count
    return datetime_to_ms(datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC))


def open_times(interval: str, first_open: int, last_open: int) -> list[int]:
    """Open times of every candle opening in [first_open, last_open]; first_open is aligned."""
    opens: list[int] = []
    current = first_open
    while current <= last_open:
        opens.append(current)
        current = next_open(interval, current)
    return opens
