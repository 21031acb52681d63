"""The simulator's deterministic order books (`kirby_sim.depth`): pure functions of (seed,
instrument, step), never crossed, on the instrument's tick, and diffs that rebuild the
book exactly; the `book_gap` and `book_restart` faults through the admin endpoint."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
import requests

from kirby_sim import SimulatorConfig, run_simulator_in_thread
from kirby_sim.depth import IDS_PER_STEP, MAX_EVENTS_PER_TICK, DepthFeed, Levels, step_ranges
from kirby_sim.faults import FaultInjector, FaultSchedule, run_schedule
from kirby_sim.market import Market
from kirby_sim.universe import (
    BINANCE_SPOT_VENUE,
    BINANCE_USDM_VENUE,
    BYBIT_LINEAR_VENUE,
    COINBASE_VENUE,
    OKX_SWAP_VENUE,
)
from tests.simulator.conftest import START

NOW = int(START.timestamp() * 1000)
VENUES = [
    (BINANCE_SPOT_VENUE, "BTCUSDT"),
    (BINANCE_USDM_VENUE, "SOLUSDT"),
    (BYBIT_LINEAR_VENUE, "ETHUSDT"),
    (OKX_SWAP_VENUE, "BTC-USDT-SWAP"),
    (COINBASE_VENUE, "SOL-USD"),
]


@pytest.mark.parametrize(("venue", "symbol"), VENUES)
def test_books_straddle_the_last_price_on_the_tick(venue: str, symbol: str) -> None:
    book = Market(7).depth(venue, symbol)
    assert book is not None
    inst = book.instrument
    first = book.step(NOW)
    for step in range(first, first + 3000, 37):  # five simulated minutes
        bids, asks = book.view(step)
        last = book.candles.forming_minute(book.step_time(step)).close
        assert bids[0][0] <= last < asks[0][0]
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        assert all(p % inst.tick_units == 0 and lots > 0 for p, lots in bids + asks)
        assert 800 < len(bids) <= 1000 and 800 < len(asks) <= 1000


def test_same_seed_same_book_other_seed_other_book() -> None:
    one, two, other = (Market(seed).depth(OKX_SWAP_VENUE, "ETH-USDT-SWAP") for seed in (7, 7, 8))
    assert one is not None and two is not None and other is not None
    step = one.step(NOW)
    assert one.view(step) == two.view(step) and one.update_id(step) == two.update_id(step)
    assert one.view(step) != other.view(step)


@pytest.mark.parametrize("depth", [None, 50, 1])
def test_diffs_rebuild_the_book_exactly(depth: int | None) -> None:
    book = Market(7).depth(BINANCE_SPOT_VENUE, "ETHUSDT")
    assert book is not None
    feed = DepthFeed.start(book, NOW, depth)
    bids = dict(feed.view.bids)
    asks = dict(feed.view.asks)
    changed = 0
    for now in range(NOW + 100, NOW + 60_000, 700):
        for first, last, after, diff in feed.pending(now):
            assert first == feed.covered + 1 and diff.bids + diff.asks
            for side, rows in ((bids, diff.bids), (asks, diff.asks)):
                for price, lots in rows:
                    if lots:
                        side[price] = lots
                    else:
                        del side[price]
                changed += len(rows)
            feed.commit(after)
            rebuilt = Levels(sorted(bids.items(), reverse=True), sorted(asks.items()))
            assert rebuilt == book.view(last, depth)
    assert changed > 0


def test_update_ids_increase_and_chain() -> None:
    book = Market(7).depth(BINANCE_USDM_VENUE, "BTCUSDT")
    assert book is not None
    ids = [book.update_id(step) for step in range(book.step(NOW), book.step(NOW) + 500)]
    assert all(0 < b - a < 2 * IDS_PER_STEP for a, b in pairwise(ids))


def test_chunks_split_steps_and_merge_a_backlog() -> None:
    assert step_ranges(10, 13) == [(11, 11), (12, 12), (13, 13)]
    assert step_ranges(10, 29, every=10) == [(11, 20)], "a 1000 ms stream of a 100 ms book"
    assert step_ranges(10, 19, every=10) == []
    backlog = step_ranges(0, 1000)
    assert len(backlog) == MAX_EVENTS_PER_TICK and backlog[0] == (1, 951)
    assert backlog[-1] == (1000, 1000)


def test_book_faults_through_the_admin_endpoint() -> None:
    with run_simulator_in_thread(SimulatorConfig(start=START)) as sim:
        url = f"{sim.base_url}/_sim/faults"
        assert requests.post(url, json={"kind": "book_gap", "exchange": "okx"}).status_code == 200
        bad = requests.post(url, json={"kind": "book_gap", "exchange": "kraken"})
        assert bad.status_code == 400 and "kraken" in bad.json()["error"]
        assert requests.post(url, json={"kind": "book_restart"}).status_code == 200
        assert not sim.faults.take_book_gap("binance")
        assert sim.faults.take_book_gap("okx") and not sim.faults.take_book_gap("okx")
        assert sim.faults.book_restarts == 1
        assert sim.faults.injected["book_gap"] == 1


async def test_scheduled_book_gaps() -> None:
    planted = asyncio.Event()

    class Faults(FaultInjector):
        def skip_book_updates(self, count: int = 1, exchange: str | None = None) -> None:
            super().skip_book_updates(count, exchange)
            planted.set()

    faults = Faults()
    task = asyncio.create_task(run_schedule(FaultSchedule(book_gap_every=0.01), faults))
    try:
        await asyncio.wait_for(planted.wait(), 5)
    finally:
        task.cancel()
    assert faults.take_book_gap("bybit") and faults.injected["book_gap"] == 1
