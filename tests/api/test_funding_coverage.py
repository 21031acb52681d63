"""Funding coverage counts settled hours: a backfilled day reads 24 of 24, not 24 of 1440."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.db.readers import expected_rows
from kirby_core.db.writer import upsert_funding_rates
from kirby_core.models import FundingRateRow
from tests.api.conftest import T0

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
    ("dataset", "interval", "now", "expected"),
    [
        # a whole past day
        ("funding_rates", "1m", datetime(2024, 5, 3, tzinfo=UTC), 24),
        ("candles", "1m", datetime(2024, 5, 3, tzinfo=UTC), 1440),
        ("candles", "4h", datetime(2024, 5, 3, tzinfo=UTC), 6),
        ("open_interest", "1m", datetime(2024, 5, 3, tzinfo=UTC), 1440),
        # 10:00:30: the 10:00 settlement is not in yet; the 09:59 candle has closed
        ("funding_rates", "1m", datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), 10),
        ("funding_rates", "1m", datetime(2024, 5, 1, 10, 1, tzinfo=UTC), 11),
        ("candles", "1m", datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), 600),
        ("candles", "1d", datetime(2024, 5, 1, 23, 59, tzinfo=UTC), 0),
    ],
)
def test_expected_rows(dataset: str, interval: str, now: datetime, expected: int) -> None:
    assert expected_rows(dataset, interval, T0, T0 + timedelta(days=1), now) == expected


async def test_status_counts_funding_in_settled_hours(client, catalog) -> None:
    body = (await client.get("/status.json")).json()
    coverage = {(c["dataset"], c["series"]): c for c in body["coverage"]}
    funding = coverage[("funding_rates", "hyperliquid/BTC/USD/perps")]
    assert funding["interval"] == "1h"
    yesterday = funding["days"][-2]
    assert (yesterday["expected"], yesterday["status"]) == (24, "missing")
