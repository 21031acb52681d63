"""Each exchange's feed against the simulator: Kirby's own subscribe requests, the frames
the simulator answers with parsed into exact decimals, closed candles equal to what
ccxt's clients (floats) see, Bybit's merged tickers equal to the full state, a cut frame
counted and the feed going on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt.pro
import pytest
from websockets.asyncio.client import connect

from kirby_core.exchanges import bybit_wire
from kirby_core.exchanges.feeds import (
    FrameGuard,
    FundingUpdate,
    OpenInterestUpdate,
    SubscriptionAck,
    TradesUpdate,
    WsMessage,
    compact,
)
from kirby_core.exchanges.registry import (
    BINANCE,
    BYBIT_STREAM,
    COINBASE_STREAM,
    OKX_STREAM,
    StreamAdapter,
    feed_of,
)
from kirby_core.models import AssetContextUpdate, Candle, CandleUpdate
from kirby_core.timeutil import ms_to_datetime
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_sim import bybit as sim_bybit
from kirby_sim.universe import BYBIT_LINEAR_VENUE
from tests.simulator.conftest import START, point_binance
from tests.simulator.venues import closed_candle

SIM_PREFIX = {
    "fstream.binance.com": "/fstream",
    "advanced-trade-ws.coinbase.com": "/advanced-trade-ws",
}
"""The simulator serves every exchange on one host: paths that would collide get a prefix."""
PRECISION = Decimal("1e-8")


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A simulated minute a real second; BTC trades every minute."""
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    async with SimulatorServer(config) as server:
        yield server


def sim_url(sim: SimulatorServer, url: str) -> str:
    parts = urlsplit(url)
    return sim.ws_url.removesuffix("/ws") + SIM_PREFIX.get(parts.hostname or "", "") + parts.path


@dataclass
class Listener:
    """One Kirby-built connection to the simulator, its frames parsed as they arrive."""

    sim: SimulatorServer
    feed: StreamAdapter
    name: str
    market_type: str
    dataset: str
    subscriptions: list[Any]

    def __post_init__(self) -> None:
        self.guard = FrameGuard(self.feed.parser(), self.name)
        self.messages: list[WsMessage] = []
        self.frames: list[tuple[str, tuple[WsMessage, ...]]] = []

    async def until(self, done: Callable[[list[WsMessage]], bool], within: float = 20) -> None:
        url = sim_url(self.sim, self.feed.url(self.market_type, self.dataset))
        async with connect(url, ping_interval=None) as ws:
            if self.feed.keep_alive.greeting is not None:
                await ws.send(self.feed.keep_alive.greeting)
            for frame in self.feed.subscribe_frames(self.market_type, self.subscriptions, 1):
                await ws.send(frame)
            async with asyncio.timeout(within):
                async for raw in ws:
                    assert isinstance(raw, str)
                    parsed = self.guard(raw, self.sim.clock.now())
                    self.frames.append((raw, parsed))
                    self.messages.extend(parsed)
                    if done(self.messages):
                        return

    def closed(self, interval: str) -> dict[datetime, Candle]:
        return {
            m.candle.time: m.candle
            for m in self.messages
            if isinstance(m, CandleUpdate) and m.interval == interval and m.closed
        }


def same(value: Decimal, reference: float) -> bool:
    """A float of ccxt's equals Kirby's exact decimal within the exchange's precision."""
    return Decimal(str(reference)).quantize(PRECISION) == value.quantize(PRECISION)


def assert_like_ccxt(candle: Candle, row: list[Any]) -> None:
    assert int(candle.time.timestamp() * 1000) == row[0]
    values = (candle.open, candle.high, candle.low, candle.close, candle.volume)
    assert all(same(v, r) for v, r in zip(values, row[1:6], strict=True)), (candle, row)


@dataclass(frozen=True)
class Venue:
    name: str
    feed: StreamAdapter
    market_type: str
    symbol: str
    ccxt_symbol: str
    pro: Callable[[SimulatorServer], Any]
    rest_strings: Callable[[Any, int], Awaitable[list[str]]]
    """(ccxt client, open ms) -> open, high, low, close, base volume of that 1m candle, as
    the exchange's REST kline prints them (ccxt's raw endpoint: strings, not floats)."""


async def binance_kline(exchange: Any, open_ms: int) -> list[str]:
    params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": open_ms, "limit": 1}
    (row,) = await exchange.fapiPublicGetKlines(params)
    return list(row[1:6])


async def bybit_kline(exchange: Any, open_ms: int) -> list[str]:
    params = {"category": "linear", "symbol": "BTCUSDT", "interval": "1", "start": open_ms,
              "end": open_ms, "limit": 1}  # fmt: skip
    (row,) = (await exchange.publicGetV5MarketKline(params))["result"]["list"]
    return list(row[1:6])


