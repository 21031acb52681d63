"""Deterministic L2 order books: the depth every venue but Hyperliquid serves.

A `DepthBook` is the book of one instrument as a pure function of (seed, instrument, step):
time is cut into steps of `update_ms` simulated ms, and step k's book is computed on its
own, so REST snapshots, WebSocket snapshots and diffs of every subscriber agree and a
replay with the same seed serves the same books.

The book of step k: price levels on a grid of `spacing` price units (a round number of
ticks, about a basis point of the instrument's base price); the best bid is the grid level
at or below the last trade price at the step's time (`CandleBook.forming_minute(t).close`),
the best ask the next grid level up, so the book is never crossed and the last price lies
between them. `levels` grid slots a side; each slot draws its size afresh every `period`
steps at its own phase (so a few levels change each step), and is empty in about one draw
out of eight. Sizes are lots of the instrument (10**-size_decimals of the coin), about a
twentieth of a minute's volume, more away from the top.

Update ids: step k ends at update id `update_id(k)`, several ids per step (Binance's `U`/`u`,
OKX's `seqId`: increasing, not by one); a diff from the book of step a to that of step b
(`diff`) carries the levels whose size changed, size 0 for removed ones. The venues format
them; this module knows no wire format. `step_chunks` splits a lagging subscriber's backlog into
at most `MAX_EVENTS_PER_TICK` diffs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kirby_sim import hashing
from kirby_sim.candles import CandleBook

DEFAULT_UPDATE_MS = 100
"""Simulated ms between two book states (Binance's @depth@100ms)."""
DEFAULT_LEVELS = 1000
"""Grid slots a side (some empty): the deepest view any venue serves."""
REFRESH_MS = 20_000
"""Simulated ms after which every level has drawn a new size."""
EMPTY_SHARE = 0.125
IDS_PER_STEP = 8
"""Update ids step k uses at most (Binance's `u` grows by 1..8 a step)."""
MAX_EVENTS_PER_TICK = 50
"""Diffs sent at most per push to a lagging subscriber: beyond, steps are merged."""
_CACHED_STEPS = 8

Side = dict[int, int]
"""price units -> lots."""


class Levels(NamedTuple):
    """A book view: bids best (highest) first, asks best (lowest) first."""

    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class Diff(NamedTuple):
    """Levels whose size changed between two views (size 0: removed), each side sorted
    best first."""

    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def _nice(value: float) -> int:
    """The largest 1, 2 or 5 x 10**n not above `value` (at least 1)."""
    if value < 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (5, 2, 1) if m * power <= value)


