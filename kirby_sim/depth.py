"""Deterministic L2 order books: the depth every venue but Hyperliquid serves.

A `DepthBook` is the book of one instrument as a pure function of (seed, instrument, step):
time is cut into steps of `update_ms` simulated ms, and step k's book is computed on its
own, so REST snapshots, WebSocket snapshots and diffs of every subscriber agree and a
replay with the same seed serves the same books.

The book of step k: price levels on a grid of `spacing` price units (a round number of
ticks, about a basis point of the instrument's base price); the best bid is the grid level
at or below the last trade price at the step's time (`CandleBook.forming_minute(t).close`),
the best ask the next grid level up, so the book is never crossed and the last price lies
between them. `levels` grid slots a side; each slot draws its size afresh every
`REFRESH_STEPS` steps at its own phase (so about 1% of the levels change each step), and
is empty in about one draw out of eight. Sizes are lots of the instrument
(10**-size_decimals of the coin), about a twentieth of a minute's volume, more away from
the top.

Update ids: step k ends at update id `update_id(k)`, several ids per step (Binance's `U`/`u`,
OKX's `seqId`: increasing, not by one); a diff from the book of step a to that of step b
(`DepthBook.diff`) carries the levels whose size changed, size 0 for removed ones; a
subscriber is sent nothing for a step that changed nothing it sees. The venues format
them; this module knows no wire format. `step_ranges` splits a lagging subscriber's
backlog into at most `MAX_EVENTS_PER_TICK` diffs.
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
from kirby_sim.prices import I64

DEFAULT_UPDATE_MS = 100
"""Simulated ms between two book states (Binance's @depth@100ms)."""
DEFAULT_LEVELS = 1000
"""Grid slots a side (some empty): the deepest view any venue serves."""
REFRESH_STEPS = 200
"""Steps after which every level has drawn a new size (20 s at 100 ms a step): a faster
book (a smaller `update_ms`) changes more levels a second."""
EMPTY_SHARE = 0.125
IDS_PER_STEP = 8
"""Update ids step k uses at most (Binance's `u` grows by 1..8 a step)."""
MAX_EVENTS_PER_TICK = 50
"""Diffs sent at most per push to a lagging subscriber: beyond, steps are merged."""
_CACHED_STEPS = 8


class SimBookState(NamedTuple):
    """The whole book of one step: lots of each grid slot from `low` on (0: empty); the
    first `levels` slots are bids, the rest asks."""

    step: int
    low: int
    lots: I64


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
        self.period = REFRESH_STEPS
        typical = inst.volume_per_minute * 10**inst.size_decimals / 20.0
        self._typical = max(1.0, typical)
        self._phase_key = hashing.stream_key(seed, "depth-phase", inst.venue, inst.symbol)
        self._size_key = hashing.stream_key(seed, "depth-size", inst.venue, inst.symbol)
        self._id_key = hashing.stream_key(seed, "depth-ids", inst.venue, inst.symbol)
        self._cache: OrderedDict[int, SimBookState] = OrderedDict()

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

    def state(self, step: int) -> SimBookState:
        """The whole book of `step` (cached for the last few steps)."""
        found = self._cache.get(step)
        if found is not None:
            self._cache.move_to_end(step)
            return found
        last = self.candles.forming_minute(self.step_time(step)).close
        best_bid = last // self.spacing
        low = best_bid - self.levels + 1
        slots = np.arange(low, best_bid + self.levels + 1, dtype=np.int64)
        level_hash = hashing.hash_indices(self._size_key, slots)
        phase = hashing.hash_indices(self._phase_key, slots) % np.uint64(self.period)
        epoch = (step + phase.astype(np.int64)) // self.period
        drawn = hashing.mix(level_hash ^ epoch.astype(np.uint64))
        present = (drawn & np.uint64(0xFFFF)).astype(np.float64) / 65536.0 >= EMPTY_SHARE
        uniform = (drawn >> np.uint64(11)).astype(np.float64) * 2.0**-53
        distance = np.abs(slots - best_bid - 0.5) + 0.5  # 1 at the best level of each side
        lots = np.maximum(
            1, np.rint(self._typical * -np.log1p(-0.999 * uniform) * np.sqrt(distance))
        ).astype(np.int64)
        lots[~present] = 0
        found = SimBookState(step, low, lots)
        self._cache[step] = found
        if len(self._cache) > _CACHED_STEPS:
            self._cache.popitem(last=False)
        return found

    def shown(self, state: SimBookState, depth: int | None) -> tuple[I64, I64, I64, I64]:
        """(bid slots, bid lots, ask slots, ask lots) of the best `depth` levels a side
        (all when None), best first."""
        bid_at = np.flatnonzero(state.lots[: self.levels])[::-1][:depth]
        ask_at = np.flatnonzero(state.lots[self.levels :])[:depth] + self.levels
        return bid_at + state.low, state.lots[bid_at], ask_at + state.low, state.lots[ask_at]

    def levels_of(self, state: SimBookState, depth: int | None = None) -> Levels:
        bid_slots, bid_lots, ask_slots, ask_lots = self.shown(state, depth)
        spacing = self.spacing
        return Levels(
            list(zip((bid_slots * spacing).tolist(), bid_lots.tolist(), strict=True)),
            list(zip((ask_slots * spacing).tolist(), ask_lots.tolist(), strict=True)),
        )

    def view(self, step: int, depth: int | None = None) -> Levels:
        """The best `depth` levels a side (all when None) of `step`'s book."""
        return self.levels_of(self.state(step), depth)

    def diff(self, before: SimBookState, after: SimBookState, depth: int | None = None) -> Diff:
        """What turns the best `depth` levels of `before` into those of `after`: changed
        and new levels with their size, removed ones (also those pushed out of the best
        `depth`) with size 0."""
        old = self.shown(before, depth)
        new = self.shown(after, depth)
        return Diff(
            self._side_diff(old[0], old[1], new[0], new[1], reverse=True),
            self._side_diff(old[2], old[3], new[2], new[3], reverse=False),
        )

    def _side_diff(
        self, old_slots: I64, old_lots: I64, new_slots: I64, new_lots: I64, *, reverse: bool
    ) -> list[tuple[int, int]]:
        slots = np.concatenate((old_slots, new_slots))
        if not len(slots):
            return []
        low = int(slots.min())
        width = int(slots.max()) - low + 1
        old = np.zeros(width, dtype=np.int64)
        new = np.zeros(width, dtype=np.int64)
        old[old_slots - low] = old_lots
        new[new_slots - low] = new_lots
        changed = np.flatnonzero(old != new)
        if reverse:
            changed = changed[::-1]
        prices = ((changed + low) * self.spacing).tolist()
        return list(zip(prices, new[changed].tolist(), strict=True))


def step_ranges(last_step: int, step: int, every: int = 1) -> list[tuple[int, int]]:
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
    """One subscriber's view of a book: how deep it sees (the best `depth` levels a side;
    all when None), the book it has (`state`) and the last step whose update ids it was
    sent (`covered`: a step that changed nothing it sees sends nothing, and its ids go
    with the next update, as an exchange's do)."""

    book: DepthBook
    depth: int | None
    state: SimBookState
    covered: int
    every: int = 1

    @classmethod
    def start(
        cls, book: DepthBook, now_ms: int, depth: int | None = None, every: int = 1
    ) -> DepthFeed:
        state = book.state(book.step(now_ms))
        return cls(book, depth, state, state.step, every)

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def view(self) -> Levels:
        return self.book.levels_of(self.state, self.depth)

    def pending(self, now_ms: int) -> Iterator[tuple[int, int, SimBookState, Diff]]:
        """(first step, last step, the book after, the diff) of every update due; the
        caller `commit`s each one it sent (or skipped on purpose: a planted gap)."""
        for _, last in step_ranges(self.state.step, self.book.step(now_ms), self.every):
            after = self.book.state(last)
            change = self.book.diff(self.state, after, self.depth)
            if change.bids or change.asks:
                yield self.covered + 1, last, after, change
            else:
                self.state = after  # the same levels: nothing to send

    def commit(self, after: SimBookState) -> None:
        self.state = after
        self.covered = after.step

    def resync(self, now_ms: int) -> None:
        """Jump to the book at `now_ms` (a snapshot of it is being sent)."""
        self.commit(self.book.state(self.book.step(now_ms)))
