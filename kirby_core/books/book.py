"""A local L2 order book of one series, and the parsed depth message that feeds it.

    L2Book        bids and asks: price -> size; snapshot, delta, best, top-N, crossed
                  (what it returns is exact Decimals)
    BookUpdate    one exchange depth message as the wire modules parse it (a full snapshot
                  or a delta of absolute sizes) with the exchange's sequence numbers
    TextLevels    one side of a parsed message on the fast path: exact Decimal prices and
                  the exchange's checked size texts; reads as exact (price, size) Levels
    text_levels, text_sides, text_rows  price and size texts as a typed decoder returns
                  them -> TextLevels, or None (the caller's checked path names the culprit)
    parse_levels  [[price, size, ...], ...] -> exact (price, size) pairs, checked
    load_depth_frame  a depth frame's JSON, exact (the wire modules' checked depth parsers)

Why sizes stay text: converting a text to a Decimal costs ~0.4 us here, as much as all the
rest of a level's work, and a book keeps 1000 levels a side of which a sample reads 20.
The wire modules decode frames with typed msgspec decoders (numbers checked as ints,
prices and sizes kept as their texts); prices become Decimals through a bounded cache (a
book repeats its prices: the side needs them ordered), sizes are checked against a
grammar (`SIZE_GRAMMAR`: plain decimals, no leading zero, under 10^30) in one regular
expression a message and stored as text; `top`, `best_bid` and `best_ask` convert the sizes
they return. A size the grammar refuses ("1e-3", "00.5") goes the checked way (exact
Decimals, as before). The depth Structs are `gc=False` (a decoded frame holds no cycle;
untracked, Hyperliquid's 40 levels decode ~17% faster). Measured in bench/README.md
"Issue 15: order books".

Each side is a dict (price -> size) plus the sorted list of its prices, kept sorted by
`bisect` on the insertion or removal of a level only; a size change of an existing level
(most deltas) is one dict store; a snapshot with the prices of the side it replaces (a
Hyperliquid push whose prices did not move) keeps the sorted list. Measured (`python -m
bench.books.sides`) on a 1000-level book with best/crossed read after every delta: 1.6x
`sortedcontainers.SortedDict`, 2.4x a dict sorted only for every 10th top-N read.

Invariants: every stored size is > 0 (a delta's size 0 deletes the level; deleting a level
the book does not hold is normal, Binance says so); a stored size is a Decimal or a text
of `SIZE_GRAMMAR` (exact either way); prices of a side are unique (Decimal equality:
"100.10" and "100.1" are one level). The book checks no sequence: the integrity rules of each
exchange (kirby_core.books.integrity) decide what reaches it.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any, NamedTuple, overload

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
_PRICE = _PRICES.__getitem__
_FIRST, _SECOND = itemgetter(0), itemgetter(1)

SIZE_GRAMMAR = r"(?:0|[1-9][0-9]{0,29}+)(?:\.[0-9]{1,30}+)?"
"""The sizes kept as text: below 10^30, at most 30 decimals, no sign, exponent, space or
leading zero, so a zero is written "0" or "0." and zeros: one of `ZERO_TEXTS`.
(Possessive quantifiers: the engine keeps no backtracking state, measured 1.3-2.5x.)"""
_SIZE_TEXTS = re.compile(f"{SIZE_GRAMMAR}(?:,{SIZE_GRAMMAR})*+")
ZERO_TEXTS = frozenset(["0", *("0." + "0" * n for n in range(1, 31))])


class TextLevels(Sequence[Level]):
    """One side of a depth message: `prices` exact, `sizes` texts of `SIZE_GRAMMAR` (one a
    level, in the exchange's order). Read as a sequence it is the exact (price, size)
    Levels, converted on the first read; the book applies the texts without reading it."""

    __slots__ = ("_exact", "prices", "sizes")

    def __init__(self, prices: list[Decimal], sizes: list[str]) -> None:
        self.prices = prices
        self.sizes = sizes
        self._exact: tuple[Level, ...] | None = None

    def exact(self) -> tuple[Level, ...]:
        if self._exact is None:
            self._exact = tuple(zip(self.prices, map(Decimal, self.sizes), strict=True))
        return self._exact

    @overload
    def __getitem__(self, index: int) -> Level: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Level, ...]: ...
    def __getitem__(self, index: int | slice) -> Level | tuple[Level, ...]:
        return self.exact()[index]

    def __len__(self) -> int:
        return len(self.prices)

    def __iter__(self) -> Iterator[Level]:
        return iter(self.exact())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextLevels):
            other = other.exact()
        return isinstance(other, tuple) and self.exact() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TextLevels({self.exact()!r})"


def text_levels(prices: Sequence[str], sizes: list[str]) -> TextLevels | None:
    """Price texts and size texts (one each a level) -> `TextLevels`, or None if a price is
    no decimal > 0 below 10^30, a size no `SIZE_GRAMMAR`, or the counts differ."""
    sides = text_sides(prices, sizes, (), [])
    return None if sides is None else sides[0]


def text_sides(
    bid_prices: Sequence[str], bid_sizes: list[str], ask_prices: Sequence[str], ask_sizes: list[str]
) -> tuple[TextLevels, TextLevels] | None:
    """Both sides of a message at once (one check of all its sizes: a call and a regular
    expression cost more than a side's levels): `text_levels` of each, or None."""
    count = len(bid_sizes) + len(ask_sizes)
    if len(bid_prices) != len(bid_sizes) or len(ask_prices) != len(ask_sizes):
        return None
    try:
        if count:
            joined = ",".join(bid_sizes + ask_sizes)
            # the count: a size text holding a comma would read as two
            if _SIZE_TEXTS.fullmatch(joined) is None or joined.count(",") != count - 1:
                return None
        return (
            TextLevels(list(map(_PRICE, bid_prices)), bid_sizes),
            TextLevels(list(map(_PRICE, ask_prices)), ask_sizes),
        )
    except (InvalidOperation, TypeError, ValueError):
        return None


def text_rows(
    bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]
) -> tuple[TextLevels, TextLevels] | None:
    """`[[price, size, ...], ...]` texts of each side (extra columns ignored) ->
    `text_sides`."""
    try:  # itemgetter over the rows: measured a little ahead of zip(*rows)
        return text_sides(
            list(map(_FIRST, bids)),
            list(map(_SECOND, bids)),
            list(map(_FIRST, asks)),
            list(map(_SECOND, asks)),
        )
    except IndexError:  # a row of fewer than two columns
        return None


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
    bids: Sequence[Level]
    """Exact Levels: a tuple, or `TextLevels` (the wire modules' fast path)."""
    asks: Sequence[Level]
    sequence: int
    previous: int | None
    first: int | None
    time: datetime
    """The exchange's event time (UTC); the receive time where it sends none."""


Size = Decimal | str
"""A stored size: an exact Decimal, or a text of `SIZE_GRAMMAR` (converted when read)."""


class _Side:
    __slots__ = ("levels", "prices")

    def __init__(self) -> None:
        self.levels: dict[Decimal, Size] = {}
        self.prices: list[Decimal] = []  # ascending

    def replace(self, levels: Iterable[Level]) -> None:
        new: dict[Decimal, Size]
        if type(levels) is TextLevels:
            pairs = zip(levels.prices, levels.sizes, strict=True)
            if ZERO_TEXTS.isdisjoint(levels.sizes):
                new = dict(pairs)
            else:
                new = {price: size for price, size in pairs if size not in ZERO_TEXTS}
        else:
            new = {price: size for price, size in levels if size}
        # the same prices as before (a Hyperliquid push whose sizes changed): still sorted
        if new.keys() != self.levels.keys():
            self.prices = sorted(new)
        self.levels = new


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
        # `_Side.set` inlined, and the loop written twice (texts, Decimals): a method call
        # or a type test per level costs as much as the level's work
        zero = ZERO_TEXTS
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            levels, prices = side.levels, side.prices
            if type(changes) is TextLevels:
                for price, text in zip(changes.prices, changes.sizes, strict=True):
                    if text not in zero:
                        if price not in levels:
                            insort(prices, price)
                        levels[price] = text
                    elif price in levels:
                        del levels[price]
                        del prices[bisect_left(prices, price)]
                continue
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
        return price, Decimal(self._bids.levels[price])

    @property
    def best_ask(self) -> Level | None:
        prices = self._asks.prices
        if not prices:
            return None
        price = prices[0]
        return price, Decimal(self._asks.levels[price])

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
            tuple((p, Decimal(bids.levels[p])) for p in bid_prices),
            tuple((p, Decimal(asks.levels[p])) for p in ask_prices),
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
