"""The soak's closing stage (`bench.stream.soak.close_outages`): the run's outage rows go
through Kirby's live repair (`live_repairs` -> `repair_windows`) against the simulator;
a served window is refetched and its outage closed, a candle still open waits, and a books
outage is left out (no exchange serves book history)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bench.stream.soak import close_outages, print_closing
from kirby_core.catalog import StarlistingKey, TradingPairKey, load_catalog
from kirby_core.db import catalog_store
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_time
from tests.conftest import REPO
from tests.pipelines.conftest import empty_databases, run_async


async def _plant(url: str, start: datetime, end: datetime) -> dict[str, int]:
    """Outages of Bybit BTC perps over [start, end): its 1m and 4h candles, funding, and
    books; their ids by name."""
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / "starlistings.yaml"))
        stars = {
            interval: await catalog_store.get_starlisting(
                conn, StarlistingKey("bybit", "BTC", "USDT", "perps", interval)
            )
            for interval in ("1m", "4h")
        }
        pair = await catalog_store.get_trading_pair(
            conn, TradingPairKey("bybit", "BTC", "USDT", "perps")
        )
        rows = {
            "candles 1m": ("candles", stars["1m"].id),
            "candles 4h": ("candles", stars["4h"].id),
            "funding": ("funding_rates", pair.id),
            "books": ("books", pair.id),
        }
        return {
            name: await conn.fetchval(
                "INSERT INTO collection_outages (dataset, series_id, start_time, end_time,"
                " reason) VALUES ($1, $2, $3, $4, 'test') RETURNING id",
                dataset,
                series_id,
                start,
                end,
            )
            for name, (dataset, series_id) in rows.items()
        }
    finally:
        await conn.close()


def test_the_soak_closes_served_windows_and_lists_the_open_candles_and_books(
    database_urls, pipeline_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    end = floor_time(now, "1m") - timedelta(minutes=3)  # ended and settled (2 minutes)
    start = end - timedelta(minutes=5)
    if floor_time(start, "4h") != floor_time(now, "4h"):
        pytest.skip("needs eight minutes of the 4-hour candle under way: too close to its start")
    url = database_urls.realtime
    try:
        ids = run_async(_plant(url, start, end))

        closing = run_async(close_outages(url, pipeline_settings, wait=0))

        repaired = {r.window.outage_id: r for r in closing.repaired}
        assert sorted(repaired) == [ids["candles 1m"], ids["funding"]]
        assert closing.failed == {}
        candles = repaired[ids["candles 1m"]].classes
        assert (candles.present, candles.closed) == (5, True)
        funding = repaired[ids["funding"]].classes
        assert funding.closed and funding.present + funding.unavailable_at_source == 5
        # the 4h candle closes at the next 4-hour boundary: served only then
        assert closing.waiting == {ids["candles 4h"]: floor_time(end, "4h") + timedelta(hours=4)}
        assert closing.notes == [f"outage {ids['books']}: books has no history to refetch"]

        assert print_closing(closing) == (0, 0)  # none repaired left open, none left out
        table = capsys.readouterr().out
        assert "bybit       candles 1m" in table and "books" in table
    finally:
        empty_databases(database_urls)
