"""A local L2 order book of one series, and the parsed depth message that feeds it.

    L2Book        bids and asks: price -> size; snapshot, delta, best, top-N, crossed
                  (what it returns is exact Decimals)
    BookUpdate    one exchange depth message as the wire modules parse it (a full snapshot
                  or a delta of absolute sizes) with the exchange's sequence numbers
    TextLevels    one side of a parsed message on the fast path: exact Decimal prices and
                  the exchange's checked size texts; reads as exact (price, size) Levels
    text_levels, text_sides, text_rows  price and size texts as a typed decoder returns
                  them -> TextLevels, or None (the caller's checked path names the culprit)
    ordered_sides the levels of a full book sent best first (Hyperliquid) -> TextLevels,
                  order verified, taken by the book without sorting
    parse_levels  [[price, size, ...], ...] -> exact (price, size) pairs, checked
    load_depth_frame  a depth frame's JSON, exact (the wire modules' checked depth parsers)

Why sizes stay text: converting a text to a Decimal costs ~0.4 us here, as much as all the
rest of a level's work, and a book keeps 1000 levels a side of which a sample reads 20.
The wire modules decode frames with typed msgspec decoders (numbers checked as ints,
prices and sizes kept as their texts); prices become Decimals through a bounded cache (a
book repeats its prices: the side needs them ordered), sizes are checked against a
grammar (`SIZE_GRAMMAR`: plain decimals, no leading zero, under 10^30) and stored as
text; `top`, `best_bid` and `best_ask` convert the sizes they return. A size the grammar
refuses ("1e-3", "00.5") goes the checked way (exact Decimals, as before). The depth
Structs are `gc=False` (a decoded frame holds no cycle; untracked, Hyperliquid's 40
levels decode ~17% faster).

The per-level loops are compiled (`_levels.c`, a C extension built when Kirby is
installed): checking a size, looking a price up, verifying an order and storing a level
cost 0.2-0.3 us each as Python bytecode, more than the rest of a 20- or 40-level message
together. They do the same steps through the same objects (the price cache, the side's
dict, `heapq.heappush`, Decimal comparisons); what they decide and every error message
stay here. Measured in bench/README.md "Issue 15: order books".

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
of order is refused, never sorted), and the book takes an `ordered` side as sent: the
price list reversed or kept, the sizes kept in a list aligned with it, the dict built
only when a delta or a read of sizes needs it.

Invariants: every stored size is > 0 (a delta's size 0 deletes the level; deleting a level
the book does not hold is normal, Binance says so); a stored size is a Decimal or a text
of `SIZE_GRAMMAR` (exact either way); prices of a side are unique (Decimal equality:
"100.10" and "100.1" are one level). The book checks no sequence: the integrity rules of each
exchange (kirby_core.books.integrity) decide what reaches it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from heapq import heapify, heappop, heappush, nlargest, nsmallest
from typing import Any, NamedTuple, overload

from kirby_core.errors import ExchangeProtocolError

try:
    from kirby_core.books import _levels
except ImportError as exc:  # a source tree used without installing it
    raise ImportError(
        "kirby_core.books._levels (compiled from _levels.c) is not built: run `make install` "
        "or `pip install -e .` (it needs a C compiler and Python's headers)"
    ) from exc

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

SIZE_GRAMMAR = r"(?:0|[1-9][0-9]{0,29})(?:\.[0-9]{1,30})?"
"""The sizes kept as text (checked by `_levels`, compiled): below 10^30, at most 30
decimals, no sign, exponent, space or leading zero, so a zero is written "0" or "0." and
zeros: one of `ZERO_TEXTS`."""
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
    """Both sides of a message: `text_levels` of each, or None."""
    if len(bid_prices) != len(bid_sizes) or len(ask_prices) != len(ask_sizes):
        return None
    if not _levels.plain_sizes(bid_sizes, ask_sizes):
        return None
    try:
        return (
            TextLevels(_levels.prices(bid_prices, _PRICES), bid_sizes),
            TextLevels(_levels.prices(ask_prices, _PRICES), ask_sizes),
        )
    except (InvalidOperation, TypeError, ValueError):
        return None


def text_rows(
    bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]
) -> tuple[TextLevels, TextLevels] | None:
    """`[[price, size, ...], ...]` texts of each side (extra columns ignored) ->
    `TextLevels` of each, or None (a short row, or what `text_sides` refuses)."""
    try:
        bid_side, ask_side = _levels.rows(bids, _PRICES), _levels.rows(asks, _PRICES)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if bid_side is None or ask_side is None:
        return None
    return TextLevels(*bid_side), TextLevels(*ask_side)


def ordered_sides(
    bids: Sequence[object], asks: Sequence[object], price: str, size: str
) -> tuple[TextLevels, TextLevels] | None:
    """A full book sent best first (Hyperliquid's `l2Book`), each level an object with the
    texts `price` and `size` as attributes: `TextLevels` of each side, `ordered`, or None
    unless the bid prices are strictly descending and the ask prices strictly ascending
    (a side out of order is refused, never sorted silently: the caller's checked path
    names it) and every level reads as `text_levels` would keep it."""
    try:
        bid_side = _levels.ordered(bids, price, size, _PRICES, True)
        ask_side = _levels.ordered(asks, price, size, _PRICES, False)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if bid_side is None or ask_side is None:
        return None
    return TextLevels(*bid_side, ordered=True), TextLevels(*ask_side, ordered=True)


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

    __slots__ = ("_heap", "_levels", "_prices", "_sizes", "bid")

    def __init__(self, bid: bool) -> None:
        self.bid = bid
        self._levels: dict[Decimal, Size] | None = {}
        self._heap: list[Decimal] = []
        self._prices: list[Decimal] = []  # ascending; the ordered form only
        self._sizes: Sequence[Size] = ()  # aligned with `_prices`; the ordered form only

    @property
    def levels(self) -> dict[Decimal, Size]:
        levels = self._levels
        if levels is None:
            levels = self._levels = dict(zip(self._prices, self._sizes, strict=True))
            self._prices, self._sizes = [], ()
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
            self._prices = levels.prices[::-1] if self.bid else levels.prices
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
        self._prices, self._sizes = [], ()
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
        # a deleted level stays in the heap until it reaches its top (`_Side.best`)
        for side, changes in ((self._bids, bids), (self._asks, asks)):
            levels, heap = side.levels, side._heap
            negated = _NEGATED if side.bid else None
            if type(changes) is TextLevels:  # the loop compiled: `_levels.apply`
                _levels.apply(levels, heap, changes.prices, changes.sizes, ZERO_TEXTS, negated)
            else:
                for price, size in changes:
                    if size:
                        if price not in levels:
                            heappush(heap, price if negated is None else negated[price])
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
