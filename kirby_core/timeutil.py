"""Interval arithmetic and minute alignment, all in UTC.

Kirby knows the fixed-length intervals that both Hyperliquid and Binance publish; the
calendar month (`1M`) is left out on purpose because a month has no fixed length.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from kirby_core.errors import InvalidRequest

INTERVAL_SECONDS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def interval_seconds(interval: str) -> int:
    try:
        return INTERVAL_SECONDS[interval]
    except KeyError:
        allowed = ", ".join(INTERVAL_SECONDS)
        raise InvalidRequest(f"unknown interval {interval!r}; allowed: {allowed}") from None


def interval_delta(interval: str) -> timedelta:
    return timedelta(seconds=interval_seconds(interval))


FLOAT_EXACT_MS = 8_000_000_000_000
"""Below this many ms from the epoch either way (the year 2223), `ms / 1000` is within
half a microsecond of the exact second (a double's spacing there is under 1 us), so
`datetime.fromtimestamp`, which rounds to the microsecond, gives the exact time: at about
half the cost of `EPOCH + timedelta` (0.9 against 1.7 us, on every parsed exchange time)."""


def ms_to_datetime(ms: int) -> datetime:
    if -FLOAT_EXACT_MS < ms < FLOAT_EXACT_MS:
        return datetime.fromtimestamp(ms / 1000, UTC)
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime) -> int:
    return (ensure_utc(moment) - EPOCH) // timedelta(milliseconds=1)


def ensure_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_time(moment: datetime, interval: str) -> datetime:
    """The open time of the `interval` candle containing `moment`.

    Weekly candles open on Monday 00:00 UTC, as on both exchanges (the epoch is a Thursday).
    """
    step = interval_seconds(interval)
    offset = 3 * 86400 if interval == "1w" else 0  # Monday 1969-12-29 starts a week
    seconds = int((ensure_utc(moment) - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=(seconds + offset) // step * step - offset)


def floor_minute(moment: datetime) -> datetime:
    return ensure_utc(moment).replace(second=0, microsecond=0)


def iter_open_times(start: datetime, end: datetime, interval: str) -> Iterator[datetime]:
    """Open times of every `interval` candle opening in [start, end)."""
    step = interval_delta(interval)
    current = floor_time(start, interval)
    if current < ensure_utc(start):
        current += step
    end = ensure_utc(end)
    while current < end:
        yield current
        current += step


def expected_count(start: datetime, end: datetime, interval: str) -> int:
    """How many `interval` candles open in [start, end)."""
    step = interval_delta(interval)
    first = floor_time(start, interval)
    if first < ensure_utc(start):
        first += step
    span = ensure_utc(end) - first
    return max(0, -(-span // step))
