"""GET /coverage/trades/... and /coverage/books/...: the classifier's minutes in the same
shape as the other datasets' coverage, the dataset segment derived from RECORDED_DATASETS,
and a bad dataset refused naming it."""

from __future__ import annotations

from kirby_api.routes.coverage import PAIR_DATASETS
from kirby_core.datasets import RECORDED_DATASETS
from kirby_core.db.books import BookRow, IntegrityRow, write_book_integrity, write_books
from tests.db.test_tape_coverage import D, at, plant_tape

PAIR = "hyperliquid/BTC/USD/perps"
DAY = {"start_time": "2024-05-01", "end_time": "2024-05-01"}


def minutes(day: dict[str, object]) -> tuple[object, ...]:
    return tuple(
        day[k]
        for k in (
            "expected",
            "present",
            "missing",
            "no_trades",
            "unavailable_rows",
            "outage_rows",
            "unexplained",
            "outage_minutes",
            "integrity_gap_minutes",
            "unavailable_at_source",
            "status",
        )
    )


async def test_trade_coverage(client, conn, catalog) -> None:
    """Hyperliquid keeps no trade history: the live tape's quiet minutes are no trades, the
    rest of the day's empty minutes unavailable at source."""
    await plant_tape(conn, catalog["BTC"])
    response = await client.get(f"/coverage/trades/{PAIR}", params=DAY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [minutes(d) for d in body["data"]] == [
        (1440, 6, 1434, 695, 739, 0, 0, 20, 0, True, "outage")
    ]
    meta = body["metadata"]
    assert (meta["dataset"], meta["interval"], meta["series"]) == ("trades", "1m", PAIR)
    assert meta["source_note"].startswith("Hyperliquid has no public trade-history endpoint")
    assert meta["source_available_from"] is not None  # nothing older than now is served


async def test_book_coverage(client, conn, catalog) -> None:
    pair = catalog["BTC"]
    book = ((D("64000.5"), D("1")),), ((D("64001"), D("2")),)
    await write_books(conn, [BookRow(pair, at(m, 0), None, *book) for m in (0, 1, 3)])
    await write_book_integrity(conn, [IntegrityRow(pair, at(1), 50, 1, 1, 300, 0)])
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('books', $1, $2, $3, 'stall')",
        pair,
        at(2),
        at(3),
    )
    body = (await client.get(f"/coverage/books/{PAIR}", params=DAY)).json()
    assert [minutes(d) for d in body["data"]] == [
        (1440, 3, 1437, 0, 0, 1, 1436, 1, 1, False, "outage")
    ]
    assert body["metadata"]["source_available_from"] is None
    assert body["metadata"]["source_note"].startswith("no exchange serves past order books")


async def test_the_pair_datasets_come_from_the_recorded_ones(client) -> None:
    assert {d.name for d in PAIR_DATASETS.values()} == set(RECORDED_DATASETS) - {"candles"}
    assert set(PAIR_DATASETS) == {"funding", "open-interest", "trades", "books"}
    response = await client.get(f"/coverage/quotes/{PAIR}")
    assert response.status_code == 400
    body = response.json()
    assert "'quotes'" in str(body)
    assert "funding, open-interest, trades, books" in str(body)
    upper = await client.get(f"/coverage/TRADES/{PAIR}", params=DAY)
    assert upper.status_code == 200


async def test_the_openapi_types_the_route(client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    route = schema["paths"]["/coverage/{dataset}/{exchange}/{coin}/{quote}/{market_type}"]
    parameters = {p["name"]: p for p in route["get"]["parameters"]}
    enum = parameters["dataset"]["schema"]["enum"]
    assert enum == ["funding", "open-interest", "trades", "books"]
    ok = route["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    day = schema["components"]["schemas"][ok.rsplit("/", 1)[1]]["properties"]["data"]
    fields = schema["components"]["schemas"][day["items"]["$ref"].rsplit("/", 1)[1]]
    assert fields["properties"]["integrity_gap_minutes"]["type"] == "integer"
