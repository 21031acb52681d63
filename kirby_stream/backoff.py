"""Stateful exponential backoff with jitter for the collector's retry loops, and `pause`.

The delay formula is the exchange adapters' (`RetryPolicy.backoff`: doubling from `base`,
capped, half fixed and half random so collectors failing together do not retry together);
this class only adds the attempt counter that the loops advance on failure and reset once
the thing they retry is healthy again (a feed that delivers data, a flush that commits).
"""

from __future__ import annotations

import asyncio
import contextlib

from kirby_core.exchanges.base import RetryPolicy

_MAX_DOUBLINGS = 32  # beyond this the cap applies anyway; keeps 2**n finite


class Backoff:
    def __init__(self, cap: float, base: float = 0.5) -> None:
        self._policy = RetryPolicy(base_delay=base, max_delay=cap)
        self.attempt = 0

    def next_delay(self) -> float:
        delay = self._policy.backoff(min(self.attempt, _MAX_DOUBLINGS))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
