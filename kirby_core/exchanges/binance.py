"""Binance history: klines (spot and USD-M perps), and the perps' settled funding and open
interest.

Through ccxt, but with the raw `publicGetKlines` / `fapiPublicGetKlines` /
`fapiPublicGetFundingRate` / `fapiDataGetOpenInterestHist` calls: ccxt's `fetch_ohlcv`
drops the trade count (kline field 8) and turns prices into floats. Kirby pages over
[start, end) by `startTime` itself. Funding pages hold 1000 settlements; open interest
(`/futures/data/openInterestHist`, 5-minute points, 500 a page) reaches back 30 days only
(`OPEN_INTEREST_SPAN`): older requests are refused. Trades come from
`publicGetAggTrades` / `fapiPublicGetAggTrades` (1000 aggregates a page; historicalTrades
needs an API key, which ccxt insists on). Every host in ccxt's `urls['api']` is
replaced by the configured one (paths such as `/api/v3` and `/fapi/v1` kept), so no call can
leave for an unconfigured host. Every call runs under the retry policy of `base` and first
spends its declared weight (`WEIGHTS`) from the process's budget for the market type
(`rest_budget`), which the book collector's REST depth snapshots spend too
(`depth_snapshot_spend`, `DEPTH_WEIGHT_TIERS`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async

from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges.base import (
    CcxtHooks,
    CcxtSession,
    RetryPolicy,
    aggregate_id,
    ccxt_call,
    ccxt_config,
    check_candle,
    check_range,
    field,
    parse_decimal,
    parse_int,
    parse_ms,
    select_candles,
)
from kirby_core.exchanges.feeds import Trade
from kirby_core.exchanges.weights import (
    REAL_TIME,
    Clock,
    RequestWeight,
    WeightBudget,
    shared_budget,
)
from kirby_core.models import Candle, FundingRate, OpenInterest
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS, datetime_to_ms, floor_minute

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
FUNDING_LIMIT: Final = 1000
FUNDING_INTERVAL: Final = "8h"
"""Its USDT perps settle funding every 8 hours (00:00, 08:00, 16:00 UTC)."""
"""Most settlements per /fapi/v1/fundingRate request."""
FUNDING_PER_MINUTE: Final = 100
"""/fapi/v1/fundingRate shares 500 requests per 5 min per IP with /fapi/v1/fundingInfo:
100 a minute never exceeds it (each request weighs 1 on its own budget)."""
OPEN_INTEREST_LIMIT: Final = 500
OPEN_INTEREST_PERIOD: Final = "5m"
OPEN_INTEREST_SPAN: Final = timedelta(days=30)
"""openInterestHist serves the last 30 days only."""
OPEN_INTEREST_PER_MINUTE: Final = 200
"""/futures/data allows 1000 requests per 5 min per IP: 200 a minute never exceeds it."""
TRADE_LIMIT: Final = 1000
"""Most aggregates per aggTrades request (/api/v3 and /fapi/v1)."""
AGG_TRADES_WEIGHT: Final = {"spot": 4, "perps": 20}
"""Request weight of aggTrades, per market type."""
AGG_TRADES_WINDOW: Final = timedelta(hours=1)
"""aggTrades refuses a startTime and endTime an hour or more apart."""
DEPTH_WEIGHT_TIERS: Final = {
    "spot": ((100, 5), (500, 25), (1000, 50), (5000, 250)),
    "perps": ((50, 2), (100, 5), (500, 10), (1000, 20)),
}
"""Request weight of a REST depth snapshot by its `limit` (up to, weight): /api/v3/depth
(limit 1..5000) and /fapi/v1/depth (5, 10, 20, 50, 100, 500, 1000), developers.binance.com
"Order Book" of each API. The book collector's resyncs spend it (`depth_snapshot_spend`)."""


def depth_weight(market_type: str, limit: int) -> int:
    """What one REST depth snapshot of `limit` levels weighs."""
    tiers = DEPTH_WEIGHT_TIERS.get(market_type)
    if tiers is None or limit < 1:
        allowed = ", ".join(DEPTH_WEIGHT_TIERS)
        raise InvalidRequest(
            f"depth of market type {market_type!r}, limit {limit}: allowed market types "
            f"{allowed}, limit >= 1"
        )
    return next((weight for most, weight in tiers if limit <= most), tiers[-1][1])


def rest_budget(
    settings: Settings,
    market_type: str,
    clock: Clock = REAL_TIME,
    weights: Mapping[str, RequestWeight] = WEIGHTS,
) -> WeightBudget:
    """The process's weight budget of one Binance API family (spot /api, USD-M /fapi):
    Binance counts per IP, so backfills, polls and the book collector's snapshots spend one."""
    url = settings.binance_futures_url if market_type == "perps" else settings.binance_spot_url
    return shared_budget(f"binance {market_type}", url, weights[market_type].per_minute, clock)


