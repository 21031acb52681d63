"""ccxt's binance / binanceusdm REST and pro clients against the simulator's Binance
funding, open interest, tickers and market streams (klines: test_ccxt.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import ccxt
import ccxt.pro
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START, point_binance
from tests.simulator.venues import candle_at, closed_candle, collect_trades, minute_volumes

MINUTE = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR


def ws_urls(sim: SimulatorServer) -> dict[str, str]:
    host = sim.ws_url.removesuffix("/ws")
    return {"spot": f"{host}/stream", "margin": f"{host}/stream", "linear": f"{host}/fstream/ws"}


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as server:
        yield server


def pro_client(sim: SimulatorServer, kind: type) -> ccxt.pro.binance:
    exchange = kind({"enableRateLimit": False, "urls": {"api": {"ws": ws_urls(sim)}}})
    point_binance(exchange, sim.base_url)
    return exchange


def test_funding_history_premium_index_and_limits(
    binance: ccxt.binance, threaded_sim: SimulatorServer
) -> None:
    now = threaded_sim.clock.now_ms()
    since = now - 40 * DAY
    funding = binance.fetch_funding_rate_history("BTC/USDT:USDT", since=since, limit=60)
    times = [entry["timestamp"] for entry in funding]
    assert len(times) == 60 and times[0] == -(-since // (8 * HOUR)) * 8 * HOUR
    assert times == list(range(times[0], times[0] + 60 * 8 * HOUR, 8 * HOUR))
    raw = binance.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "startTime": 0, "limit": 1000})
    assert len(raw) == 1000 and raw[0]["fundingRate"].count(".") == 1
    assert len(binance.fapiPublicGetFundingRate({"symbol": "ETHUSDT"})) == 200
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        binance.fapiPublicGetFundingRate({"symbol": "BTCUSDT", "limit": 1001})
    live = binance.fetch_funding_rate("BTC/USDT:USDT")
    assert live["fundingTimestamp"] == (now // (8 * HOUR) + 1) * 8 * HOUR
    assert live["markPrice"] > 0 and live["indexPrice"] > 0


def test_open_interest_now_and_last_30_days(
    binance: ccxt.binance, threaded_sim: SimulatorServer
) -> None:
    now = threaded_sim.clock.now_ms()
    assert binance.fetch_open_interest("BTC/USDT:USDT")["openInterestAmount"] > 0
    since = now - 10 * DAY
    history = binance.fetch_open_interest_history("BTC/USDT:USDT", "1h", since=since, limit=100)
    assert len(history) == 100 and history[0]["timestamp"] == -(-since // HOUR) * HOUR
    raw = binance.fapiDataGetOpenInterestHist({"symbol": "ETHUSDT", "period": "5m", "limit": 500})
    assert len(raw) == 500 and raw[-1]["timestamp"] == now // 300_000 * 300_000
    with pytest.raises(ccxt.BadRequest, match="startTime"):
        binance.fetch_open_interest_history("BTC/USDT:USDT", "1h", since=now - 31 * DAY)


def test_fetch_ticker_spot_and_perp(binance: ccxt.binance) -> None:
    for symbol in ("BTC/USDT", "BTC/USDT:USDT"):
        ticker = binance.fetch_ticker(symbol)
        assert ticker["low"] <= ticker["last"] <= ticker["high"] and ticker["baseVolume"] > 0
    assert binance.fetch_ticker("BTC/USDT")["bid"] < binance.fetch_ticker("BTC/USDT")["ask"]


@pytest.mark.parametrize(
    ("kind", "symbol"),
    [(ccxt.pro.binance, "BTC/USDT"), (ccxt.pro.binanceusdm, "BTC/USDT:USDT")],
)
async def test_pro_watch_ohlcv_matches_rest(fast_sim: SimulatorServer, kind, symbol) -> None:
    exchange = pro_client(fast_sim, kind)
    try:
        closed = await closed_candle(exchange, symbol)
        assert await candle_at(exchange, symbol, closed[0]) == closed
    finally:
        await exchange.close()


@pytest.mark.parametrize(
    ("kind", "symbol", "market_id", "klines"),
    [
        (ccxt.pro.binance, "BTC/USDT", "BTCUSDT", "publicGetKlines"),
        (ccxt.pro.binanceusdm, "BTC/USDT:USDT", "BTCUSDT", "fapiPublicGetKlines"),
    ],
)
async def test_pro_watch_trades_match_the_candles(
    fast_sim: SimulatorServer, kind, symbol, market_id, klines
) -> None:
    exchange = pro_client(fast_sim, kind)
    try:
        trades = await collect_trades(exchange, symbol, minutes=2)
        for minute, volume in minute_volumes(trades, whole_only=True).items():
            (row,) = await getattr(exchange, klines)(
                {"symbol": market_id, "interval": "1m", "startTime": minute, "limit": 1}
            )
            count = sum(1 for t in trades if t["timestamp"] // MINUTE * MINUTE == minute)
            assert (count, volume) == (row[8], pytest.approx(float(row[5])))
    finally:
        await exchange.close()


async def test_pro_watch_ticker_spot_and_perp(fast_sim: SimulatorServer) -> None:
    for kind, symbol in ((ccxt.pro.binance, "ETH/USDT"), (ccxt.pro.binanceusdm, "ETH/USDT:USDT")):
        exchange = pro_client(fast_sim, kind)
        try:
            ticker = await exchange.watch_ticker(symbol)
        finally:
            await exchange.close()
        assert ticker["symbol"] == symbol and ticker["low"] <= ticker["last"] <= ticker["high"]


async def test_futures_mark_price_stream_and_category_split(fast_sim: SimulatorServer) -> None:
    host = fast_sim.ws_url.removesuffix("/ws")
    async with connect(f"{host}/fstream/market/ws/0") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
        reply = json.loads(await ws.recv())
        assert reply["id"] == 1 and reply["error"]["code"] == 2, "trade lives on /public"
        await ws.send(
            json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@markPrice@1s"], "id": 2})
        )
        assert json.loads(await ws.recv()) == {"result": None, "id": 2}
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert event["e"] == "markPriceUpdate" and event["T"] % (8 * HOUR) == 0
        assert float(event["r"]) != 0 and event["s"] == "BTCUSDT"
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        while (reply := json.loads(await ws.recv())).get("id") != 3:
            pass
        assert reply["result"] == ["btcusdt@markPrice@1s"]


async def test_spot_stream_wraps_events_and_limits_message_rate(fast_sim: SimulatorServer):
    host = fast_sim.ws_url.removesuffix("/ws")
    async with connect(f"{host}/stream/0") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 1}
        push = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert push["stream"] == "btcusdt@kline_1m" and push["data"]["k"]["i"] == "1m"
        with pytest.raises(ConnectionClosed):
            for number in range(10):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 10 + number}))
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()


async def test_connections_end_after_24_simulated_hours() -> None:
    config = SimulatorConfig(speed=50_000, start=START)
    with run_simulator_in_thread(config) as sim:
        host = sim.ws_url.removesuffix("/ws")
        async with connect(f"{host}/fstream/market/ws/0") as ws:
            opened = sim.clock.now_ms()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            assert sim.clock.now_ms() - opened >= DAY
            assert ws.close_code == 1000


def test_ignoring_429_gets_the_ip_banned_with_418() -> None:
    import requests

    with run_simulator_in_thread(SimulatorConfig(start=START)) as sim, requests.Session() as s:
        info = f"{sim.base_url}/api/v3/exchangeInfo"
        statuses = [s.get(info).status_code for _ in range(300)]
        assert statuses == [200] * 300, "6000 weight a minute, 20 a call"
        warned = s.get(info)
        assert warned.status_code == 429 and int(warned.headers["Retry-After"]) >= 1
        banned = s.get(info)
        assert banned.status_code == 418 and "banned until" in banned.json()["msg"]
        assert s.get(f"{sim.base_url}/fapi/v1/time").status_code == 418, "the IP is banned"
        okx = s.get(f"{sim.base_url}/api/v5/public/time")
        assert okx.status_code == 200, "other exchanges are not Binance's business"
        exchange = ccxt.binance({"enableRateLimit": False})
        point_binance(exchange, sim.base_url)
        with pytest.raises(ccxt.DDoSProtection):
            exchange.fetch_time()
        exchange.session.close()


async def test_raw_and_combined_urls_subscribe_at_connect(fast_sim: SimulatorServer) -> None:
    host = fast_sim.ws_url.removesuffix("/ws")
    async with connect(f"{host}/ws/ethusdt@kline_1m") as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert event["e"] == "kline" and event["s"] == "ETHUSDT" and "x" in event["k"]
    url = f"{host}/fstream/market/stream?streams=btcusdt@kline_1m/ethusdt@markPrice@1s"
    async with connect(url) as ws:
        streams = set()
        async with asyncio.timeout(5):
            while len(streams) < 2:
                message = json.loads(await ws.recv())
                streams.add(message["stream"])
                assert message["data"]["s"] in ("BTCUSDT", "ETHUSDT")
        assert streams == {"btcusdt@kline_1m", "ethusdt@markPrice@1s"}


@pytest.mark.parametrize(
    "path", ["/ws/btcusdt@bookTicker", "/fstream/public/ws/btcusdt@bookTicker"]
)
async def test_book_ticker_straddles_the_last_price(fast_sim: SimulatorServer, path: str) -> None:
    host = fast_sim.ws_url.removesuffix("/ws")
    async with connect(host + path) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert event["s"] == "BTCUSDT" and float(event["b"]) < float(event["a"])
    assert ("e" in event) == path.startswith("/fstream")
