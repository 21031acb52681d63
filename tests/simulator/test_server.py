"""The runners: determinism across instances, options, start-up failure and clean shutdown."""

from __future__ import annotations

import threading

import aiohttp
import pytest
import requests
from hyperliquid.info import Info
from websockets.exceptions import ConnectionClosedOK

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.helpers import open_ws, post_info, receive, subscribe

HOUR = 3_600_000


def _history(config: SimulatorConfig) -> tuple[list, list]:
    """Closed candles of yesterday from a fresh simulator: Hyperliquid and Binance."""
    with run_simulator_in_thread(config) as sim:
        end = sim.clock.now_ms() // HOUR * HOUR - 1
        client = Info(sim.base_url, skip_ws=True)
        candles = client.candles_snapshot("SOL", "5m", end - 24 * HOUR + 1, end)
        client.session.close()
        with requests.Session() as http:
            klines = http.get(
                f"{sim.base_url}/fapi/v1/klines",
                params={"symbol": "ETHUSDT", "interval": "15m", "endTime": end, "limit": 96},
            ).json()
    return candles, klines


def test_same_seed_serves_the_same_history_another_seed_does_not() -> None:
    first = _history(SimulatorConfig(start=START, seed=3))
    assert first == _history(SimulatorConfig(start=START, seed=3))
    other = _history(SimulatorConfig(start=START, seed=4))
    assert first[0] != other[0] and first[1] != other[1]
    assert len(first[0]) == 288 and len(first[1]) == 96


async def test_extra_synthetic_coins_are_listed_and_trade() -> None:
    async with SimulatorServer(SimulatorConfig(start=START, extra_coins=3)) as sim:
        meta = await post_info(sim, {"type": "meta"})
        names = [coin["name"] for coin in meta["universe"]]
        assert names[-3:] == ["SYN001", "SYN002", "SYN003"] and len(names) == 31
        now = sim.clock.now_ms()
        request = {"coin": "SYN003", "interval": "1h", "startTime": now - 5 * HOUR, "endTime": now}
        candles = await post_info(sim, {"type": "candleSnapshot", "req": request})
        assert len(candles) == 6 and {c["s"] for c in candles} == {"SYN003"}
        ctxs = await post_info(sim, {"type": "metaAndAssetCtxs"})
        assert len(ctxs[1]) == 31


async def test_stop_closes_websockets_with_going_away() -> None:
    sim = SimulatorServer(SimulatorConfig(start=START, speed=60))
    await sim.start()
    ws = await open_ws(sim)
    await subscribe(ws, {"type": "activeAssetCtx", "coin": "BTC"})
    await sim.stop()
    with pytest.raises(ConnectionClosedOK):
        while True:
            await receive(ws)
    assert ws.close_code == 1001
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_info(sim, {"type": "meta"})


def test_thread_runner_reports_a_busy_port_and_leaves_no_thread() -> None:
    before = threading.active_count()
    with run_simulator_in_thread() as first:
        config = SimulatorConfig(port=first.port or 0)
        with pytest.raises(OSError), run_simulator_in_thread(config):
            pass
        assert first.state()["base_url"] == first.base_url
    assert threading.active_count() == before


def test_urls_exist_only_while_running() -> None:
    sim = SimulatorServer()
    with pytest.raises(RuntimeError):
        _ = sim.base_url
