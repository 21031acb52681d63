"""Rate-limit decisions per second: in process, through Redis, and Redis's own ceiling.

    python -m bench.api.redis_limits [--seconds 5] [--clients 1,50] [--no-http]

One run starts its own `redis-server` (free loopback port, temp dir, no persistence) and
measures, each for `--seconds` per concurrency:

  in-process   `RateLimiter.check` (the default without KIRBY_REDIS_URL), one caller per
               task, every decision spending budget;
  redis        `SharedLimiter.check` through redis.asyncio (one EVALSHA of the GCRA script
               per decision, on the Redis server's clock), `--clients` tasks on one event
               loop (uvloop), as an API replica runs them;
  raw          `redis-benchmark` of the same EVALSHA and of PING with `--clients`
               connections: what Redis itself does, without Python;
  page         GET of a 100 KB value (a latest-1000 JSON page) through redis.asyncio against
               the in-process dict lookup the latest-N cache does: why that cache stays per
               process.

  http         `GET /starlistings` (the cheapest limited route) on one `kirby api serve`
               process, 10 connections, without and with `KIRBY_REDIS_URL`: requests/s,
               p50/p99 and the server's CPU per request, on a scratch database.

Prints decisions/s and p50/p99 latency; asserts nothing. The machine is shared: the run
prints how busy its CPUs were.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable

import asyncpg
import redis
import uvloop

from bench.api import load
from bench.api.servers import HOST, REPO, cpu_busy, free_port, start_kirby
from bench.common import drop_database, scratch_database
from kirby_api.keys import create_key
from kirby_api.ratelimit import RateLimiter
from kirby_api.shared_state import GCRA_SCRIPT, SharedLimiter, SharedState
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store

DATABASE = "kirby_bench_redis"

GENEROUS = 1_000_000_000
"""Per-minute budget of the benchmark's callers: every decision allows (and writes)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return process, port


async def _measure(
    clients: int, seconds: float, decide: Callable[[int], Awaitable[object]]
) -> tuple[float, float, float]:
    """(decisions/s, p50 ms, p99 ms) of `clients` tasks calling `decide(task)` in a loop."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop(task: int) -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await decide(task)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(task) for task in range(clients)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


def _redis_benchmark(port: int, clients: int, *command: str) -> float:
    """Requests/s `redis-benchmark` reports for `command`."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return float("nan")
    out = subprocess.run(
        [binary, "-p", str(port), "-c", str(clients), "-n", "200000", "--csv", *command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1].split(",")[1].strip('"'))


def _row(name: str, clients: int, rate: float, p50: float | None, p99: float | None) -> None:
    latency = "" if p50 is None else f"  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms"
    print(f"{name:<28} c={clients:<3} {rate:>11,.0f} /s{latency}", flush=True)


async def http(redis_url: str, seconds: float) -> None:
    """/starlistings on one API process, without and with Redis."""
    url = await scratch_database(DATABASE)
    try:
        conn = await asyncpg.connect(url)
        try:
            catalog = load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
            await catalog_store.sync_catalog(conn, catalog)
            _, token = await create_key(conn, "bench")
        finally:
            await conn.close()
        headers = {"Authorization": f"Bearer {token}"}
        for name, env in (("http in-process", {}), ("http redis", {"KIRBY_REDIS_URL": redis_url})):
            port = free_port()
            server = start_kirby(url, port, env)
            try:
                server.wait_ready()
                await load.run(HOST, port, lambda: "/starlistings", 10, 300, 10, headers)
                cpu = server.cpu_seconds()
                result = await load.run(
                    HOST, port, lambda: "/starlistings", 10, 1_000_000, seconds, headers
                )
                per_request = (server.cpu_seconds() - cpu) / max(result.requests, 1) * 1000
                _row(name, 10, result.rate, result.percentile(50), result.percentile(99))
                print(f"{'':<28} server CPU {per_request:.3f} ms/request, {result.errors} errors")
            finally:
                server.stop()
    finally:
        await drop_database(url, DATABASE)


async def bench(seconds: float, concurrencies: list[int], with_http: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        process, port = _start_redis(directory)
        shared = SharedState(f"redis://127.0.0.1:{port}/0")
        try:
            busy0, total0 = cpu_busy()
            local = RateLimiter(GENEROUS)
            remote = SharedLimiter(shared, "bench", GENEROUS)
            sha = redis.Redis(port=port).script_load(GCRA_SCRIPT)
            page = b"x" * 100_000
            await shared.client.set("kirby:bench:page", page)
            pages = {("candles", 1, 1000): page}
            for clients in concurrencies:
                for name, decide in (
                    ("in-process check", lambda t: local.check(("key", t), None)),
                    ("redis check (redis.asyncio)", lambda t: remote.check(("key", t), None)),
                ):
                    _row(name, clients, *await _measure(clients, seconds, decide))
                raw = _redis_benchmark(port, clients, "EVALSHA", sha, "1", "kirby:bench:raw",
                                       str(GENEROUS), "1", "1")  # fmt: skip
                _row("raw EVALSHA (redis-benchmark)", clients, raw, None, None)
                _row("raw PING (redis-benchmark)", clients, _redis_benchmark(port, clients, "PING"),
                     None, None)  # fmt: skip

                async def get_page(_: int) -> object:
                    return await shared.client.get("kirby:bench:page")

                async def dict_page(_: int) -> object:
                    return pages.get(("candles", 1, 1000))

                _row(
                    "page GET 100 KB (redis)", clients, *await _measure(clients, seconds, get_page)
                )
                _row("page lookup (in-process)", clients,
                     *await _measure(clients, seconds, dict_page))  # fmt: skip
            if with_http:
                await http(f"redis://127.0.0.1:{port}/0", seconds)
            busy1, total1 = cpu_busy()
            print(
                f"machine CPU busy during the run: {100 * (busy1 - busy0) / (total1 - total0):.0f}%"
            )
        finally:
            await shared.close()
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,50", help="comma-separated concurrencies")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]
    uvloop.run(bench(args.seconds, concurrencies, not args.no_http))


if __name__ == "__main__":
    main()
