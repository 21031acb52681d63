"""ccxt's coinbase REST and pro clients, unchanged but for their URLs, against the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import ccxt
import ccxt.pro
import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.venues import candle_at, collect_trades, minute_volumes

MINUTE = 60_000
HOUR = 3_600_000


def ws_url(sim: SimulatorServer) -> str:
    return sim.ws_url.removesuffix("/ws") + "/advanced-trade-ws"


@pytest.fixture
def coinbase(threaded_sim: SimulatorServer) -> Iterator[ccxt.coinbase]:
    exchange = ccxt.coinbase({"enableRateLimit": False})
    exchange.urls["api"]["rest"] = threaded_sim.base_url
    yield exchange
    exchange.session.close()


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as server:
        yield server


def pro_client(sim: SimulatorServer) -> ccxt.pro.coinbase:
    exchange = ccxt.pro.coinbase({"enableRateLimit": False, "urls": {"api": {"ws": ws_url(sim)}}})
    exchange.urls["api"]["rest"] = sim.base_url
    return exchange


def test_markets_candles_and_ticker(coinbase: ccxt.coinbase, threaded_sim: SimulatorServer):
    markets = coinbase.load_markets()
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(markets)
    assert markets["BTC/USD"]["precision"]["price"] == 0.01
    now = threaded_sim.clock.now_ms()
    since = now - 10 * HOUR - 7
    minutes = coinbase.fetch_ohlcv("BTC/USD", "1m", since=since, limit=300)
    opens = [row[0] for row in minutes]
    assert opens == list(range(since // MINUTE * MINUTE + MINUTE, opens[0] + 300 * MINUTE, MINUTE))
    five = coinbase.fetch_ohlcv("BTC/USD", "5m", since=opens[0] + 4 * MINUTE, limit=2)
    assert five[0][2] == max(row[2] for row in minutes[4:9])
    assert five[0][4] == minutes[8][4]
    ticker = coinbase.fetch_ticker("BTC/USD")
    assert ticker["bid"] < ticker["ask"] and ticker["last"] > 0
    assert abs(coinbase.fetch_time() - now) < 5_000


def test_candle_errors(threaded_sim: SimulatorServer) -> None:
    url = f"{threaded_sim.base_url}/api/v3/brokerage/market/products/BTC-USD/candles"
    start = threaded_sim.clock.now_ms() // 1000 - 400 * 60
    with requests.Session() as session:
        wide = session.get(url, params={"start": start, "end": start + 301 * 60,
                                        "granularity": "ONE_MINUTE"})  # fmt: skip
        bad = session.get(url, params={"start": start, "end": start + 60,
                                       "granularity": "ONE_WEEK"})  # fmt: skip
        unknown = session.get(url.replace("BTC-USD", "NOPE-USD"))
    assert (wide.status_code, wide.json()["error"]) == (400, "INVALID_ARGUMENT")
    assert "ONE_WEEK" in bad.json()["message"]
    assert unknown.status_code == 404


def test_rate_limit_is_429(threaded_sim: SimulatorServer) -> None:
    url = f"{threaded_sim.base_url}/api/v3/brokerage/time"
    with requests.Session() as session:
        statuses = [session.get(url).status_code for _ in range(15)]
    assert statuses[:10] == [200] * 10 and 429 in statuses[10:]


async def test_pro_watch_trades_add_up_to_the_candles(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        trades = await collect_trades(exchange, "BTC/USD", minutes=2)
        for minute, volume in minute_volumes(trades, whole_only=True).items():
            candle = await candle_at(exchange, "BTC/USD", minute)
            assert volume == pytest.approx(candle[5])
    finally:
        await exchange.close()


async def test_pro_watch_ticker(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        first = await exchange.watch_ticker("ETH/USD")
        second = await exchange.watch_ticker("ETH/USD")
    finally:
        await exchange.close()
    assert first["symbol"] == "ETH/USD" and first["low"] <= first["last"] <= first["high"]
    assert second["timestamp"] > first["timestamp"]


async def test_candles_channel_is_five_minute_buckets_matching_rest(
    fast_sim: SimulatorServer,
) -> None:
    exchange = pro_client(fast_sim)
    async with connect(ws_url(fast_sim)) as ws:
        for channel in ("heartbeats", "candles"):
            await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"],
                                      "channel": channel}))  # fmt: skip
        numbers, buckets = [], {}
        async with asyncio.timeout(20):
            while len(buckets) < 2:
                message = json.loads(await ws.recv())
                numbers.append(message["sequence_num"])
                if message["channel"] == "candles":
                    for row in message["events"][0]["candles"]:
                        buckets[int(row["start"]) * 1000] = row
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    closed_start = min(buckets)
    assert closed_start % (5 * MINUTE) == 0
    try:
        (rest,) = await exchange.fetch_ohlcv("BTC/USD", "5m", since=closed_start, limit=1)
    finally:
        await exchange.close()
    row = buckets[closed_start]
    assert rest == [closed_start, *(float(row[k]) for k in ("open", "high", "low", "close",
                                                           "volume"))]  # fmt: skip


async def test_quiet_channel_closes_without_heartbeats() -> None:
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"SOL": 1.0})
    with run_simulator_in_thread(config) as sim:
        async with connect(ws_url(sim)) as ws:
            await ws.send(json.dumps({"type": "subscribe", "product_ids": ["SOL-USD"],
                                      "channel": "market_trades"}))  # fmt: skip
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
