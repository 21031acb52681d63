"""Bybit v5 public REST market data (`/v5/market/...`), spot and linear (USDT) perps.

Serves what ccxt's bybit calls for markets, klines, funding, open interest and tickers:
time, instruments-info (spot, linear; inverse and option answer empty lists), kline,
funding/history, open-interest and tickers. Every answer is Bybit's envelope
{"retCode":0,"retMsg":"OK","result":{...},"retExtInfo":{},"time":ms} with HTTP 200, errors
included (retCode 10001 and the reason, as Bybit does). Lists are newest first.

Klines: `interval` 1,3,5,15,30,60,120,240,360,720,D,W,M; `limit` 1-1000 (default 200);
with `start` the first `limit` candles from the one containing it (up to `end`), else
the last `limit` up to `end` or now, forming candle included. Rows are
[start, open, high, low, close, volume, turnover] as strings. Funding history: at most
200 rows, newest first, `startTime` only with `endTime`. Open interest: intervalTime
5min..1d, at most 200 rows a page, back to the listing, paged by `nextPageCursor`.
Rate limit: 600 requests per 5 s per IP; beyond it HTTP 403 and a 10-minute ban, as
Bybit bans an IP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.derivatives import RATE_DECIMALS
from kirby_sim.intervals import floor_open, next_open, shift_open
from kirby_sim.market import Market
from kirby_sim.perp_stats import PerpStats, day_stats
from kirby_sim.prices import QUOTE_DECIMALS
from kirby_sim.universe import BYBIT_LINEAR_VENUE, BYBIT_SPOT_VENUE, Instrument
from kirby_sim.venue_limits import RequestWindow
from kirby_sim.wire import encode, fixed_decimal, plain_decimal, ratio

PREFIX = "/v5/"
KLINE_LIMIT = 1000
KLINE_DEFAULT = 200
FUNDING_LIMIT = 200
OPEN_INTEREST_LIMIT = 200
OPEN_INTEREST_DEFAULT = 50
REQUESTS_PER_5_SECONDS = 600
BAN_SECONDS = 600.0
INTERVALS: dict[str, str] = {
    "1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h",
    "240": "4h", "360": "6h", "720": "12h", "D": "1d", "W": "1w", "M": "1M",
}  # fmt: skip
OPEN_INTEREST_INTERVALS: dict[str, int] = {
    "5min": 300_000, "15min": 900_000, "30min": 1_800_000, "1h": 3_600_000,
    "4h": 14_400_000, "1d": 86_400_000,
}  # fmt: skip
CATEGORIES = {"spot": BYBIT_SPOT_VENUE, "linear": BYBIT_LINEAR_VENUE}
EMPTY_CATEGORIES = ("inverse", "option")


class BybitError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def envelope(result: Any, now_ms: int, code: int = 0, msg: str = "OK") -> str:
    return encode(
        {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}
    )


def rate_limited() -> web.Response:
    """Bybit's answer to an IP over its limit: 403, the ban page."""
    return web.Response(status=403, text="403 Forbidden: access too frequent, IP banned")


def server_error(status: int) -> web.Response:
    return web.Response(status=status, text=f"{status} Server Error")


def price(inst: Instrument, units: int) -> str:
    return fixed_decimal(units, inst.price_decimals, inst.price_decimals)


def size(inst: Instrument, lots: int) -> str:
    return plain_decimal(lots, inst.size_decimals)


def turnover(units: int) -> str:
    return plain_decimal(units, QUOTE_DECIMALS)


def kline_row(inst: Instrument, bar: Bar) -> list[str]:
    return [
        str(bar.open_ms),
        price(inst, bar.open),
        price(inst, bar.high),
        price(inst, bar.low),
        price(inst, bar.close),
        size(inst, bar.volume),
        turnover(bar.quote),
    ]


