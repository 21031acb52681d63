"""Live collector throughput and latency on a simulated firehose, against per-message writers.

    python -m bench.stream.run [--frames 60000] [--repeat 5] [--baseline-frames 3000]
                               [--latency-seconds 30]

Setup: 200 Hyperliquid perps (the simulator's 28 real ones + 172 synthetic, `--extra-coins`)
x 1m/15m/4h/1d synced into a scratch database; the simulator's feed of all of them (800
candle + 200 activeAssetCtx subscriptions: Hyperliquid's per-IP maximum of 1000) recorded
once and replayed by `bench.stream.replay` in another process.

(a) throughput: the collector (`kirby_stream.Collector`, default settings, one event loop on
    one core) reading the replay as fast as it can; messages/s from the first frame to the
    commit holding the last candles, and the collector process's CPU seconds (on a busy
    machine it does not get a whole core: messages per CPU-second is then what it can do
    on one; the CPU figure also counts the wait for that last commit, so it is a floor);
(b) baselines on the same frames and database, one message at a time: (b1) Kirby's writer
    called per message (upsert + NOTIFY in its own transaction), (b2) a hand-written
    single-row INSERT ... ON CONFLICT per row, autocommit;
(c) message-to-committed-row latency of candles at the default 1 s flush: the live simulator
    at real speed (200 coins), and the replay paced at half of (a)'s rate.
Targets (issue 3): (a) >= 25x (b1) messages/s; p99 <= 1.5 s. Figures only, never asserted.
The machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from websockets.asyncio.client import connect

from bench.common import drop_database, scratch_database
from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store, notify
from kirby_core.db.writer import upsert_candles, upsert_funding_rates, upsert_open_interest
from kirby_core.exchanges.hyperliquid_wire import parse_ws_message, subscribe_frame
from kirby_core.models import (
    AssetContextUpdate,
    CandleRow,
    CandleUpdate,
    FundingRateRow,
    OpenInterestRow,
)
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_sim.universe import hyperliquid_perps
from kirby_stream import Collector
from kirby_stream.catalog import StreamCatalog, load_stream_catalog

DATABASE = "kirby_bench_stream"
EXTRA_COINS = 172
INTERVALS = ["1m", "15m", "4h", "1d"]
GREETING = "Websocket connection established."


def firehose_catalog():
    coins = [perp.symbol for perp in hyperliquid_perps(EXTRA_COINS)]
    return parse_catalog(
        {
            "exchanges": [{"name": "hyperliquid"}],
            "coins": [{"symbol": coin} for coin in coins],
            "quote_currencies": [{"symbol": "USD"}],
            "market_types": [{"name": "perps"}],
            "starlistings": [
                {
                    "exchange": "hyperliquid",
                    "coin": coin,
                    "quote": "USD",
                    "market_type": "perps",
                    "intervals": INTERVALS,
                }
                for coin in coins
            ],
        },
        source="bench firehose",
    )


def subscriptions(catalog: StreamCatalog) -> list[str]:
    return [
        subscribe_frame(s) for coin in sorted(catalog.coins) for s in catalog.subscriptions(coin)
    ]


async def record_firehose(catalog: StreamCatalog, count: int) -> list[str]:
    """`count` data frames of the simulated 200-coin feed (60x, so every interval moves)."""
    config = SimulatorConfig(speed=60, extra_coins=EXTRA_COINS, rate_limits=False)
    frames: list[str] = []
    async with SimulatorServer(config) as sim, connect(sim.ws_url, max_size=None) as ws:
        for frame in subscriptions(catalog):
            await ws.send(frame)
        async for text in ws:
            if text.startswith(('{"channel":"candle"', '{"channel":"activeAssetCtx"')):
                frames.append(text)
                if len(frames) == count:
                    return frames
    return frames


@contextlib.asynccontextmanager
async def replay(frames_file: Path, repeat: int, rate: float | None = None) -> AsyncIterator[str]:
    command = [
        sys.executable,
        "-m",
        "bench.stream.replay",
        str(frames_file),
        "--repeat",
        str(repeat),
    ]
    if rate:
        command += ["--rate", str(rate)]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        yield (await process.stdout.readline()).decode().strip()
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def live_simulator() -> AsyncIterator[str]:
    """`kirby sim` with the 200 coins at real speed; yields its WebSocket URL."""
    command = [
        sys.executable, "-c", "from kirby_cli.main import cli; cli()", "sim", "--port", "0",
        "--extra-coins", str(EXTRA_COINS), "--no-rate-limits",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        while True:
            line = (await process.stderr.readline()).decode()
            if found := re.search(r"hyperliquid_ws=(\S+)", line):
                yield found.group(1)
                break
    finally:
        process.terminate()
        await process.wait()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def until(condition: Callable[[], bool], within: float = 600.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark condition not reached in {within} s")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def collector(settings: Settings, url: str) -> AsyncIterator[Collector]:
    running = Collector(settings, url)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await task


async def throughput(settings: Settings, url: str, frames_file: Path, frames: int, repeat: int):
    total = frames * repeat
    async with replay(frames_file, repeat) as ws_url:
        stream_settings = settings.model_copy(update={"hyperliquid_ws_url": ws_url})
        async with collector(stream_settings, url) as running:
            stats = running.stats
            before = 1 + 1000  # greeting and acknowledgements
            await until(lambda: stats.messages_received > before)
            started, cpu_started = datetime.now(UTC), cpu_seconds()
            await until(lambda: stats.messages_received >= before + total)
            await until(lambda: running.buffers.sizes()["candles"] == 0)
            # the flush holding the last candles may still be writing: its commit ends (a)
            await asyncio.sleep(settings.stream_flush_seconds + 0.5)
            committed = stats.tables["candles"].last_commit_at
            assert committed is not None
            seconds = (committed - started).total_seconds()
            cpu = cpu_seconds() - cpu_started
            p50, p99 = stats.latency_percentile(0.5), stats.latency_percentile(0.99)
    return {
        "messages": total,
        "seconds": seconds,
        "rate": total / seconds,
        "cpu": cpu,
        "p50": p50,
        "p99": p99,
        "rows": {name: t.rows_written for name, t in stats.tables.items()},
    }


async def latency(settings: Settings, url: str, ws_url: str, seconds: float) -> dict:
    stream_settings = settings.model_copy(update={"hyperliquid_ws_url": ws_url})
    async with collector(stream_settings, url) as running:
        stats = running.stats
        await until(lambda: stats.flushes >= 3)
        received, started = stats.messages_received, time.monotonic()
        stats.latency_histogram[:] = [0] * len(stats.latency_histogram)  # steady state only
        await asyncio.sleep(seconds)
        rate = (stats.messages_received - received) / (time.monotonic() - started)
        return {
            "rate": rate,
            "p50": stats.latency_percentile(0.5),
            "p99": stats.latency_percentile(0.99),
        }


CANDLE_UPSERT = """
INSERT INTO candles AS t (starlisting_id, time, open, high, low, close, volume, trade_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (starlisting_id, time) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    trade_count = EXCLUDED.trade_count"""
FUNDING_UPSERT = """
INSERT INTO funding_rates AS t (trading_pair_id, time, settled_funding_rate, settled_premium,
    predicted_funding_rate, premium, mark_price, oracle_price, mid_price, next_funding_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (trading_pair_id, time) DO UPDATE SET
    predicted_funding_rate = EXCLUDED.predicted_funding_rate, premium = EXCLUDED.premium,
    mark_price = EXCLUDED.mark_price, oracle_price = EXCLUDED.oracle_price,
    mid_price = EXCLUDED.mid_price, next_funding_time = EXCLUDED.next_funding_time"""
INTEREST_UPSERT = """
INSERT INTO open_interest AS t (trading_pair_id, time, open_interest, notional, day_base_volume,
    day_notional_volume)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (trading_pair_id, time) DO UPDATE SET open_interest = EXCLUDED.open_interest,
    notional = EXCLUDED.notional, day_base_volume = EXCLUDED.day_base_volume,
    day_notional_volume = EXCLUDED.day_notional_volume"""

Write = Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]


async def write_with_kirby_writer(conn: asyncpg.Connection, table: str, rows: list[Any]) -> None:
    upsert = {
        "candles": upsert_candles,
        "funding_rates": upsert_funding_rates,
        "open_interest": upsert_open_interest,
    }[table]
    async with conn.transaction():
        await upsert(conn, rows)
        await notify.notify(conn, table, {rows[0][0]: [rows[0][1]]})


async def write_single_row(conn: asyncpg.Connection, table: str, rows: list[Any]) -> None:
    statement = {"candles": CANDLE_UPSERT, "funding_rates": FUNDING_UPSERT}.get(
        table, INTEREST_UPSERT
    )
    await conn.execute(statement, *rows[0])


async def baseline(url: str, catalog: StreamCatalog, frames_file: Path, count: int, write: Write):
    """Read the replay and write every message on its own; messages/s."""
    conn = await asyncpg.connect(url)
    try:
        async with replay(frames_file, 1) as ws_url, connect(ws_url, max_size=None) as ws:
            for frame in subscriptions(catalog):
                await ws.send(frame)
            handled, started = 0, 0.0
            async for text in ws:
                message = parse_ws_message(text, datetime.now(UTC)) if text != GREETING else None
                if isinstance(message, CandleUpdate):
                    sid = catalog.candles[message.coin, message.interval]
                    await write(conn, "candles", [CandleRow(sid, *message.candle)])
                elif isinstance(message, AssetContextUpdate):
                    pair = catalog.pairs[message.coin]
                    await write(conn, "funding_rates", [FundingRateRow(pair, *message.funding)])
                    await write(
                        conn, "open_interest", [OpenInterestRow(pair, *message.open_interest)]
                    )
                else:
                    continue
                if handled == 0:
                    started = time.monotonic()
                handled += 1
                if handled == count:
                    break
            return count / (time.monotonic() - started)
    finally:
        await conn.close()


async def empty(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE candles, funding_rates, open_interest, stream_heartbeats")
    finally:
        await conn.close()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


async def run(frames_count: int, repeat: int, baseline_frames: int, latency_seconds: float):
    print(f"machine: {load()}")
    url = await scratch_database(DATABASE)
    try:
        conn = await asyncpg.connect(url)
        try:
            await catalog_store.sync_catalog(conn, firehose_catalog())
            catalog = await load_stream_catalog(conn)
        finally:
            await conn.close()
        print(
            f"catalog: {len(catalog.coins)} coins, {len(catalog.candles)} starlistings, "
            f"{len(catalog.pairs)} trading pairs -> {len(subscriptions(catalog))} subscriptions"
        )
        frames = await record_firehose(catalog, frames_count)
        candles = sum(1 for f in frames if f.startswith('{"channel":"candle"'))
        print(
            f"recorded {len(frames):,} frames ({candles:,} candle, {len(frames) - candles:,} ctx)"
        )
        settings = Settings(_env_file=None)
        with tempfile.TemporaryDirectory() as tmp:
            frames_file = Path(tmp) / "frames.json"
            frames_file.write_text(json.dumps(frames))

            a = await throughput(settings, url, frames_file, len(frames), repeat)
            print(
                f"\n(a) collector: {a['messages']:,} messages in {a['seconds']:.1f} s = "
                f"{a['rate']:,.0f} msg/s wall; collector CPU {a['cpu']:.1f} s "
                f"({a['cpu'] / a['seconds']:.0%} of one core) = "
                f"{a['messages'] / a['cpu']:,.0f} msg per CPU-second; rows written {a['rows']}"
            )
            await empty(url)
            b1 = await baseline(url, catalog, frames_file, baseline_frames, write_with_kirby_writer)
            print(f"(b1) Kirby writer, one upsert+NOTIFY transaction per message: {b1:,.0f} msg/s")
            await empty(url)
            b2 = await baseline(url, catalog, frames_file, baseline_frames, write_single_row)
            print(f"(b2) single-row INSERT ... ON CONFLICT per row, autocommit: {b2:,.0f} msg/s")
            await empty(url)

            async with live_simulator() as ws_url:
                c1 = await latency(settings, url, ws_url, latency_seconds)
            print(
                f"\n(c1) live simulator, 200 coins, real speed: {c1['rate']:,.0f} msg/s, "
                f"candle message->commit p50 {c1['p50']:.2f} s, p99 {c1['p99']:.2f} s"
            )
            paced = a["rate"] / 2
            repeats = max(1, int(paced * (latency_seconds + 10) / len(frames)) + 1)
            async with replay(frames_file, repeats, paced) as ws_url:
                c2 = await latency(settings, url, ws_url, latency_seconds / 2)
            print(
                f"(c2) replay paced at {paced:,.0f} msg/s: {c2['rate']:,.0f} msg/s, "
                f"candle message->commit p50 {c2['p50']:.2f} s, p99 {c2['p99']:.2f} s"
            )
    finally:
        await drop_database(url, DATABASE)
    per_core = a["messages"] / a["cpu"]
    print(
        f"\n(a)/(b1) = {a['rate'] / b1:.1f}x wall, {per_core / b1:.1f}x per core (target >= 25x)"
        f"   (a)/(b2) = {a['rate'] / b2:.1f}x wall, {per_core / b2:.1f}x per core"
        f"\np99 at the default flush: {c1['p99']:.2f} s live, {c2['p99']:.2f} s under load "
        f"(target <= 1.5 s)\nmachine: {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60_000, help="frames recorded")
    parser.add_argument("--repeat", type=int, default=5, help="replays of them in (a)")
    parser.add_argument("--baseline-frames", type=int, default=3_000, help="messages in (b)")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="duration of (c1)")
    arguments = parser.parse_args()
    asyncio.run(
        run(
            arguments.frames, arguments.repeat, arguments.baseline_frames, arguments.latency_seconds
        )
    )


if __name__ == "__main__":
    main()
