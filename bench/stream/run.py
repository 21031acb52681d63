"""Live collector throughput and latency on five exchanges' simulated firehose, against
per-message writers and a single exchange's firehose, in one run.

    python -m bench.stream.run [--coins 50] [--frames 15000] [--repeat 20]
                               [--baseline-frames 500] [--latency-seconds 62]
                               [--single hyperliquid]

Setup: the five-exchange catalog (`config/starlistings.yaml`: Hyperliquid perps,
Binance, Bybit and OKX spot and perps, Coinbase spot) scaled to `--coins` coins per
exchange (its real coins plus synthetic SYN001..., with the same market types, quotes and
intervals), synced into a scratch database. The simulator (with the same synthetic coins on
every venue) at 120x is recorded once on every WebSocket connection the collector would
open (`--frames` data frames in all, side by side, so each connection keeps its share),
and replayed by `bench.stream.replay` in another process on the same URL paths; the
collector is pointed at the replay with `Settings.ws_origins` and `hyperliquid_ws_url`.
What the exchanges' WebSockets lack the collector polls from REST (Binance's open
interest, Coinbase's 1m/15m/1d candles: Coinbase streams nothing of this catalog), from
the simulator at real speed in a process of its own (`bench.stream.simulator`).

(a) throughput: the collector (`kirby_stream.Collector`, default settings, one event loop on
    one core) reading the replay as fast as it can; messages/s from the first frame to the
    commit holding the last candles, and the collector process's CPU seconds (on a busy
    machine it does not get a whole core: messages per CPU-second is then what it can do
    on one; the CPU figure also counts the wait for that last commit, so it is a floor).
    (a5) all five exchanges; (a1) `--single`'s exchange alone (its catalog only, its
    frames of the same recording, repeated to about as many messages);
(b) baselines on (a5)'s frames and database, one message at a time: (b1) Kirby's writer
    called per row (upsert + NOTIFY in its own transaction), (b2) a hand-written
    single-row INSERT ... ON CONFLICT per row, autocommit;
(c) message-to-committed-row latency of candles at the default 1 s flush, per exchange
    (Coinbase's: from the poll's answer to the commit): (c1) the live simulator at real
    speed, all five exchanges; (c2) the replay paced at half of (a5)'s rate.
Targets (issue 14): (a5) >= 25x (b1) messages/s; (a5) >= 80% of (a1); p99 <= 1.5 s per
exchange. Figures only, never asserted. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import asyncpg
import yaml
from websockets.asyncio.client import ClientConnection, connect

from bench.common import drop_database, scratch_database
from bench.stream import simulator
from bench.stream.pinning import Pinning, available, pin_everything
from kirby_core.catalog import Catalog, parse_catalog
from kirby_core.db import catalog_store, notify
from kirby_core.db.writer import upsert_candles, upsert_funding_rates, upsert_open_interest
from kirby_core.exchanges.feeds import FundingUpdate, OpenInterestUpdate
from kirby_core.exchanges.registry import EXCHANGES, feed_of
from kirby_core.models import (
    AssetContextUpdate,
    CandleRow,
    CandleUpdate,
    FundingRateRow,
    OpenInterestRow,
)
from kirby_core.settings import Settings
from kirby_sim import SimulatorServer
from kirby_stream import Collector
from kirby_stream.buffers import Batch, Buffers
from kirby_stream.catalog import FeedPlan, StreamCatalog, build_catalog
from kirby_stream.latency import BUCKETS, Arrivals
from kirby_stream.stats import Stats, percentile

DATABASE = "kirby_bench_stream"
REPO = Path(__file__).resolve().parents[2]
FIVE = REPO / "config" / "starlistings.yaml"
RECORD_SPEED = 120
"""Simulated seconds per real second while recording: every interval moves."""
FIREHOSE = {"stream_trades": False, "books_enabled": False}
"""Settings of issue 14's firehose: candles, funding and open interest. The trade tape and
the order books have their own benchmarks (bench/trades, bench/books); on the live
simulator their channels for 50 coins an exchange load the simulator, not the collector
under test, and on the replay the book connections (`kirby_stream.books`, on the same
paths) would get the whole candle firehose a second time (the replay serves a path's
frames to every connection on it)."""
PINNING: list[Pinning] = []
"""The run's CPU pinning, when on: the processes started are pinned to its other cores."""
DATA = (CandleUpdate, AssetContextUpdate, FundingUpdate, OpenInterestUpdate)


