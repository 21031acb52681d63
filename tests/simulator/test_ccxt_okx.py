"""ccxt's okx REST and pro clients, unchanged but for their URLs, against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import ccxt
import ccxt.pro
import pytest
import requests
from websockets.asyncio.client import connect

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from kirby_sim import okx as sim_okx
from kirby_sim.universe import OKX_SWAP_VENUE
from tests.simulator.conftest import START
from tests.simulator.venues import candle_at, closed_candle, collect_trades, minute_volumes

MINUTE = 60_000
HOUR = 3_600_000
SYMBOLS = ("BTC/USDT", "BTC/USDT:USDT")


def ws_base(sim: SimulatorServer) -> str:
    return sim.ws_url.removesuffix("/ws") + "/ws/v5"


@pytest.fixture
def okx(threaded_sim: SimulatorServer) -> Iterator[ccxt.okx]:
    exchange = ccxt.okx({"enableRateLimit": False})
    exchange.urls["api"]["rest"] = threaded_sim.base_url
    yield exchange
    exchange.session.close()


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as server:
        yield server


def pro_client(sim: SimulatorServer) -> ccxt.pro.okx:
    exchange = ccxt.pro.okx({"enableRateLimit": False, "urls": {"api": {"ws": ws_base(sim)}}})
    exchange.urls["api"]["rest"] = sim.base_url
    return exchange


def test_markets_spot_and_swaps(okx: ccxt.okx) -> None:
    markets = okx.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT", "SOL/USDT:USDT"} <= set(markets)
    swap = markets["BTC/USDT:USDT"]
    assert (swap["swap"], swap["linear"], swap["id"]) == (True, True, "BTC-USDT-SWAP")
    assert swap["contractSize"] == 0.01 and swap["precision"]["price"] == 0.1


def test_candles_recent_and_history(okx: ccxt.okx, threaded_sim: SimulatorServer) -> None:
    now = threaded_sim.clock.now_ms()
    raw = okx.publicGetMarketCandles({"instId": "BTC-USDT-SWAP", "bar": "1m", "limit": 500})
    rows = raw["data"]
    assert raw["code"] == "0" and len(rows) == 300
    assert int(rows[0][0]) == now // MINUTE * MINUTE and rows[0][8] == "0" and rows[1][8] == "1"
    old = okx.publicGetMarketCandles(
        {"instId": "BTC-USDT", "bar": "1m", "after": now - 2000 * MINUTE}
    )
    assert old["data"] == [], "market/candles keeps the latest 1440 only"
    history = okx.publicGetMarketHistoryCandles(
        {"instId": "BTC-USDT", "bar": "1m", "after": now - 2000 * MINUTE, "limit": 300}
    )["data"]
    assert len(history) == 100 and int(history[0][0]) < now - 2000 * MINUTE
    swap_row, spot_row = rows[1], history[0]
    assert float(swap_row[5]) == pytest.approx(float(swap_row[6]) * 100), "contracts of 0.01 BTC"
    assert spot_row[6] == spot_row[7], "spot volCcy is the quote volume"
    since = now - 30 * HOUR - 123
    hourly = okx.fetch_ohlcv("ETH/USDT", "1h", since=since, limit=10)
    assert [row[0] for row in hourly] == [since // HOUR * HOUR + (i + 1) * HOUR for i in range(10)]
    daily = okx.fetch_ohlcv("BTC/USDT", "1d", since=now - 10 * 24 * HOUR, limit=3)
    assert all(row[0] % (24 * HOUR) == 0 for row in daily)
    with pytest.raises(ccxt.BadRequest, match="51000"):
        okx.publicGetMarketCandles({"instId": "BTC-USDT", "bar": "1D"})
    with pytest.raises(ccxt.BadSymbol):
        okx.publicGetMarketCandles({"instId": "NOPE-USDT", "bar": "1m"})


def test_funding_and_open_interest(okx: ccxt.okx, threaded_sim: SimulatorServer) -> None:
    now = threaded_sim.clock.now_ms()
    since = now - 20 * 24 * HOUR
    funding = okx.fetch_funding_rate_history("BTC/USDT:USDT", since=since, limit=30)
    times = [entry["timestamp"] for entry in funding]
    assert len(funding) == 30 and times == sorted(times) and times[0] >= since
    assert all(t % (8 * HOUR) == 0 for t in times)
    live = okx.fetch_funding_rate("BTC/USDT:USDT")
    assert live["fundingTimestamp"] == (now // (8 * HOUR) + 1) * 8 * HOUR
    interest = okx.fetch_open_interest_history("BTC/USDT:USDT", "1h", since=now - 50 * HOUR)
    assert len(interest) == 50 and interest[0]["timestamp"] >= now - 50 * HOUR
    amounts = [entry["openInterestAmount"] for entry in interest]
    assert all(amount > 0 for amount in amounts)
    current = okx.fetch_open_interest("BTC/USDT:USDT")
    assert current["openInterestAmount"] > 0


def served_mark(sim: SimulatorServer, inst_id: str, at_ms: int) -> str:
    """The mark price the simulator's REST public/mark-price serves at `at_ms`."""
    perp = sim.market.perp(OKX_SWAP_VENUE, inst_id)
    assert perp is not None
    return sim_okx.mark_price(perp, at_ms)["markPx"]


