"""Bulk CSV (issue 12): does it block the event loop, and how close is it to the engine?

In one run, against the Kirby server of `bench.api.run` (same data, same machine):

1. a cheap route's latency (`/starlistings`, one client) alone, then while 10 other
   clients download `format=csv&limit=5000` pages of random windows without pause (those
   10 run in a child process, so their own work never delays the measuring client's loop);
2. CSV rows/s through the API (1 and 10 clients), against PostgreSQL's own
   `COPY (<the API's very query>) TO STDOUT (FORMAT csv, HEADER)` of the same windows,
   read by an asyncpg client over the same connection URL (1 and 10 connections, and as
   many as the API streams at once, `KIRBY_API_BULK_STREAMS`) that drops the bytes: the
   engine's limit for these rows on this machine.

Part 1 also measures the cheap route while 10 clients run PostgreSQL's own COPY of the same
windows straight from the database (no CSV through the API): the same load on the shared
cores without Kirby in the path, the machine's limit for part 1.

Targets: cheap-route p99 under the CSV clients <= 3x alone; API rows/s >= 80% of COPY's.
`python -m bench.api.bulk csv|copy PORT TOKEN SECONDS ROWS STARS|IDS URL` is the child process
of part 1.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import uvloop

from bench.api import load
from bench.api.servers import HOST, Server
from kirby_api.bulk import copy_query
from kirby_api.datasets import SERVED_CANDLES
from kirby_api.window import make_window
from kirby_core.settings import Settings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
LIMIT = 5000


def csv_paths(keys: list[str], rows: int, seed: int) -> Callable[[], str]:
    rng = random.Random(seed)

    def path() -> str:
        start = T0 + timedelta(minutes=rng.randrange(0, rows - LIMIT))
        return (
            f"/candles/{rng.choice(keys)}?format=csv&limit={LIMIT}"
            f"&start_time={start:%Y-%m-%dT%H:%M:%SZ}"
        )

    return path


async def copy_baseline(
    url: str, ids: list[int], rows: int, connections: int, seconds: float
) -> tuple[load.Result, float]:
    """PostgreSQL's COPY of the API's query for random windows: (result, client CPU s)."""
    rng = random.Random(12)
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    latencies: list[float] = []
    received = 0
    deadline = time.perf_counter() + seconds

    async def drop(data: bytes) -> None:
        nonlocal received
        received += len(data)

    async def worker(conn: asyncpg.Connection) -> None:
        while time.perf_counter() < deadline:
            start = T0 + timedelta(minutes=rng.randrange(0, rows - LIMIT))
            window = make_window(f"{start:%Y-%m-%dT%H:%M:%SZ}", None, LIMIT, None)
            query = copy_query(SERVED_CANDLES, rng.choice(ids), window)
            began = time.perf_counter()
            await conn.copy_from_query(query, output=drop, format="csv", header=True)
            latencies.append(time.perf_counter() - began)

    cpu0, started = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return load.Result(len(latencies), elapsed, latencies, 0, received), cpu


async def _clients_in_child(
    mode: str, port: int, token: str, seconds: float, rows: int, series: list[str], url: str
) -> asyncio.subprocess.Process:
    """10 bulk clients in a child process: `csv` through the API, `copy` from PostgreSQL."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.api.bulk",
        mode,
        str(port),
        token,
        str(seconds),
        str(rows),
        ",".join(series),
        url,
        stdout=asyncio.subprocess.PIPE,
    )


async def _cheap_under(
    mode: str, url: str, stars: list, token: str, port: int, seconds: float, rows: int
) -> tuple[load.Result, load.Result]:
    """The cheap route while 10 bulk clients of `mode` run: (its result, theirs)."""
    series = [str(s.key) for s in stars] if mode == "csv" else [str(s.id) for s in stars]
    child = await _clients_in_child(mode, port, token, seconds + 1, rows, series, url)
    assert child.stdout is not None
    await child.stdout.readline()  # the clients are running
    headers = {"Authorization": f"Bearer {token}"}
    loaded = await load.run(HOST, port, lambda: "/starlistings", 1, 100_000, seconds, headers)
    background = load.Result(**json.loads(await child.stdout.read()))
    await child.wait()
    return loaded, background


