"""OKX order books on the simulator: ccxt pro's watch_order_book (which rejects a broken
prevSeqId/seqId chain) and fetch_order_book, the CRC32 checksum recomputed the way OKX
documents it on a locally maintained book, Kirby's parse_depth + integrity rules on the
raw pushes, and a planted gap."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from websockets.asyncio.client import connect

from kirby_core.books.integrity import Outcome, SeriesBook, series_book
from kirby_core.exchanges import okx_wire
from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import START
from tests.simulator.depth_checks import assert_sane, watch_updates
from tests.simulator.test_ccxt_okx import pro_client, ws_base


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    with run_simulator_in_thread(SimulatorConfig(speed=10, start=START)) as server:
        yield server


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT:USDT"])
async def test_ccxt_watch_and_fetch_order_book(fast_sim: SimulatorServer, symbol: str) -> None:
    exchange = pro_client(fast_sim)
    try:
        nonces = await watch_updates(exchange, symbol, updates=6)
        assert nonces == sorted(nonces) and nonces[-1] > nonces[0]
        assert len(exchange.orderbooks[symbol]["bids"]) == 400
        assert_sane(await exchange.fetch_order_book(symbol, 50), 50)
    finally:
        await exchange.close()


def test_rest_books(fast_sim: SimulatorServer) -> None:
    url = f"{fast_sim.base_url}/api/v5/market/books"
    body = requests.get(url, params={"instId": "BTC-USDT-SWAP", "sz": 400}).json()
    (row,) = body["data"]
    assert body["code"] == "0" and len(row["bids"]) == len(row["asks"]) == 400
    assert all(len(level) == 4 and level[2] == "0" for level in row["bids"])
    assert len(requests.get(url, params={"instId": "SOL-USDT"}).json()["data"][0]["asks"]) == 1
    assert requests.get(url, params={"instId": "BTC-USDT", "sz": 401}).json()["code"] == "51000"
    assert requests.get(url, params={"instId": "NOPE-USDT"}).json()["code"] == "51001"


def okx_checksum(bids: dict[Decimal, list[str]], asks: dict[Decimal, list[str]]) -> int:
    """OKX's documented checksum: the best 25 bids and asks as strings, interleaved
    bid:ask, joined by ':', CRC32 as a signed 32-bit integer."""
    best_bids = [bids[price] for price in sorted(bids, reverse=True)[:25]]
    best_asks = [asks[price] for price in sorted(asks)[:25]]
    parts: list[str] = []
    for number in range(25):
        for side in (best_bids, best_asks):
            if number < len(side):
                parts += side[number][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


async def _raw_books(
    sim: SimulatorServer, channel: str, inst_id: str, pushes: int, gap_at: int | None = None
) -> list[str]:
    raws: list[str] = []
    async with connect(f"{ws_base(sim)}/public") as ws:
        arg = {"channel": channel, "instId": inst_id}
        await ws.send(json.dumps({"op": "subscribe", "args": [arg]}))
        assert json.loads(await ws.recv())["event"] == "subscribe"
        while len(raws) < pushes:
            raws.append(await asyncio.wait_for(ws.recv(), 5))
            if len(raws) == gap_at:
                sim.faults.skip_book_updates(1, "okx")
    return raws


async def test_checksums_match_the_documented_crc32(fast_sim: SimulatorServer) -> None:
    raws = await _raw_books(fast_sim, "books", "BTC-USDT", 12)
    sides: dict[str, dict[Decimal, list[str]]] = {"bids": {}, "asks": {}}
    previous = None
    for number, raw in enumerate(raws):
        message = json.loads(raw)
        assert message["action"] == ("snapshot" if number == 0 else "update")
        (row,) = message["data"]
        assert row["prevSeqId"] == (-1 if previous is None else previous)
        previous = row["seqId"]
        for name, side in sides.items():
            for level in row[name]:
                if level[1] == "0":
                    side.pop(Decimal(level[0]), None)
                else:
                    side[Decimal(level[0])] = level
            while len(side) > 400:  # a level pushed out of the top 400 arrives as "0" too
                del side[min(side) if name == "bids" else max(side)]
        assert row["checksum"] == okx_checksum(sides["bids"], sides["asks"])


async def test_books5_pushes_the_top_five(fast_sim: SimulatorServer) -> None:
    raws = await _raw_books(fast_sim, "books5", "ETH-USDT-SWAP", 3)
    for raw in raws:
        (row,) = json.loads(raw)["data"]
        assert len(row["bids"]) == len(row["asks"]) == 5
        assert Decimal(row["bids"][0][0]) < Decimal(row["asks"][0][0])


def _kirby(raws: list[str], inst_id: str) -> tuple[list[Outcome], SeriesBook]:
    book = series_book("okx", "perps" if inst_id.endswith("SWAP") else "spot", inst_id)
    outcomes = []
    for raw in raws:
        for update in okx_wire.parse_depth(raw, datetime.now(UTC)):
            outcomes.append(book.feed(update))
            assert not book.book.crossed
    return outcomes, book


async def test_kirby_rules_see_no_gap_on_a_clean_stream(fast_sim: SimulatorServer) -> None:
    outcomes, book = _kirby(
        await _raw_books(fast_sim, "books", "SOL-USDT-SWAP", 15), "SOL-USDT-SWAP"
    )
    assert outcomes == [Outcome.APPLIED] * 15 and book.counters.gaps == 0
    assert len(book.book.top(400)[1]) == 400


async def test_a_planted_gap_is_detected(fast_sim: SimulatorServer) -> None:
    raws = await _raw_books(fast_sim, "books", "BTC-USDT", 8, gap_at=3)
    outcomes, book = _kirby(raws, "BTC-USDT")
    assert Outcome.GAP in outcomes and book.counters.gaps == 1
