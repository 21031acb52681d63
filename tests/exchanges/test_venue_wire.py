"""Binance, Bybit, OKX and Coinbase wire modules, on recorded frames: subscriptions and
requests within each exchange's limits, every field of every parsed message, the closed
flags, Bybit's tickers deltas, malformed frames counted and never raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kirby_core.errors import InvalidRequest
from kirby_core.exchanges import binance_wire, bybit_wire, coinbase_wire, okx_wire
from kirby_core.exchanges.feeds import (
    ChannelError,
    FrameGuard,
    FundingUpdate,
    OpenInterestUpdate,
    Pong,
    SubscriptionAck,
    Trade,
    TradesUpdate,
)
from kirby_core.exchanges.registry import (
    BINANCE,
    BYBIT_STREAM,
    COINBASE_STREAM,
    HYPERLIQUID,
    OKX_STREAM,
    StreamAdapter,
    feed_of,
)
from kirby_core.models import AssetContextUpdate, Candle, CandleUpdate, FundingRate, OpenInterest

AT = datetime(2025, 1, 6, 12, 13, 1, 500000, tzinfo=UTC)
T0 = datetime(2025, 1, 6, 12, 12, tzinfo=UTC)
T0_MS = 1736165520000
MINUTE = datetime(2025, 1, 6, 12, 13, tzinfo=UTC)
MINUTE_MS = T0_MS + 60_000
NEXT_FUNDING = datetime(2025, 1, 6, 16, tzinfo=UTC)
NEXT_FUNDING_MS = 1736179200000
D = Decimal

HL_TRADE = {
    "coin": "BTC",
    "side": "A",
    "px": "97001.0",
    "sz": "0.01",
    "time": T0_MS + 1,
    "hash": "0xab",
    "tid": 77,
    "users": ["0x1", "0x2"],
}

FEEDS: dict[str, StreamAdapter] = {
    "binance": feed_of(BINANCE),
    "bybit": BYBIT_STREAM,
    "okx": OKX_STREAM,
    "coinbase": COINBASE_STREAM,
    "hyperliquid": feed_of(HYPERLIQUID),
}


def dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def parse_all(name: str, *frames: str) -> list[Any]:
    parser = FEEDS[name].parser()
    return [message for frame in frames for message in parser(frame, AT)]


# --- subscriptions and requests -------------------------------------------------------------


def test_binance_streams_and_requests() -> None:
    feed = FEEDS["binance"]
    subs = [
        feed.subscription("perps", "candles", "BTCUSDT", "1m"),
        feed.subscription("perps", "funding_rates", "BTCUSDT", None),
        feed.subscription("spot", "trades", "ETHUSDT", None),
    ]
    assert subs == ["btcusdt@kline_1m", "btcusdt@markPrice@1s", "ethusdt@trade"]
    assert feed.subscribe_frames("perps", subs[:2], 7) == [
        '{"method":"SUBSCRIBE","params":["btcusdt@kline_1m","btcusdt@markPrice@1s"],"id":7}'
    ]
    assert feed.unsubscribe_frames("spot", subs[2:], 9) == [
        '{"method":"UNSUBSCRIBE","params":["ethusdt@trade"],"id":9}'
    ]
    assert feed.url("spot", "candles") == "wss://stream.binance.com:9443/stream"
    assert feed.url("perps", "candles") == "wss://fstream.binance.com/market/stream"
    assert feed.url("perps", "trades") == "wss://fstream.binance.com/public/stream"
    assert feed.polled == {"perps": ("open_interest",)}
    assert feed.keep_alive.server_pings and feed.keep_alive.ping_frame is None
    assert feed.limits["spot"].max_connection_seconds == 24 * 3600
    with pytest.raises(InvalidRequest, match=r"Binance perps streams no 'open_interest'"):
        feed.subscription("perps", "open_interest", "BTCUSDT", None)
    with pytest.raises(InvalidRequest, match=r"Binance spot streams no 'funding_rates'"):
        feed.subscription("spot", "funding_rates", "BTCUSDT", None)
    with pytest.raises(InvalidRequest, match=r"Binance has no '2m' candles; allowed: 1m, 3m"):
        feed.subscription("spot", "candles", "BTCUSDT", "2m")


def test_bybit_topics_and_requests_keep_ten_args() -> None:
    feed = FEEDS["bybit"]
    topics = [feed.subscription("spot", "candles", f"C{n}USDT", "4h") for n in range(12)]
    assert topics[0] == "kline.240.C0USDT"
    assert feed.subscription("perps", "candles", "BTCUSDT", "1d") == "kline.D.BTCUSDT"
    assert feed.subscription("perps", "funding_rates", "BTCUSDT", None) == "tickers.BTCUSDT"
    assert feed.subscription("perps", "open_interest", "BTCUSDT", None) == "tickers.BTCUSDT"
    assert feed.subscription("spot", "trades", "BTCUSDT", None) == "publicTrade.BTCUSDT"
    frames = [json.loads(f) for f in feed.subscribe_frames("spot", topics + topics[:1], 3)]
    assert [f["args"] for f in frames] == [topics[:10], topics[10:]]
    assert [(f["op"], f["req_id"]) for f in frames] == [("subscribe", "3"), ("subscribe", "4")]
    assert feed.url("perps", "funding_rates") == "wss://stream.bybit.com/v5/public/linear"
    assert feed.url("spot", "candles") == "wss://stream.bybit.com/v5/public/spot"
    assert feed.keep_alive.ping_frame == '{"op":"ping"}' and feed.keep_alive.ping_seconds == 20
    with pytest.raises(InvalidRequest, match=r"Bybit spot streams no 'funding_rates'"):
        feed.subscription("spot", "funding_rates", "BTCUSDT", None)


def test_okx_args_and_urls() -> None:
    feed = FEEDS["okx"]
    assert feed.subscription("perps", "candles", "BTC-USDT-SWAP", "4h") == {
        "channel": "candle4H",
        "instId": "BTC-USDT-SWAP",
    }
    assert feed.subscription("perps", "candles", "BTC-USDT-SWAP", "1d")["channel"] == (
        "candle1Dutc"
    )
    args = [
        feed.subscription("perps", "funding_rates", "BTC-USDT-SWAP", None),
        feed.subscription("perps", "open_interest", "BTC-USDT-SWAP", None),
    ]
    assert feed.subscribe_frames("perps", args, 1) == [
        '{"op":"subscribe","args":[{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},'
        '{"channel":"open-interest","instId":"BTC-USDT-SWAP"}]}'
    ]
    many = [{"channel": "candle1m", "instId": f"COIN{n:05d}-USDT"} for n in range(2000)]
    frames = feed.subscribe_frames("spot", many, 1)
    assert len(frames) == 2 and all(len(f) <= 64 * 1024 + 40 for f in frames)
    assert [a for f in frames for a in json.loads(f)["args"]] == many
    assert feed.url("perps", "candles") == "wss://ws.okx.com:8443/ws/v5/business"
    assert feed.url("perps", "funding_rates") == "wss://ws.okx.com:8443/ws/v5/public"
    assert feed.keep_alive.ping_frame == "ping" and feed.keep_alive.idle_close_seconds == 30
    assert feed.limits["perps"].subscribes_per_hour == 480
    assert feed.subscription("perps", "trades", "BTC-USDT-SWAP", None) == {
        "channel": "trades",
        "instId": "BTC-USDT-SWAP",
    }
    with pytest.raises(InvalidRequest, match=r"OKX spot streams no 'funding_rates'"):
        feed.subscription("spot", "funding_rates", "BTC-USDT", None)


def test_coinbase_streams_5m_only_and_declares_the_polled_intervals() -> None:
    feed = FEEDS["coinbase"]
    subs = [
        feed.subscription("spot", "candles", "BTC-USD", "5m"),
        feed.subscription("spot", "trades", "BTC-USD", None),
        feed.subscription("spot", "candles", "ETH-USD", "5m"),
    ]
    assert feed.subscribe_frames("spot", subs, 1) == [
        '{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"candles"}',
        '{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}',
    ]
    assert feed.polled_intervals == ("1m", "15m", "1d")  # Coinbase has no 4h candles
    assert feed.keep_alive.greeting == (
        '{"type":"subscribe","product_ids":[],"channel":"heartbeats"}'
    )
    with pytest.raises(InvalidRequest, match=r"Coinbase streams 5m candles only, not '1m'"):
        feed.subscription("spot", "candles", "BTC-USD", "1m")


# --- Binance ----------------------------------------------------------------------------------


def kline(closed: bool, **changes: Any) -> str:
    k = {
        "t": T0_MS,
        "T": T0_MS + 59_999,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "97001.10",
        "c": "97010.00",
        "h": "97020.00",
        "l": "97000.00",
        "v": "12.345",
        "n": 101,
        "x": closed,
        "q": "1197601.23",
        "V": "6.100",
        "Q": "591760.10",
        "B": "0",
    } | changes
    return dumps(
        {
            "stream": "btcusdt@kline_1m",
            "data": {"e": "kline", "E": MINUTE_MS, "s": "BTCUSDT", "k": k},
        }
    )


BTC_CANDLE = Candle(T0, D("97001.10"), D("97020.00"), D("97000.00"), D("97010.00"), D("12.345"))


def test_binance_frames() -> None:
    mark = {
        "e": "markPriceUpdate",
        "E": MINUTE_MS + 1500,
        "s": "BTCUSDT",
        "p": "97005.12345678",
        "ap": "97005.12345678",
        "P": "97004.90000000",
        "i": "97001.50000000",
        "r": "0.00010000",
        "T": NEXT_FUNDING_MS,
    }
    trade = {
        "e": "trade",
        "E": MINUTE_MS,
        "s": "BTCUSDT",
        "t": 12345,
        "p": "97001.10",
        "q": "0.010",
        "T": MINUTE_MS - 2,
        "m": True,
    }
    assert parse_all(
        "binance",
        kline(False),
        kline(True),
        dumps({"stream": "btcusdt@markPrice@1s", "data": mark}),
        dumps(trade),
        '{"result":null,"id":3}',
        '{"error":{"code":2,"msg":"Invalid request: invalid stream name x"},"id":4}',
    ) == [
        CandleUpdate("BTCUSDT", "1m", BTC_CANDLE._replace(trade_count=101), False),
        CandleUpdate("BTCUSDT", "1m", BTC_CANDLE._replace(trade_count=101), True),
        FundingUpdate(
            "BTCUSDT",
            FundingRate(
                time=MINUTE,
                predicted_funding_rate=D("0.00010000"),
                mark_price=D("97005.12345678"),
                oracle_price=D("97001.50000000"),
                next_funding_time=NEXT_FUNDING,
            ),
        ),
        TradesUpdate(
            "BTCUSDT",
            (
                Trade(
                    datetime(2025, 1, 6, 12, 12, 59, 998000, tzinfo=UTC),
                    "12345",
                    D("97001.10"),
                    D("0.010"),
                    "sell",
                ),
            ),
        ),
        SubscriptionAck("subscribe", 3),
        ChannelError("Binance error 2: Invalid request: invalid stream name x (request 4)"),
    ]


# --- Bybit ------------------------------------------------------------------------------------

TICKER = {
    "symbol": "BTCUSDT",
    "lastPrice": "97001.1",
    "markPrice": "97005.2",
    "indexPrice": "97001.5",
    "openInterest": "51234.123",
    "openInterestValue": "4969999999.99",
    "fundingRate": "0.0001",
    "nextFundingTime": str(NEXT_FUNDING_MS),
    "fundingIntervalHour": "8",
    "volume24h": "1234.5",
    "turnover24h": "119750000.1",
    "bid1Price": "97001.0",
}


def tickers(kind: str, data: dict[str, Any], ts: int = MINUTE_MS + 10) -> str:
    return dumps({"topic": "tickers.BTCUSDT", "type": kind, "ts": ts, "cs": 1, "data": data})


def context(**changes: str) -> AssetContextUpdate:
    state = TICKER | changes
    return AssetContextUpdate(
        "BTCUSDT",
        AT,
        FundingRate(
            time=MINUTE,
            predicted_funding_rate=D(state["fundingRate"]),
            mark_price=D(state["markPrice"]),
            oracle_price=D(state["indexPrice"]),
            next_funding_time=NEXT_FUNDING,
        ),
        OpenInterest(
            time=MINUTE,
            open_interest=D(state["openInterest"]),
            notional=D(state["openInterestValue"]),
            day_base_volume=D(state["volume24h"]),
            day_notional_volume=D(state["turnover24h"]),
        ),
    )


def test_bybit_tickers_deltas_merge_into_the_full_state() -> None:
    parser = bybit_wire.BybitParser()
    frames = [
        tickers("snapshot", TICKER),
        tickers("delta", {"symbol": "BTCUSDT", "markPrice": "97006.0"}),
        tickers("delta", {"symbol": "BTCUSDT", "fundingRate": "-0.00002", "openInterest": "9"}),
        tickers("delta", {"symbol": "BTCUSDT", "bid1Price": "97000.0"}),
    ]
    assert [m for f in frames for m in parser(f, AT)] == [
        context(),
        context(markPrice="97006.0"),
        context(markPrice="97006.0", fundingRate="-0.00002", openInterest="9"),
        context(markPrice="97006.0", fundingRate="-0.00002", openInterest="9"),
    ]
    spot = dumps(
        {
            "topic": "tickers.BTCUSDT",
            "type": "snapshot",
            "ts": 1,
            "data": {"symbol": "BTCUSDT", "lastPrice": "97001.1"},
        }
    )
    assert bybit_wire.BybitParser()(spot, AT) == ()
    guard = FrameGuard(bybit_wire.BybitParser(), "bybit")
    assert guard(frames[1], AT) == ()
    assert guard.errors == 1 and "a delta before any snapshot" in (guard.last_error or "")


def test_bybit_frames() -> None:
    row = {
        "start": T0_MS,
        "end": T0_MS + 59_999,
        "interval": "1",
        "open": "97001.10",
        "close": "97010.00",
        "high": "97020.00",
        "low": "97000.00",
        "volume": "12.345",
        "turnover": "1197601.2",
        "timestamp": MINUTE_MS,
    }
    klines = dumps(
        {
            "topic": "kline.1.BTCUSDT",
            "type": "snapshot",
            "ts": MINUTE_MS,
            "data": [row | {"confirm": True}, row | {"start": MINUTE_MS, "confirm": False}],
        }
    )
    trade = {
        "T": MINUTE_MS - 2,
        "s": "BTCUSDT",
        "S": "Buy",
        "v": "0.010",
        "p": "97001.10",
        "L": "ZeroPlusTick",
        "i": "abc-1",
        "BT": False,
        "seq": 1,
    }
    assert parse_all(
        "bybit",
        klines,
        dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": [trade]}),
        '{"success":true,"ret_msg":"","conn_id":"c","req_id":"1","op":"subscribe"}',
        '{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}',
        '{"req_id":"7","op":"pong","args":["1736165581000"],"conn_id":"c"}',
        '{"success":false,"ret_msg":"error:handler not found,topic:kline.2.X","op":"subscribe"}',
    ) == [
        CandleUpdate("BTCUSDT", "1m", BTC_CANDLE, True),
        CandleUpdate("BTCUSDT", "1m", BTC_CANDLE._replace(time=MINUTE), False),
        TradesUpdate(
            "BTCUSDT",
            (
                Trade(
                    datetime(2025, 1, 6, 12, 12, 59, 998000, tzinfo=UTC),
                    "abc-1",
                    D("97001.10"),
                    D("0.010"),
                    "buy",
                ),
            ),
        ),
        SubscriptionAck("subscribe", "1"),
        Pong(),
        Pong(),
        ChannelError("Bybit subscribe: error:handler not found,topic:kline.2.X"),
    ]


# --- OKX --------------------------------------------------------------------------------------


def test_okx_frames() -> None:
    arg = {"channel": "candle1m", "instId": "BTC-USDT-SWAP"}
    row = [str(T0_MS), "97001.1", "97020", "97000", "97010", "1234", "12.34", "1197601.2"]
    swap_candle = Candle(T0, D("97001.1"), D("97020"), D("97000"), D("97010"), D("12.34"))
    funding = {
        "instType": "SWAP",
        "instId": "BTC-USDT-SWAP",
        "fundingRate": "0.000125",
        "fundingTime": str(NEXT_FUNDING_MS),
        "nextFundingTime": str(NEXT_FUNDING_MS + 28800000),
        "premium": "-0.0002",
        "method": "current_period",
        "ts": str(MINUTE_MS + 1),
    }
    interest = {
        "instType": "SWAP",
        "instId": "BTC-USDT-SWAP",
        "oi": "512341.23",
        "oiCcy": "5123.4123",
        "oiUsd": "497000000.1",
        "ts": str(MINUTE_MS + 2),
    }
    trade = {
        "instId": "BTC-USDT",
        "tradeId": "130639474",
        "px": "97001.1",
        "sz": "0.01",
        "side": "buy",
        "ts": str(MINUTE_MS - 2),
        "count": "1",
    }
    assert parse_all(
        "okx",
        dumps({"arg": arg, "data": [[*row, "1"]]}),
        dumps({"arg": arg | {"instId": "BTC-USDT"}, "data": [[*row, "0"]]}),
        dumps({"arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}, "data": [funding]}),
        dumps({"arg": {"channel": "open-interest", "instId": "BTC-USDT-SWAP"}, "data": [interest]}),
        dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [trade]}),
        "pong",
        dumps({"event": "subscribe", "arg": arg, "connId": "a4d3ae55"}),
        dumps({"event": "error", "code": "60018", "msg": "Wrong URL", "connId": "a4d3ae55"}),
        dumps({"event": "notice", "code": "64008", "msg": "reconnect", "connId": "a4d3ae55"}),
        dumps({"event": "channel-conn-count", "channel": "candle1m", "connCount": "2"}),
    ) == [
        CandleUpdate("BTC-USDT-SWAP", "1m", swap_candle, True),
        CandleUpdate("BTC-USDT", "1m", swap_candle._replace(volume=D("1234")), False),
        FundingUpdate(
            "BTC-USDT-SWAP",
            FundingRate(
                time=MINUTE,
                predicted_funding_rate=D("0.000125"),
                premium=D("-0.0002"),
                next_funding_time=NEXT_FUNDING,
            ),
        ),
        OpenInterestUpdate(
            "BTC-USDT-SWAP",
            OpenInterest(time=MINUTE, open_interest=D("5123.4123"), notional=D("497000000.1")),
        ),
        TradesUpdate(
            "BTC-USDT",
            (
                Trade(
                    datetime(2025, 1, 6, 12, 12, 59, 998000, tzinfo=UTC),
                    "130639474",
                    D("97001.1"),
                    D("0.01"),
                    "buy",
                ),
            ),
        ),
        Pong(),
        SubscriptionAck("subscribe", arg),
        ChannelError("OKX error 60018: Wrong URL"),
        ChannelError("OKX notice 64008: reconnect"),
    ]


def mark(symbol: str, price: Any, ms: int) -> str:
    row = {"instType": "SWAP", "instId": symbol, "markPx": price, "ts": str(ms)}
    return dumps({"arg": {"channel": "mark-price", "instId": symbol}, "data": [row]})


def index(name: str, price: Any, ms: int) -> str:
    row = {
        "instId": name,
        "idxPx": price,
        "high24h": "97500",
        "low24h": "96000.1",
        "open24h": "96500",
        "sodUtc0": "96800",
        "sodUtc8": "96900",
        "ts": str(ms),
    }
    return dumps({"arg": {"channel": "index-tickers", "instId": name}, "data": [row]})


def test_okx_funding_rows_take_the_mark_and_index_channels() -> None:
    """A swap's funding series subscribes `mark-price` and its index's `index-tickers`
    beside `funding-rate`; the parser merges the three: each push yields the latest of
    all, at its own minute."""
    feed = FEEDS["okx"]
    swap = "BTC-USDT-SWAP"
    assert feed.subscriptions("perps", "funding_rates", swap, None) == (
        {"channel": "funding-rate", "instId": swap},
        {"channel": "mark-price", "instId": swap},
        {"channel": "index-tickers", "instId": "BTC-USDT"},
    )
    assert feed.subscriptions("perps", "open_interest", swap, None) == (
        {"channel": "open-interest", "instId": swap},
    )
    assert feed.subscriptions("spot", "candles", "BTC-USDT", "1m") == (
        {"channel": "candle1m", "instId": "BTC-USDT"},
    )
    funding = {
        "instType": "SWAP",
        "instId": swap,
        "fundingRate": "0.000125",
        "fundingTime": str(NEXT_FUNDING_MS),
        "premium": "-0.0002",
        "ts": str(MINUTE_MS + 30_000),
    }
    rate = FundingRate(
        time=MINUTE,
        predicted_funding_rate=D("0.000125"),
        premium=D("-0.0002"),
        next_funding_time=NEXT_FUNDING,
    )
    later = MINUTE_MS + 60_000
    prices = {"mark_price": D("97005.2"), "oracle_price": D("97001.5")}
    assert parse_all(
        "okx",
        mark(swap, "97005.2", MINUTE_MS + 5),  # before any funding-rate push: the mark alone
        index("BTC-USDT", "97001.5", MINUTE_MS + 7),  # the index of BTC-USDT-SWAP
        dumps({"arg": {"channel": "funding-rate", "instId": swap}, "data": [funding]}),
        mark(swap, "97006.1", later + 999),  # the next minute: the rest carried, new mark
        mark("ETH-USDT-SWAP", "3301.25", later),  # another swap's state is its own
    ) == [
        FundingUpdate(swap, FundingRate(time=MINUTE, mark_price=D("97005.2"))),
        FundingUpdate(swap, FundingRate(time=MINUTE, **prices)),
        FundingUpdate(swap, rate._replace(**prices)),
        FundingUpdate(
            swap,
            rate._replace(
                time=MINUTE + timedelta(minutes=1),
                mark_price=D("97006.1"),
                oracle_price=D("97001.5"),
            ),
        ),
        FundingUpdate(
            "ETH-USDT-SWAP",
            FundingRate(time=MINUTE + timedelta(minutes=1), mark_price=D("3301.25")),
        ),
    ]


def test_a_malformed_mark_price_leaves_the_merged_state_alone() -> None:
    swap = "BTC-USDT-SWAP"
    guard = FrameGuard(FEEDS["okx"].parser(), "okx")
    assert guard(mark(swap, "97005.2", MINUTE_MS), AT)
    assert guard(mark(swap, "abc", MINUTE_MS + 1), AT) == ()
    assert guard.errors == 1
    assert "OKX WS mark-price BTC-USDT-SWAP: field 'markPx' is not a number" in (
        guard.last_error or ""
    )
    (update,) = guard(mark(swap, "97007", MINUTE_MS + 2), AT)
    assert update == FundingUpdate(swap, FundingRate(time=MINUTE, mark_price=D("97007")))


def test_okx_swap_trades_count_contracts_and_instruments_give_their_value() -> None:
    frame = dumps(
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"},
            "data": [
                {
                    "instId": "BTC-USDT-SWAP",
                    "tradeId": "9",
                    "px": "97001.1",
                    "sz": "12",
                    "side": "sell",
                    "ts": str(T0_MS),
                    "count": "1",
                }
            ],
        }
    )
    assert parse_all("okx", frame) == [
        TradesUpdate("BTC-USDT-SWAP", (Trade(T0, "9", D("97001.1"), D("12"), "sell"),), True)
    ]
    instruments = {
        "code": "0",
        "msg": "",
        "data": [
            {"instId": "BTC-USDT-SWAP", "ctVal": "0.01", "ctMult": "1", "ctType": "linear"},
            {"instId": "ETH-USDT-SWAP", "ctVal": "0.1", "ctMult": "10", "ctType": "linear"},
            {"instId": "BTC-USD-SWAP", "ctVal": "100", "ctMult": "1", "ctType": "inverse"},
        ],
    }
    assert okx_wire.parse_contract_values(instruments) == {
        "BTC-USDT-SWAP": D("0.01"),
        "ETH-USDT-SWAP": D("1.0"),
    }


# --- Coinbase ---------------------------------------------------------------------------------


def envelope(channel: str, events: list[Any], stamp: str = "2025-01-06T12:15:00.250000000Z"):
    return dumps(
        {
            "channel": channel,
            "client_id": "",
            "timestamp": stamp,
            "sequence_num": 4,
            "events": events,
        }
    )


def test_coinbase_frames_and_the_closed_bucket() -> None:
    start = 1736165400  # 12:10
    row = {
        "start": str(start),
        "high": "97020.00",
        "low": "97000.00",
        "open": "97001.10",
        "close": "97010.00",
        "volume": "12.34567890",
        "product_id": "BTC-USD",
    }
    bucket = Candle(
        datetime(2025, 1, 6, 12, 10, tzinfo=UTC),
        D("97001.10"),
        D("97020.00"),
        D("97000.00"),
        D("97010.00"),
        D("12.34567890"),
    )
    forming = row | {"start": str(start + 300)}
    trades = [
        {
            "trade_id": "12346",
            "product_id": "BTC-USD",
            "price": "97001.10",
            "size": "0.01",
            "side": "SELL",
            "time": "2025-01-06T12:14:59.998123456Z",
        },
        {
            "trade_id": "12345",
            "product_id": "BTC-USD",
            "price": "97001.00",
            "size": "0.02",
            "side": "BUY",
            "time": "2025-01-06T12:14:59.5Z",
        },
    ]
    assert parse_all(
        "coinbase",
        envelope("candles", [{"type": "update", "candles": [row]}], "2025-01-06T12:14:59.9Z"),
        envelope("candles", [{"type": "update", "candles": [row, forming]}]),
        envelope("market_trades", [{"type": "update", "trades": trades}]),
        envelope("heartbeats", [{"current_time": "x", "heartbeat_counter": 3}]),
        envelope("subscriptions", [{"subscriptions": {"candles": ["BTC-USD"]}}]),
        dumps({"type": "error", "message": "Failed to subscribe: bad product X"}),
    ) == [
        CandleUpdate("BTC-USD", "5m", bucket, False),
        CandleUpdate("BTC-USD", "5m", bucket, True),
        CandleUpdate("BTC-USD", "5m", bucket._replace(time=bucket.time.replace(minute=15)), False),
        TradesUpdate(
            "BTC-USD",
            (
                Trade(
                    datetime(2025, 1, 6, 12, 14, 59, 500000, tzinfo=UTC),
                    "12345",
                    D("97001.00"),
                    D("0.02"),
                    "buy",
                ),
                Trade(
                    datetime(2025, 1, 6, 12, 14, 59, 998123, tzinfo=UTC),
                    "12346",
                    D("97001.10"),
                    D("0.01"),
                    "sell",
                ),
            ),
        ),
        Pong(),
        SubscriptionAck("subscribe", {"candles": ["BTC-USD"]}),
        ChannelError("Coinbase: Failed to subscribe: bad product X"),
    ]


# --- malformed frames -------------------------------------------------------------------------

MALFORMED = [
    ("binance", kline(True)[:40], "frame is not JSON"),
    ("binance", kline(True, c="abc"), "field 'c' is not a number"),
    ("binance", kline(True, h="1.0"), "high"),
    ("binance", kline(True, x="true"), "field 'x' must be a boolean"),
    ("binance", kline(True, o=True), "must be a decimal string"),
    ("binance", '{"e":"depthUpdate"}', "unknown event 'depthUpdate'"),
    ("binance", "[1,2]", "expected an object"),
    ("bybit", '{"topic":"kline.7.BTCUSDT","data":[]}', "unknown kline topic"),
    ("bybit", '{"topic":"kline.1.BTCUSDT","data":{}}', "expected a list"),
    ("bybit", '{"topic":"orderbook.50.BTCUSDT","data":{}}', "unknown topic"),
    ("bybit", tickers("snapshot", TICKER | {"fundingRate": None}), "'fundingRate'"),
    ("okx", dumps({"arg": {"channel": "candle1m", "instId": "X"}, "data": [["1", "2"]]}), "9"),
    (
        "okx",
        dumps(
            {
                "arg": {"channel": "candle1m", "instId": "X"},
                "data": [["x", "1", "1", "1", "1", "1", "1", "1", "1"]],
            }
        ),
        "epoch ms",
    ),
    (
        "okx",
        dumps({"arg": {"channel": "trades", "instId": "BTC-USDT-SWAP"}, "data": [{"px": "1"}]}),
        "missing field 'side'",
    ),
    ("okx", "pon", "frame is not JSON"),
    ("okx", mark("BTC-USDT-SWAP", "abc", MINUTE_MS), "field 'markPx' is not a number"),
    ("okx", mark("BTC-USDT-SWAP", None, MINUTE_MS), "'markPx' must be a decimal string"),
    ("okx", mark("BTC-USDT-SWAP", "-1", MINUTE_MS), "'markPx' must be positive"),
    ("okx", mark("BTC-USDT-SWAP", "1", MINUTE_MS).replace('"ts"', '"t"'), "missing field 'ts'"),
    ("okx", index("BTC-USDT", "x", MINUTE_MS), "index-tickers BTC-USDT: field 'idxPx' is not"),
    ("okx", index("BTC-USDT", "0", MINUTE_MS), "field 'idxPx' must be positive"),
    (
        "coinbase",
        envelope("candles", [{"type": "update", "candles": [{"start": "x"}]}]),
        "product_id",
    ),
    ("coinbase", envelope("level2", []), "unknown channel 'level2'"),
    ("coinbase", envelope("candles", [], "12:00"), "not an RFC 3339 UTC time"),
    ("hyperliquid", '{"channel":"candle","data":[]}', "data must be one object"),
    ("hyperliquid", '{"channel":"trades","data":[]}', "non-empty list"),
    (
        "hyperliquid",
        dumps({"channel": "trades", "data": [HL_TRADE | {"side": "S"}]}),
        "side must be B or A",
    ),
    ("hyperliquid", dumps({"channel": "trades", "data": [HL_TRADE | {"tid": "7"}]}), "'tid'"),
]


@pytest.mark.parametrize(("name", "frame", "reason"), MALFORMED)
def test_a_malformed_frame_is_counted_never_raised(name: str, frame: str, reason: str) -> None:
    guard = FrameGuard(FEEDS[name].parser(), name)
    assert guard(frame, AT) == ()
    assert guard.errors == 1
    assert reason in (guard.last_error or "")


def test_the_guard_survives_a_parser_bug() -> None:
    def broken(raw: str | bytes, received_at: datetime) -> tuple[Any, ...]:
        raise ZeroDivisionError

    guard = FrameGuard(broken, "okx")
    assert guard("{}", AT) == () and guard("{}", AT) == ()
    assert guard.errors == 2
    assert guard.last_error == "okx: the parser failed on this frame (ZeroDivisionError)"


def test_the_wire_modules_are_the_feeds() -> None:
    assert FEEDS["bybit"].subscription is bybit_wire.subscription
    assert FEEDS["okx"].streamed == okx_wire.STREAMED_DATASETS
    assert FEEDS["coinbase"].polled_intervals is coinbase_wire.POLLED_INTERVALS
    assert FEEDS["binance"].limits == binance_wire.LIMITS


def test_hyperliquid_trades_parse_exactly() -> None:
    frame = dumps({"channel": "trades", "data": [HL_TRADE, HL_TRADE | {"side": "B", "tid": 78}]})
    at = datetime(2025, 1, 6, 12, 12, 0, 1000, tzinfo=UTC)
    assert parse_all("hyperliquid", frame) == [
        TradesUpdate(
            "BTC",
            (
                Trade(at, "77", D("97001.0"), D("0.01"), "sell"),
                Trade(at, "78", D("97001.0"), D("0.01"), "buy"),
            ),
        )
    ]
    assert FEEDS["hyperliquid"].subscription("perps", "trades", "BTC", None) == {
        "type": "trades",
        "coin": "BTC",
    }
