"""Binance books resync from REST depth snapshots: each one spends its declared weight from
the process's Binance budget (the one backfills and polls spend), so a resync storm waits
for the minute instead of getting the IP refused or banned; a 429 holds every snapshot of
that budget for its Retry-After, is counted, and the book is synced after it.

One book connection's lane, fed hand-made depth frames, fetching its snapshots from the
simulator. `FakeTime` moves only when someone waits, and the simulator's weight limits
read it too: waits are counted exactly, nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import pytest

from kirby_core.catalog import TradingPairKey
from kirby_core.db.catalog_store import TradingPair
from kirby_core.exchanges import binance
from kirby_core.exchanges.binance_wire import DEPTH_SNAPSHOT_LIMIT
from kirby_core.exchanges.registry import EXCHANGES, feed_of
from kirby_core.exchanges.weights import WeightBudget
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_stream.books.gates import SnapshotGates
from kirby_stream.books.lane import BookLane
from kirby_stream.books.plan import build_book_plans
from kirby_stream.feed import Feed, FeedEnded, FeedEvent, FeedHealth, Frame
from kirby_stream.outages import Outage
from tests.exchanges.test_weight_budget import FakeTime
from tests.stream.conftest import START

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
"""Every Binance spot book of the simulator."""
SPOT_WEIGHT = 50
"""/api/v3/depth at limit 1000 (developers.binance.com)."""


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def sim(fake_time: FakeTime) -> AsyncIterator[SimulatorServer]:
    # one book state a simulated minute: the snapshot and the frames below stay in step
    config = SimulatorConfig(start=START, depth_update_ms=60_000)
    async with SimulatorServer(config, rate_clock=fake_time.monotonic) as server:
        yield server


@dataclass
class Running:
    lane: BookLane
    frames: asyncio.Queue[Frame | FeedEvent]
    task: asyncio.Task[None]
    budget: WeightBudget
    outages: list[Outage]

    def diff(self, symbol: str) -> None:
        """A depth frame of `symbol` older than any snapshot: buffered, then stale once the
        snapshot arrives; the book asks for its snapshot."""
        event = {"e": "depthUpdate", "E": 1, "s": symbol, "U": 1, "u": 2, "b": [], "a": []}
        text = json.dumps({"stream": f"{symbol.lower()}@depth", "data": event})
        self.frames.put_nowait((text, datetime.now().astimezone(), time.monotonic()))

    def whole(self) -> int:
        return sum(1 for state in self.lane.books.values() if state.whole)

    async def until_whole(self, books: int) -> None:
        deadline = time.monotonic() + 30
        while self.whole() < books:
            assert not self.task.done(), "the lane stopped"
            assert time.monotonic() < deadline, f"{self.whole()} of {books} books whole"
            await asyncio.sleep(0.02)


@pytest.fixture
async def running(sim: SimulatorServer, fake_time: FakeTime) -> AsyncIterator[Running]:
    settings = Settings(
        _env_file=None,
        binance_spot_url=sim.base_url,
        binance_futures_url=sim.base_url,
        ws_origins=sim.ws_origins,
        stream_reconnect_backoff_max_seconds=0.5,
    )
    pairs = [_spot_pair(n, symbol) for n, symbol in enumerate(SYMBOLS, start=1)]
    (plan,) = build_book_plans(settings, pairs).values()
    adapter = feed_of(EXCHANGES["binance"])
    assert adapter.depth is not None
    frames: asyncio.Queue[Frame | FeedEvent] = asyncio.Queue()
    health, outages = FeedHealth(), []
    feed = Feed(settings, frames, health, lambda: START, adapter, plan.feed)  # never run
    gates = SnapshotGates(fake_time)
    lane = BookLane(
        settings, adapter.depth, adapter, plan, feed, health, outages.extend, lambda: START, gates
    )
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(lane.run(frames, http, stop))
        budget = binance.rest_budget(settings, "spot", fake_time)
        yield Running(lane, frames, task, budget, outages)
        stop.set()
        frames.put_nowait(FeedEnded())
        await task


def _spot_pair(pair_id: int, symbol: str) -> TradingPair:
    key = TradingPairKey("binance", symbol.removesuffix("USDT"), "USDT", "spot")
    return TradingPair(pair_id, key, True)


def test_snapshot_weights_follow_binance_limit_tables() -> None:
    assert binance.depth_weight("spot", DEPTH_SNAPSHOT_LIMIT) == SPOT_WEIGHT
    assert binance.depth_weight("perps", DEPTH_SNAPSHOT_LIMIT) == 20
    assert [binance.depth_weight("spot", n) for n in (1, 100, 101, 500, 501, 5000, 9999)] == [
        5, 5, 25, 25, 50, 250, 250
    ]  # fmt: skip
    assert [binance.depth_weight("perps", n) for n in (5, 50, 100, 500)] == [2, 2, 5, 10]


async def test_a_resync_storm_waits_for_the_budget_it_shares_with_backfills(
    running: Running, sim: SimulatorServer, fake_time: FakeTime
) -> None:
    """A backfill has spent all but two snapshots' weight of the minute: two books sync at
    once, the other four wait for the minute to pass, and nothing is refused."""
    per_minute = binance.WEIGHTS["spot"].per_minute
    await running.budget.spend(per_minute - 2 * SPOT_WEIGHT)
    requests_before = sim.http_requests
    for symbol in SYMBOLS:
        running.diff(symbol)
    await running.until_whole(len(SYMBOLS))

    assert running.budget.spent == per_minute - 2 * SPOT_WEIGHT + len(SYMBOLS) * SPOT_WEIGHT
    assert (running.budget.waits, fake_time.slept) == (1, [60.0])
    # spread over two minutes: the latest holds the four that waited
    assert running.budget.used() == (len(SYMBOLS) - 2) * SPOT_WEIGHT
    counters = running.lane.counters
    assert (counters.snapshots_fetched, counters.snapshots_refused) == (len(SYMBOLS), 0)
    assert sim.http_requests - requests_before == len(SYMBOLS)  # one request a book
    assert running.outages == []


async def test_a_429_holds_the_snapshots_for_its_retry_after_and_is_counted(
    running: Running, sim: SimulatorServer, fake_time: FakeTime
) -> None:
    sim.faults.fail_next(1, 429, retry_after=30.0)
    symbols = SYMBOLS[:3]
    for symbol in symbols:
        running.diff(symbol)
    await running.until_whole(len(symbols))

    assert sim.faults.injected["http_429"] == 1
    assert running.lane.counters.snapshots_refused == 1
    assert running.lane.gates.refusals == 1
    assert 30.0 in fake_time.slept  # the refused book waited the Retry-After, then synced
    assert running.lane.counters.snapshots_fetched == len(symbols)
    assert running.budget.spent == (len(symbols) + 1) * SPOT_WEIGHT  # the retry spends too
    assert not running.task.done()
