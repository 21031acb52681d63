"""Coinbase Advanced Trade public REST (`/api/v3/brokerage/...`) and the v2 reference data
ccxt's coinbase loads with its markets (`/v2/currencies`, `/v2/currencies/crypto`,
`/v2/exchange-rates`, `/v2/time`).

    GET /api/v3/brokerage/time
    GET /api/v3/brokerage/market/products[?product_type=SPOT|FUTURE]   {"products":[...]}
    GET /api/v3/brokerage/market/products/{product_id}
    GET /api/v3/brokerage/market/products/{product_id}/candles?start&end&granularity
        start/end in unix seconds, candles opening in [start, end), newest first, at most
        `CANDLES_LIMIT` (a wider range is an INVALID_ARGUMENT error, as Coinbase answers);
        granularity ONE_MINUTE, FIVE_MINUTE, FIFTEEN_MINUTE, THIRTY_MINUTE, ONE_HOUR,
        TWO_HOUR, FOUR_HOUR, SIX_HOUR, ONE_DAY
    GET /api/v3/brokerage/market/products/{product_id}/ticker?limit=N
        the latest N trades (newest first) with best_bid / best_ask

Errors are Coinbase's {"error":"INVALID_ARGUMENT","error_details":...,"message":...} with
HTTP 400 (404 NOT_FOUND for an unknown product). Public endpoints allow `REQUESTS_PER_SECOND`
requests a second per IP; beyond it HTTP 429.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.intervals import floor_open, next_open
from kirby_sim.market import Market
from kirby_sim.perp_stats import day_stats
from kirby_sim.prints import Print, prints
from kirby_sim.universe import COINBASE_VENUE, Instrument
from kirby_sim.venue_limits import RequestWindow
from kirby_sim.wire import encode, fixed_decimal, plain_decimal, ratio

PREFIX = "/api/v3/brokerage/"
V2_PREFIX = "/v2/"
CANDLES_LIMIT = 300
TICKER_TRADES_LIMIT = 100
REQUESTS_PER_SECOND = 10
GRANULARITIES: dict[str, str] = {
    "ONE_MINUTE": "1m", "FIVE_MINUTE": "5m", "FIFTEEN_MINUTE": "15m", "THIRTY_MINUTE": "30m",
    "ONE_HOUR": "1h", "TWO_HOUR": "2h", "FOUR_HOUR": "4h", "SIX_HOUR": "6h", "ONE_DAY": "1d",
}  # fmt: skip
_CRYPTO_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana"}


class CoinbaseError(Exception):
    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status


def _error_response(error: str, message: str, status: int) -> web.Response:
    text = encode({"error": error, "error_details": message, "message": message})
    return web.Response(status=status, text=text, content_type="application/json")


def rate_limited() -> web.Response:
    return _error_response("RATE_LIMIT_EXCEEDED", "Too many requests", 429)


def server_error(status: int) -> web.Response:
    return _error_response("INTERNAL", "internal error", status)


def timestamp(ms: int) -> str:
    """RFC 3339 with nanoseconds, as Coinbase stamps trades and WebSocket messages."""
    moment = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{ms % 1000:03d}000000Z"


def price(inst: Instrument, units: int) -> str:
    return fixed_decimal(units, inst.price_decimals, inst.price_decimals)


def size(inst: Instrument, lots: int) -> str:
    return fixed_decimal(lots, inst.size_decimals, inst.size_decimals)


def candle(inst: Instrument, bar: Bar) -> dict[str, str]:
    return {
        "start": str(bar.open_ms // 1000),
        "low": price(inst, bar.low),
        "high": price(inst, bar.high),
        "open": price(inst, bar.open),
        "close": price(inst, bar.close),
        "volume": size(inst, bar.volume),
    }


def trade(inst: Instrument, row: Print) -> dict[str, str]:
    return {
        "trade_id": str(row.trade_id),
        "product_id": inst.symbol,
        "price": price(inst, row.price),
        "size": size(inst, row.size),
        "time": timestamp(row.time_ms),
        "side": "BUY" if row.buy else "SELL",
    }


def ticker(market: Market, inst: Instrument, now_ms: int) -> dict[str, str]:
    """A `ticker` channel entry."""
    book = market.book(COINBASE_VENUE, inst.symbol)
    assert book is not None
    day = day_stats(book, now_ms)
    return {
        "type": "ticker",
        "product_id": inst.symbol,
        "price": price(inst, day.last),
        "volume_24_h": size(inst, day.volume),
        "low_24_h": price(inst, day.low),
        "high_24_h": price(inst, day.high),
        "low_52_w": price(inst, day.low),
        "high_52_w": price(inst, day.high),
        "price_percent_chg_24_h": ratio((day.last - day.open) * 100, day.open, 8),
        "best_bid": price(inst, day.last - inst.tick_units),
        "best_bid_quantity": size(inst, 10**inst.size_decimals // 100),
        "best_ask": price(inst, day.last),
        "best_ask_quantity": size(inst, 10**inst.size_decimals // 100),
    }


def recent_trades(book: CandleBook, now_ms: int, limit: int) -> list[Print]:
    """The latest `limit` trades at `now_ms`, newest first (looks back up to an hour)."""
    found: list[Print] = []
    upto = now_ms
    for _ in range(60):
        found.extend(reversed(prints(book, upto - 60_000, upto)))
        if len(found) >= limit:
            break
        upto -= 60_000
    return found[:limit]


class Coinbase:
    def __init__(self, market: Market, clock: VirtualClock, rate_limits: bool) -> None:
        self.market = market
        self.clock = clock
        self._window = RequestWindow(REQUESTS_PER_SECOND if rate_limits else None, 1.0)

    def routes(self) -> list[web.RouteDef]:
        handlers: dict[str, Callable[[web.Request, int], Any]] = {
            f"{PREFIX}time": self._time,
            f"{PREFIX}market/products": self._products,
            f"{PREFIX}market/products/{{product_id}}": self._product,
            f"{PREFIX}market/products/{{product_id}}/candles": self._candles,
            f"{PREFIX}market/products/{{product_id}}/ticker": self._ticker,
            f"{V2_PREFIX}time": lambda request, now: {
                "data": {"iso": timestamp(now)[:19] + "Z", "epoch": now // 1000}
            },
            f"{V2_PREFIX}currencies": lambda request, now: {
                "data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]
            },
            f"{V2_PREFIX}currencies/crypto": self._crypto,
            f"{V2_PREFIX}exchange-rates": self._rates,
        }
        return [web.get(path, self._wrap(handler)) for path, handler in handlers.items()]

    def _wrap(self, handler: Callable[[web.Request, int], Any]) -> Callable[[web.Request], Any]:
        async def endpoint(request: web.Request) -> web.Response:
            if self._window.acquire(request.remote or "unknown") is not None:
                return rate_limited()
            try:
                document = handler(request, self.clock.now_ms())
            except CoinbaseError as exc:
                return _error_response(exc.error, exc.message, exc.status)
            return web.Response(text=encode(document), content_type="application/json")

        return endpoint

    def _book(self, request: web.Request) -> CandleBook:
        product_id = request.match_info["product_id"]
        book = self.market.book(COINBASE_VENUE, product_id)
        if book is None:
            raise CoinbaseError("NOT_FOUND", f"product {product_id} not found", 404)
        return book

    def _time(self, request: web.Request, now: int) -> dict[str, str]:
        return {
            "iso": timestamp(now),
            "epochSeconds": str(now // 1000),
            "epochMillis": str(now),
        }

    def _products(self, request: web.Request, now: int) -> dict[str, Any]:
        kind = request.query.get("product_type", "SPOT")
        instruments = self.market.instruments[COINBASE_VENUE] if kind == "SPOT" else []
        products = [self._describe(inst, now) for inst in instruments]
        return {"products": products, "num_products": len(products)}

    def _product(self, request: web.Request, now: int) -> dict[str, Any]:
        return self._describe(self._book(request).instrument, now)

    def _describe(self, inst: Instrument, now: int) -> dict[str, Any]:
        book = self.market.book(COINBASE_VENUE, inst.symbol)
        assert book is not None
        day = day_stats(book, now)
        increment = plain_decimal(inst.tick_units, inst.price_decimals)
        return {
            "product_id": inst.symbol,
            "price": price(inst, day.last),
            "price_percentage_change_24h": ratio((day.last - day.open) * 100, day.open, 8),
            "volume_24h": size(inst, day.volume),
            "volume_percentage_change_24h": "0",
            "base_increment": plain_decimal(1, inst.size_decimals),
            "quote_increment": increment,
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": plain_decimal(1, inst.size_decimals),
            "base_max_size": "3400",
            "base_name": _CRYPTO_NAMES.get(inst.coin, inst.coin),
            "quote_name": "US Dollar",
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": "USD",
            "base_currency_id": inst.coin,
            "mid_market_price": "",
            "alias": "",
            "alias_to": [],
            "base_display_symbol": inst.coin,
            "quote_display_symbol": "USD",
            "view_only": False,
            "price_increment": increment,
            "display_name": inst.symbol,
            "product_venue": "CBE",
        }

    def _candles(self, request: web.Request, now: int) -> dict[str, Any]:
        book = self._book(request)
        query = request.query
        interval = GRANULARITIES.get(query.get("granularity", ""))
        if interval is None:
            raise CoinbaseError(
                "INVALID_ARGUMENT",
                f"granularity must be one of {', '.join(GRANULARITIES)}, "
                f"got {query.get('granularity')!r}",
            )
        try:
            start_ms = int(query["start"]) * 1000
            end_ms = int(query["end"]) * 1000
        except (KeyError, ValueError) as exc:
            raise CoinbaseError("INVALID_ARGUMENT", "start and end must be unix seconds") from exc
        step = next_open(interval, 0)
        if (end_ms - start_ms) // step > CANDLES_LIMIT:
            raise CoinbaseError(
                "INVALID_ARGUMENT",
                f"number of candles requested should be less than or equal to {CANDLES_LIMIT}",
            )
        first = floor_open(interval, start_ms)
        if first < start_ms:
            first = next_open(interval, first)
        last = floor_open(interval, min(end_ms - 1, now))
        if last < first:
            return {"candles": []}
        bars = book.bars(interval, first, last, now)
        inst = book.instrument
        return {"candles": [candle(inst, bar) for bar in reversed(bars)]}

    def _ticker(self, request: web.Request, now: int) -> dict[str, Any]:
        book = self._book(request)
        raw = request.query.get("limit", "1")
        if not raw.isdigit() or not 1 <= int(raw) <= TICKER_TRADES_LIMIT:
            raise CoinbaseError(
                "INVALID_ARGUMENT", f"limit must be 1 to {TICKER_TRADES_LIMIT}, got {raw!r}"
            )
        inst = book.instrument
        quote = ticker(self.market, inst, now)
        rows = [trade(inst, row) for row in recent_trades(book, now, int(raw))]
        for row in rows:
            row.update({"bid": "", "ask": "", "exchange": "CBE"})
        return {"trades": rows, "best_bid": quote["best_bid"], "best_ask": quote["best_ask"]}

    def _crypto(self, request: web.Request, now: int) -> dict[str, Any]:
        return {
            "data": [
                {
                    "asset_id": f"sim-{inst.coin.lower()}",
                    "code": inst.coin,
                    "name": _CRYPTO_NAMES.get(inst.coin, inst.coin),
                    "color": "#000000",
                    "sort_index": 100 + number,
                    "exponent": 8,
                    "type": "crypto",
                    "address_regex": "^.+$",
                }
                for number, inst in enumerate(self.market.instruments[COINBASE_VENUE])
            ]
        }

    def _rates(self, request: web.Request, now: int) -> dict[str, Any]:
        rates = {"USD": "1"}
        for inst in self.market.instruments[COINBASE_VENUE]:
            book = self.market.book(COINBASE_VENUE, inst.symbol)
            assert book is not None
            last = book.forming_minute(now).close
            rates[inst.coin] = ratio(10**inst.price_decimals, last, 10)
        return {"data": {"currency": "USD", "rates": rates}}
