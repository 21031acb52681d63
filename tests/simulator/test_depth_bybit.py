"""Bybit order books on the simulator: ccxt pro's watch_order_book and fetch_order_book
(spot and linear), Kirby's parse_depth + integrity rules on the raw pushes (no gap on a
clean stream, a planted gap detected, the u = 1 restart overwriting the book)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from websockets.asyncio.client import connect

from kirby_core.books.integrity import Outcome, SeriesBook, series_book
from kirby_core.exchanges import bybit_wire
from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.depth_checks import assert_sane, watch_updates
from tests.simulator.test_ccxt_bybit import pro_client


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    with run_simulator_in_thread(SimulatorConfig(speed=10, start=START)) as server:
        yield server


@pytest.mark.parametrize(("symbol", "limit"), [("BTC/USDT", 50), ("ETH/USDT:USDT", 200)])
async def test_ccxt_watch_and_fetch_order_book(
    fast_sim: SimulatorServer, symbol: str, limit: int
) -> None:
    exchange = pro_client(fast_sim)
    try:
        await watch_updates(exchange, symbol, updates=6, limit=limit)
        book = exchange.orderbooks[symbol]
        assert len(book["bids"]) == len(book["asks"]) == limit, "the top `limit` levels kept"
        fetched = await exchange.fetch_order_book(symbol, 25)
        assert_sane(fetched, 25)
    finally:
        await exchange.close()


def test_rest_order_book_limits(fast_sim: SimulatorServer) -> None:
    url = f"{fast_sim.base_url}/v5/market/orderbook"
    spot = requests.get(url, params={"category": "spot", "symbol": "BTCUSDT"}).json()
    result = spot["result"]
    assert spot["retCode"] == 0 and len(result["b"]) == len(result["a"]) == 1
    assert {"s", "b", "a", "ts", "u", "seq", "cts"} <= set(result)
    linear = requests.get(url, params={"category": "linear", "symbol": "SOLUSDT"}).json()
    assert len(linear["result"]["b"]) == 25
    too_many = {"category": "spot", "symbol": "BTCUSDT", "limit": 201}
    assert requests.get(url, params=too_many).json()["retCode"] == 10001


async def _kirby_feed(
    sim: SimulatorServer, path: str, topic: str, pushes: int, fault: str | None = None
) -> tuple[list[Outcome], SeriesBook, list[dict]]:
    """Kirby's rules fed the topic's pushes; `fault` planted after the third update."""
    host = sim.ws_url.removesuffix("/ws")
    market_type = "spot" if path.endswith("spot") else "perps"
    book = series_book("bybit", market_type, topic.rsplit(".", 1)[1])
    outcomes: list[Outcome] = []
    messages: list[dict] = []
    async with connect(f"{host}{path}") as ws:
        await ws.send(json.dumps({"op": "subscribe", "req_id": "1", "args": [topic]}))
        assert json.loads(await ws.recv())["success"] is True
        while len(messages) < pushes:
            raw = await asyncio.wait_for(ws.recv(), 5)
            messages.append(json.loads(raw))
            for update in bybit_wire.parse_depth(raw, datetime.now(UTC)):
                outcomes.append(book.feed(update))
                assert not book.book.crossed
            if len(messages) == 3 and fault == "gap":
                sim.faults.skip_book_updates(1, "bybit")
            if len(messages) == 3 and fault == "restart":
                sim.faults.restart_books()
    return outcomes, book, messages


@pytest.mark.parametrize(
    ("path", "topic"),
    [("/v5/public/spot", "orderbook.50.BTCUSDT"), ("/v5/public/linear", "orderbook.200.ETHUSDT")],
)
async def test_kirby_rules_see_no_gap_on_a_clean_stream(
    fast_sim: SimulatorServer, path: str, topic: str
) -> None:
    outcomes, book, messages = await _kirby_feed(fast_sim, path, topic, 15)
    assert messages[0]["type"] == "snapshot" and {m["type"] for m in messages[1:]} == {"delta"}
    assert outcomes == [Outcome.APPLIED] * 15 and book.counters.gaps == 0
    depth = int(topic.split(".")[1])
    assert len(book.book.top(depth)[0]) == depth, "deltas keep the top `depth` levels"


async def test_a_planted_gap_is_detected(fast_sim: SimulatorServer) -> None:
    outcomes, book, _ = await _kirby_feed(
        fast_sim, "/v5/public/spot", "orderbook.1.BTCUSDT", 6, "gap"
    )
    assert Outcome.GAP in outcomes and book.counters.gaps == 1


async def test_a_restart_sends_u_1_and_overwrites_the_book(fast_sim: SimulatorServer) -> None:
    outcomes, book, messages = await _kirby_feed(
        fast_sim, "/v5/public/linear", "orderbook.50.BTCUSDT", 12, "restart"
    )
    (at,) = [n for n, m in enumerate(messages) if n and m["type"] == "snapshot"]
    assert messages[at]["data"]["u"] == 1 and messages[at + 1]["data"]["u"] == 2
    assert book.counters.restarts == 1 and book.counters.gaps == 0
    assert Outcome.GAP not in outcomes