async def okx_candle(exchange: Any, open_ms: int) -> list[str]:
    params = {"instId": "BTC-USDT-SWAP", "bar": "1m", "after": str(open_ms + 1), "limit": "1"}
    (row,) = (await exchange.publicGetMarketCandles(params))["data"]
    assert row[0] == str(open_ms)
    return [*row[1:5], row[6]]  # a swap's base volume is volCcy


def binance_pro(sim: SimulatorServer) -> Any:
    host = sim.ws_url.removesuffix("/ws")
    ws = {"spot": f"{host}/stream", "margin": f"{host}/stream", "linear": f"{host}/fstream/ws"}
    exchange = ccxt.pro.binanceusdm({"enableRateLimit": False, "urls": {"api": {"ws": ws}}})
    point_binance(exchange, sim.base_url)
    return exchange


def bybit_pro(sim: SimulatorServer) -> Any:
    host = sim.ws_url.removesuffix("/ws")
    public = {kind: f"{host}/v5/public/{kind}" for kind in ("spot", "linear", "inverse", "option")}
    urls = {"api": {"ws": {"public": public}}}
    exchange = ccxt.pro.bybit({"enableRateLimit": False, "urls": urls})
    exchange.urls["api"].update(
        {name: sim.base_url for name in ("spot", "futures", "v2", "public", "private")}
    )
    return exchange


def okx_pro(sim: SimulatorServer) -> Any:
    ws = sim.ws_url.removesuffix("/ws") + "/ws/v5"
    exchange = ccxt.pro.okx({"enableRateLimit": False, "urls": {"api": {"ws": ws}}})
    exchange.urls["api"]["rest"] = sim.base_url
    return exchange


PERPS = [
    Venue(
        "binance",
        feed_of(BINANCE),
        "perps",
        "BTCUSDT",
        "BTC/USDT:USDT",
        binance_pro,
        binance_kline,
    ),
    Venue("bybit", BYBIT_STREAM, "perps", "BTCUSDT", "BTC/USDT:USDT", bybit_pro, bybit_kline),
    Venue("okx", OKX_STREAM, "perps", "BTC-USDT-SWAP", "BTC/USDT:USDT", okx_pro, okx_candle),
]


@pytest.mark.parametrize("venue", PERPS, ids=[v.name for v in PERPS])
async def test_closed_candles_equal_ccxts(sim: SimulatorServer, venue: Venue) -> None:
    sub = venue.feed.subscription(venue.market_type, "candles", venue.symbol, "1m")
    listener = Listener(sim, venue.feed, venue.name, venue.market_type, "candles", [sub])
    reference: list[Any] = []

    def seen(messages: list[WsMessage]) -> bool:
        return bool(reference) and ms_to_datetime(reference[0]) in listener.closed("1m")

    raw: list[str] = []

    async def watch() -> None:
        exchange = venue.pro(sim)
        try:
            reference.extend(await closed_candle(exchange, venue.ccxt_symbol))
            raw.extend(await venue.rest_strings(exchange, reference[0]))
        finally:
            await exchange.close()

    await asyncio.gather(listener.until(seen), watch())
    candle = listener.closed("1m")[ms_to_datetime(reference[0])]
    assert_like_ccxt(candle, reference)
    # exact: the very digits of the exchange's REST kline of the same minute
    assert [str(v) for v in candle[1:6]] == raw
    assert listener.guard.errors == 0
    assert any(isinstance(m, SubscriptionAck) for m in listener.messages)
    forming = [m for m in listener.messages if isinstance(m, CandleUpdate) and not m.closed]
    assert forming, "the forming candle is pushed too, flagged not closed"
    assert all(m.coin == venue.symbol and m.interval == "1m" for m in forming)


WANTED: dict[str, set[type]] = {
    "binance": {FundingUpdate},
    "bybit": {AssetContextUpdate},
    "okx": {FundingUpdate, OpenInterestUpdate},
}
"""What funding and open interest arrive as."""


@pytest.mark.parametrize("venue", PERPS, ids=[v.name for v in PERPS])
async def test_funding_and_open_interest(sim: SimulatorServer, venue: Venue) -> None:
    datasets = [d for d in ("funding_rates", "open_interest") if d in venue.feed.streamed["perps"]]
    subs: list[Any] = []
    for dataset in datasets:  # Bybit carries both on one topic
        sub = venue.feed.subscription("perps", dataset, venue.symbol, None)
        if sub not in subs:
            subs.append(sub)
    listener = Listener(sim, venue.feed, venue.name, "perps", "funding_rates", subs)

    def kinds(messages: list[WsMessage]) -> set[type]:
        return {type(m) for m in messages}

    wanted = WANTED[venue.name]
    await listener.until(lambda messages: wanted <= kinds(messages))
    assert listener.guard.errors == 0
    for message in listener.messages:
        funding = getattr(message, "funding", None)
        interest = getattr(message, "open_interest", None)
        for row in (funding, interest):
            if row is not None:
                assert row.time.second == 0 and row.time.microsecond == 0
        if funding is not None:
            assert isinstance(funding.predicted_funding_rate, Decimal)
            assert abs(funding.predicted_funding_rate) < Decimal("0.01")
            assert funding.next_funding_time > funding.time
        if interest is not None:
            assert isinstance(interest.open_interest, Decimal) and interest.open_interest > 0
            assert isinstance(interest.notional, Decimal) and interest.notional > 0
    if venue.name == "binance":
        assert venue.feed.polled["perps"] == ("open_interest",)


