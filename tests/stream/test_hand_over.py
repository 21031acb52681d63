"""An exchange that ends every connection after a while (Binance: 24 h) gets the next one
opened and subscribed before: the hand-over loses nothing and records no gap."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from kirby_core.exchanges.registry import BINANCE, feed_of
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import SimulatorServer
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedPlan
from kirby_stream.feed import Feed, FeedEvent, FeedHealth, FeedLost, Frame
from kirby_stream.intake import Intake
from kirby_stream.stats import Stats
from tests.stream.conftest import SPEED
from tests.stream.helpers import fast

MINUTE = timedelta(minutes=1)
LIMIT_SECONDS = 120
"""The connection limit declared for the test: the feed opens the next connection after 108
simulated seconds (a tenth of the limit before it) and reads both for 2 s (2 simulated
minutes at 60x), so it hands over about every 4 simulated minutes."""


async def test_connections_are_handed_over_before_the_exchange_ends_them(
    settings: Settings, sim: SimulatorServer
) -> None:
    adapter = feed_of(BINANCE)
    adapter = replace(
        adapter,
        limits={
            market: replace(limits, max_connection_seconds=LIMIT_SECONDS)
            for market, limits in adapter.limits.items()
        },
    )
    settings = fast(settings, ws_origins=sim.ws_origins, stream_stall_seconds=5.0)
    url = adapter.ws_url(settings, "spot", "candles")
    subscription = adapter.subscription("spot", "candles", "BTCUSDT", "1m")
    plan = FeedPlan("binance", url, {"BTCUSDT": (("spot", subscription),)}, {("BTCUSDT", "1m"): 1})
    frames: asyncio.Queue[Frame | FeedEvent] = asyncio.Queue()
    health, stats, buffers = FeedHealth(), Stats("test", sim.clock.now()), Buffers(100_000)
    feed = Feed(settings, frames, health, sim.clock.now, adapter, plan)
    intake = Intake(buffers, health, stats, adapter, plan)
    lost: list[FeedLost] = []

    async def consume() -> None:
        while True:
            item = await frames.get()
            if isinstance(item, FeedLost):
                lost.append(item)
            if type(item) is tuple:
                intake.frame(*item)
            elif not isinstance(item, tuple):
                intake.event(item)  # type: ignore[arg-type]

    stop = asyncio.Event()
    start = sim.clock.now()
    tasks = [asyncio.create_task(feed.run(stop)), asyncio.create_task(consume())]
    await asyncio.sleep(7 * 60 / SPEED)  # 7 simulated minutes
    stop.set()
    await asyncio.wait_for(tasks[0], 10)
    end = sim.clock.now()
    tasks[1].cancel()

    assert feed.hand_overs >= 2, feed.hand_overs
    assert feed.reconnects == 0 and lost == [] and buffers.outages == []
    assert stats.invalid_messages == 0
    held = {row.time for row in buffers.take(end, everything=True).rows["candles"]}
    first, last = floor_minute(start) + MINUTE, floor_minute(end) - MINUTE
    wanted = {first + i * MINUTE for i in range(int((last - first) / MINUTE) + 1)}
    assert wanted <= held, sorted(wanted - held)
