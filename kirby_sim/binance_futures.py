"""Binance REST beyond klines: funding, open interest, premium index and 24 h tickers.

    GET /fapi/v1/fundingRate            settled funding, 1000 a call (default 100; with
                                        neither bound the latest 200), ascending
    GET /fapi/v1/premiumIndex           mark, index, live funding rate, next funding time
    GET /fapi/v1/openInterest           open interest now (base coin)
    GET /futures/data/openInterestHist  sumOpenInterest(Value) per period (5m..1d), the
                                        last 30 days only, 500 a call (default 30)
    GET /api/v3/ticker/24hr, /fapi/v1/ticker/24hr   rolling 24 h statistics (fetch_ticker)

Served through `Binance`'s own wrapper, so weight, Retry-After and the error JSON are the
klines endpoints' (this module adds routes; binance.py keeps the family limits).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kirby_sim.binance import SPOT, USDM, Binance, BinanceError, Family
from kirby_sim.derivatives import DAY_MS, RATE_DECIMALS
from kirby_sim.intervals import MINUTE_MS
from kirby_sim.market import Market
from kirby_sim.perp_stats import PerpStats, day_stats
from kirby_sim.prices import QUOTE_DECIMALS
from kirby_sim.universe import BINANCE_SPOT_VENUE, Instrument
from kirby_sim.wire import fixed_decimal, ratio

FUNDING_LIMIT = 1000
FUNDING_DEFAULT = 100
FUNDING_LATEST = 200
OPEN_INTEREST_LIMIT = 500
OPEN_INTEREST_DEFAULT = 30
OPEN_INTEREST_DAYS = 30
OPEN_INTEREST_PERIODS: dict[str, int] = {
    "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000,
    "4h": 14_400_000, "6h": 21_600_000, "12h": 43_200_000, "1d": 86_400_000,
}  # fmt: skip
DATA_PREFIX = "/futures/data"


def price(inst: Instrument, units: int) -> str:
    shown = 8 if inst.venue == BINANCE_SPOT_VENUE else inst.price_decimals
    return fixed_decimal(units, inst.price_decimals, shown)


def size(inst: Instrument, lots: int) -> str:
    shown = 8 if inst.venue == BINANCE_SPOT_VENUE else inst.size_decimals
    return fixed_decimal(lots, inst.size_decimals, shown)


def quote(inst: Instrument, units: int) -> str:
    shown = 8 if inst.venue == BINANCE_SPOT_VENUE else QUOTE_DECIMALS
    return fixed_decimal(units, QUOTE_DECIMALS, shown)


def rate(units: int) -> str:
    return fixed_decimal(units, RATE_DECIMALS, 8)


def ticker_24h(market: Market, inst: Instrument, now_ms: int) -> dict[str, Any]:
    """The 24 h ticker of REST and the `<symbol>@ticker` stream (without the event keys)."""
    book = market.book(inst.venue, inst.symbol)
    assert book is not None
    day = day_stats(book, now_ms)
    minute = now_ms // MINUTE_MS
    document: dict[str, Any] = {
        "symbol": inst.symbol,
        "priceChange": price(inst, day.last - day.open),
        "priceChangePercent": ratio((day.last - day.open) * 100, day.open, 3),
        "weightedAvgPrice": price(inst, day.last),
        "lastPrice": price(inst, day.last),
        "lastQty": size(inst, 1),
        "openPrice": price(inst, day.open),
        "highPrice": price(inst, day.high),
        "lowPrice": price(inst, day.low),
        "volume": size(inst, day.volume),
        "quoteVolume": quote(inst, day.quote),
        "openTime": now_ms - DAY_MS,
        "closeTime": now_ms,
        "firstId": (minute - 1439) * 10_000,
        "lastId": minute * 10_000,
        "count": 1440,
    }
    if inst.venue == BINANCE_SPOT_VENUE:
        document.update(
            {
                "prevClosePrice": price(inst, day.open),
                "bidPrice": price(inst, day.last - inst.tick_units),
                "bidQty": size(inst, 10**inst.size_decimals),
                "askPrice": price(inst, day.last),
                "askQty": size(inst, 10**inst.size_decimals),
            }
        )
    return document


def premium_index(perp: PerpStats, now_ms: int) -> dict[str, Any]:
    inst = perp.instrument
    return {
        "symbol": inst.symbol,
        "markPrice": fixed_decimal(perp.mark_price(now_ms), inst.price_decimals, 8),
        "indexPrice": fixed_decimal(perp.index_price(now_ms), inst.price_decimals, 8),
        "estimatedSettlePrice": fixed_decimal(perp.mark_price(now_ms), inst.price_decimals, 8),
        "lastFundingRate": rate(perp.live_rate(now_ms)),
        "interestRate": "0.00010000",
        "nextFundingTime": perp.next_funding_ms(now_ms),
        "time": now_ms,
    }


def _integer(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


class BinanceFutures:
    def __init__(self, market: Market, exchange: Binance) -> None:
        self.market = market
        self.exchange = exchange

    def routes(self) -> list[web.RouteDef]:
        wrap = self.exchange._wrap  # the same weight limiter and error handling as klines
        return [
            web.get(f"{USDM.prefix}/fundingRate", wrap(USDM, self._funding)),
            web.get(f"{USDM.prefix}/premiumIndex", wrap(USDM, self._premium_index)),
            web.get(f"{USDM.prefix}/openInterest", wrap(USDM, self._open_interest)),
            web.get(f"{DATA_PREFIX}/openInterestHist", wrap(USDM, self._open_interest_hist)),
            web.get(f"{SPOT.prefix}/ticker/24hr", wrap(SPOT, self._ticker)),
            web.get(f"{USDM.prefix}/ticker/24hr", wrap(USDM, self._ticker)),
        ]

    def _perp(self, query: Any) -> PerpStats:
        symbol = query.get("symbol")
        if not symbol:
            raise BinanceError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        perp = self.market.perp(USDM.venue or "", symbol)
        if perp is None:
            raise BinanceError(-1121, "Invalid symbol.")
        return perp

    def _funding(self, request: web.Request, now: int, family: Family) -> list[dict[str, Any]]:
        query = request.query
        perp = self._perp(query)
        limit = _integer(query, "limit")
        start = _integer(query, "startTime")
        end = _integer(query, "endTime")
        if limit is not None and not 1 <= limit <= FUNDING_LIMIT:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        end = now if end is None else min(end, now)
        if start is None and limit is None and _integer(query, "endTime") is None:
            limit = FUNDING_LATEST
        limit = limit or FUNDING_DEFAULT
        if start is None:
            rows = perp.funding_rows(end - (limit + 1) * 8 * 3_600_000, end)[-limit:]
        else:
            rows = perp.funding_rows(start, end)[:limit]
        inst = perp.instrument
        return [
            {
                "symbol": inst.symbol,
                "fundingTime": row.time_ms,
                "fundingRate": rate(row.rate),
                "markPrice": fixed_decimal(row.mark, inst.price_decimals, 8),
            }
            for row in rows
        ]

    def _premium_index(self, request: web.Request, now: int, family: Family) -> Any:
        if not request.query.get("symbol"):
            perps = [
                self.market.perp(USDM.venue or "", i.symbol)
                for i in self.market.instruments[USDM.venue or ""]
            ]
            return [premium_index(perp, now) for perp in perps if perp is not None]
        return premium_index(self._perp(request.query), now)

    def _open_interest(self, request: web.Request, now: int, family: Family) -> dict[str, Any]:
        perp = self._perp(request.query)
        inst = perp.instrument
        return {
            "openInterest": fixed_decimal(
                perp.open_interest(now), inst.size_decimals, inst.size_decimals
            ),
            "symbol": inst.symbol,
            "time": now,
        }

    def _open_interest_hist(self, request: web.Request, now: int, family: Family) -> Any:
        query = request.query
        perp = self._perp(query)
        step = OPEN_INTEREST_PERIODS.get(query.get("period", ""))
        if step is None:
            raise BinanceError(-1120, "Invalid period.")
        limit = _integer(query, "limit") or OPEN_INTEREST_DEFAULT
        if not 1 <= limit <= OPEN_INTEREST_LIMIT:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        start = _integer(query, "startTime")
        end = _integer(query, "endTime")
        horizon = now - OPEN_INTEREST_DAYS * DAY_MS
        if start is not None and start < horizon:
            raise BinanceError(-1130, "parameter 'startTime' is invalid.")
        last = (now if end is None else min(end, now)) // step
        first = max(-(-horizon // step), -(-perp.instrument.listed_ms // step))
        if start is not None:
            first = max(first, -(-start // step))
            last = min(last, first + limit - 1)
        else:
            first = max(first, last - limit + 1)
        inst = perp.instrument
        rows = []
        for slot in range(first, last + 1):
            at = slot * step
            lots = perp.open_interest(at)
            value = lots * perp.mark_price(at)
            rows.append(
                {
                    "symbol": inst.symbol,
                    "sumOpenInterest": fixed_decimal(lots, inst.size_decimals, 8),
                    "sumOpenInterestValue": fixed_decimal(
                        value, inst.size_decimals + inst.price_decimals, 8
                    ),
                    "timestamp": at,
                }
            )
        return rows

    def _ticker(self, request: web.Request, now: int, family: Family) -> Any:
        venue = family.venue or ""
        symbol = request.query.get("symbol")
        instruments = self.market.instruments[venue]
        if symbol is None:
            return [ticker_24h(self.market, inst, now) for inst in instruments]
        for inst in instruments:
            if inst.symbol == symbol:
                return ticker_24h(self.market, inst, now)
        raise BinanceError(-1121, "Invalid symbol.")
