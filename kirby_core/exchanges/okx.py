"""OKX v5 history (spot and USDT swaps): candles, settled funding, open interest, trades.

Through ccxt, but with the raw `publicGet*` calls, so values stay OKX's strings (exact
`Decimal`s). ccxt's `urls['api']` is replaced by the configured host. OKX limits each
endpoint separately (requests per 2 s per IP; beyond it a 429): each endpoint has its own
budget here, declared below, and every call spends from it first. OKX lists newest first
and pages by `after` (older than) / `before` (newer than), both exclusive; this module
returns ascending rows.

    candles       /api/v5/market/history-candles        100 a page, everything OKX has
    funding       /api/v5/public/funding-rate-history   100 a page, the last 3 months
    open interest /api/v5/rubik/stat/contracts/open-interest-history
                  100 a page, the latest 1440 periods (5 days of 5-minute points)
    trades        /api/v5/market/history-trades         100 a page, the last 3 months (spot)

A swap's `vol` counts contracts; its `volCcy` is the coin, which Kirby keeps (spot: `vol`
is the coin). Candles OKX has not confirmed (the forming one) are left out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
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
from kirby_core.exchanges.feeds import TAKER_SIDES, Trade, text
from kirby_core.exchanges.weights import (
    REAL_TIME,
    Burst,
    Clock,
    RequestWeight,
    WeightBudget,
    shared_budget,
)
from kirby_core.models import Candle, FundingRate, OpenInterest
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS, datetime_to_ms, floor_minute, ms_to_datetime

MARKET_TYPES: Final = ("spot", "perps")
CANDLE_LIMIT: Final = 100
"""Most candles per history-candles request."""
FUNDING_LIMIT: Final = 100
FUNDING_INTERVAL: Final = "8h"
"""Its USDT perps settle funding every 8 hours (00:00, 08:00, 16:00 UTC)."""
OPEN_INTEREST_LIMIT: Final = 100
OPEN_INTEREST_PERIOD: Final = "5m"
OPEN_INTEREST_KEPT: Final = 1440
"""The statistics endpoint keeps the latest this many periods."""
OPEN_INTEREST_SPAN: Final = OPEN_INTEREST_KEPT * timedelta(minutes=5)
FUNDING_SPAN: Final = timedelta(days=90)
"""How far back funding-rate-history serves (OKX: "the last 3 months")."""
CANDLE_WEIGHT: Final = RequestWeight(
    per_minute=600, candle_page=1, funding_page=1, burst=Burst(weight=20, seconds=2.0)
)
WEIGHTS: Final = {"spot": CANDLE_WEIGHT, "perps": CANDLE_WEIGHT}
"""history-candles: 20 requests per 2 s per IP, shared by spot and swaps."""
CANDLE_ENDPOINT: Final = "market/history-candles"
TRADE_ENDPOINT: Final = "market/history-trades"
TRADE_LIMIT: Final = 100
TRADE_SPAN: Final = timedelta(days=90)
"""How far back history-trades serves (OKX: "the last 3 months")."""
TRADE_HISTORY_MARKET_TYPES: Final = ("spot",)
"""Swap trades count contracts (their size needs the contract value): Kirby takes OKX trades
of spot only, live and history alike."""
OTHER_ENDPOINTS: Final = {
    TRADE_ENDPOINT: Burst(weight=20, seconds=2.0),
    "public/funding-rate-history": Burst(weight=10, seconds=2.0),
    "rubik/stat/contracts/open-interest-history": Burst(weight=5, seconds=2.0),
}
"""The other endpoints Kirby calls and their own limits (requests per 2 s per IP; each
request weighs `RequestWeight.request`)."""
WIRE_INTERVALS: Final = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "2h": "2H",
    "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc", "1w": "1Wutc",
}  # fmt: skip
"""Kirby interval -> OKX's `bar`; 6 h and longer in their UTC-aligned form (OKX's plain
6H/12H/1D/1W open at Hong Kong midnight)."""
INTERVALS: Final = tuple(i for i in WIRE_INTERVALS if i in INTERVAL_SECONDS)
CANDLE_FIELDS: Final = 9


def okx_symbol(coin: str, quote: str, market_type: str) -> str:
    """(BTC, USDT, perps) -> BTC-USDT-SWAP; spot -> BTC-USDT."""
    pair = f"{coin}-{quote}".upper()
    return f"{pair}-SWAP" if market_type == "perps" else pair


def parse_trade(row: object, where: str) -> Trade:
    """A history-trades row, {"instId":"BTC-USDT","side":"buy","sz":"0.01","px":"97001.1",
    "source":"0","tradeId":"130639474","ts":"1736165580998"} (the live `trades` row's
    fields)."""
    side = field(row, "side", where)
    if side not in TAKER_SIDES:
        raise ExchangeProtocolError(f"{where}: side must be buy or sell, got {side!r:.80}")
    return Trade(
        time=ms_to_datetime(_ms(field(row, "ts", where), "ts", where)),
        trade_id=text(field(row, "tradeId", where), "tradeId", where),
        price=parse_decimal(field(row, "px", where), "px", where),
        size=parse_decimal(field(row, "sz", where), "sz", where),
        side=side,
    )


def _trade_order(trade_id: str) -> tuple[int, str]:
    return (int(trade_id), "") if trade_id.isdigit() else (0, trade_id)


def _data(payload: object, where: str) -> list[Any]:
    """`data` of an OKX envelope; a non-zero `code` is the exchange refusing."""
    code = field(payload, "code", where)
    if code != "0":
        raise ExchangeProtocolError(f"{where}: OKX refused: {code} {field(payload, 'msg', where)}")
    rows = field(payload, "data", where)
    if not isinstance(rows, list):
        raise ExchangeProtocolError(f"{where}: expected a list, got {rows!r:.200}")
    return rows


def _ms(value: object, name: str, where: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ExchangeProtocolError(f"{where}: field {name!r} must be epoch ms, got {value!r:.80}")
    return int(value)


def parse_candles(payload: object, market_type: str, where: str) -> list[Candle]:
    """A candles response, newest first: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]
    -> the confirmed candles, ascending, volume in the coin."""
    candles = []
    for row in _data(payload, where):
        if not isinstance(row, list) or len(row) != CANDLE_FIELDS:
            raise ExchangeProtocolError(
                f"{where}: expected a {CANDLE_FIELDS}-field row, got {row!r:.200}"
            )
        if row[8] not in ("0", "1"):
            raise ExchangeProtocolError(f"{where}: confirm must be '0' or '1', got {row[8]!r}")
        if row[8] == "0":
            continue
        volume = row[6] if market_type == "perps" else row[5]
        candle = Candle(
            time=ms_to_datetime(_ms(row[0], "ts", where)),
            open=parse_decimal(row[1], "o", where),
            high=parse_decimal(row[2], "h", where),
            low=parse_decimal(row[3], "l", where),
            close=parse_decimal(row[4], "c", where),
            volume=parse_decimal(volume, "volCcy" if market_type == "perps" else "vol", where),
        )
        candles.append(check_candle(candle, where))
    return candles[::-1]


def parse_funding(payload: object, where: str) -> list[tuple[int, FundingRate]]:
    """A funding-rate-history response, newest first -> (ms, the realized rate at its
    settlement minute), ascending."""
    rows = []
    for row in _data(payload, where):
        ms = _ms(field(row, "fundingTime", where), "fundingTime", where)
        rate = parse_decimal(field(row, "realizedRate", where), "realizedRate", where)
        rows.append((ms, FundingRate(floor_minute(ms_to_datetime(ms)), settled_funding_rate=rate)))
    return rows[::-1]


def parse_open_interest(payload: object, where: str) -> list[OpenInterest]:
    """A statistics response, newest first: [ts, oi (contracts), oiCcy (coin), oiUsd]
    -> ascending points in the coin, with their USD notional."""
    points = []
    for row in _data(payload, where):
        if not isinstance(row, list) or len(row) != 4:
            raise ExchangeProtocolError(f"{where}: expected a 4-field row, got {row!r:.200}")
        points.append(
            OpenInterest(
                ms_to_datetime(_ms(row[0], "ts", where)),
                open_interest=parse_decimal(row[2], "oiCcy", where),
                notional=parse_decimal(row[3], "oiUsd", where),
            )
        )
    return points[::-1]


class _CcxtOkx(CcxtHooks, ccxt_async.okx):  # type: ignore[misc]  # ccxt is untyped
    pass


class OkxHistory(CcxtSession):
    """OKX history; use as `async with OkxHistory(settings) as okx:`.

    `weights` replaces the declared candle `WEIGHTS` (a test's tiny budget); `budgets`
    holds, per endpoint, what its requests spent and waited.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        weights: Mapping[str, RequestWeight] | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        self._url = settings.okx_rest_url.rstrip("/")
        self._policy = retry or RetryPolicy.from_settings(settings)
        self._weights = dict(weights or WEIGHTS)
        candles = self._weights["perps"]
        self.budgets: dict[str, WeightBudget] = {
            CANDLE_ENDPOINT: shared_budget(
                f"okx {CANDLE_ENDPOINT}", self._url, candles.per_minute, clock, candles.burst
            )
        }
        for endpoint, burst in OTHER_ENDPOINTS.items():
            per_minute = int(burst.weight * 60 / burst.seconds)
            budget = shared_budget(f"okx {endpoint}", self._url, per_minute, clock, burst)
            self.budgets[endpoint] = budget

    def _open(self) -> Any:
        return one_base_url(_CcxtOkx(ccxt_config(self._policy)), self._url)

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Confirmed candles opening in [start, end), ascending, exact (no trade counts)."""
        if market_type not in MARKET_TYPES:
            allowed = ", ".join(MARKET_TYPES)
            raise InvalidRequest(f"OKX has no market type {market_type!r}; allowed: {allowed}")
        if interval not in INTERVALS:
            allowed = ", ".join(INTERVALS)
            raise InvalidRequest(f"OKX has no {interval!r} candles; allowed: {allowed}")
        start, end = check_range(start, end)
        symbol = okx_symbol(coin, quote, market_type)
        weight = self._weights[market_type].candle_page
        candles: list[Candle] = []
        for payload, name in await self._pages(
            CANDLE_ENDPOINT, "publicGetMarketHistoryCandles", symbol, start, end,
            {"bar": WIRE_INTERVALS[interval], "limit": CANDLE_LIMIT}, weight,
            lambda page: [row[0] for row in page],
        ):  # fmt: skip
            candles += parse_candles(payload, market_type, name)
        return select_candles(candles, start, end)

    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]:
        """Settled funding of swap `coin`/`quote` in [start, end), one row per settlement
        minute (floored), ascending; only `settled_funding_rate` is set."""
        start, end = check_range(start, end)
        symbol = okx_symbol(coin, quote, "perps")
        by_minute: dict[datetime, FundingRate] = {}
        weight = self._weights["perps"].funding_page or self._weights["perps"].request
        for payload, name in await self._pages(
            "public/funding-rate-history", "publicGetPublicFundingRateHistory", symbol,
            start, end, {"limit": FUNDING_LIMIT}, weight,
            lambda page: [field(row, "fundingTime", symbol) for row in page],
        ):  # fmt: skip
            for ms, row in parse_funding(payload, name):
                if datetime_to_ms(start) <= ms < datetime_to_ms(end):
                    by_minute.setdefault(row.time, row)
        return [by_minute[t] for t in sorted(by_minute)]

    async def fetch_open_interest(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[OpenInterest]:
        """Open interest of swap `coin`/`quote` every 5 minutes in [start, end), ascending,
        in the coin with its USD notional (OKX keeps the latest `OPEN_INTEREST_KEPT`)."""
        start, end = check_range(start, end)
        symbol = okx_symbol(coin, quote, "perps")
        points: dict[datetime, OpenInterest] = {}
        for payload, name in await self._pages(
            "rubik/stat/contracts/open-interest-history",
            "publicGetRubikStatContractsOpenInterestHistory", symbol, start, end,
            {"period": OPEN_INTEREST_PERIOD, "limit": OPEN_INTEREST_LIMIT},
            self._weights["perps"].request, lambda page: [row[0] for row in page],
            bounds=("begin", "end"),
        ):  # fmt: skip
            points.update((p.time, p) for p in parse_open_interest(payload, name))
        return [points[t] for t in sorted(points) if start <= t < end]

    async def fetch_trades(
        self, coin: str, quote: str, market_type: str, start: datetime, end: datetime
    ) -> list[Trade]:
        """Spot trades of `coin`/`quote` in [start, end), ascending by time, exact. OKX pages
        backward: the first page by time (`type=2`, older than `end`), the next ones by
        trade id (`type=1`, older than the oldest id seen), so trades sharing a millisecond
        across a page boundary are not lost."""
        if market_type not in TRADE_HISTORY_MARKET_TYPES:
            raise InvalidRequest(
                f"Kirby fetches no OKX {market_type} trade history; it does for: "
                + ", ".join(TRADE_HISTORY_MARKET_TYPES)
            )
        start, end = check_range(start, end)
        symbol = okx_symbol(coin, quote, market_type)
        exchange = self._ccxt
        spend = (self.budgets[TRADE_ENDPOINT], self._weights["spot"].request)
        query: dict[str, Any] = {
            "instId": symbol, "type": "2", "after": datetime_to_ms(end), "limit": TRADE_LIMIT
        }  # fmt: skip
        found: dict[str, Trade] = {}
        while True:
            name = f"OKX {TRADE_ENDPOINT} {symbol} before {query['after']}"
            call = functools.partial(exchange.publicGetMarketHistoryTrades, query)
            payload = await ccxt_call(exchange, name, self._policy, call, spend)
            page = [parse_trade(row, name) for row in _data(payload, name)]
            found.update((t.trade_id, t) for t in page if start <= t.time < end)
            if len(page) < TRADE_LIMIT or min(t.time for t in page) < start:
                break
            query = {**query, "type": "1", "after": page[-1].trade_id}
        return sorted(found.values(), key=lambda t: (t.time, _trade_order(t.trade_id)))

    async def _pages(
        self,
        endpoint: str,
        method: str,
        symbol: str,
        start: datetime,
        end: datetime,
        params: dict[str, Any],
        weight: int,
        times: Callable[[list[Any]], list[Any]],
        bounds: tuple[str, str] = ("before", "after"),
    ) -> list[tuple[Any, str]]:
        """Every page of `endpoint` for rows in [start, end), newest page first: OKX pages
        backward, each page's oldest row bounding the next (`bounds`: the names of the
        exclusive lower and upper bound). `times(rows)` gives a page's row times."""
        lower, upper = bounds
        exchange = self._ccxt
        spend = (self.budgets[endpoint], weight)
        limit = params["limit"]
        cursor = datetime_to_ms(end)
        pages = []
        while True:
            query = {"instId": symbol, lower: datetime_to_ms(start) - 1, upper: cursor, **params}
            name = f"OKX {endpoint} {symbol} before {cursor}"
            call = functools.partial(getattr(exchange, method), query)
            payload = await ccxt_call(exchange, name, self._policy, call, spend)
            rows = _data(payload, name)
            pages.append((payload, name))
            if len(rows) < limit:
                return pages
            oldest = min(_ms(t, "ts", name) for t in times(rows))
            if oldest >= cursor:
                raise ExchangeProtocolError(f"{name}: page reaches {oldest}, past its end")
            cursor = oldest

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("OkxHistory is used outside `async with`")
        return self._exchange