def test_mark_price(okx: ccxt.okx, threaded_sim: SimulatorServer) -> None:
    ticker = okx.fetch_mark_price("BTC/USDT:USDT")
    assert ticker["symbol"] == "BTC/USDT:USDT"
    assert ticker["markPrice"] == float(
        served_mark(threaded_sim, "BTC-USDT-SWAP", ticker["timestamp"])
    )
    (row,) = okx.publicGetPublicMarkPrice({"instId": "SOL-USDT-SWAP"})["data"]
    assert set(row) == {"instType", "instId", "markPx", "ts"} and row["instType"] == "SWAP"
    assert row["markPx"] == served_mark(threaded_sim, "SOL-USDT-SWAP", int(row["ts"]))
    swaps = okx.publicGetPublicMarkPrice({"instType": "SWAP"})["data"]
    assert {"BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"} <= {r["instId"] for r in swaps}
    assert okx.publicGetPublicMarkPrice({"instType": "OPTION"})["data"] == []
    with pytest.raises(ccxt.BadSymbol):  # 51001: the simulator keeps no spot (margin) marks
        okx.publicGetPublicMarkPrice({"instId": "BTC-USDT"})
    with pytest.raises(ccxt.ExchangeError, match="50014"):
        okx.publicGetPublicMarkPrice({})


def served_index(sim: SimulatorServer, index: str, at_ms: int) -> str:
    """The index price the simulator's REST market/index-tickers serves at `at_ms`."""
    perp = sim.market.perp(OKX_SWAP_VENUE, f"{index}-SWAP")
    assert perp is not None
    return sim_okx.index_ticker(sim.market, perp, at_ms)["idxPx"]


def test_index_tickers(okx: ccxt.okx, threaded_sim: SimulatorServer) -> None:
    (row,) = okx.publicGetMarketIndexTickers({"instId": "BTC-USDT"})["data"]
    assert set(row) == {
        "instId", "idxPx", "high24h", "low24h", "open24h", "sodUtc0", "sodUtc8", "ts"
    }  # fmt: skip
    assert row["idxPx"] == served_index(threaded_sim, "BTC-USDT", int(row["ts"]))
    usdt = okx.publicGetMarketIndexTickers({"quoteCcy": "USDT"})["data"]
    assert {"BTC-USDT", "ETH-USDT", "SOL-USDT"} <= {r["instId"] for r in usdt}
    with pytest.raises(ccxt.BadSymbol):
        okx.publicGetMarketIndexTickers({"instId": "NOPE-USDT"})
    with pytest.raises(ccxt.ExchangeError, match="50014"):
        okx.publicGetMarketIndexTickers({})


def test_fetch_ticker(okx: ccxt.okx) -> None:
    for symbol in SYMBOLS:
        ticker = okx.fetch_ticker(symbol)
        assert ticker["low"] <= ticker["last"] <= ticker["high"] and ticker["bid"] < ticker["ask"]


