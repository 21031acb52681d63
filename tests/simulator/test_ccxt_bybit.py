"""ccxt's bybit REST and pro clients, unchanged but for their URLs, against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import ccxt
import ccxt.pro
import pytest
import requests

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.venues import candle_at, closed_candle, collect_trades, minute_volumes

MINUTE = 60_000
HOUR = 3_600_000
SYMBOLS = ("BTC/USDT", "BTC/USDT:USDT")


def rest_urls(base_url: str) -> dict[str, str]:
    return {name: base_url for name in ("spot", "futures", "v2", "public", "private")}


def ws_urls(sim: SimulatorServer) -> dict[str, str]:
    host = sim.ws_url.removesuffix("/ws")
    return {kind: f"{host}/v5/public/{kind}" for kind in ("spot", "linear", "inverse", "option")}


@pytest.fixture
def bybit(threaded_sim: SimulatorServer) -> Iterator[ccxt.bybit]:
    exchange = ccxt.bybit({"enableRateLimit": False})
    exchange.urls["api"] = rest_urls(threaded_sim.base_url)
    yield exchange
    exchange.session.close()


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    """A simulated minute a real second; BTC trades every minute."""
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as server:
        yield server


def pro_client(sim: SimulatorServer) -> ccxt.pro.bybit:
    exchange = ccxt.pro.bybit(
        {"enableRateLimit": False, "urls": {"api": {"ws": {"public": ws_urls(sim)}}}}
    )
    exchange.urls["api"].update(rest_urls(sim.base_url))
    return exchange


def test_markets_spot_and_linear(bybit: ccxt.bybit) -> None:
    markets = bybit.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT", "SOL/USDT:USDT"} <= set(markets)
    perp = markets["BTC/USDT:USDT"]
    assert (perp["swap"], perp["linear"], perp["id"]) == (True, True, "BTCUSDT")
    assert perp["precision"]["price"] == 0.1 and perp["precision"]["amount"] == 0.001


def test_fetch_ohlcv_pages_and_raw_rows(bybit: ccxt.bybit, threaded_sim: SimulatorServer) -> None:
    now = threaded_sim.clock.now_ms()
    latest = bybit.fetch_ohlcv("BTC/USDT:USDT", "1m")
    assert len(latest) == 200 and latest[-1][0] == now // MINUTE * MINUTE
    since = now - 30 * HOUR - 123
    hourly = bybit.fetch_ohlcv("ETH/USDT", "1h", since=since, limit=10)
    assert [row[0] for row in hourly] == [since // HOUR * HOUR + (i + 1) * HOUR for i in range(10)]
    raw = bybit.publicGetV5MarketKline(
        {"category": "spot", "symbol": "BTCUSDT", "interval": "1", "limit": 1500}
    )
    rows = raw["result"]["list"]
    assert raw["retCode"] == 0 and len(rows) == 1000
    assert int(rows[0][0]) > int(rows[1][0]), "newest first"
    assert all(isinstance(value, str) for value in rows[1])
    four_hour = bybit.fetch_ohlcv("BTC/USDT", "4h", since=now - 40 * HOUR, limit=5)
    minutes = bybit.fetch_ohlcv("BTC/USDT", "1m", since=four_hour[0][0], limit=240)
    assert four_hour[0][2] == max(row[2] for row in minutes)
    assert four_hour[0][3] == min(row[3] for row in minutes)
    assert four_hour[0][4] == minutes[-1][4]
    with pytest.raises(ccxt.BadRequest, match="Invalid period"):
        bybit.publicGetV5MarketKline({"category": "spot", "symbol": "BTCUSDT", "interval": "2"})


def test_funding_and_open_interest_history(bybit: ccxt.bybit, threaded_sim: SimulatorServer):
    now = threaded_sim.clock.now_ms()
    since = now - 30 * 24 * HOUR
    funding = bybit.fetch_funding_rate_history("BTC/USDT:USDT", since=since, limit=50)
    times = [entry["timestamp"] for entry in funding]
    assert len(funding) == 50 and times == sorted(times)
    assert all(t % (8 * HOUR) == 0 for t in times) and times[0] >= since
    assert all(-0.01 < entry["fundingRate"] < 0.01 for entry in funding)
    raw = bybit.publicGetV5MarketFundingHistory(
        {"category": "linear", "symbol": "BTCUSDT", "endTime": now, "limit": 500}
    )
    assert len(raw["result"]["list"]) == 200
    interest = bybit.fetch_open_interest_history("ETH/USDT:USDT", "1h", since=since, limit=100)
    assert len(interest) == 100 and interest[0]["timestamp"] == -(-since // HOUR) * HOUR
    assert all(entry["openInterestAmount"] > 0 for entry in interest)
    first = bybit.publicGetV5MarketOpenInterest(
        {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1d", "limit": 200}
    )["result"]
    second = bybit.publicGetV5MarketOpenInterest(
        {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1d", "limit": 200,
         "cursor": first["nextPageCursor"]}
    )["result"]  # fmt: skip
    assert int(second["list"][0]["timestamp"]) == int(first["list"][-1]["timestamp"]) - 86_400_000


def test_fetch_ticker_spot_and_linear(bybit: ccxt.bybit, threaded_sim: SimulatorServer) -> None:
    spot = bybit.fetch_ticker("BTC/USDT")
    perp = bybit.fetch_ticker("BTC/USDT:USDT")
    for ticker in (spot, perp):
        assert ticker["low"] <= ticker["last"] <= ticker["high"]
        assert ticker["bid"] < ticker["ask"] and ticker["baseVolume"] > 0
    assert perp["markPrice"] > 0 and "fundingRate" in perp["info"]
    rate = bybit.fetch_funding_rate("BTC/USDT:USDT")
    assert rate["fundingTimestamp"] % (8 * HOUR) == 0 and abs(rate["fundingRate"]) < 0.01


def test_injected_429_is_bybits_403(bybit: ccxt.bybit, threaded_sim: SimulatorServer) -> None:
    threaded_sim.faults.fail_next(1, 429)
    with pytest.raises(ccxt.RateLimitExceeded):
        bybit.publicGetV5MarketTime()
    assert int(bybit.publicGetV5MarketTime()["result"]["timeSecond"]) > 0


def test_ip_over_600_requests_in_5_seconds_is_banned() -> None:
    with run_simulator_in_thread(SimulatorConfig(start=START)) as server, requests.Session() as s:
        url = f"{server.base_url}/v5/market/time"
        statuses = [s.get(url).status_code for _ in range(601)]
        assert statuses[:600] == [200] * 600 and statuses[600] == 403
        assert s.get(url).status_code == 403, "the ban lasts"


async def test_pro_watch_ohlcv_matches_rest_candles(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        for symbol in SYMBOLS:
            closed = await closed_candle(exchange, symbol)
            rest = await exchange.fetch_ohlcv(symbol, "1m", since=closed[0], limit=1)
            assert rest[0] == closed
    finally:
        await exchange.close()


async def test_pro_watch_trades_add_up_to_the_candles(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        trades = await collect_trades(exchange, "BTC/USDT:USDT", minutes=2)
        for minute, volume in minute_volumes(trades, whole_only=True).items():
            candle = await candle_at(exchange, "BTC/USDT:USDT", minute)
            assert volume == pytest.approx(candle[5])
            prices = [t["price"] for t in trades if t["timestamp"] // MINUTE * MINUTE == minute]
            assert candle[3] <= min(prices) <= max(prices) <= candle[2]
    finally:
        await exchange.close()


async def test_pro_watch_ticker_snapshot_then_deltas(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        seen = [await exchange.watch_ticker("BTC/USDT:USDT") for _ in range(3)]
        spot = await exchange.watch_ticker("ETH/USDT")
    finally:
        await exchange.close()
    for ticker in seen:
        info = ticker["info"]
        assert {"fundingRate", "openInterest", "markPrice", "nextFundingTime"} <= set(info)
        assert ticker["low"] <= ticker["last"] <= ticker["high"]
    assert seen[0]["timestamp"] < seen[-1]["timestamp"]
    assert spot["symbol"] == "ETH/USDT" and spot["last"] > 0


async def test_raw_socket_protocol(fast_sim: SimulatorServer) -> None:
    import json

    from websockets.asyncio.client import connect

    url = ws_urls(fast_sim)["spot"]
    async with connect(url) as ws:
        await ws.send(json.dumps({"op": "ping", "req_id": "p"}))
        assert json.loads(await ws.recv())["ret_msg"] == "pong"
        await ws.send(json.dumps({"op": "subscribe", "req_id": "1", "args": ["kline.2.BTCUSDT"]}))
        reply = json.loads(await ws.recv())
        assert reply["success"] is False and "kline.2.BTCUSDT" in reply["ret_msg"]
        topics = [f"publicTrade.{c}USDT" for c in ("BTC", "ETH", "SOL")] * 4
        await ws.send(json.dumps({"op": "subscribe", "req_id": "2", "args": topics}))
        assert json.loads(await ws.recv())["ret_msg"] == "error:args size >10"
        await ws.send(json.dumps({"op": "subscribe", "req_id": "3", "args": ["kline.1.BTCUSDT"]}))
        assert json.loads(await ws.recv()) == {
            "success": True, "ret_msg": "", "conn_id": reply["conn_id"], "req_id": "3",
            "op": "subscribe",
        }  # fmt: skip
        push = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert push["topic"] == "kline.1.BTCUSDT" and push["data"][0]["interval"] == "1"
