"""Request weight per client IP over a sliding real-time minute, as exchanges count it.

The limits and weights are the ones Kirby's exchange registry declares (Hyperliquid's per
IP, Binance's per API family; see `hyperliquid` and `binance`). A request that would exceed
the limit is refused before it runs; the weight of returned items is charged after it ran.
`limit=None` switches limiting off (benchmarks). `clock` is real time unless a test shares a
fake one with the client's budget.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

from kirby_core.exchanges.weights import WINDOW_SECONDS


class WeightLimiter:
    def __init__(self, limit: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._spent: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def used(self, client: str) -> int:
        spent = self._spent[client]
        horizon = self._clock() - WINDOW_SECONDS
        while spent and spent[0][0] <= horizon:
            spent.popleft()
        return sum(weight for _, weight in spent)

    def acquire(self, client: str, weight: int) -> float | None:
        """Charge `weight`; if that would exceed the limit, charge nothing and return the
        real seconds until enough weight has expired."""
        if self.limit is None:
            return None
        used = self.used(client)
        if used + weight <= self.limit:
            self.charge(client, weight)
            return None
        excess = used + weight - self.limit
        freed = 0
        for spent_at, spent_weight in self._spent[client]:
            freed += spent_weight
            if freed >= excess:
                return max(0.0, spent_at + WINDOW_SECONDS - self._clock())
        return WINDOW_SECONDS

    def charge(self, client: str, weight: int) -> None:
        if self.limit is not None and weight > 0:
            self._spent[client].append((self._clock(), weight))