# --- the catalog --------------------------------------------------------------------------


def firehose_catalog(coins: int, exchanges: Iterable[str] | None = None) -> Catalog:
    """The five-exchange catalog with every exchange scaled to `coins` coins: its own coins,
    then synthetic ones (SYN001...) listed like its first coin (market types, quotes,
    intervals); only `exchanges` when given."""
    raw = yaml.safe_load(FIVE.read_text())
    wanted = set(exchanges) if exchanges is not None else None
    by_exchange: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for listing in raw["starlistings"]:
        if wanted is None or listing["exchange"] in wanted:
            by_exchange[listing["exchange"]].append(listing)
    starlistings: list[dict[str, Any]] = []
    synthetic: set[str] = set()
    for listings in by_exchange.values():
        own = list(dict.fromkeys(listing["coin"] for listing in listings))
        first = [listing for listing in listings if listing["coin"] == own[0]]
        extra = [f"SYN{number:03d}" for number in range(1, coins - len(own) + 1)]
        synthetic.update(extra)
        starlistings += listings + [
            {**listing, "coin": coin} for coin in extra for listing in first
        ]
    raw["starlistings"] = starlistings
    raw["coins"] = raw["coins"] + [{"symbol": coin} for coin in sorted(synthetic)]
    if wanted is not None:
        raw["exchanges"] = [entry for entry in raw["exchanges"] if entry["name"] in wanted]
    return parse_catalog(raw, source=f"{FIVE.name} scaled to {coins} coins per exchange")


def synthetic_coins(catalog: Catalog) -> int:
    """How many synthetic coins the simulator must list for `catalog`."""
    return sum(1 for coin in catalog.coins if coin.symbol.startswith("SYN"))


# --- where the collector connects ---------------------------------------------------------


class Endpoints(NamedTuple):
    """Where the collector's WebSockets connect: Hyperliquid's URL, the other exchanges'
    origins (`Settings.ws_origins`)."""

    ws_url: str
    ws_origins: dict[str, str]

    def rebased(self, base: str) -> Endpoints:
        """The same URL paths on another server (the replay), ws://host:port."""
        old = self.ws_url.removesuffix("/ws")
        origins = {origin: url.replace(old, base, 1) for origin, url in self.ws_origins.items()}
        return Endpoints(base + "/ws", origins)

    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={"hyperliquid_ws_url": self.ws_url, "ws_origins": self.ws_origins}
        )


def with_rest(settings: Settings, rest_url: str) -> Settings:
    """`settings` polling every exchange's REST API at `rest_url` (the simulator)."""
    names = ("hyperliquid_rest_url", "binance_spot_url", "binance_futures_url")
    names += ("bybit_rest_url", "okx_rest_url", "coinbase_rest_url")
    return settings.model_copy(update=dict.fromkeys(names, rest_url))


def path_of(url: str) -> str:
    """A WebSocket URL's path (and query): where the replay serves its frames."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def load_plans(url: str, settings: Settings) -> StreamCatalog:
    conn = await asyncpg.connect(url)
    try:
        return build_catalog(
            settings,
            await catalog_store.list_starlistings(conn),
            await catalog_store.list_trading_pairs(conn),
        )
    finally:
        await conn.close()


async def sync(url: str, catalog: Catalog) -> dict[int, str]:
    """Make `catalog` the database's active catalog; starlisting id -> exchange."""
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, catalog)
        return {
            s.id: s.key.trading_pair.exchange for s in await catalog_store.list_starlistings(conn)
        }
    finally:
        await conn.close()


