"""Candles of any interval, aggregated from the 1m rows of a `PriceSeries`.

Every interval is an aggregation of the same minutes (first open, max high, min low, last
close, summed volume/trades), so 1m and 1w always agree. A closed candle never changes, so
higher-interval candles are cached (bounded LRU shared by all instruments); the forming
candle is recomputed from the closed minutes of its interval (cached per interval as a
running prefix) plus the forming minute replayed up to `now`.

Candles before the instrument's listing do not exist; a candle straddling the listing only
aggregates listed minutes. Whether a candle without trades is shown (Binance) or left out
(Hyperliquid) is the venue's business: `Bar.traded` says which.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from kirby_sim.intervals import MINUTE_MS, floor_open, next_open, open_times
from kirby_sim.prices import MinuteFrame, PriceSeries

_CHUNK_MINUTES = 1 << 17
_HOUR_MS = 3_600_000


class Bar(NamedTuple):
    open_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int
    quote: int
    taker_base: int
    taker_quote: int
    traded: bool


def merge(first: Bar | None, second: Bar) -> Bar:
    """`second` appended to `first` (both of the same candle)."""
    if first is None:
        return second
    return Bar(
        first.open_ms,
        first.open,
        max(first.high, second.high),
        min(first.low, second.low),
        second.close,
        first.volume + second.volume,
        first.trades + second.trades,
        first.quote + second.quote,
        first.taker_base + second.taker_base,
        first.taker_quote + second.taker_quote,
        first.traded or second.traded,
    )


class BarCache:
    """Closed candles keyed by (venue, symbol, interval, open_ms); least recently used out."""

    def __init__(self, max_entries: int = 400_000) -> None:
        self._entries: OrderedDict[tuple[str, str, str, int], Bar] = OrderedDict()
        self._max_entries = max_entries

    def get(self, key: tuple[str, str, str, int]) -> Bar | None:
        bar = self._entries.get(key)
        if bar is not None:
            self._entries.move_to_end(key)
        return bar

    def put(self, key: tuple[str, str, str, int], bar: Bar) -> None:
        self._entries[key] = bar
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def _aggregate(frame: MinuteFrame, starts: list[int], ends: list[int]) -> list[Bar]:
    """One bar per [start, end) slice of the frame, `open_ms` left for the caller to set."""
    if not starts:
        return []
    index = np.asarray(starts, dtype=np.int64)
    last = np.asarray(ends, dtype=np.int64) - 1
    columns = (
        frame.open[index],
        np.maximum.reduceat(frame.high, index),
        np.minimum.reduceat(frame.low, index),
        frame.close[last],
        np.add.reduceat(frame.volume, index),
        np.add.reduceat(frame.trades, index),
        np.add.reduceat(frame.quote, index),
        np.add.reduceat(frame.taker_base, index),
        np.add.reduceat(frame.taker_quote, index),
        np.add.reduceat(frame.traded.astype(np.int64), index) > 0,
    )
    rows = zip(*(column.tolist() for column in columns), strict=True)
    return [Bar(0, *row) for row in rows]


class CandleBook:
    """Candles of one instrument."""

    def __init__(self, series: PriceSeries, cache: BarCache) -> None:
        self.series = series
        self.instrument = series.instrument
        self._cache = cache
        self._listed_minute = -(-self.instrument.listed_ms // MINUTE_MS)
        self._prefix: dict[str, tuple[int, int, Bar | None]] = {}

    def first_open(self, interval: str) -> int:
        """Open time of the first candle that exists."""
        return floor_open(interval, self._listed_minute * MINUTE_MS)

    def minute_bars(self, first_minute: int, stop_minute: int) -> list[Bar]:
        """Closed 1m bars of minutes [first_minute, stop_minute), listing respected."""
        first_minute = max(first_minute, self._listed_minute)
        bars: list[Bar] = []
        for start in range(first_minute, stop_minute, _CHUNK_MINUTES):
            frame = self.series.frame(start, min(start + _CHUNK_MINUTES, stop_minute))
            columns = (
                frame.open,
                frame.high,
                frame.low,
                frame.close,
                frame.volume,
                frame.trades,
                frame.quote,
                frame.taker_base,
                frame.taker_quote,
                frame.traded,
            )
            rows = zip(*(column.tolist() for column in columns), strict=True)
            bars.extend(Bar((start + i) * MINUTE_MS, *row) for i, row in enumerate(rows))
        return bars

    def closed_bars(self, interval: str, first_open: int, last_open: int) -> list[Bar]:
        """Closed candles opening in [first_open, last_open]; both are aligned open times."""
        first_open = max(first_open, self.first_open(interval))
        if last_open < first_open:
            return []
        if interval == "1m":
            return self.minute_bars(first_open // MINUTE_MS, last_open // MINUTE_MS + 1)
        inst = self.instrument
        opens = open_times(interval, first_open, last_open)
        found: dict[int, Bar] = {}
        missing: list[int] = []
        for open_ms in opens:
            bar = self._cache.get((inst.venue, inst.symbol, interval, open_ms))
            if bar is None:
                missing.append(open_ms)
            else:
                found[open_ms] = bar
        for bar in self._compute(interval, missing):
            self._cache.put((inst.venue, inst.symbol, interval, bar.open_ms), bar)
            found[bar.open_ms] = bar
        return [found[open_ms] for open_ms in opens if open_ms in found]

    def _compute(self, interval: str, opens: list[int]) -> list[Bar]:
        """Aggregate the candles opening at `opens` (ascending): hourly and longer ones from
        cached 1h candles, shorter ones from minutes in chunks."""
        if not opens:
            return []
        if interval != "1h" and next_open(interval, opens[0]) - opens[0] >= _HOUR_MS:
            return self._compute_from_hours(interval, opens)
        bars: list[Bar] = []
        batch: list[int] = []
        batch_minutes = 0
        for position, open_ms in enumerate(opens):
            size = (next_open(interval, open_ms) - open_ms) // MINUTE_MS
            contiguous = not batch or next_open(interval, batch[-1]) == open_ms
            if batch and (not contiguous or batch_minutes + size > _CHUNK_MINUTES):
                bars.extend(self._compute_run(interval, batch))
                batch, batch_minutes = [], 0
            batch.append(open_ms)
            batch_minutes += size
            if position == len(opens) - 1:
                bars.extend(self._compute_run(interval, batch))
        return bars

    def _compute_from_hours(self, interval: str, opens: list[int]) -> list[Bar]:
        wanted = set(opens)
        last_hour = next_open(interval, opens[-1]) - _HOUR_MS
        merged: dict[int, Bar | None] = {}
        for hour in self.closed_bars("1h", floor_open("1h", opens[0]), last_hour):
            open_ms = floor_open(interval, hour.open_ms)
            if open_ms in wanted:
                merged[open_ms] = merge(merged.get(open_ms), hour)
        return [bar._replace(open_ms=open_ms) for open_ms, bar in merged.items() if bar]

    def _compute_run(self, interval: str, opens: list[int]) -> list[Bar]:
        start = max(opens[0] // MINUTE_MS, self._listed_minute)
        stop = next_open(interval, opens[-1]) // MINUTE_MS
        frame = self.series.frame(start, stop)
        kept = [o for o in opens if next_open(interval, o) // MINUTE_MS > start]
        starts = [max(o // MINUTE_MS, start) - start for o in kept]
        ends = [*starts[1:], stop - start]
        return [
            bar._replace(open_ms=open_ms)
            for open_ms, bar in zip(kept, _aggregate(frame, starts, ends), strict=True)
        ]

    def forming_minute(self, now_ms: int) -> Bar:
        """The minute containing `now_ms`, as traded so far (flat at the open before its
        first trade event)."""
        minute = now_ms // MINUTE_MS
        events = self.series.events_of(minute)
        done = events.count_until(now_ms - minute * MINUTE_MS)
        open_ms = minute * MINUTE_MS
        if done == 0:
            price = events.open
            return Bar(open_ms, price, price, price, price, 0, 0, 0, 0, 0, False)
        prices = events.prices[:done]
        step = done - 1
        return Bar(
            open_ms,
            events.open,
            max(events.open, *prices),
            min(events.open, *prices),
            prices[-1],
            events.cum_volume[step],
            events.cum_trades[step],
            events.cum_quote[step],
            events.cum_taker_base[step],
            events.cum_taker_quote[step],
            True,
        )

    def forming_bar(self, interval: str, now_ms: int) -> Bar | None:
        """The candle containing `now_ms`, cumulative so far; None before the listing."""
        minute = now_ms // MINUTE_MS
        if minute < self._listed_minute:
            return None
        open_ms = max(floor_open(interval, now_ms), self._listed_minute * MINUTE_MS)
        first_minute = open_ms // MINUTE_MS
        prefix = self._closed_prefix(interval, first_minute, minute)
        bar = merge(prefix, self.forming_minute(now_ms))
        return bar._replace(open_ms=floor_open(interval, now_ms))

    def _closed_prefix(self, interval: str, first_minute: int, upto: int) -> Bar | None:
        """Aggregate of closed minutes [first_minute, upto), extended incrementally."""
        cached_first, cached_upto, cached = self._prefix.get(interval, (-1, -1, None))
        if cached_first == first_minute and first_minute <= cached_upto <= upto:
            begin, bar = cached_upto, cached
        else:
            begin, bar = first_minute, None
        if upto > begin:
            frame = self.series.frame(begin, upto)
            (part,) = _aggregate(frame, [0], [len(frame)])
            bar = merge(bar, part)
        self._prefix[interval] = (first_minute, upto, bar)
        return bar

    def bars(self, interval: str, first_open: int, last_open: int, now_ms: int) -> list[Bar]:
        """Candles opening in [first_open, last_open] as of `now_ms`: closed ones, then the
        forming one if it is in range."""
        aligned = floor_open(interval, first_open)
        if aligned < first_open:
            aligned = next_open(interval, aligned)
        first_open = aligned
        forming_open = floor_open(interval, now_ms)
        closed_last = min(last_open, forming_open - 1)
        bars = self.closed_bars(interval, first_open, floor_open(interval, closed_last))
        if first_open <= forming_open <= last_open:
            forming = self.forming_bar(interval, now_ms)
            if forming is not None:
                bars.append(forming)
        return bars
