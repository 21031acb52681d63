"""API serving speed: Kirby's API vs. a FastAPI + SQLAlchemy ORM + pydantic baseline.

    python -m bench.api.run [--rows 200000] [--seconds 8] [--quick] [--only rest|ws|bulk]

In one run, on one scratch database (8 starlistings x `--rows` 1m candles, written with
Kirby's writer), with both servers as real uvicorn processes over loopback:

  REST, concurrency 1 and 10, bounded loops (`--seconds` or 3000 requests each):
    candles latest-N (limit 1000, 5000), candles random historical windows (limit 1000,
    5000), /starlistings -> requests/s, p50/p99 latency, server CPU per request;
  WebSocket (Kirby only): write-to-client latency with 1, 100 and 1000 subscribed clients
    (from the writer's COMMIT, and from the start of its write, to each client's read);
    subscribe with history=1000 on 8 starlistings -> time to the last historical message;
  bulk CSV (`bench.api.bulk`, issue 12): a cheap route's p99 alone and under 10 CSV clients,
    CSV rows/s against PostgreSQL's own COPY of the same rows.

Targets (issue 5): latest-N >= 10x the baseline's requests/s at both limits, random windows
>= 5x; p99 <= 30 ms at concurrency 10 for limit=1000; WS p99 <= 15 ms at 100 clients and
<= 50 ms at 1000; history subscribe <= 150 ms. The machine is shared, so the run also
prints how busy it was and how much CPU each server used per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench.api import load
from bench.api.bulk import bulk
from bench.api.servers import HOST, REPO, Server, cpu_busy, start_servers
from bench.api.ws import history_subscribe, ws_latency
from bench.common import drop_database, random_walk_candles, scratch_database
from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_CANDLES
from kirby_api.keys import create_key
from kirby_api.market_data import MarketData
from kirby_api.window import Window
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow
from kirby_core.settings import Settings

DATABASE = "kirby_bench_api"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


# --- data ------------------------------------------------------------------------------------


def series_rows(starlisting_id: int, count: int, seed: int) -> list[CandleRow]:
    return random_walk_candles(starlisting_id, T0, count, seed=seed)


async def prepare(url: str, rows: int) -> tuple[list, str]:
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(
            conn, load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
        )
        stars = await catalog_store.list_starlistings(conn)
        started = time.perf_counter()
        for star in stars:
            await upsert_candles(conn, series_rows(star.id, rows, star.id))
        await conn.execute("ANALYZE")
        print(
            f"data: {len(stars)} starlistings x {rows:,} 1m candles written in "
            f"{time.perf_counter() - started:.0f} s"
        )
        _, token = await create_key(conn, "bench", max_ws_connections=10_000)
        return stars, token
    finally:
        await conn.close()


# --- REST ------------------------------------------------------------------------------------


async def rest(
    stars: list,
    token: str,
    kirby: Server,
    kirby_port: int,
    baseline: Server,
    baseline_port: int,
    seconds: float,
    rows: int,
) -> dict[str, dict[str, load.Result]]:
    rng = random.Random(11)

    def latest(limit: int) -> Callable[[], str]:
        def path() -> str:
            key = rng.choice(stars).key
            return f"/candles/{key}?limit={limit}"

        return path

    def window(limit: int) -> Callable[[], str]:
        def path() -> str:
            key = rng.choice(stars).key
            start = T0 + timedelta(minutes=rng.randrange(0, rows - limit))
            return f"/candles/{key}?limit={limit}&start_time={start:%Y-%m-%dT%H:%M:%SZ}"

        return path

    scenarios: dict[str, Callable[[], str]] = {
        "candles latest-N limit=1000": latest(1000),
        "candles latest-N limit=5000": latest(5000),
        "candles window limit=1000": window(1000),
        "candles window limit=5000": window(5000),
        "/starlistings": lambda: "/starlistings",
    }
    targets = {
        "kirby": (kirby, kirby_port, {"Authorization": f"Bearer {token}"}),
        "baseline": (baseline, baseline_port, {}),
    }
    results: dict[str, dict[str, load.Result]] = {}
    for name, next_path in scenarios.items():
        for concurrency in (1, 10):
            label = f"{name} c={concurrency}"
            results[label] = {}
            for target, (server, port, headers) in targets.items():
                await load.run(HOST, port, next_path, concurrency, 30, 10, headers)  # warm up
                cpu_before = server.cpu_seconds()
                result = await load.run(HOST, port, next_path, concurrency, 3000, seconds, headers)
                cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(result.requests, 1)
                results[label][target] = result
                print(f"  {label:<34} {target:<8} {result.line()}  server CPU {cpu_ms:.2f} ms/req")
    return results


async def database_alone(url: str, stars: list, rows: int, seconds: float) -> load.Result:
    """The engine's limit for `candles window limit=1000 c=10`: the API's own read
    (`MarketData.page_json`, rows encoded by PostgreSQL) from 10 tasks, without HTTP."""
    database = ConnectionPool(url, Settings(api_pool_size=10))
    await database.open()
    market, rng = MarketData(database), random.Random(11)
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline and len(latencies) < 3000:
            start = T0 + timedelta(minutes=rng.randrange(0, rows - 1000))
            window = Window(start, start + timedelta(days=30), 1000, False, False)
            began = time.perf_counter()
            await market.page_json(SERVED_CANDLES, rng.choice(stars).id, window)
            latencies.append(time.perf_counter() - began)

    try:
        await asyncio.gather(*(worker() for _ in range(10)))
    finally:
        await database.close()
    return load.Result(len(latencies), time.perf_counter() - started, latencies, 0, 0)


# --- GC pauses in the API --------------------------------------------------------------------


def gc_pauses(port: int) -> dict[tuple[str, str], float]:
    """The API's `kirby_api_gc_pause_seconds` samples: (generation, le | count | sum) -> value."""
    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10).read().decode()
    return {
        (
            sample.labels["generation"],
            sample.labels.get("le") or sample.name.rsplit("_", 1)[1],
        ): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "kirby_api_gc_pause_seconds"
        for sample in family.samples
    }