def depth_snapshot_spend(
    settings: Settings, market_type: str, limit: int, clock: Clock = REAL_TIME
) -> tuple[WeightBudget, int]:
    """(budget, weight) a REST depth snapshot of `limit` levels spends before it is sent."""
    return rest_budget(settings, market_type, clock), depth_weight(market_type, limit)


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


def parse_funding(payload: object, symbol: str) -> list[tuple[int, FundingRate]]:
    """A fundingRate response, ascending: [{"symbol","fundingTime":ms,"fundingRate":"..",
    "markPrice":".."}] -> (ms, the settled rate at its minute)."""
    where = f"Binance fundingRate {symbol}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    rows = []
    for row in payload:
        at = parse_ms(field(row, "fundingTime", where), "fundingTime", where)
        rate = parse_decimal(field(row, "fundingRate", where), "fundingRate", where)
        rows.append((datetime_to_ms(at), FundingRate(floor_minute(at), settled_funding_rate=rate)))
    return rows


def parse_open_interest(payload: object, symbol: str) -> list[OpenInterest]:
    """An openInterestHist response, ascending: [{"sumOpenInterest" (coin),
    "sumOpenInterestValue" (quote), "timestamp": ms}]."""
    where = f"Binance openInterestHist {symbol}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    return [
        OpenInterest(
            parse_ms(field(row, "timestamp", where), "timestamp", where),
            open_interest=parse_decimal(
                field(row, "sumOpenInterest", where), "sumOpenInterest", where
            ),
            notional=parse_decimal(
                field(row, "sumOpenInterestValue", where), "sumOpenInterestValue", where
            ),
        )
        for row in payload
    ]


def parse_open_interest_now(payload: object, symbol: str) -> OpenInterest:
    """A `/fapi/v1/openInterest` response, {"openInterest" (coin), "symbol", "time": ms},
    stamped with the minute of its `time`."""
    where = f"Binance openInterest {symbol}"
    at = parse_ms(field(payload, "time", where), "time", where)
    return OpenInterest(
        floor_minute(at),
        open_interest=parse_decimal(field(payload, "openInterest", where), "openInterest", where),
    )


