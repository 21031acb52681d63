"""Faults, limits and determinism on the Bybit, OKX, Binance-stream and Coinbase paths."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kirby_sim import SimulatorConfig, SimulatorServer
from tests.simulator.conftest import START

MINUTE = 60_000
BYBIT_KLINE = {"topic": "kline.1.BTCUSDT"}


def host(sim: SimulatorServer) -> str:
    return sim.ws_url.removesuffix("/ws")


async def bybit_linear(sim: SimulatorServer, *topics: str) -> ClientConnection:
    ws = await connect(f"{host(sim)}/v5/public/linear")
    await ws.send(json.dumps({"op": "subscribe", "req_id": "1", "args": list(topics)}))
    assert json.loads(await ws.recv())["success"] is True
    return ws


async def frames(ws: ClientConnection, seconds: float) -> list[str]:
    seen: list[str] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                seen.append(str(await ws.recv()))
    return seen


async def test_drop_cuts_every_venue_socket(sim: SimulatorServer) -> None:
    sockets = [
        await bybit_linear(sim, "kline.1.BTCUSDT"),
        await connect(f"{host(sim)}/ws/v5/public"),
        await connect(f"{host(sim)}/stream/0"),
        await connect(f"{host(sim)}/advanced-trade-ws"),
    ]
    assert sim.state()["connections"] == 4
    sim.faults.drop_connections()
    for ws in sockets:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 1006, "no close frame, as a network failure"


async def test_stall_silences_one_coin_only(sim: SimulatorServer) -> None:
    ws = await bybit_linear(sim, "kline.1.BTCUSDT", "kline.1.ETHUSDT")
    sim.faults.stall(1.5, ["BTC"])
    topics = [json.loads(text)["topic"] for text in await frames(ws, 1.2)]
    assert "kline.1.ETHUSDT" in topics and "kline.1.BTCUSDT" not in topics
    later = [json.loads(text)["topic"] for text in await frames(ws, 1.5)]
    assert "kline.1.BTCUSDT" in later
    await ws.close()


async def test_malformed_frame_is_cut_json(sim: SimulatorServer) -> None:
    ws = await bybit_linear(sim, "publicTrade.BTCUSDT", "kline.1.BTCUSDT")
    sim.faults.malform_next(1, "ws", "bad_json")
    texts = await frames(ws, 1.5)
    broken = []
    for text in texts:
        try:
            json.loads(text)
        except ValueError:
            broken.append(text)
    assert len(broken) == 1 and sim.faults.injected["malformed_ws"] == 1
    await ws.close()


async def test_linear_tickers_snapshot_then_changed_fields(sim: SimulatorServer) -> None:
    ws = await bybit_linear(sim, "tickers.BTCUSDT")
    first, second = (json.loads(text) for text in (await frames(ws, 2.5))[:2])
    assert first["type"] == "snapshot" and {"fundingRate", "openInterest"} <= set(first["data"])
    assert second["type"] == "delta" and set(second["data"]) < set(first["data"])
    assert second["data"]["symbol"] == "BTCUSDT"
    await ws.close()


@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("/v5/market/time", lambda status, body: status == 503),
        ("/api/v5/public/time", lambda status, body: body["code"] == "50001"),
        ("/api/v3/brokerage/time", lambda status, body: body["error"] == "INTERNAL"),
        ("/fapi/v1/premiumIndex", lambda status, body: status == 503),
    ],
)
async def test_injected_5xx_per_venue(sim: SimulatorServer, path: str, check: Any) -> None:
    sim.faults.fail_next(1, 503)
    async with aiohttp.ClientSession() as session:
        async with session.get(sim.base_url + path) as response:
            text = await response.text()
            status = response.status
        async with session.get(sim.base_url + path) as again:
            assert again.status == 200
    body = json.loads(text) if text.startswith("{") else {}
    assert status == 503 and check(status, body)


async def test_okx_refuses_a_fourth_connection_within_a_second(sim: SimulatorServer) -> None:
    url = f"{host(sim)}/ws/v5/public"
    opened = [await connect(url) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(url)
    assert refused.value.response.status_code == 429
    for ws in opened:
        await ws.close()


async def _history(sim: SimulatorServer) -> list[Any]:
    end = sim.clock.now_ms() // MINUTE * MINUTE - 10 * MINUTE
    start = end - 200 * MINUTE
    paths = [
        f"/v5/market/kline?category=linear&symbol=ETHUSDT&interval=1&end={end}&limit=200",
        f"/api/v5/market/history-candles?instId=SOL-USDT-SWAP&bar=1m&after={end}",
        f"/api/v3/brokerage/market/products/BTC-USD/candles?start={start // 1000}"
        f"&end={end // 1000}&granularity=ONE_MINUTE",
        f"/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={start - 30 * 86_400_000}&endTime={end}",
        f"/v5/market/funding/history?category=linear&symbol=BTCUSDT&endTime={end}",
    ]
    answers = []
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(sim.base_url + path) as response:
                document = await response.json()
                if isinstance(document, dict):
                    document.pop("time", None)
                answers.append(document)
    return answers


async def test_same_seed_same_history_on_every_venue() -> None:
    config = SimulatorConfig(speed=1, start=START)
    async with SimulatorServer(config) as first, SimulatorServer(config) as second:
        one, two = await _history(first), await _history(second)
    assert one == two
    assert all(len(json.dumps(answer)) > 500 for answer in one)
    other = SimulatorConfig(speed=1, start=START, seed=8)
    async with SimulatorServer(other) as third:
        assert await _history(third) != one


async def test_okx_allows_480_subscribe_requests_an_hour(sim: SimulatorServer) -> None:
    arg = {"channel": "tickers", "instId": "BTC-USDT"}
    async with connect(f"{host(sim)}/ws/v5/public") as ws:
        for _ in range(481):
            await ws.send(json.dumps({"op": "unsubscribe", "args": [arg]}))
        events = []
        async with asyncio.timeout(10):
            while len(events) < 481:
                events.append(json.loads(await ws.recv()))
    assert [e["event"] for e in events[:480]] == ["unsubscribe"] * 480
    assert (events[480]["event"], events[480]["code"]) == ("error", "60014")


async def test_bybit_refuses_args_longer_than_21000_characters(sim: SimulatorServer) -> None:
    async with connect(f"{host(sim)}/v5/public/linear") as ws:
        topics = ["tickers.BTCUSDT"] * 1200
        await ws.send(json.dumps({"op": "subscribe", "req_id": "1", "args": topics}))
        reply = json.loads(await ws.recv())
    assert reply["success"] is False and "21000" in reply["ret_msg"]


async def test_a_shorter_connection_lifetime_ends_binance_sockets_only() -> None:
    """`ws_max_age_ms` brings Binance's 24 h disconnect within a soak's minutes; venues
    without a lifetime (Bybit) keep their connections."""
    config = SimulatorConfig(speed=60, start=START, ws_max_age_ms=2 * MINUTE)
    async with SimulatorServer(config) as sim:
        binance = await connect(f"{host(sim)}/ws/btcusdt@kline_1m")
        bybit = await bybit_linear(sim, "kline.1.BTCUSDT")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await binance.recv()
        assert binance.close_code == 1000
        assert binance.close_reason == "connection lifetime reached"
        assert await frames(bybit, 1.0), "Bybit keeps streaming"
        await bybit.close()


async def test_a_ticker_snapshot_held_back_by_a_stall_comes_once_it_ends(
    sim: SimulatorServer,
) -> None:
    """A client that subscribes during a stall gets the snapshot first when data flows
    again, never deltas it cannot apply."""
    sim.faults.stall(1.0)
    ws = await bybit_linear(sim, "tickers.BTCUSDT")
    assert await frames(ws, 0.8) == []
    first = json.loads((await frames(ws, 1.5))[0])
    assert first["type"] == "snapshot"
    assert {"fundingRate", "openInterest"} <= set(first["data"])
    await ws.close()
