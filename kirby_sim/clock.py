"""The simulator's virtual clock: real time scaled by a speed factor from a start point.

`now` = start + (real time elapsed since the clock was made) x speed. With speed 60 a
simulated minute passes every real second. Simulated data (candles, funding, pushes)
follows this clock; protocol timeouts and rate limits (idle WebSocket close, weight per
minute, stalls, Retry-After) stay in real time because they are about the client's own
behaviour. Reading the clock is thread-safe.
"""

from __future__ import annotations

import time
from datetime import datetime

from kirby_core.timeutil import datetime_to_ms, ms_to_datetime


class VirtualClock:
    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._real_start = time.monotonic()
        self.start_ms = datetime_to_ms(start) if start is not None else int(time.time() * 1000)

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._real_start) * 1000 * self.speed)

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def real_delay(self, sim_ms: int) -> float:
        """Real seconds until the clock reads `sim_ms` (0 if it already has)."""
        return max(0.0, (sim_ms - self.now_ms()) / 1000.0 / self.speed)
