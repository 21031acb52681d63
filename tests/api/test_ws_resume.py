"""WebSocket resume: event ids on live rows, `resume_from` after a reconnect (to another
replica), `resume_unavailable` beyond the kept history.

Replicas are real uvicorn servers sharing the test database, with and without a real Redis
(resume goes through PostgreSQL's `change_events` either way; Redis must not change it).
Rows are written and announced exactly as the stream does (`notify.notify` in the rows'
transaction).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from kirby_core.db import notify
from kirby_core.db.writer import upsert_funding_rates
from kirby_core.models import FundingRateRow
from tests.api.conftest import T0, candle_json, write_candles

WAIT = 20.0
"""Longest a test waits for something that must happen (then it fails)."""
TIMEOUT = 10


@pytest.fixture(params=["postgres_only", "with_redis"])
def shared(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of replicas: alone, or sharing a real redis-server."""
    if request.param == "with_redis":
        return {"redis_url": request.getfixturevalue("redis_server").url}
    return {}


async def _listening(base: str) -> None:
    """Wait until the replica's LISTEN connection is up (live rows reach it from then on)."""
    async with httpx.AsyncClient() as http, asyncio.timeout(WAIT):
        while not (await http.get(f"http://{base}/health")).json()["listener"]["connected"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@asynccontextmanager
async def _ws(base: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://{base}/ws", compression=None, open_timeout=WAIT) as socket:
        yield socket


async def _message(ws: ClientConnection) -> dict[str, Any]:
    """The next message other than the server's heartbeat."""
    async with asyncio.timeout(WAIT):
        while (message := json.loads(await ws.recv()))["type"] == "ping":
            pass
    return message


async def _subscribe(ws: ClientConnection, ids: list[int], **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"action": "subscribe", "starlisting_ids": ids, **extra}))
    return await _message(ws)


async def _nothing_more(ws: ClientConnection) -> None:
    """Messages are queued in order: a pong right away means nothing else was queued."""
    await ws.send(json.dumps({"action": "ping"}))
    assert (await _message(ws))["type"] == "pong"


async def _write_each(conn: asyncpg.Connection, sid: int, minutes: Iterable[int]) -> None:
    """One transaction, hence one change event, per minute."""
    for m in minutes:
        await write_candles(conn, sid, range(m, m + 1), announce=True)


async def test_a_client_resumes_on_another_replica_without_gap_or_duplicate(
    served, conn, catalog, shared
) -> None:
    sid, other = catalog["BTC/1m"], catalog["SOL/1m"]
    async with served(**shared) as a, served(**shared) as b:
        await asyncio.gather(_listening(a), _listening(b))
        async with _ws(a) as ws:
            assert (await _subscribe(ws, [sid]))["type"] == "success"
            await _write_each(conn, sid, range(2))
            seen = [await _message(ws) for _ in range(2)]
        assert [m["data"] for m in seen] == [candle_json(0), candle_json(1)]
        assert seen[0]["event_id"] < seen[1]["event_id"]
        last = seen[1]["event_id"]

        # missed while away: three rows of its series, one of a series it does not follow
        await _write_each(conn, sid, range(2, 5))
        await _write_each(conn, other, range(1))
        async with _ws(b) as ws:
            # more rows land while it resumes: each must come once, replayed or live
            writing = asyncio.create_task(_write_each(conn, sid, range(5, 15)))
            ack = await _subscribe(ws, [sid], resume_from=last)
            assert ack["type"] == "success"
            received = []
            while not received or received[-1]["data"] != candle_json(14):
                received.append(await _message(ws))
            await writing
            await _nothing_more(ws)
    assert [m["data"] for m in received] == [candle_json(m) for m in range(2, 15)]
    assert {m["starlisting_id"] for m in received} == {sid}
    ids = [m["event_id"] for m in received]
    assert ids == sorted(set(ids)) and ids[0] > last


