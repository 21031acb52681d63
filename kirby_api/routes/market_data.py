"""GET /candles, /funding, /open-interest, /trades, /books: pages of one series in any of three
formats.

The handlers only resolve the series (in memory), build the window and hand over to
`kirby_api.pages`; errors are `kirby_api.errors`' business.
"""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import QueryParameter

from kirby_api.datasets import (
    SERVED_BOOKS,
    SERVED_CANDLES,
    SERVED_FUNDING,
    SERVED_OPEN_INTEREST,
    SERVED_TRADES,
)
from kirby_api.formats import (
    BooksPage,
    CandlesPage,
    Format,
    FundingPage,
    OpenInterestPage,
    TradesPage,
)
from kirby_api.pages import Pages
from kirby_api.routes.paths import SERIES_ERRORS, Coin, Exchange, Interval, MarketType, Quote
from kirby_api.series import SeriesCatalog
from kirby_api.window import TIME_ALLOWED, make_window

MAX_LIMIT = 5000

StartTime = Annotated[
    str | None,
    QueryParameter(
        description=f"Inclusive lower bound: {TIME_ALLOWED}. Without it the latest `limit` "
        "rows (below end_time) are returned.",
        examples=[Example(value="2024-05-01T00:00:00Z"), Example(value="1714521600")],
    ),
]
EndTime = Annotated[
    str | None,
    QueryParameter(
        description=f"Exclusive upper bound: {TIME_ALLOWED}.",
        examples=[Example(value="2024-05-02T00:00:00Z"), Example(value="1714608000000")],
    ),
]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Rows per page, 1 to 5000.")]
FormatParam = Annotated[
    Format,
    QueryParameter(
        description="json (default), csv or parquet; csv is written by PostgreSQL and streamed."
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        description="`next_cursor` or `prev_cursor` of an earlier page (also sent as the "
        "Kirby-Next-Cursor / Kirby-Prev-Cursor headers)."
    ),
]


_DESCRIPTION = (
    "Rows are always ascending in time. Without start_time (and without a cursor) the latest "
    "`limit` rows are returned; with it, the first `limit` rows from start_time on. Ranges are "
    "half-open: start_time <= time < end_time. Decimals are exact strings."
)


@get(
    "/candles/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}/{interval:str}",
    summary="Candles of a starlisting",
    description=_DESCRIPTION,
    responses=SERIES_ERRORS,
)
async def get_candles(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    interval: Interval,
    catalog: NamedDependency[SeriesCatalog],
    pages: NamedDependency[Pages],
    start_time: StartTime = None,
    end_time: EndTime = None,
    limit: Limit = 1000,
    format: FormatParam = "json",
    cursor: Cursor = None,
) -> CandlesPage:
    star = catalog.starlisting(exchange, coin, quote, market_type, interval)
    window = make_window(start_time, end_time, limit, cursor)
    # the annotation is the body OpenAPI documents; serve returns its Response
    return await pages.serve(SERVED_CANDLES, star, window, format)  # type: ignore[return-value]


@get(
    "/funding/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}",
    summary="Funding rates of a trading pair, one row per minute",
    description=_DESCRIPTION
    + " `settled_funding_rate` is the rate paid for the hour (funding history); "
    "`predicted_funding_rate` is the live, still-running rate of the current hour.",
    responses=SERIES_ERRORS,
)
async def get_funding(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    catalog: NamedDependency[SeriesCatalog],
    pages: NamedDependency[Pages],
    start_time: StartTime = None,
    end_time: EndTime = None,
    limit: Limit = 1000,
    format: FormatParam = "json",
    cursor: Cursor = None,
) -> FundingPage:
    pair = catalog.trading_pair(exchange, coin, quote, market_type)
    window = make_window(start_time, end_time, limit, cursor)
    # the annotation is the body OpenAPI documents; serve returns its Response
    return await pages.serve(SERVED_FUNDING, pair, window, format)  # type: ignore[return-value]


@get(
    "/open-interest/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}",
    summary="Open interest of a trading pair, one row per minute",
    description=_DESCRIPTION + " Open interest is in coins; notional = open interest x mark.",
    responses=SERIES_ERRORS,
)
async def get_open_interest(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    catalog: NamedDependency[SeriesCatalog],
    pages: NamedDependency[Pages],
    start_time: StartTime = None,
    end_time: EndTime = None,
    limit: Limit = 1000,
    format: FormatParam = "json",
    cursor: Cursor = None,
) -> OpenInterestPage:
    pair = catalog.trading_pair(exchange, coin, quote, market_type)
    window = make_window(start_time, end_time, limit, cursor)
    # the annotation is the body OpenAPI documents; serve returns its Response
    return await pages.serve(SERVED_OPEN_INTEREST, pair, window, format)  # type: ignore[return-value]


@get(
    "/trades/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}",
    summary="Trades of a trading pair (the exchange's trade tape)",
    description="Rows are always ascending in (time, trade_id). Without start_time (and "
    "without a cursor) the latest `limit` trades are returned; with it, the first `limit` "
    "trades from start_time on. Ranges are half-open: start_time <= time < end_time. "
    "Cursors are keyed on (time, trade_id): many trades in one millisecond are neither "
    "repeated nor skipped across pages. Times keep the exchange's precision (microseconds); "
    "prices and sizes are exact strings; `side` is the taker's.",
    responses=SERIES_ERRORS,
)
async def get_trades(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    catalog: NamedDependency[SeriesCatalog],
    pages: NamedDependency[Pages],
    start_time: StartTime = None,
    end_time: EndTime = None,
    limit: Limit = 1000,
    format: FormatParam = "json",
    cursor: Cursor = None,
) -> TradesPage:
    pair = catalog.trading_pair(exchange, coin, quote, market_type)
    window = make_window(start_time, end_time, limit, cursor, keyed=True)
    # the annotation is the body OpenAPI documents; serve returns its Response
    return await pages.serve(SERVED_TRADES, pair, window, format)  # type: ignore[return-value]


@get(
    "/books/{exchange:str}/{coin:str}/{quote:str}/{market_type:str}",
    summary="Order-book samples of a trading pair (top-N levels, one a second)",
    description=_DESCRIPTION
    + " One row per sampled second: each side's prices and sizes best first, as lists of exact"
    " strings (CSV: each list as JSON text); `sequence` is the exchange's update id the book"
    " had reached (null on Hyperliquid).",
    responses=SERIES_ERRORS,
)
async def get_books(
    exchange: Exchange,
    coin: Coin,
    quote: Quote,
    market_type: MarketType,
    catalog: NamedDependency[SeriesCatalog],
    pages: NamedDependency[Pages],
    start_time: StartTime = None,
    end_time: EndTime = None,
    limit: Limit = 1000,
    format: FormatParam = "json",
    cursor: Cursor = None,
) -> BooksPage:
    pair = catalog.trading_pair(exchange, coin, quote, market_type)
    window = make_window(start_time, end_time, limit, cursor)
    # the annotation is the body OpenAPI documents; serve returns its Response
    return await pages.serve(SERVED_BOOKS, pair, window, format)  # type: ignore[return-value]
