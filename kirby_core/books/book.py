"""A local L2 order book of one series, and the parsed depth message that feeds it.

    L2Book        bids and asks: price -> size; snapshot, delta, best, top-N, crossed
                  (what it returns is exact Decimals)
    BookUpdate    one exchange depth message as the wire modules parse it (a full snapshot
                  or a delta of absolute sizes) with the exchange's sequence numbers
    TextLevels    one side of a parsed message on the fast path: exact Decimal prices and
                  the exchange's checked size texts; reads as exact (price, size) Levels
    text_levels, text_sides, text_rows  price and size texts as a typed decoder returns
                  them -> TextLevels, or None (the caller's checked path names the culprit)
    ordered_sides text_sides of a full book sent best first (Hyperliquid): order verified,
                  prices of a repeated side remembered, taken by the book without sorting
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

A full book sent best first (Hyperliquid's `l2Book`, every half second) goes through
`ordered_sides`: each side's order is verified while its prices are looked up (a side out
of order is refused, never sorted), a side whose price texts equal its series' previous
side reuses that side's price list, and the book takes an `ordered` side as sent: the
price list reversed or copied, the sizes kept in a list aligned with it, the dict built
only when a delta or a read of sizes needs it.

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
from operator import gt, itemgetter, lt
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
    Levels, converted on the first read; the book applies the texts without reading it.
    `ordered`: the prices are strictly best first (bids descending, asks ascending), as
    `ordered_sides` verified; a book takes such a snapshot side without sorting it."""

    __slots__ = ("_exact", "ordered", "prices", "sizes")

    def __init__(self, prices: list[Decimal], sizes: list[str], ordered: bool = False) -> None:
        self.prices = prices
        self.sizes = sizes
        self.ordered = ordered
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
    if not _plain_sizes(bid_prices, bid_sizes, ask_prices, ask_sizes):
        return None
    try:
        return (
            TextLevels(list(map(_PRICE, bid_prices)), bid_sizes),
            TextLevels(list(map(_PRICE, ask_prices)), ask_sizes),
        )
    except (InvalidOperation, TypeError, ValueError):
        return None


def _plain_sizes(
    bid_prices: Sequence[object],
    bid_sizes: list[str],
    ask_prices: Sequence[object],
    ask_sizes: list[str],
) -> bool:
    """One price a size on each side, and every size a text of `SIZE_GRAMMAR` (one regular
    expression over all of them: a call costs more than a side's levels)."""
    count = len(bid_sizes) + len(ask_sizes)
    if len(bid_prices) != len(bid_sizes) or len(ask_prices) != len(ask_sizes):
        return False
    if not count:
        return True
    joined = ",".join(bid_sizes + ask_sizes)
    # the count: a size text holding a comma would read as two
    return _SIZE_TEXTS.fullmatch(joined) is not None and joined.count(",") == count - 1


class _LastSides(dict[str, tuple[Sequence[str], list[Decimal]]]):
    """Per series, the price texts of its last side sent best first and their exact prices,
    verified strictly in one direction (`compare(price, next price)` for every neighbour).
    A full-book push (Hyperliquid, every half second) repeats the prices of the previous
    one while the market stands: then one comparison of the texts replaces a lookup and a
    comparison a level, and the book is handed the same list, which it recognises (no
    sort, no key comparison). Measured against a global memo of every side seen (a tuple
    of the texts as its key): ~6 us a push slower when the prices move, building and
    hashing the tuples. Bounded: emptied at `SIZE` series."""

    SIZE = 10_000

    def __init__(self, compare: Any) -> None:
        super().__init__()
        self.compare = compare

    def prices(self, series: str, texts: Sequence[str]) -> list[Decimal] | None:
        last = self.get(series)
        if last is not None and last[0] == texts:
            return last[1]
        prices = list(map(_PRICE, texts))  # InvalidOperation, TypeError, ValueError
        if not all(map(self.compare, prices, prices[1:])):
            return None  # the caller's checked path names it
        if last is None and len(self) >= self.SIZE:
            self.clear()
        self[series] = (list(texts), prices)  # a copy: the caller's list may change
        return prices


_LAST_BIDS = _LastSides(gt)
_LAST_ASKS = _LastSides(lt)


