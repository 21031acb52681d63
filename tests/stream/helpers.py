"""Running a collector in a test, waiting for what it does, and what the simulator served."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from kirby_core.settings import Settings
from kirby_core.timeutil import datetime_to_ms, ms_to_datetime
from kirby_sim import SimulatorServer
from kirby_stream import Collector

POLL_SECONDS = 0.02
KIRBY_STREAM = (  # `kirby stream` through the real CLI, registered here if main.py does not yet
    "from kirby_cli import main; "
    "main.COMMANDS.setdefault('stream', 'kirby_cli.stream:stream'); main.cli()"
)


class Running:
    """A collector running as a task of the test's event loop."""

    def __init__(self, collector: Collector, task: asyncio.Task[None]) -> None:
        self.collector = collector
        self.task = task

    @property
    def stats(self):
        return self.collector.snapshot()

    async def until(
        self, condition: Callable[[], Any | Awaitable[Any]], within: float = 15.0
    ) -> Any:
        """Wait until `condition()` is truthy (it may be async); fail if the collector dies."""
        deadline = time.monotonic() + within
        while True:
            if self.task.done():
                self.task.result()
                raise AssertionError("the collector stopped on its own")
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within} s waiting for {condition}")
            await asyncio.sleep(POLL_SECONDS)


@asynccontextmanager
async def collecting(
    settings: Settings, database_url: str, sim: SimulatorServer
) -> AsyncIterator[Running]:
    """Run a collector on the simulator's clock until the block ends, then stop it in order."""
    collector = Collector(settings, database_url, clock=sim.clock.now)
    stop = asyncio.Event()
    running = Running(collector, asyncio.create_task(collector.run(stop)))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(running.task, 15)


def fast(settings: Settings, **overrides: Any) -> Settings:
    """Collector timings for a simulator running 60x: everything within a fraction of a second."""
    timings = {
        "stream_flush_seconds": 0.2,
        "stream_heartbeat_seconds": 0.3,
        "stream_catalog_poll_seconds": 0.3,
        "stream_stall_seconds": 1.0,
        "stream_ping_seconds": 5.0,
        "stream_database_timeout_seconds": 2.0,
        "stream_database_backoff_max_seconds": 0.5,
        "stream_reconnect_backoff_max_seconds": 0.5,
        "stream_shutdown_seconds": 3.0,
        # The trade tape has its own tests (test_trades_live); the others keep the
        # subscriptions and series they count free of it.
        "stream_trades": False,
        # books keep connections of their own: off unless a test asks (test_books_live.py),
        # so tests counting connections and subscriptions see the candle ones
        "books_enabled": False,
    }
    return Settings(_env_file=None, **{**settings.model_dump(), **timings, **overrides})


async def candle_snapshot(
    sim: SimulatorServer, coin: str, interval: str, start: datetime, end: datetime
) -> dict[datetime, tuple]:
    """What Hyperliquid's REST API serves for these candles: open time -> OHLCV + count."""
    body = {
        "type": "candleSnapshot",
        "req": {
            "coin": coin,
            "interval": interval,
            "startTime": datetime_to_ms(start),
            "endTime": datetime_to_ms(end),
        },
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/info", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        rows = await response.json()
    return {ms_to_datetime(r["t"]): (*(Decimal(r[k]) for k in "ohlcv"), r["n"]) for r in rows}


def minutes(start: datetime, end: datetime) -> list[datetime]:
    """Minute starts in [start, end)."""
    count = int((end - start) / timedelta(minutes=1))
    return [start + timedelta(minutes=i) for i in range(count)]
