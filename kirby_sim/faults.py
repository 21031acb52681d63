"""Fault injection: what can go wrong between Kirby and an exchange, on demand.

A `FaultInjector` holds pending faults; the HTTP and WebSocket handlers consult it and
count every fault they actually inject. It is driven in-process (tests call its methods,
from any thread) or through the admin endpoint (`prepare` validates a JSON spec), and
`run_schedule` injects faults periodically for long runs. Faults:

    drop_ws     close every WebSocket connection now, without a close frame
    stall       keep connections open but push nothing (all coins or some) for N seconds
    http_429    the next N HTTP requests answer 429 with Retry-After
    http_5xx    the next N HTTP requests answer a 5xx status
    malformed   the next N WebSocket data frames or HTTP data bodies are corrupted:
                bad_json, non_numeric_price, high_below_low, unknown_coin
    book_gap    the next N order-book updates (of one exchange, or any) are not sent, so
                the update after each does not chain: a sequence gap to detect
    book_restart  Bybit's service restart: each order-book subscription's next push is a
                snapshot with u = 1

Durations are real seconds (a stall is about the client's watchdog, not simulated time).
A malformed variant that does not fit a message (high_below_low on a funding row) waits
for the next message it fits.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MALFORMED_VARIANTS = ("bad_json", "non_numeric_price", "high_below_low", "unknown_coin")
TARGETS = ("ws", "http")
KINDS = ("drop_ws", "stall", "http_429", "http_5xx", "malformed", "book_gap", "book_restart")
BOOK_EXCHANGES = ("binance", "bybit", "okx", "coinbase")
"""Exchanges whose order-book streams a `book_gap` fault can break."""


@dataclass(frozen=True)
class HttpFault:
    status: int
    retry_after: float | None


@dataclass(frozen=True)
class FaultSchedule:
    """Periodic faults for long runs; every period is in real seconds, None = never."""

    drop_every: float | None = None
    stall_every: float | None = None
    stall_for: float = 10.0
    error_every: float | None = None
    error_count: int = 3
    malformed_every: float | None = None
    book_gap_every: float | None = None
    """Leave one order-book update of any exchange out (a sequence gap to detect)."""


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: deque[HttpFault] = deque()
        self._malformed: dict[str, deque[str]] = {target: deque() for target in TARGETS}
        self._stalls: list[tuple[float, frozenset[str] | None]] = []
        self._drop_listeners: list[Callable[[], None]] = []
        self._book_gaps: list[str | None] = []
        self._restarts = 0
        """Bumped by each book_restart; subscriptions compare it with the one they saw."""
        self.injected: Counter[str] = Counter()

    # --- requesting faults ------------------------------------------------------------

    def drop_connections(self) -> None:
        """Drop every open WebSocket connection (abruptly, like a network failure)."""
        with self._lock:
            listeners = list(self._drop_listeners)
            self.injected["drop_ws"] += 1
        for listener in listeners:
            listener()

    def stall(self, seconds: float, coins: list[str] | None = None) -> None:
        """Stop pushing data for `seconds` (every coin, or only `coins`)."""
        with self._lock:
            self._stalls.append((time.monotonic() + seconds, frozenset(coins) if coins else None))
            self.injected["stall"] += 1

    def fail_next(self, count: int, status: int = 429, retry_after: float | None = 1.0) -> None:
        """The next `count` HTTP requests answer `status` (429 carries Retry-After)."""
        with self._lock:
            fault = HttpFault(status, retry_after if status == 429 else None)
            self._http.extend([fault] * count)

    def malform_next(self, count: int, target: str = "ws", variant: str = "bad_json") -> None:
        """Corrupt the next `count` WebSocket data frames (`ws`) or HTTP data bodies
        (`http`: candleSnapshot, fundingHistory, klines)."""
        if target not in TARGETS or variant not in MALFORMED_VARIANTS:
            raise ValueError(
                f"malformed fault needs target in {TARGETS}, variant in "
                f"{MALFORMED_VARIANTS}; got {target!r}, {variant!r}"
            )
        with self._lock:
            self._malformed[target].extend([variant] * count)

    def skip_book_updates(self, count: int = 1, exchange: str | None = None) -> None:
        """Leave out the next `count` order-book updates of `exchange` (None: any)."""
        if exchange is not None and exchange not in BOOK_EXCHANGES:
            raise ValueError(
                f"book_gap exchange must be one of {BOOK_EXCHANGES} or absent, got {exchange!r}"
            )
        with self._lock:
            self._book_gaps.extend([exchange] * count)

    def restart_books(self) -> None:
        """Bybit restarts: every order-book subscription starts over with u = 1."""
        with self._lock:
            self._restarts += 1
            self.injected["book_restart"] += 1

    @property
    def book_restarts(self) -> int:
        return self._restarts

    def clear(self) -> None:
        """Forget pending faults and end stalls (the counters stay)."""
        with self._lock:
            self._http.clear()
            for pending in self._malformed.values():
                pending.clear()
            self._stalls.clear()
            self._book_gaps.clear()

    def prepare(self, spec: dict[str, Any]) -> Callable[[], None]:
        """Validate a JSON fault spec; the returned function injects it."""
        kind = spec.get("kind")
        try:
            if kind == "drop_ws":
                return self.drop_connections
            if kind == "stall":
                seconds = float(spec["seconds"])
                coins = spec.get("coins")
                if coins is not None and not (
                    isinstance(coins, list) and all(isinstance(c, str) for c in coins)
                ):
                    raise ValueError("coins must be a list of coin names")
                return lambda: self.stall(seconds, coins)
            count = int(spec.get("count", 1))
            if count < 1:
                raise ValueError(f"count must be positive, got {count}")
            if kind == "http_429":
                retry_after = float(spec.get("retry_after", 1))
                return lambda: self.fail_next(count, 429, retry_after)
            if kind == "http_5xx":
                status = int(spec.get("status", 500))
                if not 500 <= status <= 599:
                    raise ValueError(f"status must be 5xx, got {status}")
                return lambda: self.fail_next(count, status)
            if kind == "book_restart":
                return self.restart_books
            if kind == "book_gap":
                exchange = spec.get("exchange")
                if exchange is not None and exchange not in BOOK_EXCHANGES:
                    raise ValueError(
                        f"exchange must be one of {BOOK_EXCHANGES} or absent, got {exchange!r}"
                    )
                return lambda: self.skip_book_updates(count, exchange)
            if kind == "malformed":
                target = str(spec.get("target", "ws"))
                variant = str(spec.get("variant", "bad_json"))
                if target not in TARGETS or variant not in MALFORMED_VARIANTS:
                    raise ValueError(
                        f"target must be one of {TARGETS} and variant one of "
                        f"{MALFORMED_VARIANTS}; got {target!r}, {variant!r}"
                    )
                return lambda: self.malform_next(count, target, variant)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad {kind} fault {spec!r}: missing or invalid {exc}") from exc
        raise ValueError(f"unknown fault kind {kind!r}; allowed: {', '.join(KINDS)}")

    # --- consulting faults ------------------------------------------------------------

    def on_drop(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` on every drop; returns a function that unregisters it."""
        with self._lock:
            self._drop_listeners.append(listener)

        def remove() -> None:
            with self._lock:
                self._drop_listeners.remove(listener)

        return remove

    def is_stalled(self, coin: str | None) -> bool:
        now = time.monotonic()
        with self._lock:
            self._stalls = [(until, coins) for until, coins in self._stalls if until > now]
            return any(coins is None or coin in coins for _, coins in self._stalls)

    def take_http_error(self) -> HttpFault | None:
        with self._lock:
            if not self._http:
                return None
            fault = self._http.popleft()
            self.injected["http_429" if fault.status == 429 else "http_5xx"] += 1
            return fault

    def take_malformation(self, target: str, fits: Callable[[str], bool]) -> str | None:
        """Pop the first pending variant for `target` that `fits` this message."""
        with self._lock:
            pending = self._malformed[target]
            for variant in pending:
                if fits(variant):
                    pending.remove(variant)
                    self.injected[f"malformed_{target}"] += 1
                    return variant
            return None

    def take_book_gap(self, exchange: str) -> bool:
        """True (once per pending gap) if this update of `exchange` must be left out."""
        with self._lock:
            for position, wanted in enumerate(self._book_gaps):
                if wanted is None or wanted == exchange:
                    del self._book_gaps[position]
                    self.injected["book_gap"] += 1
                    return True
            return False

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            return {
                "injected": dict(self.injected),
                "pending": {
                    "http_errors": len(self._http),
                    "malformed_ws": len(self._malformed["ws"]),
                    "malformed_http": len(self._malformed["http"]),
                    "book_gaps": len(self._book_gaps),
                    "stalls": [
                        {"seconds_left": round(until - now, 3), "coins": sorted(coins or [])}
                        for until, coins in self._stalls
                        if until > now
                    ],
                },
            }


async def run_schedule(schedule: FaultSchedule, faults: FaultInjector) -> None:
    """Inject the scheduled faults until cancelled."""
    variants = itertools.cycle(MALFORMED_VARIANTS)
    plan: list[tuple[float, Callable[[], None]]] = []
    if schedule.drop_every:
        plan.append((schedule.drop_every, faults.drop_connections))
    if schedule.stall_every:
        plan.append((schedule.stall_every, lambda: faults.stall(schedule.stall_for)))
    if schedule.error_every:
        plan.append((schedule.error_every, lambda: faults.fail_next(schedule.error_count, 503)))
    if schedule.malformed_every:
        plan.append(
            (schedule.malformed_every, lambda: faults.malform_next(1, "ws", next(variants)))
        )
    if schedule.book_gap_every:
        plan.append((schedule.book_gap_every, faults.skip_book_updates))
    if not plan:
        return
    due = [time.monotonic() + period for period, _ in plan]
    while True:
        position = min(range(len(plan)), key=due.__getitem__)
        await asyncio.sleep(max(0.0, due[position] - time.monotonic()))
        period, inject = plan[position]
        inject()
        due[position] += period
