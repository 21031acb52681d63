"""GET /candles: latest-N, ranges, time formats, cursors, formats, errors."""

from __future__ import annotations

import io
from datetime import timedelta

import asyncpg
import pyarrow.parquet as pq
import pytest

from tests.api.conftest import BTC_1M, T0, candle_json, write_candles


async def test_latest_n_is_ascending_with_exact_decimals(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(50))
    await write_candles(conn, catalog["SOL/1m"], range(60))  # another series, never mixed in
    response = await client.get(BTC_1M, params={"limit": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [candle_json(47), candle_json(48), candle_json(49)]
    meta = body["metadata"]
    assert {k: meta[k] for k in ("series", "exchange", "coin", "quote", "trading_pair")} == {
        "series": "hyperliquid/BTC/USD/perps/1m",
        "exchange": "hyperliquid",
        "coin": "BTC",
        "quote": "USD",
        "trading_pair": "BTC/USD",
    }
    assert (meta["market_type"], meta["interval"], meta["starlisting_id"]) == (
        "perps",
        "1m",
        catalog["BTC/1m"],
    )
    assert meta["count"] == 3
    assert meta["range"] == {
        "start_time": "2024-05-01T00:47:00Z",
        "end_time": "2024-05-01T00:49:00Z",
    }
    assert response.headers["Kirby-Count"] == "3"


async def test_default_limit_is_1000(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(1100))
    body = (await client.get(BTC_1M)).json()
    assert len(body["data"]) == 1000
    assert body["data"][0] == candle_json(100)
    assert body["data"][-1] == candle_json(1099)


async def test_start_time_reads_forward_and_end_time_is_exclusive(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(100))
    body = (
        await client.get(
            BTC_1M,
            params={"start_time": "2024-05-01T00:10:00Z", "end_time": "2024-05-01T00:13:00Z"},
        )
    ).json()
    assert body["data"] == [candle_json(10), candle_json(11), candle_json(12)]
    forward = (
        await client.get(BTC_1M, params={"start_time": "2024-05-01T00:10:00Z", "limit": 2})
    ).json()
    assert forward["data"] == [candle_json(10), candle_json(11)]
    before = (
        await client.get(BTC_1M, params={"end_time": "2024-05-01T00:10:00Z", "limit": 2})
    ).json()
    assert before["data"] == [candle_json(8), candle_json(9)]


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T00:20:00Z",
        "2024-05-01T00:20:00+00:00",
        "2024-05-01T02:20:00+02:00",
        "2024-05-01T00:20:00",  # naive: UTC
        "2024-05-01 00:20:00+00:00".replace("+", " "),  # a '+' a client forgot to encode
        "1714522800",  # unix seconds
        "1714522800000",  # unix milliseconds
        "1714522800.0",
    ],
)
async def test_time_formats(client, conn, catalog, value: str) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(30))
    body = (await client.get(BTC_1M, params={"start_time": value, "limit": 1})).json()
    assert body["data"] == [candle_json(20)]


async def test_a_date_means_its_midnight(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(30))
    body = (await client.get(BTC_1M, params={"start_time": "2024-05-01", "limit": 1})).json()
    assert body["data"] == [candle_json(0)]


