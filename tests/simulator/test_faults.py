"""Every fault type, injected in-process and through the admin endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp
import ccxt
import pytest
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError, ServerError
from websockets.exceptions import ConnectionClosedError

from kirby_sim import FaultSchedule, SimulatorConfig, SimulatorServer
from tests.simulator.conftest import START
from tests.simulator.helpers import flush, next_on, open_ws, receive, subscribe

BTC_1M = {"type": "candle", "coin": "BTC", "interval": "1m"}


async def test_drop_closes_every_connection_without_a_close_frame(sim: SimulatorServer) -> None:
    first, second = await open_ws(sim), await open_ws(sim)
    await subscribe(first, BTC_1M)
    sim.faults.drop_connections()
    for ws in (first, second):
        with pytest.raises(ConnectionClosedError):
            while True:
                await receive(ws)
        assert ws.close_code == 1006 and ws.close_reason == ""
    state = sim.state()
    assert state["faults"]["injected"]["drop_ws"] == 1
    again = await open_ws(sim)
    assert again.state.name == "OPEN", "reconnecting works"
    await again.close()


async def test_stall_of_one_coin_silences_only_that_coin(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, BTC_1M)
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "ETH"})
    sim.faults.stall(0.5, coins=["BTC"])
    stall_ends = time.monotonic() + 0.5
    await flush(ws)
    channels: list[str] = []
    while time.monotonic() < stall_ends - 0.05:
        channels.append((await receive(ws))["channel"])
    assert "activeAssetCtx" in channels and "candle" not in channels
    await next_on(ws, "candle", within=5)
    assert time.monotonic() >= stall_ends, "BTC pushes resume after the stall"
    assert sim.state()["faults"]["injected"]["stall"] == 1
    await ws.close()


async def test_full_stall_keeps_answering_pings(sim: SimulatorServer) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "ETH"})
    await next_on(ws, "activeAssetCtx")
    sim.faults.stall(0.4)
    await flush(ws)  # answered although the feed is stalled
    began = time.monotonic()
    await next_on(ws, "activeAssetCtx")
    assert time.monotonic() - began >= 0.3
    await ws.close()


@pytest.mark.parametrize(
    "variant", ["bad_json", "non_numeric_price", "high_below_low", "unknown_coin"]
)
async def test_malformed_websocket_frames(sim: SimulatorServer, variant: str) -> None:
    ws = await open_ws(sim)
    await subscribe(ws, BTC_1M)
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "ETH"})
    sim.faults.malform_next(1, "ws", variant)
    broken = None
    async with asyncio.timeout(5):
        while broken is None:
            text = await ws.recv()
            try:
                message = json.loads(text)
            except ValueError:
                broken = text
                continue
            if message["channel"] == "candle" and variant != "bad_json":
                candle = message["data"]
                if variant == "non_numeric_price" and candle["c"] == "not-a-number":
                    broken = candle
                if variant == "high_below_low" and Decimal(candle["h"]) < Decimal(candle["l"]):
                    broken = candle
                if variant == "unknown_coin" and candle["s"] == "NOSUCHCOIN":
                    broken = candle
            elif message["channel"] == "activeAssetCtx":
                data = message["data"]
                if variant == "unknown_coin" and data["coin"] == "NOSUCHCOIN":
                    broken = data
                if variant == "non_numeric_price" and data["ctx"]["markPx"] == "not-a-number":
                    broken = data
    assert sim.state()["faults"]["injected"]["malformed_ws"] == 1
    assert sim.state()["faults"]["pending"]["malformed_ws"] == 0
    candle = await next_on(ws, "candle")
    assert Decimal(candle["l"]) <= Decimal(candle["h"]) and candle["s"] == "BTC"
    await ws.close()


def test_http_429_and_5xx_through_the_sdk(threaded_sim: SimulatorServer, info: Info) -> None:
    threaded_sim.faults.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            info.all_mids()
        assert caught.value.status_code == 429
        assert caught.value.error_data["Retry-After"] == "3"
    assert len(info.all_mids()) == 28
    threaded_sim.faults.fail_next(1, status=502)
    with pytest.raises(ServerError) as failed:
        info.meta()
    assert failed.value.status_code == 502
    assert threaded_sim.state()["faults"]["injected"] == {"http_429": 2, "http_5xx": 1}


def test_http_faults_on_binance_paths(threaded_sim: SimulatorServer, binance: ccxt.binance) -> None:
    binance.load_markets()
    threaded_sim.faults.fail_next(1, status=429)
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        binance.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    threaded_sim.faults.fail_next(1, status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        binance.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    threaded_sim.faults.fail_next(1, status=500)
    with pytest.raises(ccxt.OperationFailed, match="-1000"):
        binance.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert len(binance.fetch_ohlcv("BTC/USDT", "1m", limit=5)) == 5


def test_malformed_http_bodies(threaded_sim: SimulatorServer, info: Info, binance) -> None:
    now = threaded_sim.clock.now_ms()
    faults = threaded_sim.faults
    faults.malform_next(1, "http", "bad_json")
    assert "error" in info.candles_snapshot("BTC", "1m", now - 600_000, now)  # SDK's wrapper
    faults.malform_next(1, "http", "unknown_coin")
    assert info.candles_snapshot("BTC", "1m", now - 600_000, now)[0]["s"] == "NOSUCHCOIN"
    faults.malform_next(1, "http", "non_numeric_price")
    assert info.funding_history("BTC", now - 7_200_000)[0]["fundingRate"] == "not-a-number"
    faults.malform_next(1, "http", "high_below_low")
    row = binance.publicGetKlines({"symbol": "ETHUSDT", "interval": "1m", "limit": 3})[0]
    assert Decimal(row[2]) < Decimal(row[3])
    assert info.candles_snapshot("BTC", "1m", now - 600_000, now)[0]["s"] == "BTC"
    assert faults.snapshot()["injected"]["malformed_http"] == 4


async def test_admin_endpoint_drives_faults(sim: SimulatorServer) -> None:
    async with aiohttp.ClientSession(base_url=sim.base_url) as http:

        async def call(method: str, path: str, body: object = None) -> tuple[int, dict]:
            async with http.request(method, path, json=body) as response:
                return response.status, await response.json()

        status, state = await call("GET", "/_sim/state")
        assert status == 200 and state["speed"] == 60 and state["ws_url"] == sim.ws_url
        status, error = await call("POST", "/_sim/faults", {"kind": "meteor"})
        assert status == 400 and "meteor" in error["error"]
        status, error = await call(
            "POST",
            "/_sim/faults",
            {"faults": [{"kind": "http_5xx", "count": 1}, {"kind": "stall"}]},
        )
        assert status == 400 and state["faults"]["pending"]["http_errors"] == 0
        batch = {
            "faults": [
                {"kind": "http_5xx", "count": 2, "status": 503},
                {"kind": "malformed", "target": "ws", "variant": "unknown_coin"},
            ]
        }
        status, state = await call("POST", "/_sim/faults", batch)
        assert state["faults"]["pending"] == {
            "http_errors": 2,
            "malformed_ws": 1,
            "malformed_http": 0,
            "book_gaps": 0,
            "stalls": [],
        }
        async with http.post("/info", json={"type": "meta"}) as response:
            assert response.status == 503
        status, state = await call("DELETE", "/_sim/faults")
        assert state["faults"]["pending"]["http_errors"] == 0
        assert state["faults"]["injected"] == {"http_5xx": 1}
        ws = await open_ws(sim)
        status, state = await call("POST", "/_sim/faults", {"kind": "drop_ws"})
        with pytest.raises(ConnectionClosedError):
            await receive(ws)
        status, state = await call(
            "POST", "/_sim/faults", {"kind": "stall", "seconds": 5, "coins": ["SOL"]}
        )
        assert state["faults"]["pending"]["stalls"][0]["coins"] == ["SOL"]


async def test_scheduled_drops() -> None:
    config = SimulatorConfig(start=START, schedule=FaultSchedule(drop_every=0.2))
    async with SimulatorServer(config) as sim:
        ws = await open_ws(sim)
        with pytest.raises(ConnectionClosedError):
            await receive(ws, within=3)
        assert sim.state()["faults"]["injected"]["drop_ws"] >= 1
