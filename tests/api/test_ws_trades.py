"""WebSocket channel `trades`: live trades from the change events, history, resume, and
never a trade twice on one connection.

Trades are written and announced as the collector does: `write_trades` and
`notify.notify(conn, "trades", {pair: [first, last]})` in one transaction (the payload
names each pair's first and last trade time of the flush, not each trade).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect

from kirby_core.db import notify
from kirby_core.db.trades import TradeRow, write_trades
from tests.api.conftest import T0

WAIT = 20.0
"""Longest a test waits for something that must happen (then it fails)."""


async def _listening(base: str) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(WAIT):
        while not (await http.get(f"http://{base}/health")).json()["listener"]["connected"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@asynccontextmanager
async def _ws(base: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://{base}/ws", compression=None, open_timeout=WAIT) as socket:
        yield socket


async def _message(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while (message := json.loads(await ws.recv()))["type"] == "ping":
            pass
    return message


async def _subscribe(ws: ClientConnection, ids: list[int], **extra: Any) -> dict[str, Any]:
    message = {"action": "subscribe", "starlisting_ids": ids, "channels": ["trades"], **extra}
    await ws.send(json.dumps(message))
    return await _message(ws)


async def _nothing_more(ws: ClientConnection) -> None:
    """Messages are queued in order: a pong right away means nothing else was queued."""
    await ws.send(json.dumps({"action": "ping"}))
    assert (await _message(ws))["type"] == "pong"


def trade(pair: int, n: int, ms: int) -> TradeRow:
    """Trade n at T0 + ms milliseconds."""
    return TradeRow(
        pair,
        T0 + timedelta(milliseconds=ms),
        f"t{n:04}",
        Decimal(f"64000.{n:02}"),
        Decimal("0.0010"),
        "buy" if n % 2 else "sell",
    )


async def flush(conn: asyncpg.Connection, rows: list[TradeRow]) -> None:
    """One collector flush: the rows and their change event in one transaction."""
    async with conn.transaction():
        await write_trades(conn, rows)
        by_pair: dict[int, list] = {}
        for row in rows:
            by_pair.setdefault(row.trading_pair_id, []).append(row.time)
        await notify.notify(conn, "trades", {p: [min(t), max(t)] for p, t in by_pair.items()})


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["trade_id"] for m in messages]


async def test_live_trades_once_each_despite_overlapping_flushes(served, conn, catalog) -> None:
    pair, star, other = catalog["BTC"], catalog["BTC/1m"], catalog["SOL"]
    # history: the latest 2 of 3 stored trades
    await flush(conn, [trade(pair, n, 0) for n in range(3)])
    async with served() as base:
        await _listening(base)
        async with _ws(base) as ws:
            # two intervals of one pair: still one subscription to its trades
            ack = await _subscribe(ws, [star, catalog["BTC/15m"]], history=2)
            assert ack["type"] == "success"
            history = await _message(ws)
            assert history["type"] == "historical" and history["channel"] == "trades"
            assert history["trading_pair_id"] == pair and history["count"] == 2
            assert [r["trade_id"] for r in history["data"]] == ["t0001", "t0002"]
            # a late trade in the millisecond history already covered, two new ones in it,
            # and one later; then a flush whose range reaches back over all of them
            await flush(conn, [trade(pair, 3, 0), trade(pair, 4, 0), trade(pair, 5, 7)])
            received = [await _message(ws) for _ in range(3)]
            await flush(conn, [trade(pair, 6, 0), trade(pair, 7, 9), trade(other, 8, 9)])
            received.append(await _message(ws))
            await _nothing_more(ws)
    assert ids(received) == ["t0003", "t0004", "t0005", "t0007"]
    first = received[0]
    assert first["type"] == "trade"
    assert first["trading_pair_id"] == pair
    assert first["series"] == "hyperliquid/BTC/USD/perps"
    assert first["data"] == {
        "time": "2024-05-01T00:00:00Z",
        "trade_id": "t0003",
        "price": "64000.03",
        "size": "0.0010",
        "side": "buy",
    }
    events = [m["event_id"] for m in received]
    assert events[0] == events[1] == events[2] < events[3]
    # t0006 came late (older than a trade already sent): REST has it
    async with served() as base, httpx.AsyncClient() as http:
        page = (await http.get(f"http://{base}/trades/hyperliquid/BTC/USD/perps")).json()
    assert "t0006" in [r["trade_id"] for r in page["data"]]


async def test_resume_replays_missed_trades_once(served, conn, catalog) -> None:
    pair, star = catalog["BTC"], catalog["BTC/1m"]
    async with served() as a, served() as b:
        await asyncio.gather(_listening(a), _listening(b))
        async with _ws(a) as ws:
            assert (await _subscribe(ws, [star]))["type"] == "success"
            await flush(conn, [trade(pair, n, 5) for n in range(3)])
            seen = [await _message(ws) for _ in range(3)]
        last = seen[-1]["event_id"]
        # missed while away: one flush in the same millisecond (late: not replayed), then
        # new ones; the second reaches back over the first
        await flush(conn, [trade(pair, 3, 5)])
        await flush(conn, [trade(pair, 4, 6), trade(pair, 5, 6)])
        await flush(conn, [trade(pair, 6, 6), trade(pair, 7, 8)])
        async with _ws(b) as ws:
            writing = asyncio.create_task(flush(conn, [trade(pair, 8, 9), trade(pair, 9, 9)]))
            assert (await _subscribe(ws, [star], resume_from=last))["type"] == "success"
            received = []
            while not received or received[-1]["data"]["trade_id"] != "t0009":
                received.append(await _message(ws))
            await writing
            await _nothing_more(ws)
    assert ids(seen) == ["t0000", "t0001", "t0002"]
    assert ids(received) == ["t0004", "t0005", "t0006", "t0007", "t0008", "t0009"]
    events = [m["event_id"] for m in received]
    assert events == sorted(events) and events[0] > last