# --- recording and replaying --------------------------------------------------------------


def subscribe_requests(plan: FeedPlan) -> list[str]:
    """The requests subscribing everything `plan` lists, per market type."""
    adapter = feed_of(EXCHANGES[plan.exchange])
    by_market: dict[str, list[Any]] = defaultdict(list)
    for subscriptions in plan.subscriptions.values():
        for market_type, subscription in subscriptions:
            by_market[market_type].append(subscription)
    frames: list[str] = []
    for market_type, batch in by_market.items():
        frames += adapter.subscribe_frames(market_type, batch, len(frames) + 1)
    return frames


async def record_firehose(plans: StreamCatalog, count: int) -> dict[str, list[str]]:
    """About `count` data frames of every connection of `plans` side by side (the simulator's
    own acknowledgements, pings and heartbeats left out), by URL path."""
    recorded: dict[str, list[str]] = {path_of(plan.url): [] for plan in plans.feeds.values()}
    total = 0
    done = asyncio.Event()

    async def listen(ws: ClientConnection, plan: FeedPlan) -> None:
        nonlocal total
        adapter = feed_of(EXCHANGES[plan.exchange])
        parse, frames = adapter.parser(), recorded[path_of(plan.url)]
        if adapter.keep_alive.greeting is not None:
            await ws.send(adapter.keep_alive.greeting)
        for request in subscribe_requests(plan):
            await ws.send(request)
        async for text in ws:
            if done.is_set():  # frames already buffered when the count was reached
                return
            if any(isinstance(m, DATA) for m in parse(text, datetime.now(UTC))):
                frames.append(str(text))
                total += 1
                if total >= count:
                    done.set()

    async with connections(plans) as opened:
        tasks = [asyncio.create_task(listen(ws, plan)) for ws, plan in opened]
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return recorded


@contextlib.asynccontextmanager
async def connections(
    plans: StreamCatalog,
) -> AsyncIterator[list[tuple[ClientConnection, FeedPlan]]]:
    """A WebSocket connection per connection of `plans`, closed (handshake and all) after."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            (await stack.enter_async_context(connect(plan.url, max_size=None)), plan)
            for plan in plans.feeds.values()
        ]


@contextlib.asynccontextmanager
async def process(module: str, *arguments: str) -> AsyncIterator[str]:
    """`python -m module arguments` in its own process; yields its first stdout line."""
    command = [sys.executable, "-m", module, *arguments]
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, cwd=REPO)
    for pinning in PINNING:
        pinning.pin_child(child.pid, module)
    try:
        assert child.stdout is not None
        yield (await child.stdout.readline()).decode().strip()
    finally:
        child.terminate()
        await child.wait()


@contextlib.asynccontextmanager
async def replay(frames_file: Path, repeat: int, rate: float | None = None) -> AsyncIterator[str]:
    """The replay server of `frames_file`; yields its base URL."""
    arguments = [str(frames_file), "--repeat", str(repeat)]
    async with process(
        "bench.stream.replay", *arguments, *(["--rate", str(rate)] if rate else [])
    ) as base:
        yield base


@contextlib.asynccontextmanager
async def live_simulator(synthetic: int) -> AsyncIterator[tuple[str, Endpoints]]:
    """The simulator at real speed in its own process: its REST base URL, its WebSockets."""
    async with process("bench.stream.simulator", "--synthetic", str(synthetic)) as line:
        urls = json.loads(line)
        yield urls["base_url"], Endpoints(urls["ws_url"], urls["ws_origins"])


# --- the collector under test, with per-exchange latency ----------------------------------


class ExchangeBuffers(Buffers):
    """The collector's buffers, also keeping the arrival times of candle messages per
    exchange (by starlisting), so a commit's latencies can be told apart by exchange."""

    def __init__(self, max_rows: int, exchange_of: Mapping[int, str]) -> None:
        super().__init__(max_rows)
        self.exchange_of = exchange_of
        self.pending: dict[str, Arrivals] = defaultdict(Arrivals)
        self.taken: dict[int, dict[str, Arrivals]] = {}
        """id of a taken batch's `candle_received` -> its arrivals by exchange."""

    def add_candle(self, row: CandleRow, received: float) -> None:
        super().add_candle(row, received)
        self.pending[self.exchange_of[row.starlisting_id]].add(received)

    def take(self, now: datetime, everything: bool = False) -> Batch:
        batch = super().take(now, everything)
        self.taken[id(batch.candle_received)] = self.pending
        self.pending = defaultdict(Arrivals)
        return batch

    def restore(self, batch: Batch) -> None:
        super().restore(batch)
        for exchange, arrivals in self.taken.pop(id(batch.candle_received), {}).items():
            self.pending[exchange].merge(arrivals)


