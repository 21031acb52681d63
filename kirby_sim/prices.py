"""Deterministic, random-access minute data of one instrument.

The price is log-normal around the instrument's base price: a smooth path (sum of seeded
sinusoids, periods from 20 minutes to ~3 years, shared by every venue listing the coin)
plus independent per-minute noise (per venue). Any range of minutes is computed directly
from the seed, vectorised with numpy, never by generating from the epoch.

One minute, when it trades (quiet minutes are hashed; every 30th minute always trades, so
"the previous close" is never more than 30 minutes back):
- open  = close of the previous traded minute; close = the rounded price of the minute;
- high/low extend beyond open/close by hashed wicks (only when the minute has enough trade
  events to print them);
- `events` trade events, 60/events seconds apart with jitter: each is a batch of trades
  that moves the forming candle (the WebSocket pushes one update per event). The last
  event prints the close, one prints the high, one the low.
A quiet minute has no trades: o=h=l=c=previous close, zero volume.

All prices are int64 units of 10**-price_decimals, sizes are lots of 10**-size_decimals,
quote volumes are units of 1e-5, so sums over any interval are exact. `events_of` replays
one minute trade by trade; its final state equals the minute's row in `frame` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kirby_sim import hashing
from kirby_sim.hashing import F64
from kirby_sim.intervals import MINUTE_MS
from kirby_sim.universe import Instrument

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

LOOKBACK_MINUTES = 30
QUOTE_DECIMALS = 5
_KNOT_MINUTES = 15
_KEPT_MINUTES = 8
_FAST_PERIOD_LIMIT = 360.0
_PERIODS = np.geomspace(20.0, 1_600_000.0, 16)


@dataclass(frozen=True)
class MinuteFrame:
    """Rows for minutes [start, start + len); every array has the same length."""

    start: int
    traded: BOOL
    open: I64
    high: I64
    low: I64
    close: I64
    volume: I64
    trades: I64
    events: I64
    quote: I64
    taker_base: I64
    taker_quote: I64

    def __len__(self) -> int:
        return len(self.open)


@dataclass(frozen=True)
class MinuteEvents:
    """The trade events of one minute: `offsets_ms` after the minute opens, the price each
    event printed, and cumulative trades/volumes after each event."""

    minute: int
    open: int
    offsets_ms: list[int]
    prices: list[int]
    buy_side: list[bool]
    cum_trades: list[int]
    cum_volume: list[int]
    cum_quote: list[int]
    cum_taker_base: list[int]
    cum_taker_quote: list[int]

    def count_until(self, offset_ms: int) -> int:
        """How many events happened at or before `offset_ms` into the minute."""
        return sum(1 for offset in self.offsets_ms if offset <= offset_ms)


class PriceSeries:
    def __init__(self, instrument: Instrument, seed: int) -> None:
        self.instrument = instrument
        inst = instrument
        count = len(_PERIODS)
        draws = hashing.uniform(
            hashing.stream_key(seed, "path", inst.coin), np.arange(2 * count + 1)
        )
        periods = _PERIODS * (0.8 + 0.45 * draws[:count])
        amplitudes = inst.daily_vol * 0.35 * np.sqrt(periods / 1440.0)
        phases = 2.0 * np.pi * draws[count : 2 * count]
        fast = periods < _FAST_PERIOD_LIMIT
        self._fast = (2.0 * np.pi / periods[fast], phases[fast], amplitudes[fast])
        self._slow = (2.0 * np.pi / periods[~fast], phases[~fast], amplitudes[~fast])
        self._log_base = float(np.log(inst.base_price))
        self._sigma = inst.daily_vol / 1440.0**0.5 * 0.8
        self._seasonal_phase = float(2.0 * np.pi * draws[-1])
        venue_key = (seed, inst.venue, inst.symbol)
        self._noise_key = hashing.stream_key(*venue_key, "noise")
        self._shape_key = hashing.stream_key(*venue_key, "shape")
        self._flow_key = hashing.stream_key(*venue_key, "flow")
        self._event_key = hashing.stream_key(*venue_key, "events")
        self._events: dict[int, MinuteEvents] = {}
        self._lots_per_minute = inst.volume_per_minute * 10.0**inst.size_decimals
        self._quote_scale = 10.0 ** (QUOTE_DECIMALS - inst.price_decimals - inst.size_decimals)

    # --- prices -----------------------------------------------------------------------

    def round_price(self, prices: F64) -> I64:
        """Float prices to valid price units (5 significant figures or the tick)."""
        inst = self.instrument
        scaled = prices * 10.0**inst.price_decimals
        if inst.sig_figs is None:
            step = np.full(scaled.shape, inst.tick_units, dtype=np.int64)
        else:
            exponent = np.floor(np.log10(prices)).astype(np.int64) - (inst.sig_figs - 1)
            step = 10 ** np.clip(exponent + inst.price_decimals, 0, inst.price_decimals)
        units = np.rint(scaled / step).astype(np.int64) * step
        return np.maximum(units, step)

    @staticmethod
    def _waves(at: F64, waves: tuple[F64, F64, F64]) -> F64:
        # Summed term by term, never by a matrix product: BLAS may group the additions
        # differently for different array lengths, and then a minute's value would depend
        # on the range it was computed in.
        total = np.zeros_like(at)
        for omega, phase, amplitude in zip(*waves, strict=True):
            total += amplitude * np.sin(at * omega + phase)
        return total

    def _smooth(self, minutes: I64) -> F64:
        """Slow waves are evaluated on a fixed grid of knots and interpolated (cheap, and
        the same for a minute whatever range it is computed in)."""
        fast = self._waves(minutes.astype(np.float64), self._fast)
        first_knot = minutes[0] // _KNOT_MINUTES
        knots = np.arange(first_knot, minutes[-1] // _KNOT_MINUTES + 2, dtype=np.int64)
        knot_values = self._waves((knots * _KNOT_MINUTES).astype(np.float64), self._slow)
        index = minutes // _KNOT_MINUTES - first_knot
        fraction = (minutes % _KNOT_MINUTES).astype(np.float64) / _KNOT_MINUTES
        slow = knot_values[index] + fraction * (knot_values[index + 1] - knot_values[index])
        return fast + slow

    def _activity(self, minutes: I64) -> F64:
        """Intraday seasonality of trading, 0.6x to 1.4x."""
        day_angle = 2.0 * np.pi * (minutes % 1440).astype(np.float64) / 1440.0
        return 1.0 + 0.4 * np.sin(day_angle + self._seasonal_phase)

    # --- minutes ----------------------------------------------------------------------

    def frame(self, start: int, stop: int) -> MinuteFrame:
        """Rows of minutes [start, stop) (minute = epoch ms // 60000)."""
        inst = self.instrument
        minutes = np.arange(start - LOOKBACK_MINUTES, stop, dtype=np.int64)
        noise = hashing.normal(self._noise_key, minutes)
        fair = np.exp(self._log_base + self._smooth(minutes) + self._sigma * noise)
        fair_units = self.round_price(fair)

        quiet_draw, events_draw, up_draw, down_draw = hashing.quarters(self._shape_key, minutes)
        traded = (quiet_draw >= inst.tier.quiet_probability) | (minutes % LOOKBACK_MINUTES == 0)
        low_events, high_events = inst.tier.events
        span = high_events - low_events + 1
        events = np.where(traded, low_events + np.floor(events_draw * span), 0).astype(np.int64)

        positions = np.arange(len(minutes))
        last_traded = np.maximum.accumulate(np.where(traded, positions, -1))
        previous = np.concatenate(([-1], last_traded[:-1]))
        open_ = fair_units[np.where(previous >= 0, previous, positions)]
        close = np.where(traded, fair_units, open_)

        unit = 10.0**-inst.price_decimals
        upper = np.maximum(open_, close)
        lower = np.minimum(open_, close)
        wick = self._sigma * 1.5
        up = np.where(events >= 2, wick * up_draw * up_draw, 0.0)
        down = np.where(events >= 3, wick * down_draw * down_draw, 0.0)
        high = np.maximum(self.round_price(upper * unit * np.exp(up)), upper)
        low = np.minimum(self.round_price(lower * unit * np.exp(-down)), lower)

        activity = self._activity(minutes)
        size_draw, count_draw, taker_draw, _ = hashing.quarters(self._flow_key, minutes)
        tier = inst.tier
        wanted_trades = np.rint(tier.trades_per_minute * activity * (0.5 + count_draw))
        trades = np.where(traded, np.maximum(events, wanted_trades.astype(np.int64)), 0)
        burst = (0.3 + np.abs(noise)) * -np.log1p(-0.999 * size_draw)
        wanted_lots = np.rint(self._lots_per_minute * activity * burst).astype(np.int64)
        volume = np.where(traded, np.maximum(trades, wanted_lots), 0)
        vwap = (open_ + high + low + close).astype(np.float64) / 4.0
        quote = np.rint(volume.astype(np.float64) * vwap * self._quote_scale).astype(np.int64)
        taker_base = np.floor(volume * (0.35 + 0.3 * taker_draw)).astype(np.int64)
        share = taker_base.astype(np.float64) / np.maximum(volume, 1)
        taker_quote = np.floor(quote.astype(np.float64) * share).astype(np.int64)

        keep = slice(LOOKBACK_MINUTES, None)
        return MinuteFrame(
            start=start,
            traded=traded[keep],
            open=open_[keep],
            high=high[keep],
            low=low[keep],
            close=close[keep],
            volume=volume[keep],
            trades=trades[keep],
            events=events[keep],
            quote=quote[keep],
            taker_base=taker_base[keep],
            taker_quote=taker_quote[keep],
        )

    def events_of(self, minute: int) -> MinuteEvents:
        """Replay one minute event by event (the live feed and forming candles use this);
        the last few minutes asked for are kept."""
        events = self._events.get(minute)
        if events is None:
            events = self._replay(minute)
            if len(self._events) >= _KEPT_MINUTES:
                del self._events[next(iter(self._events))]
            self._events[minute] = events
        return events

    def _replay(self, minute: int) -> MinuteEvents:
        row = self.frame(minute, minute + 1)
        count = int(row.events[0])
        open_, high, low, close = (
            int(row.open[0]),
            int(row.high[0]),
            int(row.low[0]),
            int(row.close[0]),
        )
        if count == 0:
            return MinuteEvents(minute, open_, [], [], [], [], [], [], [], [])
        index = minute * 64 + np.arange(count, dtype=np.int64)
        jitter, level, side, _ = hashing.quarters(self._event_key, index)
        slots = (np.arange(count) + 0.5 + 0.4 * (jitter - 0.5)) / count
        offsets = [int(value) for value in np.floor(slots * MINUTE_MS)]
        unit = 10.0**-self.instrument.price_decimals
        inner = self.round_price((low + (high - low) * level) * unit)
        prices = [int(value) for value in np.clip(inner, low, high)]
        if count >= 3:
            pick = hashing.hash_indices(self._event_key, [minute * 64 + 63])[0]
            high_at = int(pick % np.uint64(count - 1))
            low_at = (high_at + 1 + int((pick >> np.uint64(32)) % np.uint64(count - 2))) % (
                count - 1
            )
            prices[high_at], prices[low_at] = high, low
        elif count == 2:
            prices[0] = high
        prices[-1] = close

        def cumulative(total: int) -> list[int]:
            return [total * (step + 1) // count for step in range(count)]

        return MinuteEvents(
            minute=minute,
            open=open_,
            offsets_ms=offsets,
            prices=prices,
            buy_side=[bool(value >= 0.5) for value in side],
            cum_trades=cumulative(int(row.trades[0])),
            cum_volume=cumulative(int(row.volume[0])),
            cum_quote=cumulative(int(row.quote[0])),
            cum_taker_base=cumulative(int(row.taker_base[0])),
            cum_taker_quote=cumulative(int(row.taker_quote[0])),
        )
