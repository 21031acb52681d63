"""Binance kline history (spot and USD-M perps) for the training database.

Through ccxt, but with the raw `publicGetKlines` / `fapiPublicGetKlines` calls: ccxt's
`fetch_ohlcv` drops the trade count (kline field 8) and turns prices into floats. Kirby pages
over [start, end) by `startTime` itself. Every host in ccxt's `urls['api']` is replaced by
the configured one (paths such as `/api/v3` and `/fapi/v1` kept), so no call can leave for
an unconfigured host. Every call runs under the retry policy of `base` and first spends its
declared weight (`WEIGHTS`) from the client's budget for the market type.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async

from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import (
    CcxtHooks,
    RetryPolicy,
    ccxt_call,
    ccxt_config,
    check_candle,
    check_range,
    parse_decimal,
    parse_int,
    parse_ms,
    select_candles,
)
from kirby_core.exchanges.weights import REAL_TIME, Clock, RequestWeight, shared_budget
from kirby_core.models import Candle
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS, datetime_to_ms

KLINE_LIMIT: Final = {"spot": 1000, "perps": 1500}
"""Most klines per request: /api/v3/klines and /fapi/v1/klines."""
MARKET_TYPES: Final = tuple(KLINE_LIMIT)
WEIGHTS: Final = {
    "spot": RequestWeight(per_minute=6000, candle_page=2),
    "perps": RequestWeight(per_minute=2400, candle_page=10),
}
"""Per IP and API family: /api/v3/klines weighs 2 at any limit, /fapi/v1/klines 10 above
1000 rows (Kirby asks for `KLINE_LIMIT`)."""
INTERVALS: Final = tuple(
    i
    for i in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
    if i in INTERVAL_SECONDS
)
"""Intervals Binance publishes that Kirby handles (its `1M` has no fixed length)."""
KLINE_FIELDS: Final = 12


def binance_symbol(coin: str, quote: str) -> str:
    """(BTC, USDT) -> BTCUSDT, the same for spot and USD-M perps."""
    return f"{coin}{quote}".upper()


def parse_klines(payload: object, symbol: str, interval: str) -> list[Candle]:
    """A klines response; `volume` is the base-asset volume, `trade_count` field 8::

    [[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",
      1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]
    """
    where = f"Binance klines {symbol} {interval}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    candles = []
    for row in payload:
        if not isinstance(row, list) or len(row) != KLINE_FIELDS:
            raise ExchangeProtocolError(
                f"{where}: expected a {KLINE_FIELDS}-field row, got {row!r:.200}"
            )
        candle = Candle(
            time=parse_ms(row[0], "openTime", where),
            open=parse_decimal(row[1], "open", where),
            high=parse_decimal(row[2], "high", where),
            low=parse_decimal(row[3], "low", where),
            close=parse_decimal(row[4], "close", where),
            volume=parse_decimal(row[5], "volume", where),
            trade_count=parse_int(row[8], "numberOfTrades", where),
        )
        candles.append(check_candle(candle, where))
    return candles


def replace_hosts(api_urls: Mapping[str, Any], spot_url: str, futures_url: str) -> dict[str, Any]:
    """ccxt's `urls['api']` with every host replaced: USD-M (`fapi.`) hosts by `futures_url`,
    all others by `spot_url`; paths kept."""
    spot, futures = spot_url.rstrip("/"), futures_url.rstrip("/")
    replaced: dict[str, Any] = {}
    for key, url in api_urls.items():
        if not isinstance(url, str):
            replaced[key] = url
            continue
        parts = urlsplit(url)
        base = futures if parts.hostname and parts.hostname.startswith("fapi.") else spot
        replaced[key] = base + parts.path
    return replaced


class _CcxtBinance(CcxtHooks, ccxt_async.binance):  # type: ignore[misc]  # ccxt is untyped
    pass


class BinanceHistory:
    """Binance kline history; use as `async with BinanceHistory(settings) as binance:`.

    `weights` replaces the declared `WEIGHTS` (a test's tiny budget); `budgets` holds what
    each market type's requests spent and waited (Binance counts per IP and API family; the
    clients of one process share them).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        weights: Mapping[str, RequestWeight] | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        self._spot_url = settings.binance_spot_url
        self._futures_url = settings.binance_futures_url
        self._policy = retry or RetryPolicy.from_settings(settings)
        self._weights = dict(weights or WEIGHTS)
        self.budgets = {
            market_type: shared_budget(
                f"binance {market_type}",
                self._futures_url if market_type == "perps" else self._spot_url,
                weight.per_minute,
                clock,
            )
            for market_type, weight in self._weights.items()
        }
        self._exchange: Any = None

    async def __aenter__(self) -> Self:
        # Kirby never loads markets here; should anyone, skip the coin-M (dapi) ones.
        options = {"fetchMarkets": {"types": ["spot", "linear"]}}
        self._exchange = _CcxtBinance(ccxt_config(self._policy, options=options))
        api = replace_hosts(self._exchange.urls["api"], self._spot_url, self._futures_url)
        self._exchange.urls["api"] = api
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._exchange is not None:
            await self._exchange.close()
            self._exchange = None

    async def fetch_candles(
        self,
        coin: str,
        quote: str,
        market_type: str,
        interval: str,
        start: datetime,
        end: datetime,
    ) -> list[Candle]:
        """Candles opening in [start, end), ascending, exact, with trade counts."""
        if market_type not in KLINE_LIMIT or market_type not in self.budgets:
            allowed = ", ".join(MARKET_TYPES)
            raise InvalidRequest(f"unknown market type {market_type!r}; allowed: {allowed}")
        if interval not in INTERVALS:
            allowed = ", ".join(INTERVALS)
            raise InvalidRequest(f"Binance has no {interval!r} klines; allowed: {allowed}")
        start, end = check_range(start, end)
        exchange = self._ccxt
        symbol = binance_symbol(coin, quote)
        limit = KLINE_LIMIT[market_type]
        spend = (self.budgets[market_type], self._weights[market_type].candle_page)
        endpoint = (
            exchange.publicGetKlines if market_type == "spot" else exchange.fapiPublicGetKlines
        )
        cursor, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        candles: list[Candle] = []
        while cursor < end_ms:
            params = {
                "symbol": symbol,
                "interval": interval,
                "startTime": cursor,
                "endTime": end_ms - 1,
                "limit": limit,
            }
            name = f"Binance {market_type} klines {symbol} {interval} from {cursor}"
            payload = await ccxt_call(
                exchange, name, self._policy, functools.partial(endpoint, params), spend
            )
            page = parse_klines(payload, symbol, interval)
            candles += page
            if len(page) < limit:
                break
            last_ms = datetime_to_ms(page[-1].time)
            if last_ms < cursor:
                raise ExchangeProtocolError(f"{name}: page ends at {last_ms}, before its start")
            cursor = last_ms + 1
        return select_candles(candles, start, end)

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("BinanceHistory is used outside `async with`")
        return self._exchange