def ticker(market: Market, venue: str, inst: Instrument, now_ms: int) -> dict[str, str]:
    """A tickers entry (REST) and the WebSocket tickers snapshot."""
    book = market.book(venue, inst.symbol)
    assert book is not None
    day = day_stats(book, now_ms)
    hour_ago = book.forming_minute(now_ms - 3_600_000).close
    perp = market.perp(venue, inst.symbol)
    bid, ask = perp.quote(now_ms) if perp else (day.last - inst.tick_units, day.last)
    entry = {
        "symbol": inst.symbol,
        "bid1Price": price(inst, bid),
        "bid1Size": size(inst, 10**inst.size_decimals),
        "ask1Price": price(inst, ask),
        "ask1Size": size(inst, 10**inst.size_decimals),
        "lastPrice": price(inst, day.last),
        "prevPrice24h": price(inst, day.open),
        "price24hPcnt": ratio(day.last - day.open, day.open, 4),
        "highPrice24h": price(inst, day.high),
        "lowPrice24h": price(inst, day.low),
        "turnover24h": turnover(day.quote),
        "volume24h": size(inst, day.volume),
    }
    if perp is None:
        entry["usdIndexPrice"] = price(inst, day.last)
        return entry
    interest = perp.open_interest(now_ms)
    mark = perp.mark_price(now_ms)
    entry.update(
        {
            "indexPrice": price(inst, perp.index_price(now_ms)),
            "markPrice": price(inst, mark),
            "prevPrice1h": price(inst, hour_ago),
            "openInterest": size(inst, interest),
            "openInterestValue": plain_decimal(
                interest * mark, inst.size_decimals + inst.price_decimals
            ),
            "fundingRate": plain_decimal(perp.live_rate(now_ms), RATE_DECIMALS),
            "nextFundingTime": str(perp.next_funding_ms(now_ms)),
            "fundingIntervalHour": "8",
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": "0",
        }
    )
    return entry


