"""Machinery shared by the exchange adapters: retry policy, value parsing, ccxt plumbing.

The adapters (`hyperliquid`, `binance`) are mostly declarations plus small parsers; what they
have in common lives here:

- `RetryPolicy` / `call_with_retries`: a call that fails with a `TransientError` (429, 5xx,
  network) is retried a bounded number of times, honouring `Retry-After` and otherwise
  backing off exponentially with jitter; then `ExchangeUnavailable` names the call.
- `parse_decimal` / `parse_ms` / `field`: exact values from exchange payloads. A price, size
  or rate becomes a `Decimal` built from the exchange's own string, never via float; a bad
  value raises `ExchangeProtocolError` naming the field and the value.
- `open_ccxt` / `ccxt_attempt`: ccxt clients pointed at configurable hosts, with ccxt's
  errors translated at the boundary into retries or Kirby errors, and every HTTP request
  they send spending its weight first (`CcxtHooks`; the budgets are `weights`').

Nothing here does I/O on import, and nothing reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import ccxt

from kirby_core.errors import (
    ExchangeProtocolError,
    ExchangeUnavailable,
    InvalidRequest,
    NotFound,
)
from kirby_core.exchanges.weights import WeightBudget
from kirby_core.models import Candle
from kirby_core.settings import Settings
from kirby_core.timeutil import ensure_utc, ms_to_datetime

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- retry policy -------------------------------------------------------------------------


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, network); never leaves this package."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    """Retries after the first attempt; 0 means a single attempt."""
    base_delay: float = 0.5
    """Backoff before the first retry; doubles with each further retry."""
    max_delay: float = 30.0
    """Cap of one backoff, and the longest `Retry-After` honoured: a longer one fails fast."""
    timeout: float = 10.0
    """Timeout of one HTTP call, in seconds."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_retries=settings.http_max_retries, timeout=settings.http_timeout_seconds)

    def backoff(self, retry: int) -> float:
        """Delay before retry number `retry` (0-based): exponential, capped, with jitter
        (half fixed, half random) so that clients failing together do not retry together."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


async def call_with_retries(
    name: str, attempt: Callable[[], Awaitable[T]], policy: RetryPolicy
) -> T:
    """Await `attempt()` until it succeeds, retrying `TransientError`s per `policy`.

    `name` describes the call ("Hyperliquid candleSnapshot BTC 1m") for logs and for the
    `ExchangeUnavailable` raised once the retries are spent.
    """
    attempts = policy.max_retries + 1
    for retry in range(attempts):
        try:
            return await attempt()
        except TransientError as exc:
            if retry == policy.max_retries:
                raise ExchangeUnavailable(
                    f"{name} failed after {attempts} attempt(s): {exc.reason}"
                ) from exc
            if exc.retry_after is not None and exc.retry_after > policy.max_delay:
                raise ExchangeUnavailable(
                    f"{name} rate limited: Retry-After {exc.retry_after:g} s exceeds the "
                    f"{policy.max_delay:g} s the retry policy waits ({exc.reason})"
                ) from exc
            delay = exc.retry_after if exc.retry_after is not None else policy.backoff(retry)
            log.warning(
                "event=exchange_retry call=%r retry=%d/%d delay_s=%.3f reason=%r",
                name,
                retry + 1,
                policy.max_retries,
                delay,
                exc.reason,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def parse_retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), if any."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, (ensure_utc(moment) - datetime.now(UTC)).total_seconds())


_WEIGHT: ContextVar[tuple[WeightBudget, int] | None] = ContextVar("kirby_weight", default=None)
"""The budget and weight of the HTTP requests the current ccxt call sends (`CcxtHooks`)."""
_LIMITED: ContextVar[list[int] | None] = ContextVar("kirby_limited", default=None)
"""The rate-limit statuses the current ccxt call's HTTP requests were answered with."""


# --- payload values -----------------------------------------------------------------------


def field(obj: object, name: str, where: str) -> Any:
    """`obj[name]`, or `ExchangeProtocolError` naming what is missing."""
    if type(obj) is dict and name in obj:  # the hot path: a parsed JSON object
        return obj[name]
    if not isinstance(obj, Mapping):
        raise ExchangeProtocolError(f"{where}: expected an object, got {_show(obj)}")
    try:
        return obj[name]
    except KeyError:
        raise ExchangeProtocolError(f"{where}: missing field {name!r} in {_show(obj)}") from None


