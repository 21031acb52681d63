"""Local L2 order books and each exchange's integrity rules (pure, no I/O): `book.py`
holds the book and the parsed depth message, `integrity.py` the rules per exchange."""

from kirby_core.books.book import (
    DEFAULT_DEPTH,
    BookUpdate,
    L2Book,
    Level,
    TextLevels,
    parse_levels,
    text_levels,
    text_rows,
    text_sides,
)
from kirby_core.books.integrity import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BybitBook,
    CoinbaseConnection,
    Counters,
    Gap,
    HyperliquidBook,
    OkxBook,
    Outcome,
    SeriesBook,
    series_book,
)

__all__ = [
    "DEFAULT_DEPTH",
    "BinanceFuturesBook",
    "BinanceSpotBook",
    "BookUpdate",
    "BybitBook",
    "CoinbaseConnection",
    "Counters",
    "Gap",
    "HyperliquidBook",
    "L2Book",
    "Level",
    "OkxBook",
    "Outcome",
    "SeriesBook",
    "TextLevels",
    "parse_levels",
    "series_book",
    "text_levels",
    "text_rows",
    "text_sides",
]
