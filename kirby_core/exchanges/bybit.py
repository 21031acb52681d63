"""Bybit v5 history (spot and USDT linear perps): klines, settled funding, open interest.

Through ccxt, but with the raw `publicGetV5Market*` calls, so values stay Bybit's strings
(exact `Decimal`s). Every host in ccxt's `urls['api']` is replaced by the configured one.
Bybit counts requests per IP (600 per 5 s; beyond it a 403 and a 10-minute ban): every call
spends its declared weight (`WEIGHTS`) from the client's budget first, so the ban is never
met. Bybit lists newest first; this module returns ascending rows.

    klines        /v5/market/kline            1000 a page, paged forward by `start`
    funding       /v5/market/funding/history  200 a page, `endTime` required, paged backward
    open interest /v5/market/open-interest    200 a page (5-minute points), back to the
                                              listing, paged by `nextPageCursor`
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import ccxt.async_support as ccxt_async

from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import (
    CcxtHooks,
    CcxtSession,
    RetryPolicy,
    ccxt_call,
    ccxt_config,
    check_candle,
    check_range,
    field,
    one_base_url,
    parse_decimal,
    select_candles,
)
from kirby_core.exchanges.weights import REAL_TIME, Burst, Clock, RequestWeight, shared_budget
from kirby_core.models import Candle, FundingRate, OpenInterest
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS, datetime_to_ms, floor_minute, ms_to_datetime

MARKET_CATEGORIES: Final = {"spot": "spot", "perps": "linear"}
"""Kirby market type -> Bybit's `category`."""
MARKET_TYPES: Final = tuple(MARKET_CATEGORIES)
KLINE_LIMIT: Final = 1000
"""Most klines per request, both categories."""
FUNDING_LIMIT: Final = 200
FUNDING_INTERVAL: Final = "8h"
"""Its USDT perps settle funding every 8 hours (00:00, 08:00, 16:00 UTC)."""
OPEN_INTEREST_LIMIT: Final = 200
OPEN_INTEREST_INTERVAL: Final = "5min"
"""The finest open-interest step Bybit serves (5min, 15min, 30min, 1h, 4h, 1d)."""
_WEIGHT: Final = RequestWeight(
    per_minute=7200, candle_page=1, funding_page=1, burst=Burst(weight=600, seconds=5.0)
)
WEIGHTS: Final = {"spot": _WEIGHT, "perps": _WEIGHT}
"""600 requests per 5 s per IP, every request weighing 1, both categories (one budget)."""
WIRE_INTERVALS: Final = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120",
    "4h": "240", "6h": "360", "12h": "720", "1d": "D", "1w": "W",
}  # fmt: skip
"""Kirby interval -> Bybit's kline `interval` (its `M` has no fixed length)."""
INTERVALS: Final = tuple(i for i in WIRE_INTERVALS if i in INTERVAL_SECONDS)


def bybit_symbol(coin: str, quote: str, market_type: str) -> str:
    """(BTC, USDT, spot or perps) -> BTCUSDT."""
    return f"{coin}{quote}".upper()


def _list(payload: object, where: str) -> list[Any]:
    """`result.list` of a Bybit envelope; a non-zero `retCode` is the exchange refusing."""
    code = field(payload, "retCode", where)
    if code != 0:
        message = field(payload, "retMsg", where)
        raise ExchangeProtocolError(f"{where}: Bybit refused: {code} {message}")
    rows = field(field(payload, "result", where), "list", where)
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {rows!r:.200}")
    return rows