class DepthBook:
    def __init__(
        self,
        candles: CandleBook,
        seed: int,
        *,
        update_ms: int = DEFAULT_UPDATE_MS,
        levels: int = DEFAULT_LEVELS,
    ) -> None:
        if update_ms < 1 or levels < 1:
            raise ValueError(f"update_ms and levels must be positive, got {update_ms}, {levels}")
        self.candles = candles
        self.instrument = inst = candles.instrument
        self.update_ms = update_ms
        self.levels = levels
        tick = inst.tick_units
        tick_value = tick * 10.0**-inst.price_decimals
        self.spacing = tick * _nice(inst.base_price * 1e-4 / tick_value)
        """Price units between two grid levels."""
        self.period = max(1, REFRESH_MS // update_ms)
        typical = inst.volume_per_minute * 10**inst.size_decimals / 20.0
        self._typical = max(1.0, typical)
        self._phase_key = hashing.stream_key(seed, "depth-phase", inst.venue, inst.symbol)
        self._size_key = hashing.stream_key(seed, "depth-size", inst.venue, inst.symbol)
        self._id_key = hashing.stream_key(seed, "depth-ids", inst.venue, inst.symbol)
        self._cache: OrderedDict[int, tuple[Side, Side]] = OrderedDict()

    # --- steps and ids ----------------------------------------------------------------

    def step(self, now_ms: int) -> int:
        """The step whose book is current at `now_ms`."""
        return now_ms // self.update_ms

    def step_time(self, step: int) -> int:
        return step * self.update_ms

    def update_id(self, step: int) -> int:
        """The last update id of `step`; step k's ids are update_id(k - 1) + 1 ...
        update_id(k) (one to IDS_PER_STEP of them)."""
        extra = int(hashing.uniform_one(self._id_key, step) * IDS_PER_STEP)
        return step * IDS_PER_STEP + extra

    # --- books ------------------------------------------------------------------------

    def sides(self, step: int) -> tuple[Side, Side]:
        """The whole book of `step`: (bids, asks), price units -> lots."""
        found = self._cache.get(step)
        if found is not None:
            self._cache.move_to_end(step)
            return found
        last = self.candles.forming_minute(self.step_time(step)).close
        best_bid = last // self.spacing
        slots = np.arange(best_bid - self.levels + 1, best_bid + self.levels + 1, dtype=np.int64)
        level_hash = hashing.hash_indices(self._size_key, slots)
        phase = (hashing.hash_indices(self._phase_key, slots) % np.uint64(self.period)).astype(
            np.int64
        )
        epoch = (step + phase) // self.period
        drawn = hashing.mix(level_hash ^ epoch.astype(np.uint64))
        present = (drawn & np.uint64(0xFFFF)).astype(np.float64) / 65536.0 >= EMPTY_SHARE
        uniform = (drawn >> np.uint64(11)).astype(np.float64) * 2.0**-53
        distance = np.abs(slots - best_bid - 0.5) + 0.5  # 1 at the best level of each side
        lots = np.maximum(
            1, np.rint(self._typical * -np.log1p(-0.999 * uniform) * np.sqrt(distance))
        ).astype(np.int64)
        prices = (slots * self.spacing).tolist()
        sizes = lots.tolist()
        shown = present.tolist()
        bids: Side = {}
        asks: Side = {}
        for position in range(self.levels - 1, -1, -1):  # best bid first
            if shown[position]:
                bids[prices[position]] = sizes[position]
        for position in range(self.levels, 2 * self.levels):
            if shown[position]:
                asks[prices[position]] = sizes[position]
        self._cache[step] = (bids, asks)
        if len(self._cache) > _CACHED_STEPS:
            self._cache.popitem(last=False)
        return bids, asks

    def view(self, step: int, depth: int | None = None) -> Levels:
        """The best `depth` levels a side (all when None)."""
        bids, asks = self.sides(step)
        return Levels(list(bids.items())[:depth], list(asks.items())[:depth])


def diff(before: Levels, after: Levels) -> Diff:
    """What turns the book `before` into `after`: changed and new levels with their size,
    removed ones with size 0."""
    return Diff(
        _side_diff(before.bids, after.bids, reverse=True),
        _side_diff(before.asks, after.asks, reverse=False),
    )


def _side_diff(
    before: list[tuple[int, int]], after: list[tuple[int, int]], *, reverse: bool
) -> list[tuple[int, int]]:
    old = dict(before)
    new = dict(after)
    changed = [(price, lots) for price, lots in new.items() if old.get(price) != lots]
    changed.extend((price, 0) for price in old if price not in new)
    changed.sort(reverse=reverse)
    return changed


def step_chunks(last_step: int, step: int, every: int = 1) -> list[tuple[int, int]]:
    """Step ranges (first, last), inclusive, to send a subscriber whose book is at
    `last_step` now that `step` is current: each range ends on a multiple of `every` (a
    stream slower than the book merges steps), and when more than MAX_EVENTS_PER_TICK
    are due the oldest are merged into the first range."""
    target = step - step % every
    if target <= last_step:
        return []
    ends = list(range(last_step + every - last_step % every, target + 1, every))
    overflow = len(ends) - MAX_EVENTS_PER_TICK
    if overflow > 0:
        ends = ends[overflow:]
    starts = [last_step + 1, *(end + 1 for end in ends[:-1])]
    return list(zip(starts, ends, strict=True))


@dataclass
class DepthFeed:
    """One subscriber's view of a book: the step and levels it was last sent."""

    book: DepthBook
    depth: int | None
    step: int
    view: Levels
    every: int = 1

    @classmethod
    def start(
        cls, book: DepthBook, now_ms: int, depth: int | None = None, every: int = 1
    ) -> DepthFeed:
        step = book.step(now_ms)
        return cls(book, depth, step, book.view(step, depth), every)

    def pending(self, now_ms: int) -> Iterator[tuple[int, int, Levels, Diff]]:
        """(first step, last step, the book after, the diff) of every update due; the
        caller `commit`s each one it sent (or skipped on purpose: a planted gap)."""
        for first, last in step_chunks(self.step, self.book.step(now_ms), self.every):
            after = self.book.view(last, self.depth)
            yield first, last, after, diff(self.view, after)

    def commit(self, step: int, after: Levels) -> None:
        self.step = step
        self.view = after
