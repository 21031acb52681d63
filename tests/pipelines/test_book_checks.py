"""The order-book checks on `live_books` over a real PostgreSQL: a clean day passes both; a
crossed book the collector saw fails `live_books_never_crossed`; sequence gaps, resyncs and
a `books` outage are reported by `live_books_integrity_gaps` (a warning) with their counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import dagster as dg

from kirby_core.catalog import TradingPairKey, load_catalog
from kirby_core.db import books, catalog_store
from kirby_core.timeutil import floor_time
from kirby_pipelines.defs.live.assets import live_books
from kirby_pipelines.defs.live.checks import live_books_integrity_gaps, live_books_never_crossed
from tests.conftest import REPO
from tests.pipelines.conftest import check_results, empty_databases, metadata_values, run_async

BYBIT_BTC = "BTC@bybit/USDT/perps"
OKX_BTC = "BTC@okx/USDT/perps"


async def _plant(url: str, minute: datetime) -> None:
    """Two samples a pair; Bybit's book clean; OKX's with two gaps and a resync in one minute,
    a crossed book seen the next, and a three-minute books outage."""
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / "starlistings.yaml"))
        bybit = await catalog_store.get_trading_pair(
            conn, TradingPairKey("bybit", "BTC", "USDT", "perps")
        )
        okx = await catalog_store.get_trading_pair(
            conn, TradingPairKey("okx", "BTC", "USDT", "perps")
        )
        level = ((Decimal("100.5"), Decimal("2")),), ((Decimal("100.6"), Decimal("1")),)
        written = await books.write_books(
            conn,
            [
                books.BookRow(pair.id, minute + timedelta(seconds=s), s, *level)
                for pair in (bybit, okx)
                for s in (0, 1)
            ],
        )
        assert written.written == 4
        await books.write_book_integrity(
            conn,
            [
                books.IntegrityRow(bybit.id, minute, 120, 0, 0, 0, 0),
                books.IntegrityRow(okx.id, minute, 100, 2, 1, 1500, 0),
                books.IntegrityRow(okx.id, minute + timedelta(minutes=1), 90, 0, 1, 800, 1),
            ],
        )
        await conn.execute(
            "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
            " VALUES ('books', $1, $2, $3, 'test')",
            okx.id,
            minute + timedelta(minutes=2),
            minute + timedelta(minutes=5),
        )
    finally:
        await conn.close()


def test_book_checks_report_crossed_books_and_integrity_gap_minutes(
    database_urls, instance: dg.DagsterInstance, resources: dict
) -> None:
    minute = floor_time(datetime.now(UTC), "1d") + timedelta(hours=1)  # today, any time
    day = minute.date()
    try:
        run_async(_plant(database_urls.realtime, minute))

        run = dg.materialize(
            [live_books, live_books_never_crossed, live_books_integrity_gaps],
            instance=instance,
            resources=resources,
            selection=dg.AssetSelection.checks(live_books_never_crossed, live_books_integrity_gaps),
        )

        found = check_results(run)
        crossed = found["live_books_never_crossed"]
        gaps = found["live_books_integrity_gaps"]
        assert not crossed.passed and crossed.severity == dg.AssetCheckSeverity.ERROR
        crossed_meta = metadata_values(crossed.metadata)
        assert crossed_meta["failed_partitions"] == [f"{day}|{OKX_BTC}"]
        assert (crossed_meta["samples"], crossed_meta["crossed_seen_by_collector"]) == (4, 1)
        assert not gaps.passed and gaps.severity == dg.AssetCheckSeverity.WARN
        gap_meta = metadata_values(gaps.metadata)
        assert gap_meta["failed_partitions"] == [f"{day}|{OKX_BTC}"]
        assert {k: gap_meta[k] for k in ("gap_minutes", "gaps", "resyncs", "outage_minutes")} == {
            "gap_minutes": 2,
            "gaps": 2,
            "resyncs": 2,
            "outage_minutes": 3,
        }
        assert gap_meta["partitions"] == 2  # Bybit's clean day is reported, passing
    finally:
        empty_databases(database_urls)
