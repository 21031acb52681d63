"""Gap repair on five exchanges: each outage and failed completeness check becomes backfill
runs of its dataset's asset for exactly its (series, day) partitions, one exchange per run,
tagged with that exchange (what dagster.yaml queues one run at a time per)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg
import dagster as dg

from kirby_core.catalog import StarlistingKey, TradingPairKey, load_catalog
from kirby_core.db import catalog_store
from kirby_pipelines import automation
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.repair.sensors import gap_repair
from kirby_pipelines.partitions import STARLISTINGS, TRADING_PAIRS, name_of
from kirby_pipelines.runs import EXCHANGE_TAG, RANGE_END_TAG, RANGE_START_TAG, backfill_requests
from tests.conftest import REPO
from tests.pipelines.conftest import empty_databases, run_async, tick, yesterday

BYBIT_BTC_1M = "BTC@bybit/USDT/perps/1m"
OKX_BTC = "BTC@okx/USDT/perps"
BYBIT_BTC = "BTC@bybit/USDT/perps"
BYBIT_ETH = "ETH@bybit/USDT/perps"
HYPERLIQUID_BTC = "BTC@hyperliquid/USD/perps"


def requested(requests: list[dg.RunRequest]) -> list[tuple[str, str, str, str]]:
    """(asset, exchange tag, range start, range end) of each request, sorted."""
    return sorted(
        (
            r.asset_selection[0].to_user_string(),
            r.tags[EXCHANGE_TAG],
            r.tags[RANGE_START_TAG],
            r.tags[RANGE_END_TAG],
        )
        for r in requests
    )


def test_failed_checks_of_several_exchanges_become_one_run_per_exchange() -> None:
    now = datetime.now(UTC)
    # Bybit's two pairs and OKX's are neighbours in the partitions' order
    order = {
        name_of(STARLISTINGS): [],
        name_of(TRADING_PAIRS): [HYPERLIQUID_BTC, BYBIT_BTC, BYBIT_ETH, OKX_BTC],
        "training_starlistings": [],
    }
    day = yesterday() - timedelta(days=1)
    failed = [
        automation.FailedCheck(
            5,
            "open_interest_complete",
            "open_interest",
            tuple(f"{day}|{pair}" for pair in (BYBIT_BTC, BYBIT_ETH, OKX_BTC)),
        ),
        automation.FailedCheck(
            6, "funding_rates_settled_hourly", "funding_rates", (f"{day}|{HYPERLIQUID_BTC}",)
        ),
    ]

    lost = automation.RecordedOutage(3, "candles", "unknown-77", now, now, series_id=77)

    requests, cursor, notes = automation.repairs(
        automation.RepairCursor(), [lost], failed, order, now
    )

    assert requested(requests) == [
        ("funding_rates", "hyperliquid", f"{day}|{HYPERLIQUID_BTC}", f"{day}|{HYPERLIQUID_BTC}"),
        ("open_interest", "bybit", f"{day}|{BYBIT_BTC}", f"{day}|{BYBIT_BTC}"),
        ("open_interest", "bybit", f"{day}|{BYBIT_ETH}", f"{day}|{BYBIT_ETH}"),
        ("open_interest", "okx", f"{day}|{OKX_BTC}", f"{day}|{OKX_BTC}"),
    ]
    assert cursor.check_records == {"open_interest_complete": 5, "funding_rates_settled_hourly": 6}
    assert notes == ["outage 3: series id 77 is not in the catalog"]


def test_a_block_of_neighbouring_series_is_cut_at_each_exchange() -> None:
    order = [HYPERLIQUID_BTC, BYBIT_BTC, BYBIT_ETH, OKX_BTC]
    day = yesterday()
    requests = backfill_requests("funding_rates", order, [day], order=order, reason="daily")
    assert requested(requests) == [
        ("funding_rates", "bybit", f"{day}|{BYBIT_BTC}", f"{day}|{BYBIT_ETH}"),
        ("funding_rates", "hyperliquid", f"{day}|{HYPERLIQUID_BTC}", f"{day}|{HYPERLIQUID_BTC}"),
        ("funding_rates", "okx", f"{day}|{OKX_BTC}", f"{day}|{OKX_BTC}"),
    ]


async def _plant_outages(url: str) -> None:
    """Bybit BTC perps 1m candles out for half an hour yesterday, OKX BTC open interest for
    an hour two days ago, Hyperliquid BTC open interest (no history to refetch) yesterday."""
    conn = await asyncpg.connect(url)
    try:
        star = await catalog_store.get_starlisting(
            conn, StarlistingKey("bybit", "BTC", "USDT", "perps", "1m")
        )
        okx = await catalog_store.get_trading_pair(
            conn, TradingPairKey("okx", "BTC", "USDT", "perps")
        )
        hyperliquid = await catalog_store.get_trading_pair(
            conn, TradingPairKey("hyperliquid", "BTC", "USD", "perps")
        )
        noon = datetime.combine(yesterday(), time(12), UTC)
        rows = [
            ("candles", star.id, noon, noon + timedelta(minutes=30)),
            ("open_interest", okx.id, noon - timedelta(days=1), noon - timedelta(hours=23)),
            ("open_interest", hyperliquid.id, noon, noon + timedelta(minutes=10)),
        ]
        await conn.executemany(
            "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
            " VALUES ($1, $2, $3, $4, 'test')",
            rows,
        )
    finally:
        await conn.close()


def test_the_sensor_repairs_outages_on_each_exchange_with_its_asset(
    database_urls, instance, resources
) -> None:
    async def sync() -> None:
        conn = await asyncpg.connect(database_urls.realtime)
        try:
            catalog = load_catalog(REPO / "config" / "starlistings.yaml")
            await catalog_store.sync_catalog(conn, catalog)
        finally:
            await conn.close()

    run_async(sync())
    try:
        register(instance, run_async(read_series(database_urls.realtime, "realtime")))
        run_async(_plant_outages(database_urls.realtime))

        result = tick(gap_repair, instance, resources)

        day, before = yesterday(), yesterday() - timedelta(days=1)
        assert requested(result.run_requests) == [
            ("candles", "bybit", f"{day}|{BYBIT_BTC_1M}", f"{day}|{BYBIT_BTC_1M}"),
            ("open_interest", "okx", f"{before}|{OKX_BTC}", f"{before}|{OKX_BTC}"),
        ]
        assert all(r.tags["dagster/priority"] == "1" for r in result.run_requests)
        cursor = automation.RepairCursor.parse(result.cursor)
        assert (cursor.outage_id > 0, cursor.pending) == (True, [])
        # the next tick asks for nothing more
        again = tick(gap_repair, instance, resources, result.cursor)
        assert again.run_requests == []
    finally:
        empty_databases(database_urls)


def test_the_daily_trades_run_asks_only_for_pairs_whose_exchange_keeps_trade_history() -> None:
    binance, okx_spot = "BTC@binance/USDT/perps", "BTC@okx/USDT/spot"
    pairs = [binance, BYBIT_BTC, HYPERLIQUID_BTC, OKX_BTC, okx_spot]
    day = yesterday()
    when = datetime.combine(day + timedelta(days=1), time(0, 15), UTC)

    requests = automation.daily({"trades": pairs}, {name_of(TRADING_PAIRS): pairs}, day, when)

    # OKX serves the history of its spot trades only; Bybit and Hyperliquid none
    assert requested(requests) == [
        ("trades", "binance", f"{day}|{binance}", f"{day}|{binance}"),
        ("trades", "okx", f"{day}|{okx_spot}", f"{day}|{okx_spot}"),
    ]


def test_a_waiting_day_the_live_repair_closed_asks_for_no_backfill_after_midnight() -> None:
    order = {
        name_of(STARLISTINGS): [BYBIT_BTC_1M],
        name_of(TRADING_PAIRS): [BYBIT_BTC],
        "training_starlistings": [],
    }
    day = yesterday()  # today when the outages were recorded, complete now
    cursor = automation.RepairCursor(
        7, {}, [("candles", BYBIT_BTC_1M, day.isoformat()), ("funding_rates", BYBIT_BTC, f"{day}")]
    )
    closed = {("candles", BYBIT_BTC_1M, day)}

    requests, after, notes = automation.repairs(
        cursor, [], [], order, datetime.now(UTC), settled=closed
    )

    assert requested(requests) == [
        ("funding_rates", "bybit", f"{day}|{BYBIT_BTC}", f"{day}|{BYBIT_BTC}")
    ]
    assert notes == [f"{BYBIT_BTC_1M} {day}: its outages need no backfill any more"]
    assert after.pending == []
