"""The API's trades page against its candles page, in one run.

    python -m bench.api.trades [--trades 1000000] [--candles 100000] [--seconds 6]

One scratch database (the one-exchange catalog: 2 trading pairs, 8 starlistings), written with
Kirby's writers: `--candles` 1m candles per starlisting and `--trades` trades per pair (prices
with one decimal, sizes with up to five, ~10 trades a second in bursts, so many share a
millisecond; integer ids as text). `kirby api serve` as a real uvicorn process over loopback,
auth on. Then, at concurrency 1 and 10, bounded loops (`--seconds` or 3000 requests):

    latest-N limit=1000 (the live poll), a random forward window of 1000 rows (start_time),
    the next page through `next_cursor` (a keyed (time, trade_id) cursor for trades), and
    CSV and Parquet pages of 1000 rows,

each for candles (a random 1m starlisting) and trades (a random pair) -> requests/s, p50/p99,
server CPU per request, and trades/candles requests/s per scenario. Benchmarks print figures;
they assert nothing. Results: bench/README.md ("Issue 15: trades page").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import uvloop

from bench.api import load
from bench.api.servers import HOST, REPO, free_port, start_kirby
from bench.common import drop_database, random_walk_candles, scratch_database
from kirby_api.keys import create_key
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.trades import TradeRow, write_trades
from kirby_core.db.writer import upsert_candles

DATABASE = "kirby_bench_trades_page"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 50_000


def tape(pair: int, count: int, seed: int) -> list[TradeRow]:
    """Bursty trades from T0: a burst of 1-40 trades every ~2 s, up to 8 per millisecond
    (~10 trades a second: 1M trades are ~1.2 days)."""
    rng = random.Random(seed)
    price = 60_000.0
    moment = T0
    rows: list[TradeRow] = []
    while len(rows) < count:
        moment += timedelta(milliseconds=rng.randrange(1, 4000))
        for i in range(rng.randrange(1, 41)):
            price = max(1.0, price + rng.choice((-0.1, 0.0, 0.1)))
            rows.append(
                TradeRow(
                    pair,
                    moment + timedelta(milliseconds=i // 8),
                    str(seed * 10**9 + len(rows)),
                    Decimal(f"{price:.1f}"),
                    Decimal(f"{rng.uniform(0.00001, 2):.5f}"),
                    rng.choice(("buy", "sell")),
                )
            )
    return rows[:count]


async def prepare(url: str, candles: int, trades: int) -> tuple[list, list, str, timedelta]:
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(
            conn, load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
        )
        stars = [s for s in await catalog_store.list_starlistings(conn) if s.key.interval == "1m"]
        pairs = await catalog_store.list_trading_pairs(conn)
        started = time.perf_counter()
        for star in stars:
            await upsert_candles(conn, random_walk_candles(star.id, T0, candles, seed=star.id))
        spans = {}
        for pair in pairs:
            rows = tape(pair.id, trades, pair.id)
            for start in range(0, len(rows), BATCH):
                await write_trades(conn, rows[start : start + BATCH])
            spans[pair.id] = (rows[0].time, rows[-1].time)
        await conn.execute("ANALYZE")
        print(
            f"data: {len(stars)} 1m starlistings x {candles:,} candles, {len(pairs)} pairs x "
            f"{trades:,} trades ({(spans[pairs[0].id][1] - T0) / timedelta(days=1):.1f} days"
            f" each), written in {time.perf_counter() - started:.0f} s"
        )
        _, token = await create_key(conn, "bench")
        span = min(last - first for first, last in spans.values())
        return stars, pairs, token, span
    finally:
        await conn.close()


def _get(port: int, path: str, token: str) -> dict:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def main(candles: int, trades: int, seconds: float) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    url = await scratch_database(DATABASE)
    server = None
    try:
        stars, pairs, token, span = await prepare(url, candles, trades)
        port = free_port()
        server = start_kirby(url, port)
        server.wait_ready()
        rng = random.Random(5)
        reach = span.total_seconds() * 0.95  # where a window still holds 1000 trades

        def candle_path(query: Callable[[], str]) -> Callable[[], str]:
            return lambda: f"/candles/{rng.choice(stars).key}?limit=1000{query()}"

        def trade_path(query: Callable[[], str]) -> Callable[[], str]:
            return lambda: f"/trades/{rng.choice(pairs).key}?limit=1000{query()}"

        def candle_start() -> str:
            start = T0 + timedelta(minutes=rng.randrange(0, candles - 1000))
            return f"&start_time={start:%Y-%m-%dT%H:%M:%SZ}"

        def trade_start() -> str:
            start = T0 + timedelta(seconds=rng.uniform(0, reach))
            return f"&start_time={start.isoformat().replace('+00:00', 'Z')}"

        # next pages: cursors the API issued for random windows (taken before the loops)
        candle_cursors, trade_cursors = [], []
        for _ in range(50):
            page = _get(port, candle_path(candle_start)(), token)
            candle_cursors.append((page["metadata"]["series"], page["metadata"]["next_cursor"]))
            page = _get(port, trade_path(trade_start)(), token)
            trade_cursors.append((page["metadata"]["series"], page["metadata"]["next_cursor"]))

        def cursor_path(kind: str, cursors: list) -> Callable[[], str]:
            def path() -> str:
                series, cursor = rng.choice(cursors)
                return f"/{kind}/{series}?limit=1000&cursor={cursor}"

            return path

        def none() -> str:
            return ""

        scenarios: dict[str, tuple[Callable[[], str], Callable[[], str]]] = {
            "latest-N 1000": (candle_path(none), trade_path(none)),
            "window 1000": (candle_path(candle_start), trade_path(trade_start)),
            "next page (cursor) 1000": (
                cursor_path("candles", candle_cursors),
                cursor_path("trades", trade_cursors),
            ),
            "csv window 1000": (
                candle_path(lambda: candle_start() + "&format=csv"),
                trade_path(lambda: trade_start() + "&format=csv"),
            ),
            "parquet window 1000": (
                candle_path(lambda: candle_start() + "&format=parquet"),
                trade_path(lambda: trade_start() + "&format=parquet"),
            ),
        }
        headers = {"Authorization": f"Bearer {token}"}
        print("scenario                          dataset  figures")
        for name, (candle, trade) in scenarios.items():
            for concurrency in (1, 10):
                rates = {}
                for dataset, next_path in (("candles", candle), ("trades", trade)):
                    await load.run(HOST, port, next_path, concurrency, 30, 10, headers)  # warm up
                    cpu_before = server.cpu_seconds()
                    result = await load.run(
                        HOST, port, next_path, concurrency, 3000, seconds, headers
                    )
                    cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(result.requests, 1)
                    rates[dataset] = result.rate
                    label = f"{name} c={concurrency}"
                    print(f"  {label:<32} {dataset:<7} {result.line()}  CPU {cpu_ms:.2f} ms/req")
                ratio = rates["trades"] / max(rates["candles"], 1e-9)
                print(f"  {'':<32} trades/candles requests/s: {ratio:.2f}")
    finally:
        if server is not None:
            server.stop()
        await drop_database(url, DATABASE)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000, help="trades per pair")
    parser.add_argument("--candles", type=int, default=100_000, help="1m candles per series")
    parser.add_argument("--seconds", type=float, default=6.0, help="bound of each loop")
    args = parser.parse_args()
    uvloop.run(main(args.candles, args.trades, args.seconds))


if __name__ == "__main__":
    cli()
