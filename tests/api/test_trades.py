"""GET /trades: a trading pair's trade tape in JSON, CSV and Parquet, keyed cursors."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq

from kirby_api.window import encode_cursor
from kirby_core.db.trades import TradeRow, write_trades
from tests.api.conftest import T0

TRADES = "/trades/hyperliquid/BTC/USD/perps"


def tape(pair: int) -> list[TradeRow]:
    """13 trades: 8 in one millisecond (ids chosen so that text order is not insertion
    order), then 4 with microseconds; one id needs JSON and CSV escaping."""
    same_ms = T0 + timedelta(milliseconds=1)
    rows = [
        TradeRow(pair, same_ms, f"m{i}", Decimal(f"64000.{i}0"), Decimal("0.001"), "buy")
        for i in (7, 3, 5, 0, 6, 1, 4, 2)
    ]
    rows += [
        TradeRow(
            pair,
            T0 + timedelta(seconds=1, microseconds=123456),
            "u1",
            Decimal("64001"),
            Decimal("1.50"),
            "sell",
        ),
        TradeRow(
            pair, T0 + timedelta(seconds=2), 'q"1,x', Decimal("64002.5"), Decimal("0.10000"), "buy"
        ),
        # after the whole second in time, before it as text ("...02.500000Z" < "...02Z")
        TradeRow(
            pair, T0 + timedelta(seconds=2.5), "u2", Decimal("64002.75"), Decimal("1"), "sell"
        ),
        TradeRow(pair, T0 + timedelta(seconds=3), "u3", Decimal("64003"), Decimal("2"), "sell"),
        TradeRow(pair, T0 + timedelta(days=1), "u4", Decimal("64004"), Decimal("3"), "buy"),
    ]
    return rows


def as_json(row: TradeRow) -> dict[str, Any]:
    micros = f".{row.time.microsecond:06}" if row.time.microsecond else ""
    return {
        "time": row.time.strftime("%Y-%m-%dT%H:%M:%S") + micros + "Z",
        "trade_id": row.trade_id,
        "price": str(row.price),
        "size": str(row.size),
        "side": row.side,
    }


def ordered(rows: list[TradeRow]) -> list[dict[str, Any]]:
    return [as_json(r) for r in sorted(rows, key=lambda r: (r.time, r.trade_id))]


async def stored_tape(conn, pair: int) -> list[dict[str, Any]]:
    rows = tape(pair)
    result = await write_trades(conn, rows)
    assert result.written == len(rows)
    return ordered(rows)


async def test_latest_trades_exact_and_in_order(client, conn, catalog) -> None:
    expected = await stored_tape(conn, catalog["BTC"])
    response = await client.get(TRADES)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == expected
    meta = body["metadata"]
    assert meta["series"] == "hyperliquid/BTC/USD/perps"
    assert meta["trading_pair_id"] == catalog["BTC"]
    assert meta["count"] == len(expected)
    assert meta["range"] == {"start_time": expected[0]["time"], "end_time": expected[-1]["time"]}
    assert "interval" not in meta
    assert response.headers["Kirby-Count"] == str(len(expected))


async def test_cursor_pages_walk_one_millisecond_without_repeats(client, conn, catalog) -> None:
    expected = await stored_tape(conn, catalog["BTC"])
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"start_time": "2024-05-01", "limit": 3}
    while True:
        body = (await client.get(TRADES, params=params)).json()
        seen += body["data"]
        if not body["data"]:
            break
        params = {"cursor": body["metadata"]["next_cursor"], "limit": 3}
    assert seen == expected
    # an empty page of an open-ended forward walk still hands a cursor to poll with
    assert body["metadata"]["next_cursor"] is not None

    # backwards from the latest page, by prev_cursor
    back: list[dict[str, Any]] = []
    params = {"limit": 3}
    while True:
        body = (await client.get(TRADES, params=params)).json()
        back = body["data"] + back
        cursor = body["metadata"]["prev_cursor"]
        if cursor is None:
            break
        params = {"cursor": cursor, "limit": 3}
    assert back == expected


async def test_range_is_half_open_and_bounds_cursors(client, conn, catalog) -> None:
    expected = await stored_tape(conn, catalog["BTC"])
    params = {"start_time": "2024-05-01T00:00:00.001Z", "end_time": "2024-05-01T00:00:02Z"}
    body = (await client.get(TRADES, params=params)).json()
    assert body["data"] == expected[:9]  # the 8 of one millisecond and u1; not the 00:00:02 one
    assert body["metadata"]["next_cursor"] is None  # a closed range that was not full
    page = (await client.get(TRADES, params={**params, "limit": 5})).json()
    rest = await client.get(
        TRADES, params={"end_time": params["end_time"], "cursor": page["metadata"]["next_cursor"]}
    )
    assert page["data"] + rest.json()["data"] == expected[:9]


async def test_csv_and_parquet_hold_the_same_exact_rows(client, conn, catalog) -> None:
    expected = await stored_tape(conn, catalog["BTC"])
    response = await client.get(TRADES, params={"format": "csv", "limit": 5})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [{k: str(v) for k, v in row.items()} for row in expected[-5:]]
    json_page = (await client.get(TRADES, params={"limit": 5})).json()["metadata"]
    assert response.headers["Kirby-Prev-Cursor"] == json_page["prev_cursor"]

    response = await client.get(TRADES, params={"format": "parquet", "limit": 5})
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert table.column("trade_id").to_pylist() == [r["trade_id"] for r in expected[-5:]]
    assert table.column("price").to_pylist() == [r["price"] for r in expected[-5:]]
    assert table.column("size").to_pylist() == [r["size"] for r in expected[-5:]]
    times = [t.isoformat().replace("+00:00", "") for t in table.column("time").to_pylist()]
    assert times[:3] == [
        "2024-05-01T00:00:01.123456",
        "2024-05-01T00:00:02",
        "2024-05-01T00:00:02.500000",
    ]
    assert response.headers["Kirby-Prev-Cursor"] == json_page["prev_cursor"]


async def test_bad_input_is_a_clear_400(client, conn, catalog) -> None:
    await stored_tape(conn, catalog["BTC"])
    candle_cursor = encode_cursor("a", T0)
    response = await client.get(TRADES, params={"cursor": candle_cursor})
    assert response.status_code == 400
    assert candle_cursor in response.text and "keyed (time, trade id)" in response.text
    trade_cursor = encode_cursor("a", T0, "m1")
    response = await client.get(
        "/funding/hyperliquid/BTC/USD/perps", params={"cursor": trade_cursor}
    )
    assert response.status_code == 400 and "time cursor" in response.text
    for params, named in (
        ({"limit": 0}, "limit"),
        ({"limit": 5001}, "limit"),
        ({"start_time": "yesterday"}, "yesterday"),
        ({"format": "xml"}, "format"),
        ({"start_time": "2024-05-02", "end_time": "2024-05-01"}, "after end_time"),
    ):
        response = await client.get(TRADES, params=params)
        assert response.status_code == 400, params
        assert named in response.text, (params, response.text)
        assert "Traceback" not in response.text
    response = await client.get("/trades/hyperliquid/DOGE/USD/perps")
    assert response.status_code == 404 and "DOGE" in response.text


async def test_openapi_documents_trades_in_three_formats(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    route = schema["paths"]["/trades/{exchange}/{coin}/{quote}/{market_type}"]["get"]
    content = route["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv", "application/vnd.apache.parquet"}
    assert {p["name"] for p in route["parameters"]} >= {"start_time", "end_time", "cursor", "limit"}