def parse_decimal(value: object, name: str, where: str) -> Decimal:
    """An exact `Decimal` from a decimal string (or a JSON integer / exact JSON number).

    Floats are refused: they have already lost the exchange's digits.
    """
    # `type(value) is str` first: the hot path; `Decimal` strips surrounding whitespace itself
    if type(value) is not str and (
        isinstance(value, bool) or not isinstance(value, str | int | Decimal)
    ):
        raise ExchangeProtocolError(
            f"{where}: field {name!r} must be a decimal string, got {_show(value)}"
        )
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ExchangeProtocolError(f"{where}: field {name!r} is not a number: {_show(value)}")
    return number


def parse_optional_decimal(value: object, name: str, where: str) -> Decimal | None:
    return None if value is None else parse_decimal(value, name, where)


def parse_int(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExchangeProtocolError(
            f"{where}: field {name!r} must be an integer, got {_show(value)}"
        )
    return value


def parse_ms(value: object, name: str, where: str) -> datetime:
    """A UTC datetime from epoch milliseconds."""
    ms = parse_int(value, name, where)
    if ms < 0:
        raise ExchangeProtocolError(f"{where}: field {name!r} is a negative time: {ms}")
    return ms_to_datetime(ms)


def exact_product(a: Decimal, b: Decimal) -> Decimal:
    """a x b with every digit kept (the default context would round to 28 digits)."""
    with localcontext() as ctx:
        ctx.prec = max(1, len(a.as_tuple().digits) + len(b.as_tuple().digits))
        return a * b


def check_candle(candle: Candle, where: str) -> Candle:
    """Refuse candles that cannot be true: high below low, negative volume or trade count."""
    if candle.high < candle.low:
        raise ExchangeProtocolError(
            f"{where}: high {candle.high} is below low {candle.low} (candle at {candle.time})"
        )
    if candle.volume < 0:
        raise ExchangeProtocolError(f"{where}: negative volume {candle.volume}")
    if candle.trade_count is not None and candle.trade_count < 0:
        raise ExchangeProtocolError(f"{where}: negative trade count {candle.trade_count}")
    return candle


def select_candles(candles: Iterable[Candle], start: datetime, end: datetime) -> list[Candle]:
    """Candles opening in [start, end), one per open time (the last one seen), ascending."""
    start, end = ensure_utc(start), ensure_utc(end)
    by_time = {c.time: c for c in candles if start <= c.time < end}
    return [by_time[t] for t in sorted(by_time)]


def check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = ensure_utc(start), ensure_utc(end)
    if start >= end:
        raise InvalidRequest(f"empty time range: start {start} is not before end {end}")
    return start, end


def aggregate_id(first: int, last: int) -> str:
    """The trade id Kirby stores for trades `first`..`last` of an exchange whose trade ids are
    sequential, taken as one row (an aggregate of one taker order's fills at one price): the
    trade's own id when it is one trade, `first-last` when it merges several."""
    return str(first) if first == last else f"{first}-{last}"


def trade_id_span(trade_id: str) -> tuple[int, int] | None:
    """The (first, last) trade ids a stored id of a sequential-id exchange stands for
    (`aggregate_id`'s inverse); None for an id that is not of that form."""
    first, dash, last = trade_id.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        return None
    span = int(first), int(last or first)
    return span if span[0] <= span[1] else None


def _show(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TimeRange(NamedTuple):
    """[start, end) in UTC."""

    start: datetime
    end: datetime


class SourceCoverage(NamedTuple):
    """Which part of a requested range the exchange can still serve.

    A backfill reports `unavailable` as "unavailable at source" instead of succeeding with
    zero rows.
    """

    available: TimeRange | None
    unavailable: TimeRange | None


# --- ccxt ---------------------------------------------------------------------------------

# ccxt maps most 4xx to ExchangeNotAvailable, a network error; a request the exchange refuses
# would then be retried like an outage. Only 429/418 (rate limits), 408 and 5xx stay retryable.
_CCXT_NOT_RETRYABLE = {
    str(code): ccxt.BadRequest for code in (400, 403, 404, 405, 409, 410, 422, 451)
}


class CcxtSession:
    """A REST client holding one ccxt exchange for the length of an `async with` block:
    `_open()` builds it (config, base URLs), leaving the block closes it."""

    _exchange: Any = None

    def _open(self) -> Any:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._exchange = self._open()
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


def one_base_url(exchange: Any, url: str) -> Any:
    """`exchange` with every one of its REST API URLs set to `url` (the simulator, a proxy)."""
    exchange.urls["api"] = {key: url for key in exchange.urls["api"]}
    return exchange


class CcxtHooks:
    """Mixin for a ccxt exchange class.

    - Every HTTP request ccxt sends first spends the weight `ccxt_call` declared for the call
      (a call such as `load_markets` sends several, each spends).
    - Remembers the longest `Retry-After` of the rate-limit responses since the last reset.
      ccxt's `last_response_headers` is not enough: `load_markets` runs requests
      concurrently and a later success overwrites them.
    - Notes each rate-limit status the current call got (`ccxt_attempt` retries on it
      whatever error ccxt made of the body: ccxt maps Coinbase's 429 RATE_LIMIT_EXCEEDED
      to a plain ExchangeError, and Kirby maps 403 to a refusal).
    """

    kirby_retry_after: float | None = None
    kirby_rate_limit_statuses: tuple[int, ...] = (418, 429)
    """HTTP statuses the exchange answers a client over its limits with (Bybit adds 403)."""

    async def fetch(
        self, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        spend = _WEIGHT.get()
        if spend is not None:
            budget, weight = spend
            await budget.spend(weight)
        return await super().fetch(url, method, headers, body)  # type: ignore[misc]  # the ccxt class after the mixin

    def on_rest_response(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        response_headers: Mapping[str, Any],
        response_body: str,
        request_headers: Mapping[str, Any],
        request_body: Any,
    ) -> Any:
        if code in self.kirby_rate_limit_statuses:
            seen = parse_retry_after(response_headers)
            if seen is not None:
                self.kirby_retry_after = max(seen, self.kirby_retry_after or 0.0)
            limited = _LIMITED.get()
            if limited is not None:
                limited.append(code)
        return super().on_rest_response(  # type: ignore[misc]  # the ccxt class after the mixin
            code,
            reason,
            url,
            method,
            response_headers,
            response_body,
            request_headers,
            request_body,
        )


def ccxt_config(policy: RetryPolicy, **extra: Any) -> dict[str, Any]:
    return {
        "timeout": int(policy.timeout * 1000),
        "enableRateLimit": True,
        "httpExceptions": _CCXT_NOT_RETRYABLE,
        **extra,
    }


async def ccxt_attempt(
    exchange: Any,
    name: str,
    call: Callable[[], Awaitable[T]],
    spend: tuple[WeightBudget, int] | None = None,
) -> T:
    """Await one ccxt call, each of its HTTP requests spending `spend` (budget, weight),
    translating its errors: rate limits and network failures become `TransientError` (with
    the `Retry-After` of the response), an unknown symbol `NotFound`, anything else the
    exchange refuses `ExchangeProtocolError`."""
    exchange.kirby_retry_after = None
    limited: list[int] = []
    token, limited_token = _WEIGHT.set(spend), _LIMITED.set(limited)
    try:
        return await call()
    except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:  # 429 / 418 (siblings)
        raise TransientError(f"rate limited: {exc}", exchange.kirby_retry_after) from exc
    except ccxt.OperationFailed as exc:  # network errors, timeouts, 5xx; "may work if retried"
        raise TransientError(str(exc) or type(exc).__name__) from exc
    except ccxt.BadSymbol as exc:
        raise NotFound(f"{name}: unknown symbol ({exc})") from exc
    except ccxt.BaseError as exc:
        if limited:  # a rate limit whatever ccxt made of its body
            message = f"rate limited (HTTP {limited[-1]}): {exc}"
            raise TransientError(message, exchange.kirby_retry_after) from exc
        raise ExchangeProtocolError(f"{name}: exchange refused the request: {exc}") from exc
    finally:
        _WEIGHT.reset(token)
        _LIMITED.reset(limited_token)


async def ccxt_call(
    exchange: Any,
    name: str,
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    spend: tuple[WeightBudget, int],
) -> T:
    """One ccxt call under the retry policy; each HTTP request (retries too) spends `spend`."""
    return await call_with_retries(name, lambda: ccxt_attempt(exchange, name, call, spend), policy)
