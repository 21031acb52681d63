"""Which days a backfill is scheduled for: what each series' exchange declares it still serves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kirby_pipelines.runs import still_served

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
DAYS = [date(2026, 3, 9) - timedelta(days=i) for i in range(400)]
"""Yesterday and the 399 days before it, newest first."""


@pytest.mark.parametrize(
    ("asset", "series", "oldest_day"),
    [
        # Hyperliquid keeps its latest 5000 candles: 1m reaches back 3.47 days...
        ("candles", "BTC@hyperliquid/USD/perps/1m", date(2026, 3, 7)),
        # ...15m 52 days, 1h 208 days (from the hour's floor, 12:00)...
        ("candles", "BTC@hyperliquid/USD/perps/15m", date(2026, 1, 17)),
        ("candles", "BTC@hyperliquid/USD/perps/1h", date(2025, 8, 14)),
        # ...and 1d longer than asked for; its settled funding and Binance's candles: all.
        ("candles", "BTC@hyperliquid/USD/perps/1d", DAYS[-1]),
        ("funding_rates", "BTC@hyperliquid/USD/perps", DAYS[-1]),
        ("training_candles", "BTC@binance/USDT/perps/1m", DAYS[-1]),
        ("training_candles", "ETH@binance/USDT/spot/1m", DAYS[-1]),
    ],
)
def test_still_served_asks_the_series_exchange(asset: str, series: str, oldest_day: date) -> None:
    served = still_served(asset, series, DAYS, NOW)
    assert served == [d for d in DAYS if d >= oldest_day]
