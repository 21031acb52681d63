"""Which structure a book side should be: measured, not guessed.

    python -m bench.books.sides [--updates 20000] [--levels 1000] [--changes 10]

A book of `--levels` levels a side, then `--updates` deltas of `--changes` level changes
each (exponentially distributed distance from the mid, a quarter deletes), applied with
a best-bid/best-ask (crossed) check after every delta, by:
(a) kirby_core.books.L2Book: a dict per side + a heap of its prices best first, cleaned
    lazily at its top (deleted prices stay until they reach it);
(b) sortedcontainers.SortedDict per side;
(c) a dict per side, best found by max/min over it after every delta;
(d) a dict per side, sorted only when the top 20 are read, every 10th delta (no crossed
    check in between: the cheapest a dict can do);
(e) a dict per side + its sorted price list kept by bisect (L2Book before the heap).
CPU seconds of this process, best of 3. Prints updates/s and microseconds per update.
"""

from __future__ import annotations

import argparse
import random
import time
from bisect import bisect_left, insort
from collections.abc import Callable
from decimal import Decimal

from sortedcontainers import SortedDict

from kirby_core.books import L2Book, Level

Delta = tuple[tuple[Level, ...], tuple[Level, ...]]
MID = Decimal(97000)
TICK = Decimal("0.1")


def book_and_deltas(
    levels: int, updates: int, changes: int
) -> tuple[list[Level], list[Level], list[Delta]]:
    rng = random.Random(1)
    bids = [(MID - (i + 1) * TICK, Decimal("1.5")) for i in range(levels)]
    asks = [(MID + (i + 1) * TICK, Decimal("1.5")) for i in range(levels)]
    deltas: list[Delta] = []
    for _ in range(updates):
        b: list[Level] = []
        a: list[Level] = []
        for _ in range(changes):
            bid = rng.random() < 0.5
            ticks = int(rng.expovariate(1 / 30)) + 1
            price = MID - ticks * TICK if bid else MID + ticks * TICK
            size = Decimal(0) if rng.random() < 0.25 else Decimal(f"{rng.random() * 3:.3f}")
            (b if bid else a).append((price, size))
        deltas.append((tuple(b), tuple(a)))
    return bids, asks, deltas


def l2book(bids: list[Level], asks: list[Level], deltas: list[Delta]) -> None:
    book = L2Book()
    book.apply_snapshot(bids, asks)
    for b, a in deltas:
        book.apply_delta(b, a)
        _ = book.crossed


def sorted_dict(bids: list[Level], asks: list[Level], deltas: list[Delta]) -> None:
    sb, sa = SortedDict(bids), SortedDict(asks)
    for b, a in deltas:
        for side, changes in ((sb, b), (sa, a)):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        _ = sb.peekitem(-1)[0] >= sa.peekitem(0)[0]


def dict_scan(bids: list[Level], asks: list[Level], deltas: list[Delta]) -> None:
    db, da = dict(bids), dict(asks)
    for b, a in deltas:
        for side, changes in ((db, b), (da, a)):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        _ = max(db) >= min(da)


def dict_lazy(bids: list[Level], asks: list[Level], deltas: list[Delta]) -> None:
    db, da = dict(bids), dict(asks)
    for n, (b, a) in enumerate(deltas):
        for side, changes in ((db, b), (da, a)):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        if n % 10 == 0:
            _ = sorted(db)[-20:], sorted(da)[:20]


class BisectedBook:
    """L2Book before the heap (apply_delta's Decimal loop and crossed, as they were): a
    dict per side + its sorted price list, insort on a new level, bisect on a delete."""

    def __init__(self, bids: list[Level], asks: list[Level]) -> None:
        self.sides = (
            (dict(bids), sorted(p for p, _ in bids)),
            (dict(asks), sorted(p for p, _ in asks)),
        )

    def apply_delta(self, bids: tuple[Level, ...], asks: tuple[Level, ...]) -> None:
        for (levels, prices), changes in zip(self.sides, (bids, asks), strict=True):
            for price, size in changes:
                if size:
                    if price not in levels:
                        insort(prices, price)
                    levels[price] = size
                elif price in levels:
                    del levels[price]
                    del prices[bisect_left(prices, price)]

    @property
    def crossed(self) -> bool:
        bids, asks = self.sides[0][1], self.sides[1][1]
        return bool(bids) and bool(asks) and bids[-1] >= asks[0]


def dict_bisect(bids: list[Level], asks: list[Level], deltas: list[Delta]) -> None:
    book = BisectedBook(bids, asks)
    for b, a in deltas:
        book.apply_delta(b, a)
        _ = book.crossed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--levels", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    bids, asks, deltas = book_and_deltas(args.levels, args.updates, args.changes)
    ways: dict[str, Callable[[list[Level], list[Level], list[Delta]], None]] = {
        "(a) L2Book: dict + lazy heap": l2book,
        "(b) SortedDict": sorted_dict,
        "(c) dict, max/min every update": dict_scan,
        "(d) dict, sorted every 10th": dict_lazy,
        "(e) dict + bisected list": dict_bisect,
    }
    print(f"{args.levels} levels a side, {args.changes} changes an update")
    for name, way in ways.items():
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            way(bids, asks, deltas)
            best = min(best, time.process_time() - start)
        rate = len(deltas) / best
        print(f"{name:<36} {rate:>10,.0f} updates/s {1e6 / rate:>7.2f} us/update")


if __name__ == "__main__":
    main()