class Bybit:
    def __init__(self, market: Market, clock: VirtualClock, rate_limits: bool) -> None:
        self.market = market
        self.clock = clock
        self._window = RequestWindow(REQUESTS_PER_5_SECONDS if rate_limits else None, 5.0)
        self._banned: dict[str, float] = {}

    def routes(self) -> list[web.RouteDef]:
        handlers: dict[str, Callable[[Any, int], Any]] = {
            "time": self._time,
            "instruments-info": self._instruments,
            "kline": self._kline,
            "funding/history": self._funding,
            "open-interest": self._open_interest,
            "tickers": self._tickers,
        }
        return [
            web.get(f"{PREFIX}market/{name}", self._wrap(handler))
            for name, handler in handlers.items()
        ]

    def _wrap(self, handler: Callable[[Any, int], Any]) -> Callable[[web.Request], Any]:
        async def endpoint(request: web.Request) -> web.Response:
            client = request.remote or "unknown"
            now_real = time.monotonic()
            if self._banned.get(client, 0.0) > now_real:
                return rate_limited()
            if self._window.acquire(client) is not None:
                self._banned[client] = now_real + BAN_SECONDS
                return rate_limited()
            now = self.clock.now_ms()
            try:
                text = envelope(handler(request.query, now), now)
            except BybitError as exc:
                text = envelope({}, now, exc.code, exc.msg)
            return web.Response(text=text, content_type="application/json")

        return endpoint

    # --- helpers ----------------------------------------------------------------------

    def _venue(self, query: Any, allowed: tuple[str, ...] = ("spot", "linear")) -> str:
        category = query.get("category", "")
        if category not in allowed:
            raise BybitError(10001, f"params error: category must be one of {list(allowed)}")
        return CATEGORIES[category]

    def _book(self, venue: str, query: Any) -> CandleBook:
        symbol = query.get("symbol", "")
        book = self.market.book(venue, symbol)
        if book is None:
            raise BybitError(10001, "params error: Symbol Invalid")
        return book

    @staticmethod
    def _int(query: Any, name: str, default: int | None = None) -> int | None:
        value = query.get(name)
        if value is None or value == "":
            return default
        if not value.isdigit():
            raise BybitError(10001, f"params error: {name} invalid")
        return int(value)

    def _limit(self, query: Any, default: int, maximum: int) -> int:
        limit = self._int(query, "limit", default)
        assert limit is not None
        if limit < 1:
            raise BybitError(10001, "params error: limit invalid")
        return min(limit, maximum)

    # --- endpoints --------------------------------------------------------------------

    def _time(self, query: Any, now: int) -> dict[str, str]:
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _instruments(self, query: Any, now: int) -> dict[str, Any]:
        category = query.get("category", "")
        if category in EMPTY_CATEGORIES:
            return {"category": category, "list": [], "nextPageCursor": ""}
        venue = self._venue(query)
        rows = []
        for inst in self.market.instruments[venue]:
            if query.get("symbol") and query["symbol"] != inst.symbol:
                continue
            rows.append(_spot_info(inst) if category == "spot" else _linear_info(inst))
        if query.get("status") == "PreLaunch":
            rows = []
        return {"category": category, "list": rows, "nextPageCursor": ""}

    def _kline(self, query: Any, now: int) -> dict[str, Any]:
        venue = self._venue(query)
        book = self._book(venue, query)
        interval = INTERVALS.get(query.get("interval", ""))
        if interval is None:
            raise BybitError(10001, "Invalid period!")
        limit = self._limit(query, KLINE_DEFAULT, KLINE_LIMIT)
        start = self._int(query, "start")
        end = self._int(query, "end")
        last_open = floor_open(interval, now if end is None else min(end, now))
        first_listed = book.first_open(interval)
        if start is not None:
            first_open = max(floor_open(interval, start), first_listed)
            last_open = min(last_open, shift_open(interval, first_open, limit - 1))
        else:
            first_open = max(shift_open(interval, last_open, -(limit - 1)), first_listed)
        bars = book.bars(interval, first_open, last_open, now)[:limit]
        rows = [kline_row(book.instrument, bar) for bar in reversed(bars)]
        category = query["category"]
        return {"symbol": book.instrument.symbol, "category": category, "list": rows}

    def _perp(self, query: Any) -> PerpStats:
        venue = self._venue(query, ("linear",))
        book = self._book(venue, query)
        perp = self.market.perp(venue, book.instrument.symbol)
        assert perp is not None
        return perp

    def _funding(self, query: Any, now: int) -> dict[str, Any]:
        perp = self._perp(query)
        limit = self._limit(query, FUNDING_LIMIT, FUNDING_LIMIT)
        start = self._int(query, "startTime")
        end = self._int(query, "endTime")
        if start is not None and end is None:
            raise BybitError(10001, "params error: endTime is required when startTime is set")
        end = now if end is None else min(end, now)
        if start is None:
            start = end - limit * 8 * 3_600_000
        rows = perp.funding_rows(start, end)[-limit:]
        symbol = perp.instrument.symbol
        return {
            "category": "linear",
            "list": [
                {
                    "symbol": symbol,
                    "fundingRate": plain_decimal(row.rate, RATE_DECIMALS),
                    "fundingRateTimestamp": str(row.time_ms),
                }
                for row in reversed(rows)
            ],
        }

    def _open_interest(self, query: Any, now: int) -> dict[str, Any]:
        perp = self._perp(query)
        step = OPEN_INTEREST_INTERVALS.get(query.get("intervalTime", ""))
        if step is None:
            raise BybitError(10001, "params error: intervalTime invalid")
        limit = self._limit(query, OPEN_INTEREST_DEFAULT, OPEN_INTEREST_LIMIT)
        start = self._int(query, "startTime", perp.instrument.listed_ms)
        end = self._int(query, "endTime", now)
        cursor = self._int(query, "cursor")
        assert start is not None and end is not None
        end = min(end, now, cursor if cursor is not None else now)
        first = -(-max(start, perp.instrument.listed_ms) // step)
        last = end // step
        times = [slot * step for slot in range(max(first, last - limit + 1), last + 1)]
        more = times and times[0] // step > first
        inst = perp.instrument
        return {
            "symbol": inst.symbol,
            "category": "linear",
            "list": [
                {
                    "openInterest": fixed_decimal(perp.open_interest(at), inst.size_decimals, 8),
                    "timestamp": str(at),
                }
                for at in reversed(times)
            ],
            "nextPageCursor": str(times[0] - 1) if more else "",
        }

    def _tickers(self, query: Any, now: int) -> dict[str, Any]:
        venue = self._venue(query)
        symbol = query.get("symbol")
        instruments = self.market.instruments[venue]
        if symbol:
            instruments = [inst for inst in instruments if inst.symbol == symbol]
            if not instruments:
                raise BybitError(10001, "params error: Symbol Invalid")
        rows = [ticker(self.market, venue, inst, now) for inst in instruments]
        return {"category": query["category"], "list": rows}


def _step(inst: Instrument) -> str:
    return plain_decimal(1, inst.size_decimals)


def _spot_info(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "baseCoin": inst.coin,
        "quoteCoin": "USDT",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "lotSizeFilter": {
            "basePrecision": _step(inst),
            "quotePrecision": "0.00000001",
            "minOrderQty": _step(inst),
            "maxOrderQty": "10000",
            "minOrderAmt": "5",
            "maxOrderAmt": "8000000",
        },
        "priceFilter": {"tickSize": plain_decimal(inst.tick_units, inst.price_decimals)},
    }


def _linear_info(inst: Instrument) -> dict[str, Any]:
    tick = fixed_decimal(inst.tick_units, inst.price_decimals, inst.price_decimals)
    return {
        "symbol": inst.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": inst.coin,
        "quoteCoin": "USDT",
        "launchTime": str(inst.listed_ms),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(inst.price_decimals),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": _step(inst),
            "qtyStep": _step(inst),
            "postOnlyMaxOrderQty": "1190.000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": "USDT",
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
    }


def next_candle_close(interval: str, open_ms: int) -> int:
    """The `end` Bybit prints: the last millisecond of the candle."""
    return next_open(interval, open_ms) - 1