def gc_summary(before: dict, after: dict) -> str:
    """Collector passes between two scrapes: how many, how long in all, the slow ones."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    parts = []
    for generation in ("0", "1", "2"):
        count = delta.get((generation, "count"), 0.0)
        if not count:
            continue
        buckets = {
            float(le): n for (g, le), n in delta.items() if g == generation and le[0].isdigit()
        }
        slow = count - buckets[0.025]
        worst = min((bound for bound, n in buckets.items() if n >= count), default=None)
        parts.append(
            f"gen{generation} {count:.0f} passes, {delta[(generation, 'sum')] * 1000:.0f} ms"
            f" in all, {slow:.0f} of >= 25 ms, longest <= "
            + (f"{worst * 1000:g} ms" if worst is not None else "250+ ms")
        )
    return "API garbage collector: " + ("; ".join(parts) or "no passes")


# --- main ------------------------------------------------------------------------------------


def _ratio(results: dict[str, dict[str, load.Result]], label: str) -> float:
    return results[label]["kirby"].rate / max(results[label]["baseline"].rate, 1e-9)


async def main(rows: int, seconds: float, quick: bool, only: str | None) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    url = await scratch_database(DATABASE)
    kirby = baseline = None
    try:
        stars, token = await prepare(url, rows)
        kirby, kirby_port, baseline, baseline_port = start_servers(url)
        busy0, total0 = cpu_busy()
        wall0 = time.perf_counter()
        results: dict[str, dict[str, load.Result]] = {}
        if only in (None, "rest"):
            print("\nREST (each scenario: Kirby then the baseline, same requests)")
            results = await rest(
                stars, token, kirby, kirby_port, baseline, baseline_port, seconds, rows
            )
            engine = await database_alone(url, stars, rows, seconds)
            print(f"  {'candles window limit=1000 c=10':<34} database alone {engine.line()}")

        btc = stars[0]
        minute0 = rows
        ws_runs = ((1, 100), (100, 40), (1000, 15 if quick else 30)) if only in (None, "ws") else ()
        if ws_runs:
            print("\nWebSocket (Kirby): write-to-client latency")
        for clients, updates in ws_runs:
            cpu_before = kirby.cpu_seconds()
            gc_before = gc_pauses(kirby_port)
            from_commit, from_write = await ws_latency(
                url, [kirby_port], token, btc.id, clients, updates, minute0
            )
            minute0 += updates
            cpu = (kirby.cpu_seconds() - cpu_before) * 1000 / (clients * updates)
            print(
                f"  {clients:>5} clients x {updates:>3} updates: from COMMIT "
                f"{load.summary(from_commit)}; from write start {load.summary(from_write)}; "
                f"server CPU {cpu:.3f} ms/message"
            )
            print(f"        {gc_summary(gc_before, gc_pauses(kirby_port))}")
        if ws_runs:
            timings = await history_subscribe(kirby_port, token, [s.id for s in stars], 20)
            print(
                f"\nsubscribe history=1000 on 8 starlistings (20 trials): {load.summary(timings)}"
            )
        if only in (None, "bulk"):
            await bulk(url, stars, token, kirby, kirby_port, seconds, rows)
        busy1, total1 = cpu_busy()
        wall = time.perf_counter() - wall0
        print(
            f"\nmachine during the run: CPUs {100 * (busy1 - busy0) / (total1 - total0):.0f}% busy "
            f"over {wall:.0f} s; load average now {os.getloadavg()}"
        )
        print("\nversus the baseline (requests/s ratio; targets: latest-N >= 10x, windows >= 5x)")
        for label in results:
            if label.startswith("candles") or label.startswith("/starlistings"):
                print(f"  {label:<34} {_ratio(results, label):>6.1f}x")
        for label in ("candles latest-N limit=1000 c=10", "candles window limit=1000 c=10"):
            if label in results:
                p99 = results[label]["kirby"].percentile(99)
                print(f"{label} p99: {p99:.1f} ms (target <= 30 ms)")
    finally:
        for server in (kirby, baseline):
            if server is not None:
                server.stop()
        await drop_database(url, DATABASE)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="1m candles per starlisting")
    parser.add_argument("--seconds", type=float, default=8.0, help="bound of each REST loop")
    parser.add_argument("--quick", action="store_true", help="fewer WebSocket updates")
    parser.add_argument(
        "--only", choices=["rest", "ws", "bulk"], default=None, help="one part only"
    )
    args = parser.parse_args()
    # uvloop keeps the client side (1000 sockets in this process) cheap, as uvicorn's servers
    uvloop.run(main(args.rows, args.seconds, args.quick, args.only))


if __name__ == "__main__":
    cli()