async def test_cursors_walk_every_row_once_in_both_directions(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(25))
    seen, cursor = [], None
    params = {"start_time": "2024-05-01T00:00:00Z", "end_time": "2024-05-01T00:25:00Z", "limit": 10}
    while True:
        body = (
            await client.get(BTC_1M, params={**params, **({"cursor": cursor} if cursor else {})})
        ).json()
        seen += [row["num_trades"] for row in body["data"]]
        cursor = body["metadata"]["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(25))

    back, cursor = [], None
    while True:
        body = (
            await client.get(BTC_1M, params={"limit": 10, **({"cursor": cursor} if cursor else {})})
        ).json()
        back = [row["num_trades"] for row in body["data"]] + back
        cursor = body["metadata"]["prev_cursor"]
        if cursor is None:
            break
    assert back == list(range(25))


async def test_next_cursor_polls_for_new_rows(client, conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await write_candles(conn, sid, range(5))
    latest = (await client.get(BTC_1M, params={"limit": 2})).json()
    assert latest["metadata"]["prev_cursor"] is not None
    cursor = latest["metadata"]["next_cursor"]
    empty = (await client.get(BTC_1M, params={"cursor": cursor})).json()
    assert empty["data"] == []
    assert empty["metadata"]["next_cursor"] == cursor  # keep polling from the same place
    await write_candles(conn, sid, range(5, 7))
    new = (await client.get(BTC_1M, params={"cursor": cursor})).json()
    assert new["data"] == [candle_json(5), candle_json(6)]


async def test_csv_is_streamed_with_the_same_values(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(3))
    response = await client.get(BTC_1M, params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "hyperliquid_BTC_USD_perps_1m_candles.csv" in response.headers["content-disposition"]
    assert response.text.splitlines() == [
        "time,open,high,low,close,volume,num_trades",
        "2024-05-01T00:00:00Z,100,101.50,99,100.25,0.00012345,0",
        "2024-05-01T00:01:00Z,101,102.50,100,101.25,0.00012345,1",
        "2024-05-01T00:02:00Z,102,103.50,101,102.25,0.00012345,2",
    ]
    assert response.headers["Kirby-Count"] == "3"
    assert response.headers["Kirby-Next-Cursor"]


async def test_parquet_keeps_exact_decimals_and_utc_times(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(2500))  # three row groups
    response = await client.get(BTC_1M, params={"format": "parquet", "limit": 2500})
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    parquet = pq.ParquetFile(io.BytesIO(response.content))
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    assert table.num_rows == 2500
    assert str(table.schema.field("time").type) == "timestamp[ms, tz=UTC]"
    assert table.slice(7, 1).to_pylist()[0] | {"time": None} == candle_json(7) | {"time": None}
    assert table.column("time")[7].as_py() == T0 + timedelta(minutes=7)
    assert table.schema.metadata[b"kirby.series"] == b"hyperliquid/BTC/USD/perps/1m"


async def test_lookup_ignores_case(client, conn, catalog) -> None:
    await write_candles(conn, catalog["BTC/1m"], range(2))
    body = (await client.get("/candles/HyperLiquid/btc/usd/PERPS/1m")).json()
    assert body["metadata"]["series"] == "hyperliquid/BTC/USD/perps/1m"
    assert len(body["data"]) == 2


@pytest.mark.parametrize(
    ("params", "parameter", "message"),
    [
        ({"limit": 0}, "limit", "invalid limit: Expected `int` >= 1; got '0'"),
        ({"limit": 5001}, "limit", "invalid limit: Expected `int` <= 5000; got '5001'"),
        ({"limit": "ten"}, "limit", "invalid limit: Expected `int`, got `str`; got 'ten'"),
        ({"format": "xml"}, "format", "invalid format: Invalid enum value 'xml'"),
        ({"start_time": "yesterday"}, "start_time", "start_time 'yesterday' is not a time"),
        ({"end_time": "2024-13-01"}, "end_time", "end_time '2024-13-01' is not a time"),
        (
            {"start_time": "99999999999999999"},
            "start_time",
            "start_time '99999999999999999' is out of range (1970-01-01 to 9999-12-31)",
        ),
        (
            {"start_time": "2024-05-02", "end_time": "2024-05-01"},
            "start_time",
            "start_time (2024-05-02T00:00:00Z) is after end_time (2024-05-01T00:00:00Z)",
        ),
        (
            {"cursor": "bm90LWEtY3Vyc29y"},
            "cursor",
            "cursor 'bm90LWEtY3Vyc29y' is not a time cursor this API issued for this route",
        ),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client, params, parameter, message
) -> None:
    response = await client.get(BTC_1M, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert body["message"] == message
    assert body["allowed"]


async def test_unknown_series_is_404_naming_it(client) -> None:
    response = await client.get("/candles/hyperliquid/DOGE/USD/perps/1m")
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "error": "not_found",
        "message": "unknown starlisting hyperliquid/DOGE/USD/perps/1m; "
        "GET /starlistings lists them",
    }


async def test_inactive_series_is_409_with_the_reason(api, conn, catalog) -> None:
    await conn.execute("UPDATE starlistings SET active = false WHERE id = $1", catalog["SOL/4h"])
    async with api(api_auth_enabled=False) as client:
        response = await client.get("/candles/hyperliquid/SOL/USD/perps/4h")
    assert response.status_code == 409
    assert response.json() == {
        "status": 409,
        "error": "inactive",
        "message": "starlisting hyperliquid/SOL/USD/perps/4h is inactive: it was removed from "
        "the catalog; its stored data is kept but no longer served",
    }


async def test_unknown_route_and_method_use_the_same_error_shape(client) -> None:
    missing = await client.get("/candle/hyperliquid")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert "/schema" in missing.json()["message"]
    wrong = await client.post(BTC_1M)
    assert wrong.status_code == 405
    assert wrong.json() == {
        "status": 405,
        "error": "method_not_allowed",
        "message": f"method POST is not allowed on {BTC_1M}",
    }


async def test_a_schema_mismatch_is_500_with_an_error_id(client, conn: asyncpg.Connection) -> None:
    """Not "retry shortly": retrying cannot help (a 503 is for an unavailable database, see
    test_database_faults)."""
    await conn.execute("ALTER TABLE candles RENAME TO candles_away")
    try:
        response = await client.get(BTC_1M)
    finally:
        await conn.execute("ALTER TABLE candles_away RENAME TO candles")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    body = response.json()
    assert body == {
        "status": 500,
        "error": "internal_error",
        "message": f"internal error; it has been logged with error id {body['error_id']}",
        "error_id": body["error_id"],
    }
