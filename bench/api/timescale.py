"""TimescaleDB hot reads with a year of history: hypertables (chunk intervals) vs plain tables.

    python -m bench.api.timescale [--days 365] [--chunks 1,7,30] [--repeat 200] [--rounds 10]
                                  [--no-compress]

Needs a server with TimescaleDB available and preloaded (`KIRBY_DATABASE_URL`). In one run,
one scratch database per variant, all built first: plain tables (migrated with
`timescaledb=off`), then hypertables with each chunk interval (set before loading). Each
holds the realtime catalog (2 pairs, candles at 1m/15m/4h/1d) with `--days` of history up
to now: every minute of every series (candles at their interval, funding and open interest
each minute), loaded by `generate_series`; chunks older than 7 days are compressed, as the
compression policy would have done (`--no-compress` skips that).

The reads are the API's own (`kirby_api.market_data.MarketData`, time-bounded, on the API's
`ConnectionPool`), one at a time on a warm one-connection pool per variant, `--repeat`
times each, in `--rounds` turns over the variants (so a busy machine slows them all
alike): newest-1000 of a 1m candle series (the latest-N poll), funding and open interest
newest-1000, a random historical 1000-row window, the latest 100 rows of every candle
series at once (WebSocket history), the newest time of every candle series (health); plus
the newest-1000 and multi-series reads without a time bound (`unbounded`, the SQL before
bounds). Prints p50/p99 in ms and each variant's ratio to the plain tables' p50 (target:
within 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.api.servers import REPO
from bench.common import drop_database, scratch_database
from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST
from kirby_api.market_data import _SQL, MarketData
from kirby_api.window import MAX_TIME, MIN_TIME, Window
from kirby_core.catalog import load_catalog
from kirby_core.datasets import DATASETS
from kirby_core.db import catalog_store, migrate
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS

DATABASE = "kirby_bench_timescale"
CATALOG = REPO / "config" / "starlistings.hyperliquid.yaml"

LOAD_CANDLES = """
INSERT INTO candles (starlisting_id, time, open, high, low, close, volume, trade_count)
SELECT $1, t, p, p + 1, p - 1, p, 1.5, 7
FROM generate_series($2::timestamptz, $3::timestamptz, $4::interval) AS t,
     LATERAL (SELECT (50000 + extract(epoch FROM t)::bigint % 997)::numeric AS p) AS price
"""
LOAD_FUNDING = """
INSERT INTO funding_rates (trading_pair_id, time, predicted_funding_rate, premium, mark_price,
                           oracle_price, mid_price, next_funding_time)
SELECT $1, t, 0.0000125, 0.0001, 64213.5, 64210.1, 64213.0, date_trunc('hour', t) + '1 hour'
FROM generate_series($2::timestamptz, $3::timestamptz, '1 minute') AS t
"""
LOAD_OPEN_INTEREST = """
INSERT INTO open_interest (trading_pair_id, time, open_interest, notional, day_base_volume,
                           day_notional_volume)
SELECT $1, t, 12345.6, 792000000.5, 4567.8, 293000000.25
FROM generate_series($2::timestamptz, $3::timestamptz, '1 minute') AS t
"""

Read = Callable[[], Awaitable[object]]


async def build(url: str, chunk_days: int | None, days: int, compress: bool) -> tuple:
    """Load the variant's history; returns (starlistings, pairs, chunks per table)."""
    if chunk_days is None:
        migrate.upgrade(url, timescaledb="off")
    else:
        migrate.upgrade(url, timescaledb="on")
    conn = await asyncpg.connect(url)
    try:
        if chunk_days is not None:
            for table in DATASETS:
                await conn.execute(
                    f"SELECT set_chunk_time_interval('{table}', $1::interval)",
                    timedelta(days=chunk_days),
                )
        await catalog_store.sync_catalog(conn, load_catalog(CATALOG))
        stars = await catalog_store.list_starlistings(conn)
        pairs = await catalog_store.list_trading_pairs(conn)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        start = end - timedelta(days=days)
        for star in stars:
            step = timedelta(seconds=star.interval_seconds)
            first = start + (end - start) % step  # aligned like the exchange's bars
            await conn.execute(LOAD_CANDLES, star.id, first, end - step, step)
        for pair in pairs:
            await conn.execute(LOAD_FUNDING, pair.id, start, end)
            await conn.execute(LOAD_OPEN_INTEREST, pair.id, start, end)
        chunks = {}
        if chunk_days is not None:
            if compress:
                for table in DATASETS:
                    await conn.execute(
                        f"SELECT count(compress_chunk(c, true)) FROM show_chunks('{table}',"
                        " older_than => interval '7 days') c"
                    )
            for table in DATASETS:
                chunks[table] = await conn.fetchval(f"SELECT count(*) FROM show_chunks('{table}')")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return stars, pairs, chunks


