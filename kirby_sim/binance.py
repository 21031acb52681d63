"""Binance spot (`/api/v3`) and USD-M futures (`/fapi/v1`) market data, plus COIN-M listing.

Serves what ccxt's `load_markets` and `fetch_ohlcv` call: ping, time, exchangeInfo (all
three families; COIN-M lists BTCUSD_PERP and ETHUSD_PERP for ccxt but has no klines) and
klines. Kline rows have Binance's 12 fields with numbers as strings (spot: 8 decimals;
USD-M: the contract's price and quantity precision) and the trade count as an integer.
Minutes without trades are present, flat at the previous close with zero volume.

Klines: `limit` defaults to 500, at most 1000 on spot and 1500 on USD-M; with startTime
the first `limit` candles opening at or after it (up to endTime); with only endTime the
last `limit` opening at or before it; with neither the latest `limit`, forming one
included. Errors are Binance's JSON ({"code": -1121, "msg": "Invalid symbol."}) with
HTTP 400; weight is counted per IP in X-MBX-USED-WEIGHT-1M and enforced with 429/-1003.
Trade history (aggTrades, spot and USD-M): `binance_trades`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from kirby_core.exchanges import binance as binance_rest
from kirby_core.exchanges.registry import BINANCE as DECLARATION
from kirby_sim.binance_markets import exchange_info
from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import BINANCE_INTERVALS, floor_open, next_open, shift_open
from kirby_sim.malform import malformed_text
from kirby_sim.market import Market
from kirby_sim.prices import QUOTE_DECIMALS
from kirby_sim.ratelimit import WeightLimiter
from kirby_sim.universe import BINANCE_SPOT_VENUE, BINANCE_USDM_VENUE
from kirby_sim.wire import encode, fixed_decimal

DEFAULT_LIMIT = 500
Endpoint = Callable[[web.Request, int, "Family"], Any]
"""A Binance endpoint: (request, simulated now, API family) -> JSON document."""
Handler = Callable[[web.Request], Awaitable[web.Response]]
_DIGITS = re.compile(r"^[0-9]{1,20}$")


@dataclass(frozen=True)
class Family:
    """One Binance REST API family: its path prefix, venue and limits."""

    prefix: str
    venue: str | None
    max_limit: int
    weight_per_minute: int


SPOT = Family(
    "/api/v3",
    BINANCE_SPOT_VENUE,
    DECLARATION.candle_page_rows["spot"],
    DECLARATION.weights["spot"].per_minute,
)
USDM = Family(
    "/fapi/v1",
    BINANCE_USDM_VENUE,
    DECLARATION.candle_page_rows["perps"],
    DECLARATION.weights["perps"].per_minute,
)
COINM = Family("/dapi/v1", None, 1500, 2400)
"""Coin-M, which Kirby does not collect: the simulator's own figures."""
FAMILIES = (SPOT, USDM, COINM)


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def error_response(
    code: int, msg: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=encode({"code": code, "msg": msg}),
        content_type="application/json",
        headers=headers,
    )


def rate_limited(client: str, family: Family, retry_after: float) -> web.Response:
    msg = (
        f"Too many requests; current limit of IP({client}) is {family.weight_per_minute} "
        "requests per minute. Please use the websocket for live updates to avoid polling the API."
    )
    return error_response(-1003, msg, 429, {"Retry-After": str(max(1, math.ceil(retry_after)))})


def server_error(status: int) -> web.Response:
    """500 is Binance's own JSON error; 502-504 come from the gateway as plain text."""
    if status == 500:
        return error_response(-1000, "An unknown error occurred while processing the request.", 500)
    return web.Response(status=status, text=f"{status} {HTTPStatus(status).phrase}")


def _kline_weight(family: Family, limit: int) -> int:
    """Spot klines weigh the declared page weight at any limit; USD-M and coin-M klines by
    tiers of `limit`, the top one (Kirby's full page) the declared USD-M page weight."""
    if family is SPOT:
        return DECLARATION.weights["spot"].candle_page
    full_page = DECLARATION.weights["perps"].candle_page
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else full_page


