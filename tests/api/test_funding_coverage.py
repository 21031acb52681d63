"""Funding coverage counts the exchange's settlements: a backfilled Hyperliquid day reads 24
of 24 (hourly), a Bybit day 3 of 3 (every 8 h), not 24 of 1440 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.db.catalog_store import list_trading_pairs, sync_catalog
from kirby_core.db.readers import expected_rows
from kirby_core.db.writer import upsert_funding_rates
from kirby_core.models import FundingRateRow
from tests.api.conftest import T0
from tests.db.conftest import bybit_catalog

COVERAGE = "/coverage/funding/hyperliquid/BTC/USD/perps"


async def test_a_backfilled_day_of_settled_funding_is_complete(client, conn, catalog) -> None:
    pair = catalog["BTC"]
    settled = [
        FundingRateRow(pair, T0 + timedelta(hours=h), settled_funding_rate=Decimal("0.00001"))
        for h in range(24)
    ]
    live = [  # the next day: only the live feed's running rate, nothing settled yet
        FundingRateRow(
            pair, T0 + timedelta(days=1, minutes=m), predicted_funding_rate=Decimal("0.00001")
        )
        for m in range(60)
    ]
    await upsert_funding_rates(conn, settled + live)
    body = (
        await client.get(COVERAGE, params={"start_time": "2024-05-01", "end_time": "2024-05-02"})
    ).json()
    assert [
        (d["expected"], d["present"], d["completeness"], d["status"]) for d in body["data"]
    ] == [
        (24, 24, 1.0, "complete"),
        (24, 0, 0.0, "missing"),  # settled hours the funding backfill can still fetch
    ]
    assert body["metadata"]["interval"] == "1h"
    assert body["data"][1]["unavailable_at_source"] is False


@pytest.mark.parametrize(
    ("dataset", "interval", "now", "expected", "exchange"),
    [
        # a whole past day
        ("funding_rates", "1m", datetime(2024, 5, 3, tzinfo=UTC), 24, "hyperliquid"),
        ("funding_rates", "1m", datetime(2024, 5, 3, tzinfo=UTC), 3, "binance"),
        ("funding_rates", "1m", datetime(2024, 5, 3, tzinfo=UTC), 3, "bybit"),
        ("candles", "1m", datetime(2024, 5, 3, tzinfo=UTC), 1440, "hyperliquid"),
        ("candles", "4h", datetime(2024, 5, 3, tzinfo=UTC), 6, "hyperliquid"),
        ("open_interest", "1m", datetime(2024, 5, 3, tzinfo=UTC), 1440, "hyperliquid"),
        # 10:00:30: the 10:00 settlement is not in yet; the 09:59 candle has closed
        ("funding_rates", "1m", datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), 10, "hyperliquid"),
        ("funding_rates", "1m", datetime(2024, 5, 1, 10, 1, tzinfo=UTC), 11, "hyperliquid"),
        # 08:00:30: Binance's 08:00 settlement is not in yet; at 08:01 it is
        ("funding_rates", "1m", datetime(2024, 5, 1, 8, 0, 30, tzinfo=UTC), 1, "binance"),
        ("funding_rates", "1m", datetime(2024, 5, 1, 8, 1, tzinfo=UTC), 2, "binance"),
        ("candles", "1m", datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), 600, "hyperliquid"),
        ("candles", "1d", datetime(2024, 5, 1, 23, 59, tzinfo=UTC), 0, "hyperliquid"),
    ],
)
def test_expected_rows(
    dataset: str, interval: str, now: datetime, expected: int, exchange: str
) -> None:
    assert expected_rows(dataset, interval, exchange, T0, T0 + timedelta(days=1), now) == expected


async def test_status_counts_funding_in_settled_hours(client, catalog) -> None:
    body = (await client.get("/status.json")).json()
    coverage = {(c["dataset"], c["series"]): c for c in body["coverage"]}
    funding = coverage[("funding_rates", "hyperliquid/BTC/USD/perps")]
    assert funding["interval"] == "1h"
    yesterday = funding["days"][-2]
    assert (yesterday["expected"], yesterday["status"]) == (24, "missing")


async def test_bybit_funding_settles_every_8_hours_in_coverage(api, conn, catalog) -> None:
    await sync_catalog(conn, bybit_catalog())
    [pair] = [p for p in await list_trading_pairs(conn) if p.key.exchange == "bybit"]
    day = [T0 + timedelta(hours=h) for h in (0, 8, 16)]  # all 3 settlements
    await upsert_funding_rates(
        conn,
        [
            FundingRateRow(pair.id, t, settled_funding_rate=Decimal("0.0001"))
            for t in (*day, T0 + timedelta(days=1))  # the next day: 1 of 3
        ],
    )
    async with api(api_auth_enabled=False) as client:
        response = await client.get(
            "/coverage/funding/bybit/BTC/USDT/perps",
            params={"start_time": "2024-05-01", "end_time": "2024-05-02"},
        )
        status = (await client.get("/status.json")).json()
    body = response.json()
    assert body["metadata"]["interval"] == "8h"
    assert [(d["expected"], d["present"], d["missing"], d["status"]) for d in body["data"]] == [
        (3, 3, 0, "complete"),
        (3, 1, 2, "partial"),
    ]
    series = {(c["dataset"], c["series"]): c for c in status["coverage"]}
    assert series[("funding_rates", "bybit/BTC/USDT/perps")]["interval"] == "8h"
