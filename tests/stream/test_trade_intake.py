"""A connection's trade pushes through the intake, without a network: trade ids buffered
once, OKX swap sizes in contracts turned into coins, and trades of a contract whose value is
unknown held back as a gap that ends in a `trades` outage once the value is known; the
contract values read from the exchange's REST API (the simulator's)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kirby_core.exchanges.registry import OKX_STREAM
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedPlan, StreamCatalog
from kirby_stream.contracts import ContractValues
from kirby_stream.feed import CatalogReplaced, Feed, FeedHealth, FeedLost
from kirby_stream.intake import Intake
from kirby_stream.stats import Stats
from tests.stream.helpers import fast

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
SWAP, PAIR = "BTC-USDT-SWAP", 41
PLAN = FeedPlan(
    "okx",
    "ws://okx/ws/v5/public",
    {SWAP: (("perps", {"channel": "trades", "instId": SWAP}),)},
    trades={SWAP: PAIR},
)


def push(trade_id: int, at: datetime, contracts: str = "3") -> str:
    ms = int(at.timestamp() * 1000)
    row = {"instId": SWAP, "tradeId": str(trade_id), "px": "97001.5", "sz": contracts}
    row |= {"side": "buy", "ts": str(ms), "count": "1"}
    return json.dumps({"arg": {"channel": "trades", "instId": SWAP}, "data": [row]})


def intake(plan: FeedPlan) -> tuple[Intake, Buffers, Stats]:
    buffers, stats = Buffers(1000), Stats("test", T0)
    return Intake(buffers, FeedHealth(), stats, OKX_STREAM, plan), buffers, stats


def test_swap_sizes_become_coins_and_a_repeated_trade_is_buffered_once() -> None:
    feed, buffers, stats = intake(replace(PLAN, contract_values={SWAP: Decimal("0.01")}))
    feed.frame(push(1, T0), T0, 1.0)
    feed.frame(push(1, T0), T0, 1.1)  # a replay
    feed.frame(push(2, T0 + SECOND, "250"), T0 + SECOND, 1.2)
    rows = buffers.take(T0 + 10 * SECOND).rows["trades"]
    assert [(r.trading_pair_id, r.trade_id, r.size) for r in rows] == [
        (PAIR, "1", Decimal("0.03")),
        (PAIR, "2", Decimal("2.50")),
    ]
    assert stats.feeds["okx"].trades == 2
    assert stats.duplicate_trades == 1
    assert stats.invalid_messages == 0


def test_trades_of_an_unknown_contract_value_are_a_gap_until_the_value_is_known() -> None:
    feed, buffers, _ = intake(PLAN)
    feed.frame(push(1, T0), T0, 1.0)  # no value yet: nothing stored, a gap opens
    feed.frame(push(2, T0 + 5 * SECOND), T0 + 5 * SECOND, 2.0)
    assert buffers.size == 0
    assert feed.gaps.open_coins == {f"{SWAP} trades"}
    valued = replace(PLAN, contract_values={SWAP: Decimal("0.01")})
    feed.event(CatalogReplaced(valued, T0 + 6 * SECOND))
    feed.frame(push(3, T0 + 9 * SECOND), T0 + 9 * SECOND, 3.0)
    batch = buffers.take(T0 + 10 * SECOND)
    assert [r.trade_id for r in batch.rows["trades"]] == ["3"]
    [outage] = batch.outages
    assert (outage.dataset, outage.series_id) == ("trades", PAIR)
    # from the first trade not stored to the first one stored: what may be missing
    assert (outage.start_time, outage.end_time) == (T0, T0 + 9 * SECOND)


def test_a_lost_feed_is_a_trades_gap_from_the_last_trade_to_the_next_trade() -> None:
    feed, buffers, _ = intake(replace(PLAN, contract_values={SWAP: Decimal("1")}))
    feed.frame(push(1, T0 + SECOND), T0 + 2 * SECOND, 1.0)  # received a second after
    feed.event(FeedLost(frozenset({SWAP}), T0 + 4 * SECOND, "connection closed"))
    feed.frame(push(7, T0 + 30 * SECOND), T0 + 31 * SECOND, 2.0)
    [outage] = buffers.outages
    assert (outage.dataset, outage.series_id) == ("trades", PAIR)
    # trade times, not receive times: exactly the trades that may be missing fall inside
    assert (outage.start_time, outage.end_time) == (T0 + SECOND, T0 + 30 * SECOND)


def test_a_replay_reaching_back_to_the_gap_closes_it_with_nothing_missing() -> None:
    feed, buffers, _ = intake(replace(PLAN, contract_values={SWAP: Decimal("1")}))
    feed.frame(push(1, T0 + 5 * SECOND), T0 + 5 * SECOND, 1.0)
    feed.event(FeedLost(frozenset({SWAP}), T0 + 6 * SECOND, "connection closed"))
    feed.frame(push(1, T0 + 5 * SECOND), T0 + 9 * SECOND, 2.0)  # the replay starts here
    assert buffers.outages == [] and feed.gaps.open_coins == frozenset()


async def test_contract_values_are_read_from_the_exchange_and_retried_when_it_fails(
    settings: Settings,
) -> None:
    catalog = StreamCatalog(feeds={PLAN.key: PLAN})
    down = ContractValues(fast(settings, okx_rest_url="http://127.0.0.1:9"))
    assert (await down.attach(catalog)).feeds[PLAN.key].contract_values == {}
    async with SimulatorServer(SimulatorConfig(speed=60, start=T0)) as sim:
        values = ContractValues(fast(settings, okx_rest_url=sim.base_url))
        attached = await values.attach(catalog)
    # the simulator's BTC swap: 0.01 BTC a contract, as OKX's
    assert attached.feeds[PLAN.key].contract_values == {SWAP: Decimal("0.01")}
    assert await values.attach(catalog) == attached  # known: not read again, same plans


def test_the_stall_watchdog_watches_symbols_with_a_steady_channel_only(settings: Settings) -> None:
    """A tape is quiet whenever nobody trades: on OKX /public a spot symbol carries trades
    alone and is not watched; a swap carries funding too. A connection of trades alone is
    watched as a whole."""
    spot = "BTC-USDT"
    plan = replace(
        PLAN,
        subscriptions={**PLAN.subscriptions, spot: (("spot", {"channel": "trades"}),)},
        trades={SWAP: PAIR, spot: 7},
        funding={SWAP: PAIR},
    )
    feed = Feed(fast(settings), asyncio.Queue(), FeedHealth(), lambda: T0, OKX_STREAM, plan)
    feed._subscribed = {SWAP: [], spot: []}
    assert feed._steady() == [SWAP]
    feed.replace_plan(replace(plan, funding={}))
    assert feed._steady() == []  # trades alone: the whole-feed check watches every symbol
