"""JSON pages are encoded by PostgreSQL: byte for byte what msgspec makes of the same rows.

Every kind of value is covered: NULLs in each nullable column, a missing trade count,
exponent-free decimal text with trailing zeros, and a timestamp with microseconds.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest

from kirby_api.datasets import SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST, ServedDataset
from kirby_core.db.writer import upsert_candles, upsert_funding_rates, upsert_open_interest
from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow
from tests.api.conftest import T0

PATHS = {
    SERVED_CANDLES.name: "/candles/hyperliquid/BTC/USD/perps/1m",
    SERVED_FUNDING.name: "/funding/hyperliquid/BTC/USD/perps",
    SERVED_OPEN_INTEREST.name: "/open-interest/hyperliquid/BTC/USD/perps",
}


async def _write(conn, catalog) -> None:
    star, pair = catalog["BTC/1m"], catalog["BTC"]
    one = Decimal("1.50")
    await upsert_candles(
        conn,
        [
            CandleRow(star, T0, one, Decimal("2.000"), Decimal("1"), one, Decimal("0"), 7),
            CandleRow(star, T0 + timedelta(minutes=1), one, one, one, one, Decimal("3.1"), None),
        ],
    )
    await upsert_funding_rates(
        conn,
        [
            FundingRateRow(
                pair,
                T0,
                predicted_funding_rate=Decimal("-0.0000125"),
                mark_price=Decimal("64213.50"),
                next_funding_time=T0 + timedelta(hours=1, microseconds=250),
            ),
            FundingRateRow(pair, T0 + timedelta(minutes=1), settled_funding_rate=Decimal("1E-7")),
        ],
    )
    await upsert_open_interest(
        conn,
        [
            OpenInterestRow(pair, T0, Decimal("12.5"), None, Decimal("0.000"), None),
            OpenInterestRow(pair, T0 + timedelta(minutes=1)),
        ],
    )


@pytest.mark.parametrize(
    "dataset", [SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST], ids=lambda d: d.name
)
@pytest.mark.parametrize("latest", [False, True], ids=["window", "latest"])
async def test_database_json_equals_msgspec(client, conn, catalog, dataset: ServedDataset, latest):
    await _write(conn, catalog)
    series = catalog["BTC/1m"] if dataset.per_starlisting else catalog["BTC"]
    records = await conn.fetch(
        f"SELECT {dataset.select_list} FROM {dataset.name}"
        f" WHERE {dataset.series_column} = $1 ORDER BY time",
        series,
    )
    expected = b",".join(msgspec.json.encode(dataset.row(*r)) for r in records)
    params = {} if latest else {"start_time": "2024-05-01T00:00:00Z"}

    body = (await client.get(PATHS[dataset.name], params=params)).content

    assert body.startswith(b'{"data":[' + expected + b'],"metadata":{')
    assert len(records) == 2


@pytest.mark.parametrize(
    "dataset", [SERVED_CANDLES, SERVED_FUNDING, SERVED_OPEN_INTEREST], ids=lambda d: d.name
)
async def test_database_json_ignores_the_session_time_zone(conn, catalog, dataset: ServedDataset):
    await _write(conn, catalog)
    series = catalog["BTC/1m"] if dataset.per_starlisting else catalog["BTC"]
    where = f"FROM {dataset.name} WHERE {dataset.series_column} = $1"
    records = await conn.fetch(f"SELECT {dataset.select_list} {where} ORDER BY time", series)
    expected = ",".join(msgspec.json.encode(dataset.row(*r)).decode() for r in records)
    async with conn.transaction():
        await conn.execute("SET LOCAL TIME ZONE 'America/New_York'; SET LOCAL DateStyle = 'SQL'")
        got = await conn.fetchval(
            f"SELECT string_agg({dataset.json_object}, ',' ORDER BY time) {where}", series
        )
    assert got == expected
