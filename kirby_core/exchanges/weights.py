"""Request weights: what an exchange's REST requests weigh, and a budget that spends them.

Every request a history client sends first spends its declared weight (`RequestWeight`,
declared next to each exchange's protocol and referenced by the registry) from a
`WeightBudget`, which waits while the last 60 s already spent the minute's allowance (or,
where the exchange also counts a few seconds, a `Burst`, the last few seconds theirs). The
budgets are per process and per exchange host (`shared_budget`), since exchanges count per
client IP: clients opened one after another spend one budget. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestWeight:
    """An exchange's REST budget for one market type (per client IP) and what Kirby's
    requests there weigh. Each history client spends it (`WeightBudget`); the Dagster pool
    also runs one backfill per exchange at a time."""

    per_minute: int
    """Weight the exchange allows per minute."""
    candle_page: int
    """Weight of one full page of candles (`candle_page_rows`); where the exchange charges
    by rows returned (Hyperliquid) a shorter page spends less."""
    request: int = 1
    """Weight of any other request Kirby sends there (markets, metadata)."""
    funding_page: int | None = None
    """Weight of one full page of funding rates; None where Kirby fetches none."""
    burst: Burst | None = None
    """A shorter window the exchange counts as well (Bybit 600 per 5 s, OKX 20 per 2 s);
    None where it counts per minute only."""


@dataclass(frozen=True)
class Burst:
    """At most `weight` over any `seconds` (shorter than a minute), besides `per_minute`."""

    weight: int
    seconds: float


class Clock(Protocol):
    """Where a budget reads the time and waits: real time, or a test's fake."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealTime:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


REAL_TIME: Clock = RealTime()

WINDOW_SECONDS = 60.0
ARRIVAL_MARGIN_SECONDS = 0.25
"""A request spends before it travels and the exchange counts it on arrival: a burst window
of a few seconds is counted this much longer, so network jitter cannot squeeze one request
too many into the exchange's window (a minute's jitter is negligible)."""


class WeightBudget:
    """`per_minute` weight over any 60 s (and `burst.weight` over any `burst.seconds`),
    spent before each request.

    A request waits until the weight spent in the last 60 s plus its own fits: the strictest
    way an exchange may count "per minute" (a sliding minute; Binance resets on the minute).
    A token bucket refilling `per_minute / 60` per second would not do: starting full, it
    lets twice the allowance through in the first minute. A request heavier than the whole
    allowance waits for an empty minute. Waits are logged at debug and counted (`waits`,
    `waited_seconds`). Clients get theirs from `shared_budget`; a budget serves one event
    loop at a time (each `asyncio.run` of a backfill in turn).
    """

    def __init__(
        self, name: str, per_minute: int, clock: Clock = REAL_TIME, burst: Burst | None = None
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"{name}: weight per minute must be positive, got {per_minute}")
        if burst is not None and (burst.weight <= 0 or not 0 < burst.seconds < WINDOW_SECONDS):
            raise ValueError(
                f"{name}: a burst window needs a positive weight and 0 < seconds < "
                f"{WINDOW_SECONDS:g}, got {burst}"
            )
        self.name = name
        self.per_minute = per_minute
        self._windows = [(per_minute, WINDOW_SECONDS)]
        if burst is not None:
            self._windows.append((burst.weight, burst.seconds + ARRIVAL_MARGIN_SECONDS))
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self.spent = 0
        """Weight spent since the budget was made."""
        self.waits = 0
        self.waited_seconds = 0.0

    def used(self, window: float = WINDOW_SECONDS) -> int:
        """Weight spent in the last `window` seconds (a minute unless asked)."""
        now = self._clock.monotonic()
        while self._spent and self._spent[0][0] <= now - WINDOW_SECONDS:
            self._spent.popleft()
        return sum(weight for at, weight in self._spent if at > now - window)

    async def spend(self, weight: int) -> None:
        async with self._loop_lock():  # first come, first served
            while (delay := self._wait(weight)) is not None:
                log.debug(
                    "event=exchange_weight_wait exchange=%r weight=%d used=%d per_minute=%d "
                    "delay_s=%.3f",
                    self.name,
                    weight,
                    self.used(),
                    self.per_minute,
                    delay,
                )
                self.waits += 1
                self.waited_seconds += delay
                await self._clock.sleep(delay)
            self._spent.append((self._clock.monotonic(), weight))
            self.spent += weight

    def _wait(self, weight: int) -> float | None:
        """Seconds to wait before `weight` fits every window; None when it fits now."""
        delays = [
            self._delay(used + weight - allowed, window)
            for allowed, window in self._windows
            if (used := self.used(window)) and used + weight > allowed
        ]
        return max(delays) if delays else None

    def _loop_lock(self) -> asyncio.Lock:
        """A lock of the running loop (an asyncio.Lock cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    def _delay(self, excess: int, window: float) -> float:
        """Seconds until `excess` weight (or, if more, all of it) has left the last
        `window` seconds."""
        now = self._clock.monotonic()
        freed = 0
        expires = now
        for spent_at, weight in self._spent:
            if spent_at <= now - window:
                continue
            freed += weight
            expires = spent_at + window
            if freed >= excess:
                break
        return max(0.0, expires - now)


_BUDGETS: dict[tuple[str, str, int, Burst | None, Clock], WeightBudget] = {}


def shared_budget(
    name: str, host: str, per_minute: int, clock: Clock = REAL_TIME, burst: Burst | None = None
) -> WeightBudget:
    """The process's budget for `name` (an exchange, or one of its API families) at `host`.

    Exchanges count per client IP, not per connection: the clients one process opens one
    after another (the in-process backfill runs of `kirby backfill`) spend one budget.
    Separate processes do not share it; the Dagster pool runs one backfill per exchange at
    a time, and the retry policy honours a 429's `Retry-After`.
    """
    key = (name, host, per_minute, burst, clock)
    if key not in _BUDGETS:
        _BUDGETS[key] = WeightBudget(name, per_minute, clock, burst)
    return _BUDGETS[key]
