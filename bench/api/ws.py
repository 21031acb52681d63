"""WebSocket figures: write-to-client latency at N clients, and subscribe-with-history time.

Clients are `WsClient`s in this process (cheap enough for a thousand); the writer is
Kirby's own (`upsert_candles` + NOTIFY in one transaction), timed from the start of the
write and from its COMMIT to each client's read of the live row. `ws_latency` spreads the
clients over the given API processes (replicas) round-robin.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from bench.api.servers import HOST
from bench.api.wsclient import WsClient
from kirby_core.db import notify
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow

T0 = datetime(2024, 1, 1, tzinfo=UTC)


async def ws_latency(
    url: str,
    ports: Sequence[int],
    token: str,
    star_id: int,
    clients: int,
    updates: int,
    minute0: int,
) -> tuple[list[float], list[float]]:
    arrivals: list[float] = []
    expected = asyncio.Event()
    acks = 0
    all_acked = asyncio.Event()

    def on_frame(_client: WsClient, frame: bytes, now: float) -> None:
        nonlocal acks
        if frame.startswith(b'{"type":"candle"'):
            arrivals.append(now)
            if len(arrivals) == clients:
                expected.set()
        elif frame.startswith(b'{"type":"success"'):
            acks += 1
            if acks == clients:
                all_acked.set()

    connected: list[WsClient] = []
    for i in range(0, clients, 100):
        batch = await asyncio.gather(
            *(
                WsClient.connect(HOST, ports[n % len(ports)], f"/ws?api_key={token}", on_frame)
                for n in range(i, min(i + 100, clients))
            )
        )
        connected += batch
    subscribe = json.dumps({"action": "subscribe", "starlisting_ids": [star_id]})
    for client in connected:
        client.send_text(subscribe)
    await asyncio.wait_for(all_acked.wait(), 60)

    conn = await asyncpg.connect(url)
    from_commit: list[float] = []
    from_write: list[float] = []
    try:
        for k in range(updates):
            arrivals.clear()
            expected.clear()
            moment = T0 + timedelta(minutes=minute0 + k)
            row = CandleRow(
                star_id,
                moment,
                Decimal("1.5"),
                Decimal("2.5"),
                Decimal("1"),
                Decimal("2"),
                Decimal("3.25"),
                k,
            )
            write_started = time.perf_counter()
            transaction = conn.transaction()
            await transaction.start()
            await upsert_candles(conn, [row])
            await notify.notify(conn, "candles", {star_id: [moment]})
            committed = time.perf_counter()
            await transaction.commit()
            await asyncio.wait_for(expected.wait(), 30)
            from_commit += [a - committed for a in arrivals]
            from_write += [a - write_started for a in arrivals]
    finally:
        await conn.close()
        for client in connected:
            client.close()
    return from_commit, from_write


async def history_subscribe(port: int, token: str, ids: list[int], trials: int) -> list[float]:
    done = asyncio.Event()
    seen = 0

    def on_frame(_client: WsClient, frame: bytes, _now: float) -> None:
        nonlocal seen
        if frame.startswith(b'{"type":"historical"'):
            seen += 1
            if seen == len(ids):
                done.set()

    client = await WsClient.connect(HOST, port, f"/ws?api_key={token}", on_frame)
    timings = []
    message = json.dumps({"action": "subscribe", "starlisting_ids": ids, "history": 1000})
    try:
        for _ in range(trials):
            seen = 0
            done.clear()
            started = time.perf_counter()
            client.send_text(message)
            await asyncio.wait_for(done.wait(), 30)
            timings.append(time.perf_counter() - started)
    finally:
        client.close()
    return timings