class Reads:
    """The reads of one variant on a warm one-connection pool."""

    def __init__(self, url: str, stars: list, pairs: list) -> None:
        self.url, self.stars, self.pairs = url, stars, pairs
        self.database = ConnectionPool(url, Settings(_env_file=None, api_pool_size=1))

    async def open(self) -> dict[str, Read]:
        await self.database.open()
        database, market, rng = self.database, MarketData(self.database), random.Random(7)
        one_minute = [s for s in self.stars if s.interval_seconds == INTERVAL_SECONDS["1m"]]
        star, pair = one_minute[0].id, self.pairs[0].id
        ids = [s.id for s in self.stars]
        latest = Window(MIN_TIME, MAX_TIME, 1000, newest=True, open_ended=True)
        year_ago = datetime.now(UTC) - timedelta(days=360)

        def historical() -> Window:
            lower = year_ago + timedelta(minutes=rng.randrange(350 * 24 * 60))
            return Window(lower, MAX_TIME, 1000, newest=False, open_ended=True)

        candle_sql = _SQL[SERVED_CANDLES.name]
        reads: dict[str, Read] = {
            "candles newest-1000": lambda: market.page_json(SERVED_CANDLES, star, latest),
            "funding newest-1000": lambda: market.page_json(SERVED_FUNDING, pair, latest),
            "open interest newest-1000": lambda: market.page_json(
                SERVED_OPEN_INTEREST, pair, latest
            ),
            "candles window-1000": lambda: market.page_json(SERVED_CANDLES, star, historical()),
            "multi-series latest-100": lambda: market.latest_many_json(SERVED_CANDLES, ids, 100),
            "health newest times": lambda: market.latest_times(SERVED_CANDLES, ids),
            "unbounded newest-1000": lambda: database.fetchrow(
                candle_sql.newest_json, star, MIN_TIME, MAX_TIME, 1000
            ),
            "unbounded multi-series": lambda: database.fetch(
                candle_sql.latest_many_json, ids, 100, MIN_TIME
            ),
        }
        for read in reads.values():
            for _ in range(10):  # warm: prepared statements, plan cache, buffers
                await read()
        return reads


async def measure(variants: dict[str, Reads], repeat: int, rounds: int) -> dict:
    """Round robin over the variants (`repeat / rounds` of each read per turn), so the
    machine's load, shared with other work, falls on all of them alike."""
    reads = {label: await v.open() for label, v in variants.items()}
    times: dict[str, dict[str, list[float]]] = {}
    try:
        for _ in range(rounds):
            for label, by_name in reads.items():
                for name, read in by_name.items():
                    for _ in range(max(1, repeat // rounds)):
                        started = time.perf_counter()
                        await read()
                        elapsed = (time.perf_counter() - started) * 1000
                        times.setdefault(name, {}).setdefault(label, []).append(elapsed)
    finally:
        for variant in variants.values():
            await variant.database.close()
    return times


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) > 1 else times[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--chunks", default="1,7,30", help="chunk intervals in days")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-compress", action="store_true")
    args = parser.parse_args()
    chunk_days: list[int | None] = [None, *(int(d) for d in args.chunks.split(","))]
    labels = {c: "plain" if c is None else f"{c}d chunks" for c in chunk_days}
    variants: dict[str, Reads] = {}
    made: dict[str, str] = {}  # database name -> URL
    try:
        for days, label in labels.items():
            name = f"{DATABASE}_{'plain' if days is None else days}"
            url = made[name] = await scratch_database(name, migrated=False)
            started = time.perf_counter()
            stars, pairs, chunks = await build(url, days, args.days, not args.no_compress)
            print(
                f"{label}: loaded in {time.perf_counter() - started:.0f} s"
                + (f"; chunks {chunks}" if chunks else ""),
                flush=True,
            )
            variants[label] = Reads(url, stars, pairs)
        table = await measure(variants, args.repeat, args.rounds)
    finally:
        for name, url in made.items():
            await drop_database(url, name)
    print(f"\n{'read (ms, p50 / p99)':<28}" + "".join(f"{label:>24}" for label in labels.values()))
    for name, row in table.items():
        plain = statistics.median(row["plain"])
        cells = []
        for label in labels.values():
            p50, p99 = statistics.median(row[label]), _p(row[label], 99)
            ratio = "" if label == "plain" else f" {p50 / plain:4.1f}x"
            cells.append(f"{p50:6.2f} / {p99:6.2f}{ratio}")
        print(f"{name:<28}" + "".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    asyncio.run(main())
