"""Binance order books on the simulator: ccxt pro's watch_order_book (which runs Binance's
documented snapshot + U/u (spot) or pu (futures) sync and raises on a broken chain) and
fetch_order_book, Kirby's own parse_depth + integrity rules on the raw frames, and a
planted sequence gap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import ccxt
import ccxt.pro
import pytest
import requests
from websockets.asyncio.client import connect

from kirby_core.books.integrity import Outcome, SeriesBook, series_book
from kirby_core.exchanges import binance_wire
from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START, point_binance
from tests.simulator.depth_checks import assert_sane, watch_updates


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(speed=10, start=START)
    with run_simulator_in_thread(config) as server:
        yield server


def pro_client(sim: SimulatorServer, kind: type) -> ccxt.pro.binance:
    host = sim.ws_url.removesuffix("/ws")
    urls = {"spot": f"{host}/stream", "margin": f"{host}/stream", "linear": f"{host}/fstream/ws"}
    exchange = kind({"enableRateLimit": False, "urls": {"api": {"ws": urls}}})
    point_binance(exchange, sim.base_url)
    return exchange


@pytest.mark.parametrize(
    ("kind", "symbol"),
    [(ccxt.pro.binance, "BTC/USDT"), (ccxt.pro.binanceusdm, "BTC/USDT:USDT")],
)
async def test_ccxt_watch_order_book_syncs_and_follows(
    fast_sim: SimulatorServer, kind: type, symbol: str
) -> None:
    exchange = pro_client(fast_sim, kind)
    try:
        nonces = await watch_updates(exchange, symbol, updates=8)
        assert nonces == sorted(nonces) and nonces[-1] > nonces[0]
        book = await exchange.fetch_order_book(symbol, 100)
        assert_sane(book, 100)
    finally:
        await exchange.close()


def test_rest_depth_limits_weights_and_errors(fast_sim: SimulatorServer) -> None:
    base = fast_sim.base_url
    spot = requests.get(f"{base}/api/v3/depth", params={"symbol": "ETHUSDT", "limit": 5000})
    body = spot.json()
    assert spot.status_code == 200 and set(body) == {"lastUpdateId", "bids", "asks"}
    assert 500 < len(body["bids"]) <= 1000, "the simulated book holds up to 1000 slots a side"
    assert spot.headers["X-MBX-USED-WEIGHT-1M"] == "250"
    futures = requests.get(f"{base}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 20})
    document = futures.json()
    assert list(document) == ["lastUpdateId", "E", "T", "bids", "asks"]
    assert len(document["bids"]) == len(document["asks"]) == 20
    assert float(document["bids"][0][0]) < float(document["asks"][0][0])
    bad = requests.get(f"{base}/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 7})
    assert bad.status_code == 400 and bad.json()["code"] == -1130
    unknown = requests.get(f"{base}/api/v3/depth", params={"symbol": "NOPEUSDT"})
    assert unknown.status_code == 400 and unknown.json()["code"] == -1121


def test_books_are_the_same_on_every_replay() -> None:
    def snapshot() -> dict:
        with run_simulator_in_thread(SimulatorConfig(start=START, speed=0.001)) as sim:
            url = f"{sim.base_url}/api/v3/depth"
            return requests.get(url, params={"symbol": "BTCUSDT", "limit": 50}).json()

    assert snapshot() == snapshot()


async def _kirby_feed(
    sim: SimulatorServer,
    path: str,
    stream: str,
    market_type: str,
    frames: int,
    gap_after: int | None = None,
) -> tuple[list[Outcome], SeriesBook]:
    """Kirby's Binance sync on the simulator: subscribe, fetch the REST snapshot, feed
    every diff through parse_depth and the integrity rules (planting a gap after
    `gap_after` diffs)."""
    symbol = "BTCUSDT"
    host = sim.ws_url.removesuffix("/ws")
    book = series_book("binance", market_type, symbol)
    outcomes: list[Outcome] = []
    received = datetime.now(UTC)
    async with connect(f"{host}{path}") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 1}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 1}
        first = await asyncio.wait_for(ws.recv(), 5)
        rest = "/fapi/v1/depth" if market_type == "perps" else "/api/v3/depth"
        payload = await asyncio.to_thread(
            lambda: requests.get(
                f"{sim.base_url}{rest}", params={"symbol": symbol, "limit": 1000}
            ).json()
        )
        for update in binance_wire.parse_depth(first, received):
            outcomes.append(book.feed(update))
        outcomes.append(book.feed(binance_wire.parse_depth_snapshot(payload, symbol, received)))
        while book.counters.updates < frames:
            if book.counters.updates == gap_after:
                sim.faults.skip_book_updates(1, "binance")
                gap_after = None
            raw = await asyncio.wait_for(ws.recv(), 5)
            for update in binance_wire.parse_depth(raw, received):
                outcomes.append(book.feed(update))
                assert not book.book.crossed
            if Outcome.GAP in outcomes:
                break
    return outcomes, book


@pytest.mark.parametrize(
    ("path", "stream", "market_type"),
    [
        ("/stream/0", "btcusdt@depth@100ms", "spot"),
        ("/fstream/public/ws/0", "btcusdt@depth@100ms", "perps"),
    ],
)
async def test_kirby_rules_see_no_gap_on_a_clean_stream(
    fast_sim: SimulatorServer, path: str, stream: str, market_type: str
) -> None:
    outcomes, book = await _kirby_feed(fast_sim, path, stream, market_type, 20)
    counters = book.counters
    assert counters.gaps == 0 and counters.crossed == 0 and counters.updates == 20
    assert Outcome.GAP not in outcomes


@pytest.mark.parametrize(
    ("path", "stream", "market_type"),
    [
        ("/ws/0", "btcusdt@depth", "spot"),
        ("/fstream/public/stream", "btcusdt@depth@500ms", "perps"),
    ],
)
async def test_a_planted_gap_is_detected(
    fast_sim: SimulatorServer, path: str, stream: str, market_type: str
) -> None:
    outcomes, book = await _kirby_feed(fast_sim, path, stream, market_type, 8, gap_after=3)
    assert Outcome.GAP in outcomes and book.counters.gaps == 1
    assert fast_sim.faults.injected["book_gap"] == 1