def parse_agg_trades(payload: object, symbol: str) -> list[tuple[int, Trade]]:
    """An aggTrades response, ascending: (aggregate id, the aggregate as one trade)::

    [{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,
      "m":true,"M":true}]

    `f`..`l` are the trade ids it merges (one taker order's fills at one price); the taker
    sold when the buyer was the maker (`m`)."""
    where = f"Binance aggTrades {symbol}"
    if not isinstance(payload, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {payload!r:.200}")
    rows = []
    for row in payload:
        maker = field(row, "m", where)
        if not isinstance(maker, bool):
            raise ExchangeProtocolError(f"{where}: field 'm' must be a boolean: {maker!r:.80}")
        first = parse_int(field(row, "f", where), "f", where)
        last = parse_int(field(row, "l", where), "l", where)
        if last < first:
            raise ExchangeProtocolError(f"{where}: last trade id {last} before first {first}")
        trade = Trade(
            time=parse_ms(field(row, "T", where), "T", where),
            trade_id=aggregate_id(first, last),
            price=parse_decimal(field(row, "p", where), "p", where),
            size=parse_decimal(field(row, "q", where), "q", where),
            side="sell" if maker else "buy",
        )
        rows.append((parse_int(field(row, "a", where), "a", where), trade))
    return rows


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


class BinanceHistory(CcxtSession):
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
            market_type: rest_budget(settings, market_type, clock, self._weights)
            for market_type in self._weights
        }
        self.funding_budget = shared_budget(
            "binance fundingRate", self._futures_url, FUNDING_PER_MINUTE, clock
        )
        self.open_interest_budget = shared_budget(
            "binance futures/data", self._futures_url, OPEN_INTEREST_PER_MINUTE, clock
        )

    def _open(self) -> Any:
        # Kirby never loads markets here; should anyone, skip the coin-M (dapi) ones.
        options = {"fetchMarkets": {"types": ["spot", "linear"]}}
        exchange = _CcxtBinance(ccxt_config(self._policy, options=options))
        api = replace_hosts(exchange.urls["api"], self._spot_url, self._futures_url)
        exchange.urls["api"] = api
        return exchange

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

    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]:
        """Settled funding of USD-M perp `coin`/`quote` in [start, end), one row per
        settlement minute (floored), ascending; only `settled_funding_rate` is set."""
        start, end = check_range(start, end)
        symbol = binance_symbol(coin, quote)
        by_minute: dict[datetime, FundingRate] = {}
        cursor, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        while cursor < end_ms:
            params = {"symbol": symbol, "startTime": cursor, "endTime": end_ms - 1}
            rows = parse_funding(
                await self._page(
                    "fapiPublicGetFundingRate", params, FUNDING_LIMIT, self.funding_budget
                ),
                symbol,
            )
            for ms, row in rows:
                if cursor <= ms < end_ms:
                    by_minute.setdefault(row.time, row)
            if len(rows) < FUNDING_LIMIT:
                break
            cursor = self._next(rows[-1][0], cursor, symbol)
        return [by_minute[t] for t in sorted(by_minute)]

    async def fetch_open_interest(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[OpenInterest]:
        """Open interest of USD-M perp `coin`/`quote` every 5 minutes in [start, end),
        ascending, in the coin with its notional. Binance keeps the last 30 days
        (`OPEN_INTEREST_SPAN`) and refuses a start before them."""
        start, end = check_range(start, end)
        symbol = binance_symbol(coin, quote)
        points: dict[datetime, OpenInterest] = {}
        cursor, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        while cursor < end_ms:
            params = {
                "symbol": symbol,
                "period": OPEN_INTEREST_PERIOD,
                "startTime": cursor,
                "endTime": end_ms - 1,
            }
            page = parse_open_interest(
                await self._page(
                    "fapiDataGetOpenInterestHist",
                    params,
                    OPEN_INTEREST_LIMIT,
                    self.open_interest_budget,
                ),
                symbol,
            )
            points.update((p.time, p) for p in page)
            if len(page) < OPEN_INTEREST_LIMIT:
                break
            cursor = self._next(datetime_to_ms(page[-1].time), cursor, symbol)
        return [points[t] for t in sorted(points) if start <= t < end]

    async def fetch_open_interest_now(self, coin: str, quote: str) -> OpenInterest:
        """The current open interest of USD-M perp `coin`/`quote` (`/fapi/v1/openInterest`,
        weight 1): what the live collector polls once a minute, as Binance streams none."""
        symbol = binance_symbol(coin, quote)
        exchange = self._ccxt
        call = functools.partial(exchange.fapiPublicGetOpenInterest, {"symbol": symbol})
        name = f"Binance openInterest {symbol}"
        payload = await ccxt_call(exchange, name, self._policy, call, (self.budgets["perps"], 1))
        return parse_open_interest_now(payload, symbol)

    async def _page(
        self, method: str, params: dict[str, Any], limit: int, budget: WeightBudget
    ) -> Any:
        """One page of a ccxt raw `method`, spending 1 from `budget`."""
        exchange = self._ccxt
        name = f"Binance {method} {params['symbol']} from {params['startTime']}"
        call = functools.partial(getattr(exchange, method), {**params, "limit": limit})
        return await ccxt_call(exchange, name, self._policy, call, (budget, 1))

    async def fetch_trades(
        self, coin: str, quote: str, market_type: str, start: datetime, end: datetime
    ) -> list[Trade]:
        """Trades of `coin`/`quote` in [start, end), ascending, exact, from aggTrades (the
        one keyless trade history of both families): an aggregate of one trade keeps that
        trade's id, one of several fills becomes one row `first-last` (`aggregate_id`).
        The first page of an hour is asked by time (aggTrades takes windows under an hour),
        the next ones from the aggregate id after the last one seen."""
        if market_type not in AGG_TRADES_WEIGHT or market_type not in self.budgets:
            allowed = ", ".join(MARKET_TYPES)
            raise InvalidRequest(f"unknown market type {market_type!r}; allowed: {allowed}")
        start, end = check_range(start, end)
        symbol = binance_symbol(coin, quote)
        exchange = self._ccxt
        endpoint = (
            exchange.publicGetAggTrades
            if market_type == "spot"
            else exchange.fapiPublicGetAggTrades
        )
        spend = (self.budgets[market_type], AGG_TRADES_WEIGHT[market_type])
        end_ms, window = datetime_to_ms(end), int(AGG_TRADES_WINDOW.total_seconds() * 1000)
        cursor = datetime_to_ms(start)
        trades: list[Trade] = []

        async def page(params: dict[str, Any]) -> list[tuple[int, Trade]]:
            query = {"symbol": symbol, **params, "limit": TRADE_LIMIT}
            name = f"Binance {market_type} aggTrades {symbol} {params}"
            call = functools.partial(endpoint, query)
            rows = parse_agg_trades(
                await ccxt_call(exchange, name, self._policy, call, spend), symbol
            )
            trades.extend(t for _, t in rows if start <= t.time < end)
            return rows

        while cursor < end_ms:
            until = min(cursor + window, end_ms)
            rows = await page({"startTime": cursor, "endTime": until - 1})
            cursor = until
            if len(rows) < TRADE_LIMIT:
                continue  # the whole window
            while len(rows) == TRADE_LIMIT and rows[-1][1].time < end:
                rows = await page({"fromId": rows[-1][0] + 1})
            break  # from ids: up to `end`, or to the latest trade
        return trades

    @staticmethod
    def _next(last_ms: int, cursor: int, symbol: str) -> int:
        if last_ms < cursor:
            raise ExchangeProtocolError(
                f"Binance {symbol}: page ends at {last_ms}, before its start {cursor}"
            )
        return last_ms + 1

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("BinanceHistory is used outside `async with`")
        return self._exchange