def _rows_line(label: str, result: load.Result, cpu_ms: str) -> str:
    return (
        f"  {label:<40} {result.requests * LIMIT / result.seconds:>9,.0f} rows/s  "
        f"{result.bytes / result.seconds / 2**20:>6.1f} MiB/s  p50 {result.percentile(50):.1f} ms"
        f"  p99 {result.percentile(99):.1f} ms  ({result.requests} pages, {result.errors} "
        f"errors){cpu_ms}"
    )


async def bulk(
    url: str, stars: list, token: str, kirby: Server, port: int, seconds: float, rows: int
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    keys = [str(s.key) for s in stars]

    def cheap() -> str:
        return "/starlistings"

    print("\nBulk CSV (limit=5000, random windows)")
    await load.run(HOST, port, cheap, 1, 300, 5, headers)  # warm up
    await load.run(HOST, port, csv_paths(keys, rows, 1), 10, 30, 10, headers)
    alone = await load.run(HOST, port, cheap, 1, 100_000, seconds, headers)
    print(f"  {'/starlistings c=1 alone':<40} {alone.line()}")
    loaded, background = await _cheap_under("csv", url, stars, token, port, seconds, rows)
    print(f"  {'/starlistings c=1 under 10 CSV clients':<40} {loaded.line()}")
    print(_rows_line("(the 10 CSV clients meanwhile)", background, ""))
    engine, raw = await _cheap_under("copy", url, stars, token, port, seconds, rows)
    print(f"  {'/starlistings c=1 under 10 raw COPYs':<40} {engine.line()}")
    print(_rows_line("(the 10 COPY clients meanwhile)", raw, ""))

    ratios = {}
    streams = Settings().api_bulk_streams  # the server runs with the defaults
    for clients in (1, 10):
        cpu0, client0 = kirby.cpu_seconds(), time.process_time()
        api = await load.run(
            HOST, port, csv_paths(keys, rows, clients), clients, 100_000, seconds, headers
        )
        api_cpu = (kirby.cpu_seconds() - cpu0) * 1000 / max(api.requests, 1)
        client_cpu = (time.process_time() - client0) * 1000 / max(api.requests, 1)
        copy, copy_cpu = await copy_baseline(url, [s.id for s in stars], rows, clients, seconds)
        copy_client = copy_cpu * 1000 / max(copy.requests, 1)
        print(
            _rows_line(
                f"API CSV c={clients}",
                api,
                f"  API CPU {api_cpu:.1f} ms/page, client CPU {client_cpu:.1f} ms/page",
            )
        )
        print(
            _rows_line(
                f"PostgreSQL COPY TO STDOUT c={clients}",
                copy,
                f"  client CPU {copy_client:.1f} ms/page",
            )
        )
        ratios[f"c={clients}"] = api.rate / max(copy.rate, 1e-9)
    copy, _ = await copy_baseline(url, [s.id for s in stars], rows, streams, seconds)
    print(_rows_line(f"PostgreSQL COPY TO STDOUT c={streams} (= API streams)", copy, ""))
    ratios[f"c=10 vs COPY c={streams}"] = api.rate / max(copy.rate, 1e-9)
    p99_ratio = loaded.percentile(99) / alone.percentile(99)
    print(
        f"\ncheap route p99 under 10 CSV clients: {loaded.percentile(99):.2f} ms vs "
        f"{alone.percentile(99):.2f} ms alone = {p99_ratio:.1f}x (target <= 3x); "
        f"under 10 raw COPYs (no API in their path, the machine's limit): "
        f"{engine.percentile(99) / alone.percentile(99):.1f}x"
    )
    print(
        "API CSV rows/s vs PostgreSQL's COPY: "
        + ", ".join(f"{label} {100 * r:.0f}%" for label, r in ratios.items())
        + " (target >= 80%)"
    )


async def _child(
    mode: str, port: int, token: str, seconds: float, rows: int, series: list[str], url: str
) -> None:
    print("started", flush=True)
    if mode == "copy":
        result, _ = await copy_baseline(url, [int(i) for i in series], rows, 10, seconds)
    else:
        result = await load.run(
            HOST,
            port,
            csv_paths(series, rows, 2),
            10,
            1_000_000,
            seconds,
            {"Authorization": f"Bearer {token}"},
        )
    print(json.dumps(result.__dict__), flush=True)


if __name__ == "__main__":
    mode, port, token, seconds, rows, series, url = sys.argv[1:8]
    uvloop.run(_child(mode, int(port), token, float(seconds), int(rows), series.split(","), url))
