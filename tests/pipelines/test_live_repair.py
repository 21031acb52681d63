"""Repair of today's outages: `live_gap_repair` turns an outage of the day under way that has
ended (and settled) into a `live_repair` run on its exchange, which refetches exactly its
window from the simulator through the backfill functions, records the window's report, and
leaves every slot of the outage present, unavailable at source or without trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import dagster as dg
import pytest

from kirby_core.catalog import StarlistingKey, TradingPairKey, load_catalog
from kirby_core.db import catalog_store, coverage
from kirby_core.timeutil import floor_time
from kirby_pipelines import automation, live_repair
from kirby_pipelines.automation import RecordedOutage
from kirby_pipelines.catalogs import read_series, register
from kirby_pipelines.defs.repair.jobs import live_repair_job
from kirby_pipelines.defs.repair.sensors import live_gap_repair
from kirby_pipelines.runs import EXCHANGE_TAG
from tests.conftest import REPO
from tests.pipelines.conftest import empty_databases, query, run_async, tick

BYBIT_BTC_1M = "BTC@bybit/USDT/perps/1m"
BYBIT_BTC = "BTC@bybit/USDT/perps"
HYPERLIQUID_BTC = "BTC@hyperliquid/USD/perps"
SETTLE = timedelta(minutes=2)


def outage(id_: int, series: str, start: datetime, end: datetime) -> RecordedOutage:
    return RecordedOutage(id_, "candles", series, start, end, series_id=id_)


def test_an_outage_waits_until_it_has_settled_and_past_days_are_left_to_gap_repair() -> None:
    now = datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC)
    fresh = outage(1, BYBIT_BTC_1M, now - timedelta(minutes=9), now - timedelta(minutes=1))
    settled = outage(2, BYBIT_BTC_1M, now - timedelta(minutes=30, seconds=20), now - SETTLE)
    past = outage(3, BYBIT_BTC_1M, now - timedelta(days=2), now - timedelta(days=1, hours=13))
    across = outage(4, BYBIT_BTC_1M, now - timedelta(hours=13), now - timedelta(hours=11))

    requests, cursor, notes = live_repair.live_repairs(
        live_repair.LiveRepairCursor(), [fresh, settled, past, across], now, SETTLE
    )

    assert notes == []
    [request] = requests
    assert (request.job_name, request.tags[EXCHANGE_TAG]) == ("live_repair", "bybit")
    windows = request.run_config["ops"][live_repair.OP]["config"]["windows"]
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    assert [(w["outage_id"], w["start"], w["end"]) for w in windows] == [
        (2, "2026-12-07T11:30:00+00:00", "2026-12-07T11:59:00+00:00"),  # whole minutes
        (4, midnight.isoformat(), "2026-12-07T01:01:00+00:00"),  # today's part only
    ]
    assert (cursor.outage_id, [o["id"] for o in cursor.waiting]) == (4, [1])

    # two minutes on, the waiting one is requested from the cursor alone
    later, cursor, _ = live_repair.live_repairs(cursor, [], now + timedelta(minutes=2), SETTLE)
    assert [
        w["outage_id"] for w in later[0].run_config["ops"][live_repair.OP]["config"]["windows"]
    ] == [1]
    assert cursor.waiting == []


def test_an_outage_is_repaired_once_the_exchange_serves_all_of_its_window() -> None:
    end = datetime(2026, 12, 7, 12, 1, tzinfo=UTC)
    start = end - timedelta(minutes=5)
    interest = RecordedOutage(1, "open_interest", BYBIT_BTC, start, end, 1)
    quarter = RecordedOutage(2, "candles", "BTC@bybit/USDT/perps/15m", start, end, 2)
    minutes = RecordedOutage(3, "funding_rates", BYBIT_BTC, start, end, 3)

    def ready(outage: RecordedOutage) -> datetime:
        window = live_repair.window_of(outage, end)
        assert window is not None
        return live_repair.ready_at(outage, window, SETTLE)

    # the 12:00 point of Bybit's 5-minute history is served from 12:05
    assert ready(interest) == datetime(2026, 12, 7, 12, 5, tzinfo=UTC)
    # the 12:00 quarter-hour candle closes at 12:15
    assert ready(quarter) == datetime(2026, 12, 7, 12, 15, tzinfo=UTC)
    assert ready(minutes) == end + SETTLE


async def _plant(url: str, start: datetime, end: datetime) -> dict[str, int]:
    """Outages of today on Bybit BTC perps (1m candles, funding, open interest, trades) and
    Hyperliquid BTC open interest (no history anywhere); their ids by name."""
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / "starlistings.yaml"))
        star = await catalog_store.get_starlisting(
            conn, StarlistingKey("bybit", "BTC", "USDT", "perps", "1m")
        )
        bybit = await catalog_store.get_trading_pair(
            conn, TradingPairKey("bybit", "BTC", "USDT", "perps")
        )
        hyperliquid = await catalog_store.get_trading_pair(
            conn, TradingPairKey("hyperliquid", "BTC", "USD", "perps")
        )
        rows = {
            "candles": ("candles", star.id),
            "funding": ("funding_rates", bybit.id),
            "open_interest": ("open_interest", bybit.id),
            "trades": ("trades", bybit.id),
            "hyperliquid_oi": ("open_interest", hyperliquid.id),
        }
        ids = {}
        for name, (dataset, series_id) in rows.items():
            ids[name] = await conn.fetchval(
                "INSERT INTO collection_outages (dataset, series_id, start_time, end_time,"
                " reason) VALUES ($1, $2, $3, $4, 'test') RETURNING id",
                dataset,
                series_id,
                start,
                end,
            )
        return ids
    finally:
        await conn.close()


async def _classify(url: str, ids: dict[str, int]) -> dict[str, coverage.ClassifiedOutage]:
    conn = await asyncpg.connect(url)
    try:
        found = {}
        for name, id_ in ids.items():
            row = await conn.fetchrow(
                "SELECT dataset, series_id FROM collection_outages WHERE id = $1", id_
            )
            found[name] = await coverage.classify_outage(
                conn, id_, row["dataset"], row["series_id"]
            )
        return found
    finally:
        await conn.close()


def test_todays_bybit_outage_is_repaired_by_the_run_the_sensor_requests(
    database_urls, instance: dg.DagsterInstance, resources: dict
) -> None:
    now = datetime.now(UTC)
    # ended and settled (2 minutes), its last 5-minute open-interest point published
    end = floor_time(now - timedelta(minutes=3), "5m")
    start = end - timedelta(minutes=10)
    if start < floor_time(now, "1d"):
        pytest.skip("needs ten minutes of today that have ended: too close to midnight")
    url = database_urls.realtime
    try:
        ids = run_async(_plant(url, start, end))
        register(instance, run_async(read_series(url, "realtime")))
        before = run_async(_classify(url, ids))
        assert {n: c.collector_outage for n, c in before.items()} == dict.fromkeys(ids, 10)

        result = tick(live_gap_repair, instance, resources)

        by_exchange = {r.tags[EXCHANGE_TAG]: r for r in result.run_requests}
        assert sorted(by_exchange) == ["bybit", "hyperliquid"]
        for request in result.run_requests:
            run = live_repair_job.execute_in_process(
                run_config=request.run_config,
                instance=instance,
                resources=resources,
                tags=request.tags,
            )
            assert run.success

        candles = query(
            url,
            "SELECT count(*) AS n FROM candles WHERE starlisting_id = (SELECT series_id"
            " FROM collection_outages WHERE id = $1) AND time >= $2 AND time < $3",
            ids["candles"],
            start,
            end,
        )
        assert candles[0]["n"] == 10  # the window, refetched from the simulator's Bybit
        after = run_async(_classify(url, ids))
        assert all(c.closed for c in after.values()), after
        assert (after["candles"].present, after["candles"].unavailable_at_source) == (10, 0)
        # no exchange serves funding or open interest per minute: those minutes end
        # unavailable at source, except the 5-minute points of Bybit's history
        assert after["funding"].unavailable_at_source + after["funding"].present == 10
        assert after["funding"].present == sum(
            1
            for m in range(10)
            if (start + timedelta(minutes=m)).hour % 8 == 0
            and (start + timedelta(minutes=m)).minute == 0
        )
        assert (after["open_interest"].present, after["open_interest"].unavailable_at_source) == (
            2,
            8,
        )
        assert after["hyperliquid_oi"].unavailable_at_source == 10
        # Bybit keeps no trade history: its trades minutes are unavailable at source
        assert after["trades"].unavailable_at_source == 10
        reports = query(
            url,
            "SELECT dataset, unavailable_start, unavailable_end FROM backfill_reports"
            " WHERE day = $1 ORDER BY dataset",
            start.date(),
        )
        assert {r["dataset"] for r in reports} == {
            "candles",
            "funding_rates",
            "open_interest",
            "trades",
        }

        again = tick(live_gap_repair, instance, resources, result.cursor)
        assert again.run_requests == []

        # after midnight, gap_repair's waiting days: Hyperliquid's open interest has nothing
        # repairable (none served); Bybit's candle day still misses the minutes no collector
        # wrote in this test (unexplained), so it gets its whole-day backfill
        day = start.date()
        waiting = [
            ("open_interest", HYPERLIQUID_BTC, f"{day}"),
            ("candles", BYBIT_BTC_1M, f"{day}"),
        ]
        tomorrow = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        settled = run_async(automation.settled_pending(url, waiting, tomorrow))
        assert settled == {("open_interest", HYPERLIQUID_BTC, day)}
    finally:
        empty_databases(database_urls)
