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

Each side is a dict (price -> size) plus a heap of its prices best first (the bids' prices
negated), cleaned lazily: a size change of an existing level (most deltas) is one dict
store, a new level a store and a push, a deleted level one dict delete (its price leaves
the heap when it reaches the top, or when the heap, holding more than twice the levels, is
rebuilt); the best of each side, read after every message for the crossed check, is the
heap's top once the deleted prices above it are popped; a top-N read (a sample, once a
second) takes the N best of the dict. Measured against the sorted price list kept by
`bisect` it replaced (the insert and the delete each bisect ~10 Decimal comparisons and
move the list): 0.78-0.92x the time of applying Binance's diffs (20 levels, 1850-level
book) in alternating rounds, the other exchanges' within noise; `python -m
bench.books.sides` compares both with `sortedcontainers.SortedDict` and plain dicts.

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
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from heapq import heapify, heappop, heappush, nlargest, nsmallest
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


class _Negated(dict[Decimal, Decimal]):
    """-price of each bid price seen and the price of each negated one (the bids' heap is a
    min-heap of negated prices): a dict hit costs a third of negating a Decimal, and
    returns the price object the side's dict holds (its hash computed). Bounded: emptied
    at `SIZE` entries."""

    SIZE = 200_000

    def __missing__(self, price: Decimal) -> Decimal:
        if len(self) >= self.SIZE:
            self.clear()
        negated = self[price] = -price
        self[negated] = price
        return negated


_NEGATED = _Negated()


class _Side:
    """One side of a book, in one of two forms.

    Levels (`_levels` is a dict, price -> size): `_heap` is a heap of the side's prices
    best first (asks: the prices; bids: the prices negated), which may also hold prices
    since deleted or pushed twice: it is cleaned at its top when the best is read (a
    price whose level is gone is popped) and rebuilt when it holds more than twice the
    levels. A level's new size is one dict store, a new level a dict store and a push, a
    deleted level one dict delete.

    Ordered (`_levels` is None, after an `ordered` snapshot): `_prices` ascending and
    `_sizes` aligned with them, as sent: a full-book push (Hyperliquid, every half second)
    is taken without hashing a level. The levels form is built when something needs the
    dict (a delta; a read of sizes)."""

    __slots__ = ("_heap", "_levels", "_prices", "_sizes", "_source", "bid")

    def __init__(self, bid: bool) -> None:
        self.bid = bid
        self._levels: dict[Decimal, Size] | None = {}
        self._heap: list[Decimal] = []
        self._prices: list[Decimal] = []  # ascending; the ordered form only
        self._sizes: Sequence[Size] = ()  # aligned with `_prices`; the ordered form only
        self._source: list[Decimal] | None = None  # the ordered prices `_prices` came from

    @property
    def levels(self) -> dict[Decimal, Size]:
        levels = self._levels
        if levels is None:
            levels = self._levels = dict(zip(self._prices, self._sizes, strict=True))
            self._prices, self._sizes, self._source = [], (), None
            self._heapify()
        return levels

    def _heapify(self) -> None:
        assert self._levels is not None
        heap = list(map(_NEGATED.__getitem__, self._levels)) if self.bid else list(self._levels)
        heapify(heap)
        self._heap = heap

    def best(self) -> Decimal | None:
        levels = self._levels
        if levels is None:
            prices = self._prices
            return (prices[-1] if self.bid else prices[0]) if prices else None
        heap = self._heap
        if self.bid:
            price = _NEGATED.__getitem__
            while heap and price(heap[0]) not in levels:
                heappop(heap)
            return price(heap[0]) if heap else None
        while heap and heap[0] not in levels:
            heappop(heap)
        return heap[0] if heap else None

    def top(self, depth: int) -> tuple[Level, ...]:
        """The best `depth` levels, best first."""
        levels = self._levels
        if levels is None:
            if self.bid:
                stop = -depth - 1
                pairs = zip(self._prices[:stop:-1], self._sizes[:stop:-1], strict=True)
            else:
                pairs = zip(self._prices[:depth], self._sizes[:depth], strict=True)
            return tuple((price, Decimal(size)) for price, size in pairs)
        prices = (nlargest if self.bid else nsmallest)(depth, levels)
        return tuple((price, Decimal(levels[price])) for price in prices)

    def __len__(self) -> int:
        levels = self._levels
        return len(self._prices) if levels is None else len(levels)

    def replace(self, levels: Iterable[Level]) -> None:
        if type(levels) is TextLevels and levels.ordered and ZERO_TEXTS.isdisjoint(levels.sizes):
            source = levels.prices
            if source is not self._source:  # the same list: the same prices, still sorted
                self._prices = source[::-1] if self.bid else source[:]
                self._source = source
            self._sizes = levels.sizes[::-1] if self.bid else levels.sizes
            self._levels = None
            self._heap = []
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
        self._levels = new
        self._prices, self._sizes, self._source = [], (), None
        self._heapify()


class L2Book:
    """The book of one series. Not thread-safe; one owner feeds it."""

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids = _Side(bid=True)
        self._asks = _Side(bid=False)

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Every level replaced; levels of size 0 are not kept."""
        self._bids.replace(bids)
        self._asks.replace(asks)

    def apply_delta(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Each level's absolute size set; size 0 deletes the level."""
        # the loop written out per side and per form (texts, Decimals): a method call or a
        # type test per level costs as much as the level's work; a deleted level stays in
        # the heap until it reaches its top (`_Side.best`)
        zero = ZERO_TEXTS
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            levels, heap = side.levels, side._heap
            key = _NEGATED.__getitem__ if side.bid else None
            if type(changes) is TextLevels:
                for price, text in zip(changes.prices, changes.sizes, strict=True):
                    if text not in zero:
                        if price not in levels:
                            heappush(heap, key(price) if key else price)
                        levels[price] = text
                    elif price in levels:
                        del levels[price]
                if len(heap) > 2 * len(levels) + 64:  # mostly prices deleted since
                    side._heapify()
                continue
            for price, size in changes:
                if size:
                    if price not in levels:
                        heappush(heap, key(price) if key else price)
                    levels[price] = size
                elif price in levels:
                    del levels[price]
            if len(heap) > 2 * len(levels) + 64:  # mostly prices deleted since
                side._heapify()

    def clear(self) -> None:
        self._bids = _Side(bid=True)
        self._asks = _Side(bid=False)

    @property
    def best_bid(self) -> Level | None:
        best = self._bids.top(1)
        return best[0] if best else None

    @property
    def best_ask(self) -> Level | None:
        best = self._asks.top(1)
        return best[0] if best else None

    @property
    def crossed(self) -> bool:
        """The best bid at or above the best ask: a book no exchange publishes, so a sign
        of a lost or misapplied update."""
        # read after every message: the levels form's heaps cleaned here, inline
        bids, asks = self._bids, self._asks
        bid_levels, ask_levels = bids._levels, asks._levels
        if bid_levels is None or ask_levels is None:
            bid, ask = bids.best(), asks.best()
            return bid is not None and ask is not None and bid >= ask
        bid_heap, ask_heap, price = bids._heap, asks._heap, _NEGATED.__getitem__
        while bid_heap and price(bid_heap[0]) not in bid_levels:
            heappop(bid_heap)
        while ask_heap and ask_heap[0] not in ask_levels:
            heappop(ask_heap)
        return bool(bid_heap) and bool(ask_heap) and price(bid_heap[0]) >= ask_heap[0]

    def top(self, depth: int = DEFAULT_DEPTH) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """(bids best first, asks best first), at most `depth` levels each."""
        if depth < 1:
            raise ValueError(f"book depth must be at least 1, got {depth}")
        return self._bids.top(depth), self._asks.top(depth)

    def __len__(self) -> int:
        """Levels held, both sides."""
        return len(self._bids) + len(self._asks)


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
