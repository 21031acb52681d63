"""Request counting per client IP over a sliding real-time window, for the venues whose
limits are counted in requests per N seconds (Bybit 600 / 5 s, OKX 20-40 / 2 s per
endpoint, Coinbase 10 / s) rather than in Binance-style weight per minute."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class RequestWindow:
    def __init__(
        self,
        limit: int | None,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._seen: defaultdict[str, deque[float]] = defaultdict(deque)

    def acquire(self, client: str) -> float | None:
        """Count one request; over the limit, count nothing and return the real seconds
        until one is allowed again."""
        if self.limit is None:
            return None
        now = self._clock()
        seen = self._seen[client]
        while seen and seen[0] <= now - self.window_seconds:
            seen.popleft()
        if len(seen) >= self.limit:
            return max(0.0, seen[0] + self.window_seconds - now)
        seen.append(now)
        return None
