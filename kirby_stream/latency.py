"""The candle message-to-commit latency, in 10 ms slots: bounded memory however long a
database outage lasts.

`Arrivals` holds the receive times (`time.monotonic()`) of candle messages not yet
committed, as counts per slot. A message older than the newest by more than the
histogram's span will land in its last bucket whenever it commits, so such slots fold
into one `overdue` count: at most `2 * BUCKETS` slots are ever held. `Stats` keeps the
histogram these counts are added to when a flush commits.
"""

from __future__ import annotations

BUCKET_SECONDS = 0.01
BUCKETS = 12_000  # 120 s; slower commits land in the last bucket


class Arrivals:
    def __init__(self) -> None:
        self.slots: dict[int, int] = {}
        """Slot (receive time // BUCKET_SECONDS) -> messages received in it."""
        self.overdue = 0
        """Messages received more than the histogram's span before the newest one."""

    def __len__(self) -> int:
        return sum(self.slots.values()) + self.overdue

    def add(self, received: float) -> None:
        slot = int(received / BUCKET_SECONDS)
        slots = self.slots
        slots[slot] = slots.get(slot, 0) + 1
        if len(slots) > 2 * BUCKETS:
            horizon = max(slots) - BUCKETS
            for old in [s for s in slots if s <= horizon]:
                self.overdue += slots.pop(old)

    def merge(self, other: Arrivals) -> None:
        """Take `other`'s messages too (a failed batch put back)."""
        for slot, count in other.slots.items():
            self.slots[slot] = self.slots.get(slot, 0) + count
        self.overdue += other.overdue

    def latencies(self, committed: float) -> list[tuple[int, int]]:
        """(histogram bucket, messages) for a commit at `committed` (monotonic seconds)."""
        last = BUCKETS - 1
        found = [
            (min(max(int(committed / BUCKET_SECONDS) - slot, 0), last), count)
            for slot, count in self.slots.items()
        ]
        if self.overdue:
            found.append((last, self.overdue))
        return found
