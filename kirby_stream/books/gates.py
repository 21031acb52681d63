"""When a book's REST depth snapshot may be sent (Binance, the one exchange whose books
resync from REST).

A resync storm (a reconnect, a burst of gaps over many books) must not get the IP banned:
Binance answers a client over its request weight with 429, and one that keeps asking
during the Retry-After with 418, an IP ban of minutes to days. So every snapshot first
spends its declared weight from the process's budget of that API family
(`DepthChannel.snapshot_spend`: the `WeightBudget` that backfills and polls spend too),
which spreads a storm over the minutes the exchange allows; and a 429 or 418 holds every
snapshot of that budget until its Retry-After has passed (the exchange counts per IP, not
per book), then they go on. One `SnapshotGate` per budget, shared by every book
connection of the collector (`SnapshotGates`). No I/O here; the clock is injectable.
"""

from __future__ import annotations

from kirby_core.exchanges.weights import REAL_TIME, Clock, WeightBudget

REFUSED_STATUSES = (418, 429)
"""HTTP statuses of a client over the exchange's limits: 429 over the weight, 418 banned."""


class SnapshotGate:
    """The snapshots that spend one budget."""

    def __init__(self, budget: WeightBudget, clock: Clock) -> None:
        self.budget = budget
        self.clock = clock
        self.hold_until = 0.0
        """clock.monotonic() before which no snapshot is sent (the last Retry-After)."""
        self.refusals = 0
        """429/418 answers to snapshots of this budget."""

    async def enter(self, weight: int) -> None:
        """Wait out a hold, then spend `weight` (waiting while the minute is spent)."""
        while (wait := self.hold_until - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        await self.budget.spend(weight)

    def refused(self, retry_after: float | None, otherwise: float) -> float:
        """The exchange refused a snapshot: hold every snapshot of the budget for its
        `retry_after` (or `otherwise` where it sent none); returns the hold's length."""
        self.refusals += 1
        delay = otherwise if retry_after is None else retry_after
        self.hold_until = max(self.hold_until, self.clock.monotonic() + delay)
        return delay


class SnapshotGates:
    """The gates of the collector's book connections, one per budget."""

    def __init__(self, clock: Clock = REAL_TIME) -> None:
        self.clock = clock
        self._gates: dict[int, SnapshotGate] = {}

    def gate(self, budget: WeightBudget) -> SnapshotGate:
        found = self._gates.get(id(budget))
        if found is None or found.budget is not budget:
            found = self._gates[id(budget)] = SnapshotGate(budget, self.clock)
        return found

    @property
    def refusals(self) -> int:
        return sum(gate.refusals for gate in self._gates.values())
