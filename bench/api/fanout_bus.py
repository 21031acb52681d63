"""The live fan-out bus, measured: PostgreSQL NOTIFY against Redis; then 1000 WebSocket
clients over three API replicas.

    python -m bench.api.fanout_bus [--events 2000] [--updates 30] [--clients 1000]
                                   [--replicas 3] [--only bus|ws]

One run starts its own `redis-server` (free loopback port, temp dir, no persistence) and
uses one scratch database.

bus: a writer sends change events as the collector does, one transaction each (upsert one
candle, then publish), through each of

  notify        `pg_notify` in the transaction (the bus before resume existed);
  notify+log    Kirby's `notify.notify`: the numbered `change_events` row and `pg_notify`
                in the transaction (what the stream does now);
  redis pubsub  COMMIT, then PUBLISH (redis.asyncio): no history;
  redis stream  COMMIT, then XADD MAXLEN ~100000 (the stream would be the log), the
                listeners reading with XREAD BLOCK;

with 1 and 3 listeners (asyncpg LISTEN connections or Redis clients, in this process),
payloads of ~150 B (8 series, one time each: a flush today) and ~7 KB (near the 8000-byte
NOTIFY cap), and 1 and 4 concurrent writers (on different series). It prints the writers'
events/s, the writer's transaction time (for Redis: COMMIT + publish) and the latency from
the start of COMMIT to each listener's receipt, p50/p99, and any event lost.

ws: three (`--replicas`) `kirby api serve` replicas on the scratch database sharing the
Redis, `--clients` WebSocket clients (`bench.api.wsclient`) spread over them round-robin,
all subscribed to one starlisting; `--updates` writes through `notify.notify`; latency
from COMMIT to each client's read of the row (`bench.api.ws.ws_latency`).

Prints figures and the machine's load; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import redis.asyncio
import uvloop

from bench.api.redis_limits import _start_redis
from bench.api.servers import REPO, cpu_busy, free_port, start_kirby
from bench.api.ws import ws_latency
from bench.common import drop_database, scratch_database
from kirby_api.keys import create_key
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store, notify
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow

DATABASE = "kirby_bench_fanout"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CHANNEL = notify.NOTIFY_CHANNELS["candles"]
STREAM = "kirby:bench:changes"
MARKER = 1_000_000_000
"""Event k names series MARKER + k first: listeners find k in any payload format."""
SHAPES = ((1, False, 1), (3, False, 1), (3, True, 1), (3, False, 4))
"""(listeners, large payload, writers) of each bus run."""
_FIRST_KEY = re.compile(r'"(\d+)"')


def _changes(k: int, large: bool) -> dict[int, list[datetime]]:
    times = 62 if large else 1
    changes = {MARKER + k: [T0]}
    for series in range(1, 9):
        changes[series] = [T0 + timedelta(minutes=m) for m in range(times)]
    return changes


def _quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=100)
    return f"{cuts[49] * 1000:6.2f} / {cuts[98] * 1000:6.2f} ms"


class Probe:
    """When each event was sent, and when each listener got it."""

    def __init__(self, expected: int) -> None:
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.expected = expected
        self.done = asyncio.Event()

    def received(self, payload: str | bytes) -> None:
        now = time.perf_counter()
        text = payload.decode() if isinstance(payload, bytes) else payload
        match = _FIRST_KEY.search(text)
        if match is None:
            return
        self.latencies.append(now - self.sent[int(match.group(1)) - MARKER])
        if len(self.latencies) == self.expected:
            self.done.set()


async def _pg_listeners(url: str, count: int, probe: Probe) -> Callable[[], Awaitable[None]]:
    conns = [await asyncpg.connect(url) for _ in range(count)]
    for conn in conns:
        await conn.add_listener(CHANNEL, lambda *a: probe.received(a[3]))

    async def close() -> None:
        for conn in conns:
            await conn.close()

    return close


async def _redis_listeners(
    port: int, count: int, probe: Probe, stream: bool
) -> Callable[[], Awaitable[None]]:
    clients = [redis.asyncio.Redis(port=port) for _ in range(count)]
    tasks = []
    for client in clients:
        if stream:
            last = (await client.xrevrange(STREAM, count=1))[0][0]

            async def read(client: redis.asyncio.Redis = client, last: bytes = last) -> None:
                while True:
                    for _, entries in await client.xread({STREAM: last}, block=1000, count=500):
                        for entry_id, fields in entries:
                            last = entry_id
                            probe.received(fields[b"p"])

            tasks.append(asyncio.create_task(read()))
        else:
            pubsub = client.pubsub()
            await pubsub.subscribe(CHANNEL)
            await pubsub.get_message(timeout=5)  # the subscribe confirmation

            async def listen(pubsub: redis.asyncio.client.PubSub = pubsub) -> None:
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        probe.received(message["data"])

            tasks.append(asyncio.create_task(listen()))

    async def close() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()

    return close


async def bus_run(
    variant: str, url: str, port: int, listeners: int, large: bool, writers: int, events: int
) -> None:
    per_writer = events // writers
    probe = Probe(per_writer * writers * listeners)
    publisher = redis.asyncio.Redis(port=port)
    if variant == "redis stream":
        await publisher.xadd(STREAM, {"p": "start"})
    if variant.startswith("redis"):
        close = await _redis_listeners(port, listeners, probe, variant == "redis stream")
    else:
        close = await _pg_listeners(url, listeners, probe)
    conns = [await asyncpg.connect(url) for _ in range(writers)]
    transactions: list[float] = []

    async def write(w: int) -> None:
        conn = conns[w]
        for i in range(per_writer):
            k = w * per_writer + i
            changes = _changes(k, large)
            payload = notify.encode_changes(changes)
            assert len(payload) == 1, "one event must fit one payload"
            row = CandleRow(w + 1, T0 + timedelta(minutes=k), *(Decimal("1.5"),) * 5, k)
            started = time.perf_counter()
            transaction = conn.transaction()
            await transaction.start()
            await upsert_candles(conn, [row])
            if variant == "notify":
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload[0])
            elif variant == "notify+log":
                await notify.notify(conn, "candles", changes)
            probe.sent[k] = time.perf_counter()
            await transaction.commit()
            if variant == "redis pubsub":
                await publisher.publish(CHANNEL, payload[0])
            elif variant == "redis stream":
                await publisher.xadd(STREAM, {"p": payload[0]}, maxlen=100_000, approximate=True)
            transactions.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(write(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):  # then the report says how many were lost
        await asyncio.wait_for(probe.done.wait(), 30)
    lost = probe.expected - len(probe.latencies)
    size = len(notify.encode_changes(_changes(0, large))[0])
    print(
        f"  {variant:<13} listeners={listeners} payload={size:>5} B writers={writers}: "
        f"{per_writer * writers / elapsed:7,.0f} events/s; transaction {_quantiles(transactions)}; "
        f"COMMIT->listener {_quantiles(probe.latencies)}" + (f"; LOST {lost}" if lost else ""),
        flush=True,
    )
    for conn in conns:
        await conn.close()
    await close()
    await publisher.aclose()
    await asyncpg_truncate(url)


async def asyncpg_truncate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE candles, change_events")
    finally:
        await conn.close()


async def bus(url: str, port: int, events: int) -> None:
    print("\nbus: events/s of the writers; p50 / p99 of transaction and COMMIT->listener")
    for variant in ("notify", "notify+log", "redis pubsub", "redis stream"):
        for listeners, large, writers in (
            (1, False, 1),
            (3, False, 1),
            (3, True, 1),
            (3, False, 4),
        ):
            await bus_run(variant, url, port, listeners, large, writers, events)


async def ws(url: str, redis_url: str, clients: int, updates: int, replicas: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        stars = await catalog_store.list_starlistings(conn)
        _, token = await create_key(conn, "bench", max_ws_connections=100_000)
    finally:
        await conn.close()
    env = {
        "KIRBY_REDIS_URL": redis_url,
        "KIRBY_API_WS_MAX_CONNECTIONS_PER_KEY": "100000",
    }
    ports = [free_port() for _ in range(replicas)]
    servers = [start_kirby(url, port, env) for port in ports]
    try:
        for server in servers:
            server.wait_ready()
        cpu = [server.cpu_seconds() for server in servers]
        print(f"\nws: {clients} clients over {len(ports)} replicas (Redis shared), one starlisting")
        from_commit, from_write = await ws_latency(
            url, ports, token, stars[0].id, clients, updates, 0
        )
        spent = sum(s.cpu_seconds() - c for s, c in zip(servers, cpu, strict=True))
        print(
            f"  {clients} clients x {updates} updates: COMMIT->client {_quantiles(from_commit)}; "
            f"write start->client {_quantiles(from_write)}; "
            f"replicas' CPU {spent * 1000 / (clients * updates):.3f} ms/message",
            flush=True,
        )
    finally:
        for server in servers:
            server.stop()


async def main(events: int, updates: int, clients: int, replicas: int, only: str | None) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    busy0, total0 = cpu_busy()
    url = await scratch_database(DATABASE)
    with tempfile.TemporaryDirectory() as directory:
        process, port = _start_redis(directory)
        try:
            conn = await asyncpg.connect(url)
            try:
                catalog = load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
                await catalog_store.sync_catalog(conn, catalog)
            finally:
                await conn.close()
            if only in (None, "bus"):
                await bus(url, port, events)
            if only in (None, "ws"):
                await ws(url, f"redis://127.0.0.1:{port}/0", clients, updates, replicas)
        finally:
            process.terminate()
            process.wait(10)
            await drop_database(url, DATABASE)
    busy1, total1 = cpu_busy()
    print(
        f"\nmachine during the run: CPUs {100 * (busy1 - busy0) / (total1 - total0):.0f}% busy; "
        f"load average now {os.getloadavg()}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--only", choices=("bus", "ws"))
    args = parser.parse_args()
    uvloop.run(main(args.events, args.updates, args.clients, args.replicas, args.only))


if __name__ == "__main__":
    cli()
