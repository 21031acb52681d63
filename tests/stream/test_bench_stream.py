"""The stream benchmark's code path, small: the scaled five-exchange catalog, the recording
of every exchange's connections from the simulator, the replay on the same URL paths into
a real collector (with candle latency per exchange) and the per-message baseline. No
timing is asserted: only that every part does what the benchmark reports."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil
import pytest

from bench.stream import pinning, run, simulator
from kirby_core.catalog import load_catalog
from kirby_core.db.urls import DatabaseUrls
from kirby_core.exchanges.registry import EXCHANGES, feed_of
from kirby_core.settings import Settings
from kirby_sim import SimulatorServer
from tests.conftest import REPO

COINS = 4
NOW = datetime.now(UTC)


def test_the_catalog_scales_every_exchange_to_the_same_number_of_coins() -> None:
    five = load_catalog(REPO / "config" / "starlistings.yaml")
    scaled = run.firehose_catalog(COINS)
    per_exchange: dict[str, set[str]] = {}
    for listing in scaled.starlistings:
        per_exchange.setdefault(listing.exchange, set()).add(listing.coin)
    assert {name: len(coins) for name, coins in per_exchange.items()} == dict.fromkeys(
        ("hyperliquid", "binance", "bybit", "okx", "coinbase"), COINS
    )
    shapes = {(s.exchange, s.quote, s.market_type, s.interval) for s in five.starlistings}
    assert {(s.exchange, s.quote, s.market_type, s.interval) for s in scaled.starlistings} == shapes
    assert set(five.starlistings) < set(scaled.starlistings)
    assert run.synthetic_coins(scaled) == COINS - 2  # Hyperliquid lists BTC and SOL only
    only = run.firehose_catalog(COINS, ["okx"])
    assert {s.exchange for s in only.starlistings} == {"okx"}
    assert len(only.starlistings) == COINS * 2 * 4  # spot and swaps, four intervals


@pytest.fixture
async def synced(conn: asyncpg.Connection, database_urls: DatabaseUrls) -> dict[int, str]:
    return await run.sync(database_urls.realtime, run.firehose_catalog(COINS))


async def test_recorded_frames_replay_into_the_collector_and_the_baseline(
    synced: dict[int, str], database_urls: DatabaseUrls, settings: Settings, tmp_path: Path
) -> None:
    url = database_urls.realtime
    # the candle path the benchmark reports (the trade tape is tested in test_trades_live)
    settings = settings.model_copy(update=run.FIREHOSE)
    # at the real time: the collector polls REST for the minutes of its own (wall) clock
    async with SimulatorServer(simulator.config(COINS - 2, run.RECORD_SPEED)) as sim:
        recorded = run.Endpoints(sim.ws_url, sim.ws_origins)
        plans = await run.load_plans(url, recorded.settings(settings))
        # every exchange's WebSocket connection but Coinbase's (its series are all polled)
        assert {plan.exchange for plan in plans.feeds.values()} == {
            "hyperliquid", "binance", "bybit", "okx",
        }  # fmt: skip
        assert {poll.exchange for poll in plans.polls.values()} == {"binance", "coinbase"}
        frames = await run.record_firehose(plans, 600)
        assert set(frames) == {run.path_of(plan.url) for plan in plans.feeds.values()}
        assert sum(len(sent) for sent in frames.values()) >= 600
        for plan in plans.feeds.values():
            parse = feed_of(EXCHANGES[plan.exchange]).parser()
            for text in frames[run.path_of(plan.url)][:20]:
                assert any(isinstance(m, run.DATA) for m in parse(text, NOW)), text

        frames_file = tmp_path / "frames.json"
        frames_file.write_text(json.dumps(frames))
        total = sum(len(sent) for sent in frames.values())
        polled = run.with_rest(settings, sim.base_url)
        a = await run.throughput(polled, url, synced, recorded, frames_file, total * 2, 2)

    assert a["messages"] == total * 2 and a["invalid"] == 0
    streamed = {plan.exchange for plan in plans.feeds.values()}
    by_exchange = Counter(a["by_exchange"])
    assert all(by_exchange[name] > 0 for name in streamed)
    assert a["rows"]["candles"] > 0
    timed = {name for name in a["percentiles"] if name != "all"}
    assert streamed <= timed <= streamed | {"coinbase"}  # Coinbase's polls may land in time
    stored = await _count(url, "SELECT count(*) FROM candles")
    assert stored > 0

    await run.empty(url)
    rate = await run.baseline(settings, url, recorded, frames_file, 30, run.write_single_row)
    assert rate > 0
    assert await _count(url, "SELECT count(*) FROM candles") > 0


async def _count(url: str, query: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def test_pinning_puts_the_collector_on_one_core_and_postgres_on_the_others(
    database_urls: DatabaseUrls,
) -> None:
    cores = pinning.available()
    if len(cores) < 2:
        pytest.skip(f"pinning needs 2 cores, this process may use {cores}")
    before = os.sched_getaffinity(0)
    conn = await asyncpg.connect(database_urls.realtime)
    try:
        postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).ppid()
    finally:
        await conn.close()
    assert postmaster is not None
    postmaster_before = os.sched_getaffinity(postmaster)
    pinned = await pinning.pin_everything(database_urls.realtime)
    assert pinned is not None
    try:
        assert pinned.collector == cores[0] and pinned.others == set(cores[1:])
        assert os.sched_getaffinity(0) == {cores[0]}
        assert os.sched_getaffinity(postmaster) == set(cores[1:])
        assert f"postmaster (pid {postmaster})" in pinned.lines[1]
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", "input()", stdin=PIPE)
        try:
            pinned.pin_child(child.pid, "a child")
            assert os.sched_getaffinity(child.pid) == set(cores[1:])
            assert pinned.started_text() == f"processes started: a child x1 on cores {cores[1:]}"
        finally:
            child.kill()
            await child.wait()
    finally:
        pinned.restore()
    assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(postmaster) == postmaster_before