async def test_bybit_merged_tickers_equal_the_full_state(sim: SimulatorServer) -> None:
    """Every delta, merged, equals the full ticker the simulator computes for its `ts`."""
    listener = Listener(sim, BYBIT_STREAM, "bybit", "perps", "funding_rates", ["tickers.BTCUSDT"])
    await listener.until(lambda messages: len(messages) > 6)
    deltas = [(raw, parsed) for raw, parsed in listener.frames if '"type":"delta"' in raw]
    assert len(deltas) >= 4
    (inst,) = [i for i in sim.market.instruments[BYBIT_LINEAR_VENUE] if i.symbol == "BTCUSDT"]
    for raw, parsed in deltas:
        ts = int(raw.split('"ts":')[1].split(",")[0])
        full = sim_bybit.ticker(sim.market, BYBIT_LINEAR_VENUE, inst, ts)
        fresh = bybit_wire.BybitParser()
        document = {"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": ts, "data": full}
        (received_at,) = {m.received_at for m in parsed if isinstance(m, AssetContextUpdate)}
        assert parsed == fresh(compact(document), received_at)


async def test_coinbase_buckets_equal_ccxts_and_close(sim: SimulatorServer) -> None:
    feed = COINBASE_STREAM
    sub = feed.subscription("spot", "candles", "BTC-USD", "5m")
    listener = Listener(sim, feed, "coinbase", "spot", "candles", [sub])
    await listener.until(lambda messages: len(listener.closed("5m")) >= 1, within=30)
    assert listener.guard.errors == 0
    (opened, candle), *_ = listener.closed("5m").items()
    exchange = ccxt.pro.coinbase({"enableRateLimit": False})
    exchange.urls["api"]["rest"] = sim.base_url
    try:
        since = int(opened.timestamp() * 1000)
        (row,) = await exchange.fetch_ohlcv("BTC/USD", "5m", since=since, limit=1)
    finally:
        await exchange.close()
    assert_like_ccxt(candle, row)
    stamps = [m.candle.time for m in listener.messages if isinstance(m, CandleUpdate)]
    assert all(t.minute % 5 == 0 for t in stamps)
    assert opened + timedelta(minutes=5) <= sim.clock.now()


async def test_a_cut_frame_is_counted_and_the_feed_goes_on(sim: SimulatorServer) -> None:
    feed = OKX_STREAM
    sub = feed.subscription("perps", "candles", "BTC-USDT-SWAP", "1m")
    listener = Listener(sim, feed, "okx", "perps", "candles", [sub])
    await listener.until(lambda messages: len(messages) >= 2)
    sim.faults.malform_next(1, "ws", "bad_json")
    before = len(listener.messages)
    await listener.until(lambda messages: len(messages) >= before + 6)
    assert listener.guard.errors == 1
    assert "frame is not JSON" in (listener.guard.last_error or "")


SPOT = [
    ("binance", feed_of(BINANCE), "BTCUSDT", "1m"),
    ("bybit", BYBIT_STREAM, "BTCUSDT", "1m"),
    ("okx", OKX_STREAM, "BTC-USDT", "1m"),
    ("coinbase", COINBASE_STREAM, "BTC-USD", "5m"),
]


@pytest.mark.parametrize(("name", "feed", "symbol", "interval"), SPOT, ids=[s[0] for s in SPOT])
async def test_spot_candles_and_trades(
    sim: SimulatorServer, name: str, feed: StreamAdapter, symbol: str, interval: str
) -> None:
    """Kirby's spot subscriptions and URLs: a closed candle, the forming one, and trades."""
    candles = Listener(
        sim, feed, name, "spot", "candles", [feed.subscription("spot", "candles", symbol, interval)]
    )
    await candles.until(lambda messages: len(candles.closed(interval)) >= 1, within=30)
    trades = Listener(
        sim, feed, name, "spot", "trades", [feed.subscription("spot", "trades", symbol, None)]
    )
    await trades.until(
        lambda messages: any(isinstance(m, TradesUpdate) and m.trades for m in messages)
    )
    assert candles.guard.errors == trades.guard.errors == 0
    updates = [m for m in candles.messages if isinstance(m, CandleUpdate)]
    assert {(m.coin, m.interval) for m in updates} == {(symbol, interval)}
    assert {m.closed for m in updates} == {True, False}
    for update in (m for m in trades.messages if isinstance(m, TradesUpdate)):
        assert update.symbol == symbol
        for trade in update.trades:
            assert trade.side in ("buy", "sell") and trade.size > 0 and trade.price > 0