def _ms(value: object, name: str, where: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ExchangeProtocolError(f"{where}: field {name!r} must be epoch ms, got {value!r:.80}")
    return int(value)


def parse_klines(payload: object, where: str) -> list[Candle]:
    """A kline response, newest first: rows [start, open, high, low, close, volume, turnover]
    as strings; `volume` is in the coin. Bybit gives no trade count."""
    candles = []
    for row in _list(payload, where):
        if not isinstance(row, list) or len(row) != 7:
            raise ExchangeProtocolError(f"{where}: expected a 7-field row, got {row!r:.200}")
        candle = Candle(
            time=ms_to_datetime(_ms(row[0], "start", where)),
            open=parse_decimal(row[1], "open", where),
            high=parse_decimal(row[2], "high", where),
            low=parse_decimal(row[3], "low", where),
            close=parse_decimal(row[4], "close", where),
            volume=parse_decimal(row[5], "volume", where),
        )
        candles.append(check_candle(candle, where))
    return candles[::-1]


def parse_funding(payload: object, where: str) -> list[tuple[int, FundingRate]]:
    """A funding/history response, newest first -> (ms, settled rate at the minute) ascending."""
    rows = []
    for row in _list(payload, where):
        ms = _ms(field(row, "fundingRateTimestamp", where), "fundingRateTimestamp", where)
        rate = parse_decimal(field(row, "fundingRate", where), "fundingRate", where)
        rows.append((ms, FundingRate(floor_minute(ms_to_datetime(ms)), settled_funding_rate=rate)))
    return rows[::-1]


def parse_open_interest(payload: object, where: str) -> tuple[list[OpenInterest], str]:
    """An open-interest response, newest first -> (points ascending, next page cursor);
    `openInterest` of a linear contract is in the coin."""
    rows = []
    for row in _list(payload, where):
        ms = _ms(field(row, "timestamp", where), "timestamp", where)
        amount = parse_decimal(field(row, "openInterest", where), "openInterest", where)
        rows.append(OpenInterest(ms_to_datetime(ms), open_interest=amount))
    cursor = field(field(payload, "result", where), "nextPageCursor", where)
    if not isinstance(cursor, str):
        raise ExchangeProtocolError(f"{where}: nextPageCursor must be a string, got {cursor!r}")
    return rows[::-1], cursor


class _CcxtBybit(CcxtHooks, ccxt_async.bybit):  # type: ignore[misc]  # ccxt is untyped
    kirby_rate_limit_statuses = (403, 418, 429)
    """Bybit answers an IP over its limit with 403 "access too frequent" (and bans it for a
    while): a rate limit to wait out, not a refusal."""


class BybitHistory(CcxtSession):
    """Bybit history; use as `async with BybitHistory(settings) as bybit:`.

    `weights` replaces the declared `WEIGHTS` (a test's tiny budget); `budget` holds what
    the requests spent and waited (Bybit counts per IP, both categories together).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        weights: Mapping[str, RequestWeight] | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        self._url = settings.bybit_rest_url.rstrip("/")
        self._policy = retry or RetryPolicy.from_settings(settings)
        self._weights = dict(weights or WEIGHTS)
        weight = self._weights["perps"]
        self.budget = shared_budget("bybit", self._url, weight.per_minute, clock, weight.burst)

    def _open(self) -> Any:
        return one_base_url(_CcxtBybit(ccxt_config(self._policy)), self._url)

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Candles opening in [start, end), ascending, exact (no trade counts)."""
        category = _category(market_type)
        if interval not in INTERVALS:
            allowed = ", ".join(INTERVALS)
            raise InvalidRequest(f"Bybit has no {interval!r} klines; allowed: {allowed}")
        start, end = check_range(start, end)
        symbol = bybit_symbol(coin, quote, market_type)
        cursor, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        candles: list[Candle] = []
        while cursor < end_ms:
            params = {
                "category": category,
                "symbol": symbol,
                "interval": WIRE_INTERVALS[interval],
                "start": cursor,
                "end": end_ms - 1,
                "limit": KLINE_LIMIT,
            }
            name = f"Bybit {category} kline {symbol} {interval} from {cursor}"
            weight = self._weights[market_type].candle_page
            payload = await self._call(name, "publicGetV5MarketKline", params, weight)
            page = parse_klines(payload, name)
            candles += page
            if len(page) < KLINE_LIMIT:
                break
            last_ms = datetime_to_ms(page[-1].time)
            if last_ms < cursor:
                raise ExchangeProtocolError(f"{name}: page ends at {last_ms}, before its start")
            cursor = last_ms + 1
        return select_candles(candles, start, end)

    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]:
        """Settled funding of linear perp `coin`/`quote` in [start, end), one row per
        settlement minute (floored), ascending; only `settled_funding_rate` is set."""
        start, end = check_range(start, end)
        symbol = bybit_symbol(coin, quote, "perps")
        start_ms, cursor = datetime_to_ms(start), datetime_to_ms(end) - 1
        by_minute: dict[datetime, FundingRate] = {}
        while cursor >= start_ms:
            params = {
                "category": "linear",
                "symbol": symbol,
                "startTime": start_ms,
                "endTime": cursor,
                "limit": FUNDING_LIMIT,
            }
            name = f"Bybit funding history {symbol} until {cursor}"
            payload = await self._call(
                name, "publicGetV5MarketFundingHistory", params, self._funding_weight
            )
            rows = parse_funding(payload, name)
            for ms, row in rows:
                if start_ms <= ms <= cursor:
                    by_minute.setdefault(row.time, row)
            if len(rows) < FUNDING_LIMIT:
                break
            first_ms = rows[0][0]
            if first_ms > cursor:
                raise ExchangeProtocolError(f"{name}: page starts at {first_ms}, after its end")
            cursor = first_ms - 1
        return [by_minute[t] for t in sorted(by_minute)]

    async def fetch_open_interest(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[OpenInterest]:
        """Open interest of linear perp `coin`/`quote` every 5 minutes in [start, end),
        ascending, in the coin; only `open_interest` is set."""
        start, end = check_range(start, end)
        symbol = bybit_symbol(coin, quote, "perps")
        params: dict[str, Any] = {
            "category": "linear",
            "symbol": symbol,
            "intervalTime": OPEN_INTEREST_INTERVAL,
            "startTime": datetime_to_ms(start),
            "endTime": datetime_to_ms(end) - 1,
            "limit": OPEN_INTEREST_LIMIT,
        }
        points: dict[datetime, OpenInterest] = {}
        while True:
            name = f"Bybit open interest {symbol} {params.get('cursor', 'first page')}"
            payload = await self._call(
                name, "publicGetV5MarketOpenInterest", params, self._weights["perps"].request
            )
            page, cursor = parse_open_interest(payload, name)
            points.update((p.time, p) for p in page if start <= p.time < end)
            if not cursor or not page:
                break
            if cursor == params.get("cursor"):
                raise ExchangeProtocolError(f"{name}: the next page cursor repeats {cursor!r}")
            params["cursor"] = cursor
        return [points[t] for t in sorted(points)]

    async def _call(self, name: str, method: str, params: dict[str, Any], weight: int) -> Any:
        exchange = self._ccxt
        spend = (self.budget, weight)
        call = functools.partial(getattr(exchange, method), dict(params))
        return await ccxt_call(exchange, name, self._policy, call, spend)

    @property
    def _funding_weight(self) -> int:
        return self._weights["perps"].funding_page or self._weights["perps"].request

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("BybitHistory is used outside `async with`")
        return self._exchange


def _category(market_type: str) -> str:
    if market_type not in MARKET_CATEGORIES:
        allowed = ", ".join(MARKET_TYPES)
        raise InvalidRequest(f"Bybit has no market type {market_type!r}; allowed: {allowed}")
    return MARKET_CATEGORIES[market_type]