def ordered_sides(
    series: str,
    bid_prices: Sequence[str],
    bid_sizes: list[str],
    ask_prices: Sequence[str],
    ask_sizes: list[str],
) -> tuple[TextLevels, TextLevels] | None:
    """`text_sides` of a full book of `series` sent best first (Hyperliquid): bid prices
    strictly descending, ask prices strictly ascending, verified (a side out of order is
    None, never sorted silently: the caller's checked path refuses it); the `TextLevels`
    are `ordered`, and a side with the price texts of the series' previous one shares its
    prices list."""
    if not _plain_sizes(bid_prices, bid_sizes, ask_prices, ask_sizes):
        return None
    try:
        bids = _LAST_BIDS.prices(series, bid_prices)
        asks = _LAST_ASKS.prices(series, ask_prices)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if bids is None or asks is None:
        return None
    return TextLevels(bids, bid_sizes, True), TextLevels(asks, ask_sizes, True)


def text_rows(
    bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]
) -> tuple[TextLevels, TextLevels] | None:
    """`[[price, size, ...], ...]` texts of each side (extra columns ignored) ->
    `text_sides`."""
    # itemgetter over the rows: measured a little ahead of zip(*rows); the price texts go
    # straight to the price cache (no list of them)
    try:
        bid_sizes, ask_sizes = list(map(_SECOND, bids)), list(map(_SECOND, asks))
        if not _plain_sizes(bids, bid_sizes, asks, ask_sizes):
            return None
        return (
            TextLevels(list(map(_PRICE, map(_FIRST, bids))), bid_sizes),
            TextLevels(list(map(_PRICE, map(_FIRST, asks))), ask_sizes),
        )
    except (IndexError, InvalidOperation, TypeError, ValueError):  # IndexError: a short row
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
    """`prices` ascending, always; the sizes either in the dict `levels` (price -> size) or,
    after an `ordered` snapshot, in a list aligned with `prices` until something needs the
    dict (a delta, a read of sizes): a full-book push (Hyperliquid, every half second) is
    then taken without hashing a level, and a sample reads it once a second."""

    __slots__ = ("_levels", "_sizes", "_source", "prices")

    def __init__(self) -> None:
        self._levels: dict[Decimal, Size] | None = {}
        self._sizes: Sequence[Size] = ()  # aligned with `prices` while `_levels` is None
        self._source: list[Decimal] | None = None  # the ordered prices `prices` came from
        self.prices: list[Decimal] = []  # ascending

    @property
    def levels(self) -> dict[Decimal, Size]:
        levels = self._levels
        if levels is None:
            levels = self._levels = dict(zip(self.prices, self._sizes, strict=True))
            self._sizes = ()
        return levels

    def edited(self) -> dict[Decimal, Size]:
        """The dict, for a delta to change (with `prices`): no longer an ordered snapshot."""
        self._source = None
        return self.levels

    def replace(self, levels: Iterable[Level], descending: bool) -> None:
        if type(levels) is TextLevels and levels.ordered and ZERO_TEXTS.isdisjoint(levels.sizes):
            source = levels.prices
            if source is not self._source:  # the same list: the same prices, still sorted
                self.prices = source[::-1] if descending else source[:]
                self._source = source
            self._sizes = levels.sizes[::-1] if descending else levels.sizes
            self._levels = None
            return
        new: dict[Decimal, Size]
        if type(levels) is TextLevels:
            pairs = zip(levels.prices, levels.sizes, strict=True)
            if ZERO_TEXTS.isdisjoint(levels.sizes):
                new = dict(pairs)
            else:
                new = {price: size for price, size in pairs if size not in ZERO_TEXTS}
        else:
            new = {price: size for price, size in levels if size}
        # the same prices as before (a push whose sizes changed): still sorted
        if new.keys() != self.levels.keys():
            self.prices = sorted(new)
        self._levels = new
        self._sizes = ()
        self._source = None


class L2Book:
    """The book of one series. Not thread-safe; one owner feeds it."""

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids = _Side()
        self._asks = _Side()

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Every level replaced; levels of size 0 are not kept."""
        self._bids.replace(bids, True)
        self._asks.replace(asks, False)

    def apply_delta(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Each level's absolute size set; size 0 deletes the level."""
        # `_Side.set` inlined, and the loop written twice (texts, Decimals): a method call
        # or a type test per level costs as much as the level's work
        zero = ZERO_TEXTS
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            levels, prices = side.edited(), side.prices
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
        return len(self._bids.prices) + len(self._asks.prices)


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