def test_rate_limit_is_429_with_code_50011(threaded_sim: SimulatorServer) -> None:
    url = f"{threaded_sim.base_url}/api/v5/rubik/stat/contracts/open-interest-history"
    with requests.Session() as session:
        answers = [session.get(url, params={"instId": "BTC-USDT-SWAP"}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].json()["code"] == "50011"
    threaded_sim.faults.fail_next(1, 429)
    exchange = ccxt.okx({"enableRateLimit": False})
    exchange.urls["api"]["rest"] = threaded_sim.base_url
    with pytest.raises(ccxt.RateLimitExceeded):
        exchange.publicGetPublicTime()
    exchange.session.close()


async def test_pro_watch_ohlcv_matches_rest_candles(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        for symbol in SYMBOLS:
            closed = await closed_candle(exchange, symbol)
            assert await candle_at(exchange, symbol, closed[0]) == closed
    finally:
        await exchange.close()


async def test_pro_watch_trades_add_up_to_the_candles(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        trades = await collect_trades(exchange, "BTC/USDT", minutes=2)
        for minute, volume in minute_volumes(trades, whole_only=True).items():
            candle = await candle_at(exchange, "BTC/USDT", minute)
            assert volume == pytest.approx(candle[5])
    finally:
        await exchange.close()


async def test_pro_watch_ticker_and_funding(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        ticker = await exchange.watch_ticker("BTC/USDT:USDT")
        rate = await exchange.watch_funding_rate("BTC/USDT:USDT")
    finally:
        await exchange.close()
    assert ticker["low"] <= ticker["last"] <= ticker["high"]
    assert rate["fundingTimestamp"] % (8 * HOUR) == 0


async def test_pro_watch_mark_price_is_the_rest_mark(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        seen = [await exchange.watch_mark_price("BTC/USDT:USDT") for _ in range(3)]
    finally:
        await exchange.close()
    times = [ticker["timestamp"] for ticker in seen]
    assert times == sorted(set(times)), "one push per simulated second"
    for ticker in seen:
        mark = served_mark(fast_sim, "BTC-USDT-SWAP", ticker["timestamp"])
        assert ticker["markPrice"] == float(mark)


async def test_pro_watch_index_ticker_is_the_rest_index(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        seen = [
            await exchange.watch_ticker("BTC/USDT", {"channel": "index-tickers"}) for _ in range(2)
        ]
    finally:
        await exchange.close()
    for ticker in seen:
        index = served_index(fast_sim, "BTC-USDT", ticker["timestamp"])
        assert ticker["indexPrice"] == float(index)
        assert ticker["info"]["idxPx"] == index


async def test_raw_socket_protocol(fast_sim: SimulatorServer) -> None:
    base = ws_base(fast_sim)
    async with connect(f"{base}/public") as ws:
        await ws.send("ping")
        assert await ws.recv() == "pong"
        candle = {"channel": "candle1m", "instId": "BTC-USDT"}
        await ws.send(json.dumps({"op": "subscribe", "args": [candle]}))
        error = json.loads(await ws.recv())
        assert (error["event"], error["code"]) == ("error", "60018")
        interest = {"channel": "open-interest", "instId": "BTC-USDT-SWAP"}
        await ws.send(json.dumps({"op": "subscribe", "args": [interest]}))
        assert json.loads(await ws.recv())["arg"] == interest
        push = json.loads(await ws.recv())
        assert push["arg"] == interest and float(push["data"][0]["oiCcy"]) > 0
    async with connect(f"{base}/public") as ws:
        spot_mark = {"channel": "mark-price", "instId": "BTC-USDT"}
        await ws.send(json.dumps({"op": "subscribe", "args": [spot_mark]}))
        error = json.loads(await ws.recv())
        assert (error["event"], error["code"]) == ("error", "60018"), "swaps only here"
        swap_mark = {"channel": "mark-price", "instId": "ETH-USDT-SWAP"}
        await ws.send(json.dumps({"op": "subscribe", "args": [swap_mark]}))
        ack = json.loads(await ws.recv())
        assert (ack["event"], ack["arg"]) == ("subscribe", swap_mark)
        pushes = [json.loads(await ws.recv()) for _ in range(3)]
        assert all(p["arg"] == swap_mark and len(p["data"]) == 1 for p in pushes)
        rows = [p["data"][0] for p in pushes]
        assert all(set(row) == {"instType", "instId", "markPx", "ts"} for row in rows)
        seconds = [int(row["ts"]) // 1000 for row in rows]
        assert seconds[2] - seconds[1] == 1, "then one push per simulated second"
        assert all(
            row["markPx"] == served_mark(fast_sim, "ETH-USDT-SWAP", int(row["ts"])) for row in rows
        )
        index = {"channel": "index-tickers", "instId": "ETH-USDT"}
        await ws.send(json.dumps({"op": "subscribe", "args": [index]}))
        for _ in range(20):
            push = json.loads(await ws.recv())
            if push.get("arg") == index and "data" in push:
                break
        else:
            raise AssertionError("no index-tickers push")
        (row,) = push["data"]
        assert row["idxPx"] == served_index(fast_sim, "ETH-USDT", int(row["ts"]))
    async with connect(f"{base}/business") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": [candle]}))
        assert json.loads(await ws.recv())["event"] == "subscribe"
        push = json.loads(await ws.recv())
        assert len(push["data"][0]) == 9 and push["data"][0][8] in ("0", "1")