async def test_resume_reaches_back_exactly_as_far_as_the_kept_history(
    served, conn, catalog
) -> None:
    sid = catalog["BTC/1m"]
    await _write_each(conn, sid, range(3))
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM change_events ORDER BY id")]
    assert len(ids) == 3
    await notify.prune(conn, 0)  # what the stream does once they are older than the setting
    assert await notify.event_bounds(conn) == (ids[2], ids[2])
    async with served() as base:
        await _listening(base)
        async with _ws(base) as ws:
            # right before the oldest kept event: still exact
            assert (await _subscribe(ws, [sid], resume_from=ids[1]))["type"] == "success"
            replayed = await _message(ws)
            assert (replayed["data"], replayed["event_id"]) == (candle_json(2), ids[2])
            await _nothing_more(ws)
        async with _ws(base) as ws:
            assert (await _subscribe(ws, [sid], resume_from=ids[0]))["type"] == "success"
            gone = await _message(ws)
            assert gone == {
                "type": "resume_unavailable",
                "resume_from": ids[0],
                "oldest_event_id": ids[2],
                "message": f"cannot resume from event {ids[0]}: the oldest kept is {ids[2]}; "
                "re-fetch the rows you missed over REST (GET /candles/..., /funding/..., "
                "/open_interest/..., /trades/..., /books/...) and subscribe without resume_from",
            }
            # the subscription stands: live rows continue
            await _write_each(conn, sid, range(3, 4))
            live = await _message(ws)
            assert live["data"] == candle_json(3)
            assert live["event_id"] > ids[2]
            # an id this database never issued is no position either
            await _subscribe(ws, [sid], resume_from=live["event_id"] + 1000)
            assert (await _message(ws))["type"] == "resume_unavailable"


async def test_history_and_resume_from_exclude_each_other(served, catalog) -> None:
    async with served() as base, _ws(base) as ws:
        error = await _subscribe(ws, [catalog["BTC/1m"]], history=5, resume_from=3)
    assert error["type"] == "error"
    assert error["code"] == "validation_error"
    assert "`history` and `resume_from` exclude each other" in error["message"]


async def test_a_long_replay_spans_datasets_in_event_order_and_outgrows_the_queue(
    served, conn, catalog
) -> None:
    """More missed events than the send queue holds: the replay waits for the client
    instead of closing it as a slow consumer; candles and funding interleave by id."""
    sid, pair = catalog["BTC/1m"], catalog["BTC"]
    async with served(api_ws_send_queue=5) as base:
        await _listening(base)
        async with _ws(base) as ws:
            await _subscribe(ws, [sid], channels=["candles", "funding"])
            await _write_each(conn, sid, range(1))
            last = (await _message(ws))["event_id"]
        for m in range(1, 13):
            await _write_each(conn, sid, range(m, m + 1))
            async with conn.transaction():
                moment = T0 + timedelta(minutes=m)
                rate = Decimal(f"0.000{m:02d}")
                await upsert_funding_rates(
                    conn, [FundingRateRow(pair, moment, predicted_funding_rate=rate)]
                )
                await notify.notify(conn, "funding_rates", {pair: [moment]})
        async with _ws(base) as ws:
            await _subscribe(ws, [sid], channels=["candles", "funding"], resume_from=last)
            replayed = [await _message(ws) for _ in range(24)]
            await _nothing_more(ws)
    assert [m["type"] for m in replayed] == ["candle", "funding"] * 12
    assert [m["data"]["time"] for m in replayed] == [
        candle_json(m)["time"] for m in range(1, 13) for _ in range(2)
    ]
    ids = [m["event_id"] for m in replayed]
    assert ids == sorted(set(ids))


async def test_heartbeat_ids_keep_a_quiet_series_resumable(served, conn, catalog) -> None:
    """Events of other series move the position on; a ping's id is a valid resume point
    even after the follower's own last row fell out of the kept history."""
    sid, busy = catalog["SOL/1m"], catalog["BTC/1m"]
    async with served(api_ws_heartbeat_seconds=0.05) as base:
        await _listening(base)
        async with _ws(base) as ws:
            await _subscribe(ws, [sid])
            await _write_each(conn, busy, range(3))  # none of its business
            newest = await conn.fetchval("SELECT max(id) FROM change_events")
            async with asyncio.timeout(WAIT):
                while json.loads(await ws.recv()).get("event_id") != newest:
                    pass  # pings carrying older positions, until the newest
        await notify.prune(conn, 0)  # only `newest` is kept now
        await _write_each(conn, sid, range(1))
        async with _ws(base) as ws:
            await _subscribe(ws, [sid], resume_from=newest)
            missed = await _message(ws)
    assert (missed["type"], missed["data"]) == ("candle", candle_json(0))
    assert missed["event_id"] > newest
