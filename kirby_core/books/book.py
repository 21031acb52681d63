"""A local L2 order book of one series, and the parsed depth message that feeds it.

    L2Book        bids and asks: price -> size, exact Decimals; snapshot, delta, best,
                  top-N, crossed
    BookUpdate    one exchange depth message as the wire modules parse it (a full snapshot
                  or a delta of absolute sizes) with the exchange's sequence numbers
    parse_levels  [[price, size, ...], ...] -> exact (price, size) pairs, checked
    load_depth_frame  a depth frame's JSON, exact (the wire modules' depth parsers use both)

Each side is a dict (price -> size) plus the sorted list of its prices, kept sorted by
`bisect` on the insertion or removal of a level only; a size change of an existing level
(most deltas) is one dict store. Measured (`python -m bench.books.sides`, bench/README.md
"Issue 15: order books") on a 1000-level book with best/crossed read after every delta:
1.6x `sortedcontainers.SortedDict`, 2.4x a dict sorted only for every 10th top-N read.

Invariants: every stored size is > 0 (a delta's size 0 deletes the level; deleting a level
the book does not hold is normal, Binance says so); prices of a side are unique (Decimal
equality: "100.10" and "100.1" are one level). The book checks no sequence: the integrity
rules of each exchange (kirby_core.books.integrity) decide what reaches it.
"""

from __future__ import annotations

import json
from bisect import bisect_left, insort
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from kirby_core.errors import ExchangeProtocolError

Level = tuple[Decimal, Decimal]
"""(price, size); size in the exchange's own unit (base coin, or contracts on OKX swaps)."""

_LIMIT = Decimal("1e30")
_DECODER = json.JSONDecoder(parse_float=Decimal)


class _Exact(dict[Any, Decimal]):
    """The checked Decimal of each price (or size) text seen. Books repeat the same levels,
    and a dict hit costs a fraction of `Decimal(text)` and its checks, so each text is
    converted and checked once. Bounded: emptied at `SIZE` entries."""

    SIZE = 100_000

    def __init__(self, zero_allowed: bool) -> None:
        super().__init__()
        self.zero_allowed = zero_allowed

    def __missing__(self, text: Any) -> Decimal:
        value = Decimal(text)  # InvalidOperation, TypeError for what is no number
        low = value >= 0 if self.zero_allowed else value > 0  # NaN: InvalidOperation
        if not (low and value < _LIMIT):
            raise ValueError(text)
        if len(self) >= self.SIZE:
            self.clear()
        self[text] = value
        return value


_PRICES = _Exact(zero_allowed=False)
_SIZES = _Exact(zero_allowed=True)

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
        # `_Side.set` inlined: a method call per level costs as much as the level's work
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            levels, prices = side.levels, side.prices
            for price, size in changes:
                if size:
                    if price not in levels:
                        insort(prices, price)
                    levels[price] = size
                elif price in levels:
                    del levels[price]
                    del prices[bisect_left(prices, price)]

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
    order counts) are ignored. A price must be > 0, a size >= 0, both below 10^30 (so
    finite; NaN fails every comparison)."""
    try:
        prices, sizes = _PRICES, _SIZES
        levels = tuple([(prices[row[0]], sizes[row[1]]) for row in rows])  # type: ignore[attr-defined]
        if levels or isinstance(rows, list):
            return levels
    except (InvalidOperation, TypeError, ValueError, IndexError, KeyError):
        pass
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: field {name!r} must be a list, got {rows!r:.200}")
    return _explain(rows, name, where)


def load_depth_frame(raw: str | bytes, where: str) -> Any:
    """A JSON depth frame, non-integer numbers as exact Decimals (`feeds.load_frame`'s rule)
    through one shared decoder: `json.loads(raw, parse_float=...)` builds a decoder per
    call, which costs as much as decoding a small frame."""
    try:
        return _DECODER.decode(raw if isinstance(raw, str) else raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExchangeProtocolError(f"{where}: frame is not JSON ({exc}): {raw!r:.200}") from exc


def _explain(rows: list[Any], name: str, where: str) -> tuple[Level, ...]:
    for row in rows:
        try:
            price, size = Decimal(row[0]), Decimal(row[1])
            good = 0 < price < _LIMIT and 0 <= size < _LIMIT
        except (InvalidOperation, TypeError, ValueError, IndexError, KeyError):
            good = False
        if not good:
            raise ExchangeProtocolError(
                f"{where}: {name!r} level {row!r:.120} is not [price > 0, size >= 0] "
                "as decimal strings"
            )
    raise ExchangeProtocolError(f"{where}: {name!r} levels unreadable: {rows!r:.200}")
