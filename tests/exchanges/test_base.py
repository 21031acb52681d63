"""Shared adapter machinery: retry policy, exact values, candle selection."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt
import pytest

from kirby_core.errors import ExchangeProtocolError, ExchangeUnavailable, NotFound
from kirby_core.exchanges.base import (
    RetryPolicy,
    TransientError,
    call_with_retries,
    ccxt_attempt,
    exact_product,
    parse_decimal,
    parse_retry_after,
    select_candles,
)
from kirby_core.models import Candle

FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.5)


class FlakyCall:
    """Fails with the given errors, in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_transient_errors_are_retried_until_success() -> None:
    call = FlakyCall(TransientError("HTTP 502"), TransientError("connection reset"))

    assert await call_with_retries("X candles", call, FAST) == "ok"
    assert call.calls == 3


async def test_retries_exhausted_raise_exchange_unavailable_naming_the_call() -> None:
    call = FlakyCall(*[TransientError(f"HTTP 503 #{i}") for i in range(10)])

    with pytest.raises(ExchangeUnavailable) as caught:
        await call_with_retries("Hyperliquid candleSnapshot BTC 1m", call, FAST)

    assert call.calls == 4
    assert str(caught.value) == (
        "Hyperliquid candleSnapshot BTC 1m failed after 4 attempt(s): HTTP 503 #3"
    )
    assert isinstance(caught.value.__cause__, TransientError)


async def test_no_retries_means_one_attempt() -> None:
    call = FlakyCall(TransientError("HTTP 500"))

    with pytest.raises(ExchangeUnavailable, match="failed after 1 attempt"):
        await call_with_retries("X", call, RetryPolicy(max_retries=0))
    assert call.calls == 1


async def test_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    call = FlakyCall(TransientError("rate limited", retry_after=0.05))

    with caplog.at_level(logging.WARNING, logger="kirby_core.exchanges.base"):
        assert await call_with_retries("X", call, FAST) == "ok"

    assert "event=exchange_retry call='X' retry=1/3 delay_s=0.050" in caplog.text


async def test_retry_after_longer_than_the_policy_waits_fails_fast() -> None:
    call = FlakyCall(TransientError("HTTP 429", retry_after=120))

    with pytest.raises(ExchangeUnavailable, match=r"Retry-After 120 s exceeds the 0.5 s"):
        await call_with_retries("X", call, FAST)
    assert call.calls == 1


async def test_other_errors_are_not_retried() -> None:
    call = FlakyCall(NotFound("no such coin"))

    with pytest.raises(NotFound):
        await call_with_retries("X", call, FAST)
    assert call.calls == 1


@pytest.mark.parametrize("retry", range(8))
def test_backoff_is_exponential_capped_and_jittered(retry: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0)
    ceiling = min(10.0, 0.5 * 2**retry)

    delays = {policy.backoff(retry) for _ in range(50)}

    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"RETRY-AFTER": "-4"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"Retry-After": "soon"}, None),
        ({"Content-Type": "application/json"}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_future_date() -> None:
    moment = datetime.now(UTC) + timedelta(seconds=30)
    header = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert 25 < (parse_retry_after({"Retry-After": header}) or 0) <= 30


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.001601", "0.001601"),
        ("520665683.0", "520665683.0"),
        ("-0.00061334", "-0.00061334"),
        ("1e-8", "1E-8"),
        (" 42 ", "42"),
        (7, "7"),
        (Decimal("0.10"), "0.10"),
    ],
)
def test_parse_decimal_keeps_the_exchange_digits(value: object, expected: str) -> None:
    assert str(parse_decimal(value, "px", "X")) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.1, "X: field 'px' must be a decimal string, got 0.1"),
        (True, "X: field 'px' must be a decimal string, got True"),
        (None, "X: field 'px' must be a decimal string, got None"),
        ("", "X: field 'px' is not a number: ''"),
        ("1,5", "X: field 'px' is not a number: '1,5'"),
        ("Infinity", "X: field 'px' is not a number: 'Infinity'"),
        ("sNaN", "X: field 'px' is not a number: 'sNaN'"),
    ],
)
def test_parse_decimal_refuses(value: object, message: str) -> None:
    with pytest.raises(ExchangeProtocolError) as caught:
        parse_decimal(value, "px", "X")
    assert str(caught.value) == message


def test_exact_product() -> None:
    assert exact_product(Decimal("0.1"), Decimal("0.2")) == Decimal("0.02")
    assert str(exact_product(Decimal("99999999999999999999.99"), Decimal("1.0000000001"))) == (
        "100000000009999999999.989999999999"
    )


def test_select_candles_filters_dedupes_and_sorts() -> None:
    def candle(minute: int, close: str) -> Candle:
        px = Decimal(close)
        return Candle(datetime(2024, 1, 1, 0, minute, tzinfo=UTC), px, px, px, px, Decimal(0), 1)

    start = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    end = datetime(2024, 1, 1, 0, 4, tzinfo=UTC)
    rows = [candle(3, "3"), candle(0, "0"), candle(1, "1"), candle(3, "3.5"), candle(4, "4")]

    selected = select_candles(rows, start, end)

    assert [(c.time.minute, c.close) for c in selected] == [(1, Decimal(1)), (3, Decimal("3.5"))]


class FakeExchange:
    """Stands in for the exchange object only as the holder of the Retry-After hook's value."""

    kirby_retry_after: float | None = None


def raising(error: Exception, retry_after: float | None = None):
    async def call() -> None:
        exchange.kirby_retry_after = retry_after  # what CcxtHooks records on a 429
        raise error

    exchange = FakeExchange()
    return exchange, call


@pytest.mark.parametrize(
    ("error", "retry_after", "expected", "retried_after"),
    [
        (ccxt.RateLimitExceeded("429"), 2.0, TransientError, 2.0),
        (ccxt.DDoSProtection("418"), 30.0, TransientError, 30.0),
        (ccxt.RateLimitExceeded("429"), None, TransientError, None),
        (ccxt.ExchangeNotAvailable("503"), None, TransientError, None),
        (ccxt.RequestTimeout("timeout"), None, TransientError, None),
        (ccxt.NetworkError("reset"), None, TransientError, None),
        (ccxt.OperationFailed("-1000 unknown error"), None, TransientError, None),
        (ccxt.BadSymbol("Invalid symbol."), None, NotFound, None),
        (ccxt.BadRequest("404"), None, ExchangeProtocolError, None),
        (ccxt.ExchangeError("422"), None, ExchangeProtocolError, None),
    ],
)
async def test_ccxt_errors_are_translated(
    error: Exception, retry_after: float | None, expected: type, retried_after: float | None
) -> None:
    exchange, call = raising(error, retry_after)

    with pytest.raises(expected) as caught:
        await ccxt_attempt(exchange, "X klines", call)

    assert caught.value.__cause__ is error
    if expected is TransientError:
        assert caught.value.retry_after == retried_after
    else:
        assert str(caught.value).startswith("X klines: ")
