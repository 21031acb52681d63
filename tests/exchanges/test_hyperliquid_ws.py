"""Hyperliquid WebSocket frames through the pure parser: good frames and every malformed kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges import (
    ChannelError,
    Pong,
    SubscriptionAck,
    asset_context_subscription,
    candle_subscription,
    parse_ws_message,
    ping_frame,
    subscribe_frame,
    unsubscribe_frame,
)
from kirby_core.models import AssetContextUpdate, Candle, CandleUpdate, FundingRate, OpenInterest

RECEIVED_AT = datetime(2024, 7, 1, 12, 34, 56, 789000, tzinfo=UTC)


def candle_data(**changes: Any) -> dict[str, Any]:
    data = {
        "t": 1719837240000,
        "T": 1719837299999,
        "s": "BTC",
        "i": "1m",
        "o": "62850.0",
        "c": "62861.5",
        "h": "62875.25",
        "l": "62840.0",
        "v": "12.34567",
        "n": 187,
    }
    return {k: v for k, v in {**data, **changes}.items() if v is not ...}


def ctx_data(**changes: Any) -> dict[str, Any]:
    ctx = {
        "funding": "0.0000125",
        "openInterest": "21897.1234",
        "prevDayPx": "61210.0",
        "dayNtlVlm": "1869412345.5",
        "premium": "0.00031",
        "oraclePx": "62950.0",
        "markPx": "62960.0",
        "midPx": "62961.5",
        "impactPxs": ["62960.0", "62963.0"],
        "dayBaseVlm": "28950.123",
    }
    return {"coin": "BTC", "ctx": {k: v for k, v in {**ctx, **changes}.items() if v is not ...}}


def frame(channel: str, data: Any) -> str:
    return json.dumps({"channel": channel, "data": data})


GOOD = [
    pytest.param(
        frame("candle", candle_data()),
        CandleUpdate(
            "BTC",
            "1m",
            Candle(
                time=datetime(2024, 7, 1, 12, 34, tzinfo=UTC),
                open=Decimal("62850.0"),
                high=Decimal("62875.25"),
                low=Decimal("62840.0"),
                close=Decimal("62861.5"),
                volume=Decimal("12.34567"),
                trade_count=187,
            ),
        ),
        id="candle",
    ),
    pytest.param(
        frame("activeAssetCtx", ctx_data()),
        AssetContextUpdate(
            "BTC",
            RECEIVED_AT,
            FundingRate(
                time=datetime(2024, 7, 1, 12, 34, tzinfo=UTC),
                predicted_funding_rate=Decimal("0.0000125"),
                premium=Decimal("0.00031"),
                mark_price=Decimal("62960.0"),
                oracle_price=Decimal("62950.0"),
                mid_price=Decimal("62961.5"),
                next_funding_time=datetime(2024, 7, 1, 13, 0, tzinfo=UTC),
            ),
            OpenInterest(
                time=datetime(2024, 7, 1, 12, 34, tzinfo=UTC),
                open_interest=Decimal("21897.1234"),
                notional=Decimal("1378642889.26400"),  # 21897.1234 x 62960.0
                day_base_volume=Decimal("28950.123"),
                day_notional_volume=Decimal("1869412345.5"),
            ),
        ),
        id="activeAssetCtx",
    ),
    pytest.param(frame("pong", None).replace(',"data": null', ""), Pong(), id="pong"),
    pytest.param('{"channel":"pong"}', Pong(), id="pong-bare"),
    pytest.param(
        frame(
            "subscriptionResponse",
            {"method": "subscribe", "subscription": candle_subscription("BTC", "1m")},
        ),
        SubscriptionAck("subscribe", {"type": "candle", "coin": "BTC", "interval": "1m"}),
        id="subscriptionResponse",
    ),
    pytest.param(
        frame("error", "Already subscribed: {'type': 'candle', 'coin': 'BTC', 'interval': '1m'}"),
        ChannelError("Already subscribed: {'type': 'candle', 'coin': 'BTC', 'interval': '1m'}"),
        id="error",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD)
def test_good_frames(raw: str, expected: object) -> None:
    assert parse_ws_message(raw, RECEIVED_AT) == expected
    assert parse_ws_message(raw.encode(), RECEIVED_AT) == expected


def test_asset_context_nullable_fields_and_hour_boundary() -> None:
    on_the_hour = datetime(2024, 7, 1, 13, 0, 0, tzinfo=UTC)
    raw = frame("activeAssetCtx", ctx_data(premium=None, midPx=None, impactPxs=None))

    update = parse_ws_message(raw, on_the_hour)

    assert isinstance(update, AssetContextUpdate)
    assert update.funding.premium is None
    assert update.funding.mid_price is None
    assert update.funding.time == on_the_hour
    assert update.funding.next_funding_time == datetime(2024, 7, 1, 14, 0, tzinfo=UTC)
    assert update.open_interest.time == on_the_hour


def test_notional_is_the_exact_product() -> None:
    raw = frame(
        "activeAssetCtx",
        ctx_data(openInterest="123456789012345.123456789", markPx="98765432109876.987654321"),
    )

    update = parse_ws_message(raw, RECEIVED_AT)

    assert isinstance(update, AssetContextUpdate)
    # 47 significant digits: the default 28-digit context would have rounded them.
    assert update.open_interest.notional == Decimal(
        "12193263113702179533454656530.769673540112635269"
    )


BAD = [
    pytest.param("{not json", "frame is not JSON", id="bad-json"),
    pytest.param("[1, 2]", "Hyperliquid WS frame: expected an object, got [1, 2]", id="not-object"),
    pytest.param('{"data": {}}', "missing field 'channel'", id="no-channel"),
    pytest.param(
        frame("allMids", []),
        "unknown channel 'allMids'; expected one of pong, candle, activeAssetCtx, trades",
        id="unknown-channel",
    ),
    pytest.param(
        '{"channel": "candle"}', "Hyperliquid WS candle: missing field 'data'", id="no-data"
    ),
    pytest.param(
        frame("candle", [candle_data()]), "data must be one object, got a list", id="candle-list"
    ),
    pytest.param(frame("candle", candle_data(v=...)), "missing field 'v'", id="candle-missing-v"),
    pytest.param(
        frame("candle", candle_data(h="abc")),
        "Hyperliquid WS candle: field 'h' is not a number: 'abc'",
        id="candle-non-numeric",
    ),
    pytest.param(
        frame("candle", candle_data(o="NaN")), "field 'o' is not a number: 'NaN'", id="candle-nan"
    ),
    pytest.param(
        frame("candle", candle_data(c=True)),
        "field 'c' must be a decimal string, got True",
        id="candle-bool",
    ),
    pytest.param(
        frame("candle", candle_data(h="62830.0")),
        "Hyperliquid WS candle BTC 1m: high 62830.0 is below low 62840.0",
        id="candle-high-below-low",
    ),
    pytest.param(
        frame("candle", candle_data(v="-0.5")),
        "Hyperliquid WS candle BTC 1m: negative volume -0.5",
        id="candle-negative-volume",
    ),
    pytest.param(
        frame("candle", candle_data(n=-3)), "negative trade count -3", id="candle-negative-n"
    ),
    pytest.param(
        frame("candle", candle_data(t="1719837240000")),
        "field 't' must be an integer, got '1719837240000'",
        id="candle-string-time",
    ),
    pytest.param(
        frame("candle", candle_data(s=7)), "'s' and 'i' must be strings, got 7, '1m'", id="candle-s"
    ),
    pytest.param(
        frame("activeAssetCtx", ctx_data(markPx=...)),
        "Hyperliquid WS activeAssetCtx BTC: missing field 'markPx'",
        id="ctx-missing-markPx",
    ),
    pytest.param(
        frame("activeAssetCtx", ctx_data(funding="0.0001x")),
        "Hyperliquid WS activeAssetCtx BTC: field 'funding' is not a number: '0.0001x'",
        id="ctx-non-numeric",
    ),
    pytest.param(
        frame("activeAssetCtx", ctx_data(openInterest=None)),
        "field 'openInterest' must be a decimal string, got None",
        id="ctx-null-required",
    ),
    pytest.param(
        frame("activeAssetCtx", ctx_data(openInterest="-1.5")),
        "negative openInterest -1.5",
        id="ctx-negative-oi",
    ),
    pytest.param(
        frame("activeAssetCtx", {"coin": "BTC", "ctx": "x"}),
        "Hyperliquid WS activeAssetCtx BTC: expected an object, got 'x'",
        id="ctx-not-object",
    ),
    pytest.param(
        frame("activeAssetCtx", {"ctx": {}}), "missing field 'coin'", id="ctx-missing-coin"
    ),
    pytest.param(
        frame("subscriptionResponse", {"method": "subscribe"}),
        "Hyperliquid WS subscriptionResponse: missing field 'subscription'",
        id="ack-missing-subscription",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_malformed_frames(raw: str, message: str) -> None:
    with pytest.raises(ExchangeProtocolError) as caught:
        parse_ws_message(raw, RECEIVED_AT)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (
            subscribe_frame(candle_subscription("BTC", "1m")),
            '{"method":"subscribe","subscription":{"type":"candle","coin":"BTC","interval":"1m"}}',
        ),
        (
            subscribe_frame(asset_context_subscription("SOL")),
            '{"method":"subscribe","subscription":{"type":"activeAssetCtx","coin":"SOL"}}',
        ),
        (
            unsubscribe_frame(candle_subscription("SOL", "4h")),
            '{"method":"unsubscribe","subscription":{"type":"candle","coin":"SOL","interval":"4h"}}',
        ),
        (ping_frame(), '{"method":"ping"}'),
    ],
)
def test_frame_builders(built: str, expected: str) -> None:
    assert built == expected


def test_candle_subscription_refuses_unknown_interval() -> None:
    with pytest.raises(InvalidRequest, match=r"no '6h' candles; allowed: 1m, 3m"):
        candle_subscription("BTC", "6h")
