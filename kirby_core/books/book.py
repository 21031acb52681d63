"""A local L2 order book of one series, and the parsed depth message that feeds it.

    L2Book        bids and asks: price -> size, exact Decimals; snapshot, delta, best,
                  top-N, crossed
    BookUpdate    one exchange depth message as the wire modules parse it (a full snapshot
                  or a delta of absolute sizes) with the exchange's sequence numbers
    parse_levels  [[price, size, ...], ...] -> exact (price, size) pairs, checked

Each side is a dict (price -> size) plus the sorted list of its prices, kept sorted by
`bisect` on the insertion or removal of a level only; a size change of an existing level
(most deltas) is one dict store. Measured on this machine against `sortedcontainers`'
SortedDict and against a dict sorted on demand (bench/README.md, "Issue 15: order
books"): at the depths exchanges send (20 to 1000 levels a side) the bisected list is the
fastest of the three for apply + best + crossed on every update.

Invariants: every stored size is > 0 (a delta's size 0 deletes the level; deleting a level
the book does not hold is normal, Binance says so); prices of a side are unique (Decimal
equality: "100.10" and "100.1" are one level). The book checks no sequence: the integrity
rules of each exchange (kirby_core.books.integrity) decide what reaches it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from kirby_core.errors import ExchangeProtocolError

Level = tuple[Decimal, Decimal]
"""(price, size); size in the exchange's own unit (base coin, or contracts on OKX swaps)."""

DEFAULT_DEPTH = 20
"""Levels a side a sampled snapshot keeps (issue 15: top-N, default 20)."""


class BookUpdate(NamedTuple):
    """One depth message of one series.

    `sequence`, `previous` and `first` are the exchange's own numbers, as its rules name
    them: Binance `u`, `pu` (futures only) and `U` (the REST snapshot: `lastUpdateId`),
    Bybit `u`, OKX `seqId` and `prevSeqId`, Coinbase the connection's `sequence_num`,
    Hyperliquid none (its `time` in ms stands in, for ordering only)."""

    symbol: str
    snapshot: bool
    """True: the levels replace the book; False: each level's size replaces that level's."""
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    sequence: int
    previous: int | None
    first: int | None
    time: datetime
    """The exchange's event time (UTC); the receive time where it sends none."""


class _Side:
    __slots__ = ("levels", "prices")

    def __init__(self) -> None:
        self.levels: dict[Decimal, Decimal] = {}
        self.prices: list[Decimal] = []  # ascending

    def replace(self, levels: Iterable[Level]) -> None:
        self.levels = {price: size for price, size in levels if size}
        self.prices = sorted(self.levels)

    def set(self, price: Decimal, size: Decimal) -> None:
        levels = self.levels
        if size:
            if price not in levels:
                insort(self.prices, price)
            levels[price] = size
        elif price in levels:
            del levels[price]
            prices = self.prices
            del prices[bisect_left(prices, price)]


class L2Book:
    """The book of one series. Not thread-safe; one owner feeds it."""

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids = _Side()
        self._asks = _Side()

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Every level replaced; levels of size 0 are not kept."""
        self._bids.replace(bids)
        self._asks.replace(asks)

    def apply_delta(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Each level's absolute size set; size 0 deletes the level."""
        side = self._bids
        for price, size in bids:
            side.set(price, size)
        side = self._asks
        for price, size in asks:
            side.set(price, size)

    def clear(self) -> None:
        self._bids = _Side()
        self._asks = _Side()

    @property
    def best_bid(self) -> Level | None:
        prices = self._bids.prices
        if not prices:
            return None
        price = prices[-1]
        return price, self._bids.levels[price]

    @property
    def best_ask(self) -> Level | None:
        prices = self._asks.prices
        if not prices:
            return None
        price = prices[0]
        return price, self._asks.levels[price]

    @property
    def crossed(self) -> bool:
        """The best bid at or above the best ask: a book no exchange publishes, so a sign
        of a lost or misapplied update."""
        bids, asks = self._bids.prices, self._asks.prices
        return bool(bids) and bool(asks) and bids[-1] >= asks[0]

    def top(self, depth: int = DEFAULT_DEPTH) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """(bids best first, asks best first), at most `depth` levels each."""
        if depth < 1:
            raise ValueError(f"book depth must be at least 1, got {depth}")
        bids, asks = self._bids, self._asks
        bid_prices = bids.prices[: -depth - 1 : -1]
        ask_prices = asks.prices[:depth]
        return (
            tuple((p, bids.levels[p]) for p in bid_prices),
            tuple((p, asks.levels[p]) for p in ask_prices),
        )

    def __len__(self) -> int:
        """Levels held, both sides."""
        return len(self._bids.levels) + len(self._asks.levels)


def parse_levels(rows: object, name: str, where: str) -> tuple[Level, ...]:
    """`[["97000.10", "1.5", ...], ...]` -> exact (price, size) pairs; extra columns (OKX's
    order counts) are ignored. A price must be finite and > 0, a size finite and >= 0."""
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: field {name!r} must be a list, got {rows!r:.200}")
    try:
        levels = tuple((Decimal(row[0]), Decimal(row[1])) for row in rows)
        for price, size in levels:
            if not (price > 0 and size >= 0 and price.is_finite() and size.is_finite()):
                break
        else:
            return levels
    except (InvalidOperation, TypeError, ValueError, IndexError, KeyError):
        pass
    return _explain(rows, name, where)


def check_level(price: Any, size: Any, name: str, where: str) -> Level:
    """One level given as two fields (Hyperliquid's px/sz, Coinbase's price_level and
    new_quantity), checked as `parse_levels` checks a row."""
    return parse_levels([[price, size]], name, where)[0]


def _explain(rows: list[Any], name: str, where: str) -> tuple[Level, ...]:
    for row in rows:
        try:
            price, size = Decimal(row[0]), Decimal(row[1])
            good = price > 0 and size >= 0 and price.is_finite() and size.is_finite()
        except (InvalidOperation, TypeError, ValueError, IndexError, KeyError):
            good = False
        if not good:
            raise ExchangeProtocolError(
                f"{where}: {name!r} level {row!r:.120} is not [price > 0, size >= 0] "
                "as decimal strings"
            )
    raise ExchangeProtocolError(f"{where}: {name!r} levels unreadable: {rows!r:.200}")
