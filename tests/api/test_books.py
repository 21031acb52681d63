"""GET /books and the WebSocket `books` channel: sampled order books of a trading pair.

Samples are written with `kirby_core.db.books.write_books` and announced as the collector
does (`notify.notify(conn, "books", {pair: [first, last]})` in the rows' transaction).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pyarrow.parquet as pq

from kirby_core.db import notify
from kirby_core.db.books import BookRow, write_books
from tests.api.conftest import T0
from tests.api.test_ws_trades import _listening, _message, _nothing_more, _ws

BOOKS = "/books/hyperliquid/BTC/USD/perps"
D = Decimal


def sample(pair: int, second: int, sequence: int | None = None) -> BookRow:
    """Second s: bids 100.0+s (trailing zero kept) and 99.5+s, ask 101.25+s."""
    return BookRow(
        pair,
        T0 + timedelta(seconds=second),
        sequence,
        ((D(f"{100 + second}.0"), D("1.5")), (D(f"{99 + second}.5"), D("0.001"))),
        ((D(f"{101 + second}.25"), D("2")),),
    )


def as_json(second: int, sequence: int | None = None) -> dict[str, Any]:
    return {
        "time": (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sequence": sequence,
        "bid_prices": [f"{100 + second}.0", f"{99 + second}.5"],
        "bid_sizes": ["1.5", "0.001"],
        "ask_prices": [f"{101 + second}.25"],
        "ask_sizes": ["2"],
    }


async def flush(conn: asyncpg.Connection, rows: list[BookRow]) -> None:
    async with conn.transaction():
        assert (await write_books(conn, rows)).written == len(rows)
        times = [r.time for r in rows]
        await notify.notify(conn, "books", {rows[0].trading_pair_id: [min(times), max(times)]})


async def test_books_pages_in_three_formats(client, conn, catalog) -> None:
    pair = catalog["BTC"]
    assert (await write_books(conn, [sample(pair, s, 70 + s) for s in range(5)])).written == 5
    body = (await client.get(BOOKS)).json()
    assert body["data"] == [as_json(s, 70 + s) for s in range(5)]
    assert body["metadata"]["series"] == "hyperliquid/BTC/USD/perps"

    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"start_time": "2024-05-01", "limit": 2}
    while True:
        page = (await client.get(BOOKS, params=params)).json()
        if not page["data"]:
            break
        pages += page["data"]
        params = {"cursor": page["metadata"]["next_cursor"], "limit": 2}
    assert pages == body["data"]

    response = await client.get(BOOKS, params={"format": "csv", "limit": 2})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [json.loads(r["bid_prices"]) for r in rows] == [["103.0", "102.5"], ["104.0", "103.5"]]
    assert [r["sequence"] for r in rows] == ["73", "74"]

    response = await client.get(BOOKS, params={"format": "parquet", "limit": 2})
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column("ask_prices").to_pylist() == [["104.25"], ["105.25"]]
    assert table.column("sequence").to_pylist() == [73, 74]

    response = await client.get(BOOKS, params={"cursor": "nonsense"})
    assert response.status_code == 400 and "nonsense" in response.text


async def test_books_channel_live_history_and_resume(served, conn, catalog) -> None:
    pair, star = catalog["BTC"], catalog["BTC/1m"]
    await flush(conn, [sample(pair, s) for s in range(3)])
    async with served() as base:
        await _listening(base)
        async with _ws(base) as ws:
            subscribe = {"action": "subscribe", "starlisting_ids": [star], "channels": ["books"]}
            await ws.send(json.dumps({**subscribe, "history": 2}))
            assert (await _message(ws))["type"] == "success"
            history = await _message(ws)
            assert history["channel"] == "books" and history["data"] == [as_json(1), as_json(2)]
            # a flush whose range reaches back over what history sent
            await flush(conn, [sample(pair, 3)])
            await flush(conn, [sample(pair, s) for s in (4, 5)])
            live = [await _message(ws) for _ in range(3)]
            await _nothing_more(ws)
        assert [m["type"] for m in live] == ["book"] * 3
        assert [m["data"] for m in live] == [as_json(s) for s in (3, 4, 5)]
        last = live[0]["event_id"]
        async with _ws(base) as ws:
            await ws.send(json.dumps({**subscribe, "resume_from": last}))
            assert (await _message(ws))["type"] == "success"
            replayed = [await _message(ws) for _ in range(2)]
            await _nothing_more(ws)
    assert [m["data"] for m in replayed] == [as_json(4), as_json(5)]
    assert all(m["event_id"] > last for m in replayed)


async def test_openapi_documents_books(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    route = schema["paths"]["/books/{exchange}/{coin}/{quote}/{market_type}"]["get"]
    assert "application/vnd.apache.parquet" in route["responses"]["200"]["content"]
