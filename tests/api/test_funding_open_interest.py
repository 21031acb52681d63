"""GET /funding and /open-interest: trading-pair series, settled vs predicted funding."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq

from kirby_core.db.writer import upsert_funding_rates, upsert_open_interest
from kirby_core.models import FundingRateRow, OpenInterestRow
from tests.api.conftest import T0

FUNDING = "/funding/hyperliquid/BTC/USD/perps"
OI = "/open-interest/hyperliquid/BTC/USD/perps"


async def test_funding_keeps_settled_and_predicted_apart(client, conn, catalog) -> None:
    pair = catalog["BTC"]
    await upsert_funding_rates(
        conn,
        [
            # the live feed at 00:00 and 00:01 (the running rate of the hour) ...
            FundingRateRow(
                pair,
                T0,
                predicted_funding_rate=Decimal("0.0000125"),
                premium=Decimal("-0.0003928716"),
                mark_price=Decimal("64213.5"),
                oracle_price=Decimal("64220.0"),
                mid_price=Decimal("64213.55"),
                next_funding_time=T0 + timedelta(hours=1),
            ),
            FundingRateRow(
                pair, T0 + timedelta(minutes=1), predicted_funding_rate=Decimal("0.0000130")
            ),
        ],
    )
    # ... and the backfill's settled rate for the 00:00 hour, which overwrites nothing
    await upsert_funding_rates(
        conn,
        [
            FundingRateRow(
                pair,
                T0,
                settled_funding_rate=Decimal("0.0000100"),
                settled_premium=Decimal("-0.0004"),
            )
        ],
    )
    response = await client.get(FUNDING)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == [
        {
            "time": "2024-05-01T00:00:00Z",
            "settled_funding_rate": "0.0000100",
            "settled_premium": "-0.0004",
            "predicted_funding_rate": "0.0000125",
            "premium": "-0.0003928716",
            "mark_price": "64213.5",
            "oracle_price": "64220.0",
            "mid_price": "64213.55",
            "next_funding_time": "2024-05-01T01:00:00Z",
        },
        {
            "time": "2024-05-01T00:01:00Z",
            "settled_funding_rate": None,
            "settled_premium": None,
            "predicted_funding_rate": "0.0000130",
            "premium": None,
            "mark_price": None,
            "oracle_price": None,
            "mid_price": None,
            "next_funding_time": None,
        },
    ]
    meta = body["metadata"]
    assert meta["series"] == "hyperliquid/BTC/USD/perps"
    assert meta["trading_pair_id"] == pair
    assert "interval" not in meta and "starlisting_id" not in meta
    assert "paid for the hour" in meta["columns"]["settled_funding_rate"]
    assert "running (predicted)" in meta["columns"]["predicted_funding_rate"]


async def test_funding_parquet_says_which_rate_is_which(client, conn, catalog) -> None:
    await upsert_funding_rates(
        conn, [FundingRateRow(catalog["BTC"], T0, predicted_funding_rate=Decimal("0.00001"))]
    )
    response = await client.get(FUNDING, params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(response.content))
    notes = json.loads(table.schema.metadata[b"kirby.columns"])
    assert set(notes) == {"settled_funding_rate", "predicted_funding_rate"}
    assert table.column("predicted_funding_rate").to_pylist() == ["0.00001"]
    assert table.column("settled_funding_rate").to_pylist() == [None]


async def test_open_interest_range_and_other_pair_apart(client, conn, catalog) -> None:
    rows = [
        OpenInterestRow(
            catalog["BTC"],
            T0 + timedelta(minutes=m),
            Decimal(f"{1000 + m}.5"),
            Decimal(f"{64000000 + m}.25"),
            Decimal("12.000"),
            Decimal("770000"),
        )
        for m in range(10)
    ]
    await upsert_open_interest(conn, [*rows, OpenInterestRow(catalog["SOL"], T0, Decimal(1))])
    body = (await client.get(OI, params={"start_time": "2024-05-01T00:03:00Z", "limit": 2})).json()
    assert body["data"] == [
        {
            "time": "2024-05-01T00:03:00Z",
            "open_interest": "1003.5",
            "notional": "64000003.25",
            "day_base_volume": "12.000",
            "day_notional_volume": "770000",
        },
        {
            "time": "2024-05-01T00:04:00Z",
            "open_interest": "1004.5",
            "notional": "64000004.25",
            "day_base_volume": "12.000",
            "day_notional_volume": "770000",
        },
    ]
    assert body["metadata"]["columns"]["open_interest"] == "in coins (base asset)"
    csv = (await client.get(OI, params={"format": "csv", "limit": 1})).text
    assert csv.splitlines() == [
        "time,open_interest,notional,day_base_volume,day_notional_volume",
        "2024-05-01T00:09:00Z,1009.5,64000009.25,12.000,770000",
    ]


async def test_unknown_and_inactive_pairs(api, conn, catalog) -> None:
    await conn.execute(
        "UPDATE starlistings SET active = false WHERE trading_pair_id = $1", catalog["SOL"]
    )
    await conn.execute("UPDATE trading_pairs SET active = false WHERE id = $1", catalog["SOL"])
    async with api(api_auth_enabled=False) as client:
        unknown = await client.get("/funding/hyperliquid/ETH/USD/perps")
        inactive = await client.get("/open-interest/hyperliquid/SOL/USD/perps")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == (
        "unknown trading pair hyperliquid/ETH/USD/perps; GET /starlistings lists them"
    )
    assert inactive.status_code == 409
    assert inactive.json()["message"].startswith(
        "trading pair hyperliquid/SOL/USD/perps is inactive"
    )
