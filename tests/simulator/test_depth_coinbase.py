"""Coinbase order books on the simulator: ccxt pro's watch_order_book and fetch_order_book,
Kirby's parse_depth + connection-wide sequence rules (`CoinbaseConnection`) on the raw
level2 frames (trades on the same connection), and a planted gap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from websockets.asyncio.client import connect

from kirby_core.books.integrity import CoinbaseConnection, Outcome
from kirby_core.exchanges import coinbase_wire
from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.depth_checks import assert_sane, watch_updates
from tests.simulator.test_ccxt_coinbase import pro_client, ws_url


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(speed=10, start=START, quiet_probability={"BTC": 0.0})
    with run_simulator_in_thread(config) as server:
        yield server


async def test_ccxt_watch_and_fetch_order_book(fast_sim: SimulatorServer) -> None:
    exchange = pro_client(fast_sim)
    try:
        await watch_updates(exchange, "BTC/USD", updates=6)
        assert_sane(await exchange.fetch_order_book("ETH/USD", 30), 30)
    finally:
        await exchange.close()


def test_rest_product_book(fast_sim: SimulatorServer) -> None:
    url = f"{fast_sim.base_url}/api/v3/brokerage/market/product_book"
    body = requests.get(url, params={"product_id": "BTC-USD", "limit": 10}).json()
    book = body["pricebook"]
    assert book["product_id"] == "BTC-USD" and len(book["bids"]) == len(book["asks"]) == 10
    best_bid, best_ask = float(book["bids"][0]["price"]), float(book["asks"][0]["price"])
    assert best_bid <= float(body["last"]) < best_ask
    assert float(body["mid_market"]) == pytest.approx((best_bid + best_ask) / 2)
    missing = requests.get(url, params={"product_id": "NOPE-USD"})
    assert missing.status_code == 404


async def _frames(sim: SimulatorServer, count: int, gap_at: int | None = None) -> list[dict]:
    """level2 of two products and market_trades of one, on one connection."""
    frames: list[dict] = []
    async with connect(ws_url(sim)) as ws:
        for channel, products in (
            ("level2", ["BTC-USD", "SOL-USD"]),
            ("market_trades", ["BTC-USD"]),
        ):
            message = {"type": "subscribe", "product_ids": products, "channel": channel}
            await ws.send(json.dumps(message))
        while len(frames) < count:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            if len(frames) == gap_at:
                sim.faults.skip_book_updates(1, "coinbase")
    return frames


def _kirby(frames: list[dict]) -> tuple[list[Outcome], CoinbaseConnection]:
    connection = CoinbaseConnection()
    outcomes: list[Outcome] = []
    now = datetime.now(UTC)
    for frame in frames:
        if frame["channel"] != "l2_data":
            connection.note(frame["sequence_num"], now)
            continue
        for update in coinbase_wire.parse_depth(json.dumps(frame), now):
            outcomes.append(connection.feed(update))
            assert not connection.book(update.symbol).book.crossed
    return outcomes, connection


async def test_kirby_rules_see_no_gap_on_a_clean_stream(fast_sim: SimulatorServer) -> None:
    frames = await _frames(fast_sim, 30)
    numbers = [frame["sequence_num"] for frame in frames]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert {frame["channel"] for frame in frames} >= {"subscriptions", "l2_data", "market_trades"}
    outcomes, connection = _kirby(frames)
    assert set(outcomes) == {Outcome.APPLIED}
    for symbol in ("BTC-USD", "SOL-USD"):
        assert connection.book(symbol).counters.gaps == 0
        assert len(connection.book(symbol).book) > 1000


async def test_a_planted_gap_is_detected(fast_sim: SimulatorServer) -> None:
    frames = await _frames(fast_sim, 20, gap_at=8)
    outcomes, connection = _kirby(frames)
    assert connection.book("BTC-USD").counters.gaps == 1
    assert connection.book("SOL-USD").counters.gaps == 1, "a lost frame drops every book"
    assert Outcome.GAP in outcomes or Outcome.WAITING in outcomes
