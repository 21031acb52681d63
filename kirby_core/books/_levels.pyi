"""The per-level work of a depth message, compiled (`_levels.c`; book.py's fast path).

None means "not on the fast path" (a size that is no `SIZE_GRAMMAR` text, a short row, a
missing attribute, a side out of order): book.py's caller then goes the checked way,
which names the culprit. A price the cache refuses raises what the cache raises."""

from collections.abc import Mapping, Sequence
from decimal import Decimal

def plain_sizes(*sizes: list[str]) -> bool:
    """Every text of every list a `SIZE_GRAMMAR` text."""

def prices(texts: Sequence[str], cache: Mapping[str, Decimal]) -> list[Decimal]:
    """`cache[text]` of each text."""

def rows(
    rows: Sequence[Sequence[str]], cache: Mapping[str, Decimal]
) -> tuple[list[Decimal], list[str]] | None:
    """The prices (`cache[row[0]]`) and the plain size texts (`row[1]`) of
    `[price, size, ...]` rows (lists or tuples)."""

def ordered(
    rows: Sequence[object], price: str, size: str, cache: Mapping[str, Decimal], descending: bool
) -> tuple[list[Decimal], list[str]] | None:
    """The prices (`cache[row.<price>]`) and the plain size texts (`row.<size>`) of rows
    whose prices are strictly descending (or ascending): plain price texts are compared as
    numbers written out, any other pair as their Decimals."""

def apply(
    levels: dict[Decimal, Decimal | str],
    heap: list[Decimal],
    prices: list[Decimal],
    sizes: list[str],
    zero: frozenset[str],
    negated: Mapping[Decimal, Decimal] | None,
) -> None:
    """Each level's size set, a size in `zero` deleting the level; a price new to `levels`
    pushed on `heap` (`heapq.heappush`), as `negated[price]` where `negated` is given."""
