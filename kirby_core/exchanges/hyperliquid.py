"""Hyperliquid history over REST: candles, settled funding rates, and what is not available.

- Candles go through ccxt (markets and symbol resolution) but use its raw `candleSnapshot`
  call, because `fetch_ohlcv` turns prices into floats and drops the trade count. Kirby
  pages over the exchange's 5000-candle window itself.
- Funding history goes through the hyperliquid-python-sdk (synchronous, run in a thread),
  500 rows per page.
- Open interest has no history anywhere in Hyperliquid's public API: `HAS_OPEN_INTEREST_HISTORY`
  and `open_interest_coverage` say so; nothing here invents it.
- Hyperliquid serves only the most recent 5000 candles per interval: `candle_coverage` says
  which part of a range is older than that, so a backfill can report it as unavailable at
  source instead of a silent empty success.

The catalog's quote `USD` for perps is ccxt's `BTC/USDC:USDC` and the bare coin `BTC` on the
wire. Every call runs under the retry policy of `base` and each request first spends its
declared weight (`WEIGHT`) from the client's budget; errors leave as Kirby errors.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Final

import ccxt.async_support as ccxt_async
import requests
from hyperliquid.api import API
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError, ServerError

from kirby_core.errors import ExchangeProtocolError, InvalidRequest, NotFound
from kirby_core.exchanges.base import (
    CcxtHooks,
    CcxtSession,
    RetryPolicy,
    SourceCoverage,
    TimeRange,
    TransientError,
    call_with_retries,
    ccxt_call,
    ccxt_config,
    check_range,
    one_base_url,
    parse_retry_after,
    select_candles,
)
from kirby_core.exchanges.hyperliquid_wire import (
    check_interval,
    parse_candle_snapshot,
    parse_funding_history,
)
from kirby_core.exchanges.weights import REAL_TIME, Clock, RequestWeight, shared_budget
from kirby_core.models import Candle, FundingRate
from kirby_core.settings import Settings
from kirby_core.timeutil import datetime_to_ms, floor_time, interval_delta, interval_seconds

CANDLE_LIMIT: Final = 5000
"""Candles per interval Hyperliquid keeps (plus the forming one), and per response."""
FUNDING_PAGE_ROWS: Final = 500
"""Rows per fundingHistory response."""
INFO_WEIGHT: Final = 20
"""Weight of one /info request Kirby sends (candleSnapshot, fundingHistory, meta, ...)..."""
CANDLES_PER_WEIGHT: Final = 60
"""...plus one per this many candles a candleSnapshot returns..."""
FUNDING_ROWS_PER_WEIGHT: Final = 20
"""...or per this many rows a fundingHistory returns."""
WEIGHT: Final = RequestWeight(
    per_minute=1200,
    candle_page=INFO_WEIGHT + CANDLE_LIMIT // CANDLES_PER_WEIGHT,
    request=INFO_WEIGHT,
    funding_page=INFO_WEIGHT + FUNDING_PAGE_ROWS // FUNDING_ROWS_PER_WEIGHT,
)
"""Hyperliquid's REST allowance per IP, and what Kirby's requests weigh (full pages)."""
HAS_OPEN_INTEREST_HISTORY: Final = False
"""Hyperliquid publishes open interest only live (activeAssetCtx), never as history."""
MARKET_TYPES: Final = ("perps", "spot")


def candle_coverage(interval: str, start: datetime, end: datetime, now: datetime) -> SourceCoverage:
    """Split [start, end) into what Hyperliquid still serves at `now` and what is older."""
    start, end = check_range(start, end)
    oldest = floor_time(now, check_interval(interval)) - CANDLE_LIMIT * interval_delta(interval)
    if end <= oldest:
        return SourceCoverage(available=None, unavailable=TimeRange(start, end))
    if start >= oldest:
        return SourceCoverage(available=TimeRange(start, end), unavailable=None)
    return SourceCoverage(available=TimeRange(oldest, end), unavailable=TimeRange(start, oldest))


def open_interest_coverage(start: datetime, end: datetime) -> SourceCoverage:
    """All of it is unavailable: Hyperliquid has no open-interest history."""
    return SourceCoverage(available=None, unavailable=TimeRange(*check_range(start, end)))


def ccxt_symbol(coin: str, quote: str, market_type: str) -> str:
    """The ccxt symbol of a catalog trading pair: (BTC, USD, perps) -> BTC/USDC:USDC."""
    settle = "USDC" if quote in ("USD", "USDC") else None
    if market_type == "perps":
        if settle is None:
            raise InvalidRequest(f"Hyperliquid perps settle in USDC; quote {quote!r} is not USD")
        return f"{coin.upper()}/USDC:USDC"
    if market_type == "spot":
        return f"{coin.upper()}/{settle or quote.upper()}"
    raise InvalidRequest(f"unknown market type {market_type!r}; allowed: {', '.join(MARKET_TYPES)}")


class _CcxtHyperliquid(CcxtHooks, ccxt_async.hyperliquid):  # type: ignore[misc]  # ccxt is untyped
    pass


class HyperliquidHistory(CcxtSession):
    """Hyperliquid REST history; use as `async with HyperliquidHistory(settings) as hl:`.

    `weight` replaces the declared `WEIGHT` (a test's tiny budget); `budget` holds what the
    requests spent and waited (one per host: Hyperliquid counts per IP, so the clients of
    one process share it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        weight: RequestWeight | None = None,
        clock: Clock = REAL_TIME,
    ) -> None:
        self._base_url = settings.hyperliquid_rest_url.rstrip("/")
        self._policy = retry or RetryPolicy.from_settings(settings)
        self._weight = weight or WEIGHT
        self.budget = shared_budget("hyperliquid", self._base_url, self._weight.per_minute, clock)
        self._info: Info | None = None
        self._info_lock = asyncio.Lock()

    def _open(self) -> Any:
        return one_base_url(_CcxtHyperliquid(ccxt_config(self._policy)), self._base_url)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._info is not None:
            self._info.session.close()
            self._info = None
        await super().__aexit__(exc_type, exc, tb)

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Candles opening in [start, end), ascending, exact, with trade counts.

        Parts older than Hyperliquid keeps come back empty: check `candle_coverage` first.
        Minutes without trades have no candle. A range reaching past now includes the
        forming candle as it stands.
        """
        check_interval(interval)
        start, end = check_range(start, end)
        wire_coin = await self._wire_coin(coin, quote, market_type)
        step_ms = interval_seconds(interval) * 1000
        end_ms = datetime_to_ms(end)
        candles: list[Candle] = []
        # Windows aligned on open times so each holds at most CANDLE_LIMIT candles; the
        # exchange also returns the candle containing endTime, hence the -1.
        for window_ms in range(
            datetime_to_ms(floor_time(start, interval)), end_ms, CANDLE_LIMIT * step_ms
        ):
            window_end_ms = min(window_ms + CANDLE_LIMIT * step_ms, end_ms)
            body = {
                "type": "candleSnapshot",
                "req": {
                    "coin": wire_coin,
                    "interval": interval,
                    "startTime": window_ms,
                    "endTime": window_end_ms - 1,
                },
            }
            name = f"Hyperliquid candleSnapshot {wire_coin} {interval} from {window_ms}"
            call = functools.partial(self._ccxt.publicPostInfo, body)
            candles_asked = -(-(window_end_ms - window_ms) // step_ms)
            spend = (
                self.budget,
                self._page_weight(candles_asked, CANDLES_PER_WEIGHT, self._weight.candle_page),
            )
            payload = await ccxt_call(self._ccxt, name, self._policy, call, spend)
            candles += parse_candle_snapshot(payload, wire_coin, interval)
        return select_candles(candles, start, end)

    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]:
        """Settled hourly funding of perp `coin` in [start, end), one row per minute (floored).

        Only `settled_funding_rate` and `settled_premium` are set. `quote` is the catalog's
        (USD): Hyperliquid has one perp per coin.
        """
        start, end = check_range(start, end)
        info = await self._info_client()
        if coin not in info.name_to_coin:
            raise NotFound(f"Hyperliquid has no perp {coin!r} (not in its meta universe)")
        cursor, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        by_minute: dict[datetime, FundingRate] = {}
        while cursor < end_ms:
            name = f"Hyperliquid fundingHistory {coin} from {cursor}"
            payload = await self._sdk(
                name,
                self._page_weight(
                    min(FUNDING_PAGE_ROWS, -(-(end_ms - cursor) // 3_600_000)),  # hourly rows
                    FUNDING_ROWS_PER_WEIGHT,
                    self._weight.funding_page,
                ),
                info.funding_history,
                coin,
                cursor,
                end_ms - 1,
            )
            rows = parse_funding_history(payload, coin)
            for ms, row in rows:
                if cursor <= ms < end_ms:
                    by_minute[row.time] = row  # the latest row of a minute wins
            if len(rows) < FUNDING_PAGE_ROWS:
                break
            last_ms = rows[-1][0]
            if last_ms < cursor:
                raise ExchangeProtocolError(f"{name}: page ends at {last_ms}, before its start")
            cursor = last_ms + 1
        return [by_minute[t] for t in sorted(by_minute)]

    @property
    def _ccxt(self) -> Any:
        if self._exchange is None:
            raise RuntimeError("HyperliquidHistory is used outside `async with`")
        return self._exchange

    async def _wire_coin(self, coin: str, quote: str, market_type: str) -> str:
        """The coin name candleSnapshot expects, resolved through ccxt's markets."""
        symbol = ccxt_symbol(coin, quote, market_type)
        exchange = self._ccxt
        if exchange.markets is None:
            await ccxt_call(
                exchange,
                "Hyperliquid load_markets",
                self._policy,
                exchange.load_markets,
                (self.budget, self._weight.request),
            )
        market = exchange.markets.get(symbol)
        if market is None:
            raise NotFound(f"Hyperliquid has no market {symbol} ({coin}/{quote} {market_type})")
        # Same rule as ccxt's fetch_ohlcv: perps by name, spot by index id ("@107").
        return str(market["baseName"] if market["swap"] else market["id"])

    async def _info_client(self) -> Info:
        """The SDK client, built once. Info() would fetch spotMeta and meta outside any retry
        policy; fetch them here under the policy and hand them over."""
        async with self._info_lock:
            if self._info is None:
                api = API(self._base_url, timeout=self._policy.timeout)
                try:
                    request = self._weight.request
                    spot_meta = await self._sdk(
                        "Hyperliquid spotMeta", request, api.post, "/info", {"type": "spotMeta"}
                    )
                    meta = await self._sdk(
                        "Hyperliquid meta", request, api.post, "/info", {"type": "meta", "dex": ""}
                    )
                finally:
                    api.session.close()
                try:
                    self._info = Info(
                        self._base_url,
                        skip_ws=True,
                        meta=meta,
                        spot_meta=spot_meta,
                        timeout=self._policy.timeout,
                    )
                except (KeyError, TypeError, IndexError) as exc:
                    raise ExchangeProtocolError(
                        f"Hyperliquid meta/spotMeta do not have the documented shape: {exc!r}"
                    ) from exc
            return self._info

    def _page_weight(self, rows: int, rows_per_weight: int, full_page: int | None) -> int:
        """What a page of at most `rows` rows weighs: Hyperliquid charges the request plus
        the rows it returns, so a short page costs less than the declared `full_page`."""
        weight = self._weight.request + rows // rows_per_weight
        return weight if full_page is None else min(full_page, weight)

    async def _sdk(self, name: str, weight: int, fn: Callable[..., Any], *args: Any) -> Any:
        """One SDK request (`weight`) in a thread under the retry policy."""

        async def attempt() -> Any:
            await self.budget.spend(weight)
            return await asyncio.to_thread(_sdk_attempt, name, fn, *args)

        return await call_with_retries(name, attempt, self._policy)


def _sdk_attempt(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one SDK call, translating its errors into retries or Kirby errors."""
    try:
        result = fn(*args)
    except ServerError as exc:
        raise TransientError(f"HTTP {exc.status_code}: {exc.message}") from exc
    except ClientError as exc:
        # The SDK puts the response headers in `header` or, for non-JSON bodies, `error_data`.
        headers = next((h for h in (exc.header, exc.error_data) if hasattr(h, "items")), None)
        if exc.status_code in (418, 429):
            reason = f"HTTP {exc.status_code}: {exc.error_message}"
            raise TransientError(reason, parse_retry_after(headers)) from exc
        raise ExchangeProtocolError(
            f"{name}: exchange refused the request: HTTP {exc.status_code}: {exc.error_message}"
        ) from exc
    except requests.RequestException as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    # The SDK answers a non-JSON success body with {"error": "Could not parse JSON: ..."}.
    if isinstance(result, dict) and list(result) == ["error"]:
        raise ExchangeProtocolError(f"{name}: {result['error']}")
    return result