def _integer(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not _DIGITS.match(value):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


def _required(query: Any, name: str) -> str:
    value = query.get(name)
    if not value:
        raise BinanceError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return str(value)


class Binance:
    def __init__(
        self,
        market: Market,
        clock: VirtualClock,
        faults: FaultInjector,
        rate_limits: bool,
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.market = market
        self.clock = clock
        self.faults = faults
        self._limiters = {
            family.prefix: WeightLimiter(
                family.weight_per_minute if rate_limits else None, rate_clock
            )
            for family in FAMILIES
        }

    def routes(self) -> list[web.RouteDef]:
        routes = []
        for family in FAMILIES:
            handlers: dict[str, Endpoint] = {
                "ping": lambda request, now, family: {},
                "time": lambda request, now, family: {"serverTime": now},
                "exchangeInfo": self._exchange_info,
            }
            if family.venue is not None:
                handlers["klines"] = self._klines
                handlers["aggTrades"] = self._agg_trades
            for name, handler in handlers.items():
                routes.append(web.get(f"{family.prefix}/{name}", self._wrap(family, handler)))
        return routes

    def _wrap(self, family: Family, handler: Endpoint) -> Handler:
        async def endpoint(request: web.Request) -> web.Response:
            client = request.remote or "unknown"
            limiter = self._limiters[family.prefix]
            name = request.path.rsplit("/", 1)[-1]
            weight = self._weight(family, name, request)
            retry_after = limiter.acquire(client, weight)
            if retry_after is not None:
                return rate_limited(client, family, retry_after)
            headers = {"X-MBX-USED-WEIGHT-1M": str(limiter.used(client))}
            try:
                payload = handler(request, self.clock.now_ms(), family)
            except BinanceError as exc:
                return error_response(exc.code, exc.msg, exc.status, headers)
            text = None
            if name == "klines":
                text = malformed_text(self.faults, "http", "klines", payload, encode)
            return web.Response(
                text=text if text is not None else encode(payload),
                content_type="application/json",
                headers=headers,
            )

        return endpoint

    def _weight(self, family: Family, name: str, request: web.Request) -> int:
        if name == "klines":
            limit = request.query.get("limit", "")
            return _kline_weight(family, int(limit) if limit.isdigit() else DEFAULT_LIMIT)
        if name == "exchangeInfo" and family is SPOT:
            return 20
        if name == "depth":  # binance_depth's snapshots, weighed by Binance's limit tables
            limit = request.query.get("limit", "")
            rows = int(limit) if limit.isdigit() and int(limit) > 0 else None
            market_type = "spot" if family is SPOT else "perps"
            default = 100 if family is SPOT else 500
            return binance_rest.depth_weight(market_type, rows or default)
        if name == "aggTrades":
            return binance_rest.AGG_TRADES_WEIGHT["spot" if family is SPOT else "perps"]
        return 1

    # --- klines -----------------------------------------------------------------------

    def _klines(self, request: web.Request, now_ms: int, family: Family) -> list[list[Any]]:
        query = request.query
        symbol = _required(query, "symbol")
        interval = _required(query, "interval")
        if interval not in BINANCE_INTERVALS:
            raise BinanceError(-1120, "Invalid interval.")
        assert family.venue is not None
        book = self.market.book(family.venue, symbol)
        if book is None:
            raise BinanceError(-1121, "Invalid symbol.")
        limit = _integer(query, "limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= family.max_limit:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        start_ms = _integer(query, "startTime")
        end_ms = _integer(query, "endTime")
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            raise BinanceError(-1023, "Start time is greater than end time.")
        return [
            _kline(book, interval, bar)
            for bar in _window(book, interval, start_ms, end_ms, limit, now_ms)
        ]

    # --- trades -----------------------------------------------------------------------

    def _trade_query(self, request: web.Request, family: Family) -> tuple[CandleBook, int]:
        query = request.query
        symbol = _required(query, "symbol")
        assert family.venue is not None
        book = self.market.book(family.venue, symbol)
        if book is None:
            raise BinanceError(-1121, "Invalid symbol.")
        limit = _integer(query, "limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= binance_rest.TRADE_LIMIT:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        return book, limit

    def _agg_trades(self, request: web.Request, now_ms: int, family: Family) -> list[Any]:
        from kirby_sim import binance_trades as trades  # it formats as binance_futures does

        book, limit = self._trade_query(request, family)
        from_id = _integer(request.query, "fromId")
        start_ms = _integer(request.query, "startTime")
        end_ms = _integer(request.query, "endTime")
        if start_ms is not None and end_ms is not None:
            if start_ms > end_ms:
                raise BinanceError(-1023, "Start time is greater than end time.")
            if end_ms - start_ms >= trades.WINDOW_MS:
                raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
        return trades.agg_trades(book, from_id, start_ms, end_ms, limit, now_ms)

    def _exchange_info(self, request: web.Request, now_ms: int, family: Family) -> dict[str, Any]:
        instruments = self.market.instruments.get(family.venue or "", [])
        return exchange_info(family.prefix, instruments, now_ms, family.weight_per_minute)


def _window(
    book: CandleBook, interval: str, start_ms: int | None, end_ms: int | None, limit: int, now: int
) -> list[Bar]:
    last_open = floor_open(interval, now if end_ms is None else min(end_ms, now))
    if start_ms is not None:
        first_open = floor_open(interval, start_ms)
        if first_open < start_ms:
            first_open = next_open(interval, first_open)
        first_open = max(first_open, book.first_open(interval))
        last_open = min(last_open, shift_open(interval, first_open, limit - 1))
        return book.bars(interval, first_open, last_open, now)[:limit]
    first_open = max(shift_open(interval, last_open, -(limit - 1)), book.first_open(interval))
    return book.bars(interval, first_open, last_open, now)[-limit:]


def _kline(book: CandleBook, interval: str, bar: Bar) -> list[Any]:
    inst = book.instrument
    spot = inst.venue == BINANCE_SPOT_VENUE
    price_shown = 8 if spot else inst.price_decimals
    size_shown = 8 if spot else inst.size_decimals
    quote_shown = 8 if spot else QUOTE_DECIMALS

    def price(units: int) -> str:
        return fixed_decimal(units, inst.price_decimals, price_shown)

    def size(lots: int) -> str:
        return fixed_decimal(lots, inst.size_decimals, size_shown)

    def quote(units: int) -> str:
        return fixed_decimal(units, QUOTE_DECIMALS, quote_shown)

    return [
        bar.open_ms,
        price(bar.open),
        price(bar.high),
        price(bar.low),
        price(bar.close),
        size(bar.volume),
        next_open(interval, bar.open_ms) - 1,
        quote(bar.quote),
        bar.trades,
        size(bar.taker_base),
        quote(bar.taker_quote),
        "0",
    ]