@dataclass
class ExchangeStats(Stats):
    """The collector's counters, plus a candle latency histogram per exchange."""

    buffers: ExchangeBuffers | None = None
    by_exchange: dict[str, list[int]] = field(default_factory=dict)

    def record_latencies(self, committed: float, received: Arrivals) -> None:
        super().record_latencies(committed, received)
        assert self.buffers is not None
        for exchange, arrivals in self.buffers.taken.pop(id(received), {}).items():
            histogram = self.by_exchange.setdefault(exchange, [0] * BUCKETS)
            for bucket, count in arrivals.latencies(committed):
                histogram[bucket] += count

    def reset_latencies(self) -> None:
        self.latency_histogram[:] = [0] * BUCKETS
        self.by_exchange.clear()

    def percentiles(self) -> dict[str, tuple[float | None, float | None]]:
        """(p50, p99) overall ("all") and per exchange."""
        found = {"all": (self.latency_percentile(0.5), self.latency_percentile(0.99))}
        for exchange, histogram in sorted(self.by_exchange.items()):
            found[exchange] = (percentile(histogram, 0.5), percentile(histogram, 0.99))
        return found


@contextlib.asynccontextmanager
async def collector(
    settings: Settings, url: str, exchange_of: Mapping[int, str]
) -> AsyncIterator[tuple[Collector, ExchangeStats]]:
    running = Collector(settings, url)
    buffers = ExchangeBuffers(settings.stream_max_buffered_rows, exchange_of)
    stats = ExchangeStats(running.stats.collector_id, running.stats.started_at, buffers=buffers)
    running.buffers, running.stats = buffers, stats
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running, stats
    finally:
        stop.set()
        await task


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def until(condition: Callable[[], bool], within: float = 600.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark condition not reached in {within} s")
        await asyncio.sleep(0.01)


async def throughput(
    settings: Settings,
    url: str,
    exchange_of: Mapping[int, str],
    recorded: Endpoints,
    frames_file: Path,
    total: int,
    repeat: int,
) -> dict[str, Any]:
    """The collector reading `repeat` replays of `frames_file` (`total` frames, recorded on
    `recorded`) at full speed (see `on_replay`)."""
    async with (
        replay(frames_file, repeat) as base,
        collector(on_replay(settings, recorded, base), url, exchange_of) as (running, stats),
    ):
        await until(lambda: stats.messages_received > 0)
        started, cpu_started = datetime.now(UTC), cpu_seconds()
        await until(lambda: stats.messages_received >= total)
        read = (datetime.now(UTC) - started).total_seconds()
        # the commit of the flush holding the last candles ends (a): none buffered nor in
        # the batch being written (a failed write puts its batch back)
        await until(lambda: running.buffers.held()["candles"] == 0)
        committed = stats.tables["candles"].last_commit_at
        assert committed is not None
        seconds = (committed - started).total_seconds()
        cpu = cpu_seconds() - cpu_started
        by_exchange = {name: feed.messages_received for name, feed in sorted(stats.feeds.items())}
        return {
            "percentiles": stats.percentiles(),
            "messages": stats.messages_received,
            "seconds": seconds,
            "read": read,
            "rate": stats.messages_received / seconds,
            "cpu": cpu,
            "by_exchange": by_exchange,
            "invalid": stats.invalid_messages,
            "rows": {name: t.rows_written for name, t in stats.tables.items()},
        }


def on_replay(settings: Settings, recorded: Endpoints, base: str) -> Settings:
    """`settings` with the collector's WebSockets on the replay at `base`. A replayed
    connection whose frames are all sent goes quiet (and a paced one leaves a quiet symbol
    quiet longer than a live feed): the stall watchdog is set beyond the run, so a feed
    does not reconnect (and get the frames again) nor resubscribe. `settings` are the
    `FIREHOSE`'s (order books off)."""
    stall = settings.model_copy(update={"stream_stall_seconds": 3600.0})
    return recorded.rebased(base).settings(stall)


async def latency(
    settings: Settings, url: str, exchange_of: Mapping[int, str], seconds: float
) -> dict[str, Any]:
    """Steady-state message-to-commit percentiles over `seconds` (after 3 flushes)."""
    async with collector(settings, url, exchange_of) as (_, stats):
        await until(lambda: stats.flushes >= 3)
        received, started = stats.messages_received, time.monotonic()
        stats.reset_latencies()
        await asyncio.sleep(seconds)
        rate = (stats.messages_received - received) / (time.monotonic() - started)
        return {"rate": rate, "percentiles": stats.percentiles()}


# --- baselines ----------------------------------------------------------------------------

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


def rows_of(plan: FeedPlan, messages: Iterable[Any]) -> list[tuple[str, Any]]:
    """(table, row) of every data message of a frame, matched to `plan`'s series."""
    rows: list[tuple[str, Any]] = []
    for message in messages:
        if isinstance(message, CandleUpdate):
            sid = plan.candles.get((message.coin, message.interval))
            if sid is not None:
                rows.append(("candles", CandleRow(sid, *message.candle)))
            continue
        symbol = message.coin if isinstance(message, AssetContextUpdate) else None
        if isinstance(message, FundingUpdate | OpenInterestUpdate):
            symbol = message.symbol
        if symbol is None:
            continue
        funding = getattr(message, "funding", None)
        interest = getattr(message, "open_interest", None)
        if funding is not None and symbol in plan.funding:
            rows.append(("funding_rates", FundingRateRow(plan.funding[symbol], *funding)))
        if interest is not None and symbol in plan.open_interest:
            rows.append(("open_interest", OpenInterestRow(plan.open_interest[symbol], *interest)))
    return rows


async def baseline(
    settings: Settings, url: str, recorded: Endpoints, frames_file: Path, count: int, write: Write
) -> float:
    """Read the replay on every connection and write every row of every message on its own;
    messages/s."""
    conn = await asyncpg.connect(url)
    try:
        async with replay(frames_file, 1) as base:
            plans = await load_plans(url, recorded.rebased(base).settings(settings))
            queue: asyncio.Queue[tuple[FeedPlan, Any, str | bytes]] = asyncio.Queue(1000)

            async def read(ws: ClientConnection, plan: FeedPlan) -> None:
                parse = feed_of(EXCHANGES[plan.exchange]).parser()
                for request in subscribe_requests(plan):
                    await ws.send(request)
                async for text in ws:
                    await queue.put((plan, parse, text))

            async with connections(plans) as opened:
                readers = [asyncio.create_task(read(ws, plan)) for ws, plan in opened]
                try:
                    handled, started = 0, 0.0
                    while handled < count:
                        plan, parse, text = await queue.get()
                        rows = rows_of(plan, parse(text, datetime.now(UTC)))
                        for table, row in rows:
                            await write(conn, table, [row])
                        if not rows:
                            continue
                        if handled == 0:
                            started = time.monotonic()
                        handled += 1
                    return count / (time.monotonic() - started)
                finally:
                    for task in readers:
                        task.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await conn.close()


async def empty(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "TRUNCATE candles, funding_rates, open_interest, stream_heartbeats, collection_outages"
        )
    finally:
        await conn.close()


# --- the run ------------------------------------------------------------------------------


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def print_latency(label: str, measured: dict[str, Any]) -> None:
    print(f"{label}: {measured['rate']:,.0f} msg/s; candle message->commit p50 / p99:")
    for exchange, (p50, p99) in measured["percentiles"].items():
        print(f"    {exchange:12} {seconds_text(p50)} / {seconds_text(p99)}")


def print_throughput(label: str, a: dict[str, Any]) -> None:
    print(
        f"{label}: {a['messages']:,} messages in {a['seconds']:.1f} s (the last read at "
        f"{a['read']:.1f} s) = {a['rate']:,.0f} msg/s wall; collector CPU {a['cpu']:.1f} s "
        f"({a['cpu'] / a['seconds']:.0%} of one core) = "
        f"{a['messages'] / a['cpu']:,.0f} msg per CPU-second\n"
        f"    by exchange {a['by_exchange']} (poll answers included); invalid {a['invalid']}; "
        f"rows written {a['rows']}"
    )


async def run(
    coins: int,
    frames_count: int,
    repeat: int,
    baseline_frames: int,
    latency_seconds: float,
    single: str,
    pin: bool,
) -> None:
    print(f"machine: {load()}")
    five = firehose_catalog(coins)
    synthetic = synthetic_coins(five)
    settings = Settings(_env_file=None).model_copy(update=FIREHOSE)
    url = await scratch_database(DATABASE)
    try:
        exchange_of = await sync(url, five)
        async with SimulatorServer(simulator.config(synthetic, RECORD_SPEED)) as sim:
            recorded = Endpoints(sim.ws_url, sim.ws_origins)
            plans = await load_plans(url, recorded.settings(settings))
            print(
                f"catalog: {coins} coins per exchange, {len(exchange_of)} starlistings; "
                f"{plans.subscriptions} subscriptions on {len(plans.feeds)} connections, "
                f"{sum(len(p.targets) for p in plans.polls.values())} series polled"
            )
            recording = time.monotonic()
            frames = await record_firehose(plans, frames_count)
            recording = time.monotonic() - recording
        total = sum(len(sent) for sent in frames.values())
        shares = ", ".join(f"{path} {len(sent):,}" for path, sent in frames.items())
        print(f"recorded {total:,} frames in {recording:.0f} s: {shares}")
        # recorded on every core (the simulator runs in this process), measured pinned
        pinning = await pin_everything(url) if pin else None
        if pinning is not None:
            PINNING.append(pinning)
            print("pinned: " + "; ".join(pinning.lines))
        else:
            print("pinned: nothing (--no-pin, or fewer than 2 cores available)")
        single_frames = {
            path_of(plan.url): frames[path_of(plan.url)]
            for plan in plans.feeds.values()
            if plan.exchange == single
        }
        single_total = sum(len(sent) for sent in single_frames.values())
        single_repeat = max(1, round(total * repeat / max(single_total, 1)))

        with tempfile.TemporaryDirectory() as tmp:
            frames_file, single_file = Path(tmp) / "frames.json", Path(tmp) / "single.json"
            frames_file.write_text(json.dumps(frames))
            single_file.write_text(json.dumps(single_frames))
            async with live_simulator(synthetic) as (rest_url, live):
                polled = with_rest(settings, rest_url)
                one = await sync(url, firehose_catalog(coins, [single]))
                a1 = await throughput(
                    polled, url, one, recorded, single_file, single_total * single_repeat,
                    single_repeat,
                )  # fmt: skip
                print()
                print_throughput(f"(a1) {single} alone", a1)
                await empty(url)
                await sync(url, five)
                a5 = await throughput(
                    polled, url, exchange_of, recorded, frames_file, total * repeat, repeat
                )
                print_throughput("(a5) five exchanges", a5)
                await empty(url)

                b1 = await baseline(
                    settings, url, recorded, frames_file, baseline_frames, write_with_kirby_writer
                )
                print(
                    f"\n(b1) Kirby writer, one upsert+NOTIFY transaction per row: {b1:,.0f} msg/s"
                )
                await empty(url)
                b2 = await baseline(
                    settings, url, recorded, frames_file, baseline_frames, write_single_row
                )
                print(
                    f"(b2) single-row INSERT ... ON CONFLICT per row, autocommit: {b2:,.0f} msg/s"
                )
                await empty(url)

                c1 = await latency(live.settings(polled), url, exchange_of, latency_seconds)
                print()
                print_latency(f"(c1) live simulator, {coins} coins per exchange, real speed", c1)
                await empty(url)
                paced = a5["rate"] / 2
                repeats = max(1, int(paced * (latency_seconds / 3 + 15) / total) + 1)
                async with replay(frames_file, repeats, paced) as base:
                    pointed = on_replay(polled, recorded, base)
                    c2 = await latency(pointed, url, exchange_of, latency_seconds / 3)
                print_latency(f"(c2) replay paced at {paced:,.0f} msg/s", c2)
    finally:
        await drop_database(url, DATABASE)
        for started in PINNING:
            print(f"pinned: {started.started_text()}")
            started.restore()
        PINNING.clear()
    per_core, single_core = a5["messages"] / a5["cpu"], a1["messages"] / a1["cpu"]
    p99s: dict[str, list[float]] = defaultdict(list)
    for measured in (c1, c2):
        for name, (_, p99) in measured["percentiles"].items():
            if p99 is not None and name != "all":
                p99s[name].append(p99)
    worst = ", ".join(f"{name} {max(found):.2f} s" for name, found in sorted(p99s.items()))
    print(
        f"\n(a5)/(b1) = {a5['rate'] / b1:.1f}x wall, {per_core / b1:.1f}x per core (target >= 25x)"
        f"   (a5)/(b2) = {a5['rate'] / b2:.1f}x wall, {per_core / b2:.1f}x per core"
        f"\n(a5)/(a1) = {a5['rate'] / a1['rate']:.0%} wall, {per_core / single_core:.0%} per core "
        "(target >= 80%)"
        f"\ncandle p99 per exchange, worse of (c1) and (c2): {worst} (target <= 1.5 s; "
        "polled series: from the poll's answer)"
        f"\nmachine: {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=50, help="coins per exchange")
    parser.add_argument("--frames", type=int, default=15_000, help="frames recorded")
    parser.add_argument(
        "--repeat",
        type=int,
        default=20,
        help="replays of them in (a5): 20 x 15,000 runs each (a) for ~10 s, so the wait for "
        "the last flush's commit (up to one flush interval) is a small part of it",
    )
    parser.add_argument("--baseline-frames", type=int, default=500, help="messages in (b)")
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=62.0,
        help="duration of (c1), (c2) a third of it; (c1) spans a minute's polls",
    )
    streamed = sorted(name for name, declared in EXCHANGES.items() if declared.stream)
    parser.add_argument(
        "--single", default="hyperliquid", choices=streamed, help="exchange of (a1)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=len(available()) >= 2,
        help="collector on one core, replay, simulator and PostgreSQL on the others "
        "(default: on with 2 or more cores)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        run(
            arguments.coins,
            arguments.frames,
            arguments.repeat,
            arguments.baseline_frames,
            arguments.latency_seconds,
            arguments.single,
            arguments.pin,
        )
    )


if __name__ == "__main__":
    main()
