"""Coinbase Advanced Trade history (spot): public product candles.

Through ccxt, but with the raw `v3PublicGetBrokerageMarketProductsProductIdCandles` call, so
values stay Coinbase's strings (exact `Decimal`s). ccxt's `urls['api']` is replaced by the
configured host. A request covers at most `CANDLE_LIMIT` candles (a wider range is refused),
so Kirby asks window by window; `start`/`end` are unix seconds, candles opening in
[start, end), newest first. Coinbase publishes no funding or open interest (spot only) and
no trade counts; a minute without trades has no candle. Public endpoints allow 10 requests
a second per IP: every call spends its declared weight (`WEIGHTS`) first.
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
from kirby_core.models import Candle
from kirby_core.settings import Settings
from kirby_core.timeutil import (
    INTERVAL_SECONDS,
    datetime_to_ms,
    floor_time,
    interval_seconds,
    ms_to_datetime,
)

MARKET_TYPES: Final = ("spot",)
CANDLE_LIMIT: Final = 300
"""Most candles one request may cover."""
WEIGHTS: Final = {
    "spot": RequestWeight(per_minute=600, candle_page=1, burst=Burst(weight=10, seconds=1.0))
}
"""10 public requests a second per IP, each weighing 1."""
WIRE_INTERVALS: Final = {
    "1m": "ONE_MINUTE", "5m": "FIVE_MINUTE", "15m": "FIFTEEN_MINUTE", "30m": "THIRTY_MINUTE",
    "1h": "ONE_HOUR", "2h": "TWO_HOUR", "6h": "SIX_HOUR", "1d": "ONE_DAY",
}  # fmt: skip
"""Kirby interval -> Coinbase's `granularity` (it has no 4 h candles)."""
INTERVALS: Final = tuple(i for i in WIRE_INTERVALS if i in INTERVAL_SECONDS)


def coinbase_symbol(coin: str, quote: str, market_type: str) -> str:
    """(BTC, USD, spot) -> BTC-USD, Coinbase's product id."""
    return f"{coin}-{quote}".upper()


def _seconds(value: object, where: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ExchangeProtocolError(f"{where}: field 'start' must be unix seconds, got {value!r}")
    return int(value)


def parse_candles(payload: object, where: str) -> list[Candle]:
    """A candles response, newest first: {"candles": [{start, low, high, open, close,
    volume}]} with `start` in unix seconds and values as strings -> ascending candles."""
    rows = field(payload, "candles", where)
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: expected a list of candles, got {rows!r:.200}")
    candles = []
    for row in rows:
        candle = Candle(
            time=ms_to_datetime(_seconds(field(row, "start", where), where) * 1000),
            open=parse_decimal(field(row, "open", where), "open", where),
            high=parse_decimal(field(row, "high", where), "high", where),
            low=parse_decimal(field(row, "low", where), "low", where),
            close=parse_decimal(field(row, "close", where), "close", where),
            volume=parse_decimal(field(row, "volume", where), "volume", where),
        )
        candles.append(check_candle(candle, where))
    return candles[::-1]


class _CcxtCoinbase(CcxtHooks, ccxt_async.coinbase):  # type: ignore[misc]  # ccxt is untyped
    pass


class CoinbaseHistory(CcxtSession):
    """Coinbase candle history; use as `async with CoinbaseHistory(settings) as coinbase:`.

    `weights` replaces the declared `WEIGHTS` (a test's tiny budget); `budget` holds what
    the requests spent and waited.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        weights: Mapping[str, RequestWeight] | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        self._url = settings.coinbase_rest_url.rstrip("/")
        self._policy = retry or RetryPolicy.from_settings(settings)
        self._weight = dict(weights or WEIGHTS)["spot"]
        self.budget = shared_budget(
            "coinbase", self._url, self._weight.per_minute, clock, self._weight.burst
        )

    def _open(self) -> Any:
        return one_base_url(_CcxtCoinbase(ccxt_config(self._policy)), self._url)

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Candles opening in [start, end), ascending, exact (no trade counts)."""
        if market_type not in MARKET_TYPES:
            raise InvalidRequest(f"Coinbase has no market type {market_type!r}; allowed: spot")
        if interval not in INTERVALS:
            allowed = ", ".join(INTERVALS)
            raise InvalidRequest(f"Coinbase has no {interval!r} candles; allowed: {allowed}")
        start, end = check_range(start, end)
        product = coinbase_symbol(coin, quote, market_type)
        exchange = self._ccxt
        step = interval_seconds(interval)
        end_s = -(-datetime_to_ms(end) // 1000)
        candles: list[Candle] = []
        # Windows aligned on open times, each covering at most CANDLE_LIMIT candles.
        for window in range(
            datetime_to_ms(floor_time(start, interval)) // 1000, end_s, CANDLE_LIMIT * step
        ):
            params = {
                "product_id": product,
                "start": str(window),
                "end": str(min(window + CANDLE_LIMIT * step, end_s)),
                "granularity": WIRE_INTERVALS[interval],
            }
            name = f"Coinbase candles {product} {interval} from {window}"
            call = functools.partial(
                exchange.v3PublicGetBrokerageMarketProductsProductIdCandles, params
            )
            spend = (self.budget, self._weight.candle_page)
            payload = await ccxt_call(exchange, name, self._policy, call, spend)
            candles += parse_candles(payload, name)
        return select_candles(candles, start, end)

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("CoinbaseHistory is used outside `async with`")
        return self._exchange
