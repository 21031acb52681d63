"""/metrics on the real app and database: the collector's heartbeat and outages, per exchange,
and the data's freshness, read from the database at each scrape."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from kirby_core.timeutil import floor_time
from tests.api.conftest import T0, write_candles
from tests.ops.conftest import plant_backup, plant_heartbeat

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_collector_gauges_come_from_the_newest_heartbeat(api, conn, catalog) -> None:
    now = datetime.now(UTC)
    await plant_heartbeat(
        conn,
        now - timedelta(seconds=30),
        state="degraded",
        last_message_at=now - timedelta(seconds=40),
        covered_through=now - timedelta(seconds=100),
        reconnects=4,
        buffer_sizes={"candles": 7, "frames": 1},
    )
    await conn.executemany(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ($1, $2, $3, $4, 'test')",
        [
            ("candles", catalog["BTC/1m"], T0, T0 + timedelta(minutes=2)),
            ("candles", catalog["SOL/15m"], T0, T0 + timedelta(minutes=1)),
            ("funding_rates", catalog["BTC"], T0, T0 + timedelta(minutes=5)),
        ],
    )
    async with api(api_auth_enabled=False) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    found = samples(response.text)
    exchange = {"exchange": "hyperliquid"}
    assert 30 <= value(found, "kirby_collector_heartbeat_age_seconds", **exchange) < 90
    assert 40 <= value(found, "kirby_collector_last_message_age_seconds", **exchange) < 100
    assert 100 <= value(found, "kirby_collector_lag_seconds", **exchange) < 160
    states = {
        state: value(found, "kirby_collector_state", state=state, **exchange)
        for state in ("starting", "running", "degraded", "stopped")
    }
    assert states == {"starting": 0.0, "running": 0.0, "degraded": 1.0, "stopped": 0.0}
    assert value(found, "kirby_collector_reconnects_total", **exchange) == 4
    assert value(found, "kirby_collector_dropped_rows_total", **exchange) == 2
    assert value(found, "kirby_collector_refused_rows_total", **exchange) == 3
    assert value(found, "kirby_collector_buffered_rows", buffer="candles", **exchange) == 7
    assert value(found, "kirby_collector_buffered_rows", buffer="frames", **exchange) == 1
    candles = {"dataset": "candles", **exchange}
    funding = {"dataset": "funding_rates", **exchange}
    assert value(found, "kirby_collector_outages_total", **candles) == 2
    assert value(found, "kirby_collector_outage_seconds_total", **candles) == 180
    assert value(found, "kirby_collector_outages_total", **funding) == 1
    assert value(found, "kirby_collector_outage_seconds_total", **funding) == 300
    assert value(found, "kirby_api_database_up") == 1
    assert value(found, "kirby_api_stream_stale_after_seconds") == 120  # the default setting


async def test_without_a_heartbeat_the_collector_series_are_absent(api, conn, catalog) -> None:
    async with api(api_auth_enabled=False) as client:
        found = samples((await client.get("/metrics")).text)
    assert value(found, "kirby_api_database_up") == 1
    assert not [name for name, _ in found if name.startswith("kirby_collector_")]


async def test_data_freshness_is_read_at_each_scrape(
    api, conn: asyncpg.Connection, catalog
) -> None:
    """No /health call and no notification: the scrape itself reads the newest rows."""
    now = datetime.now(UTC)
    current = floor_time(now, "1m")
    start = current - timedelta(minutes=10)
    await write_candles(conn, catalog["BTC/1m"], range(6), start=start)  # newest: 5 min behind
    async with api(api_auth_enabled=False) as client:
        found = samples((await client.get("/metrics")).text)
    series = {"dataset": "candles", "series": "hyperliquid/BTC/USD/perps/1m"}
    newest = start + timedelta(minutes=5)
    behind = value(found, "kirby_api_data_behind_seconds", **series)
    assert behind in {(current - newest).total_seconds(), (current - newest).total_seconds() + 60}
    assert value(found, "kirby_api_data_age_seconds", **series) >= (now - newest).total_seconds()


async def test_a_failing_database_is_reported_and_the_collector_series_go(
    api, conn: asyncpg.Connection, catalog
) -> None:
    """Unknown is not zero: while the database fails, /metrics still answers, says the
    database is down, and reports no collector series rather than stale ones."""
    await plant_heartbeat(conn, datetime.now(UTC))
    async with api(api_auth_enabled=False) as client:
        before = samples((await client.get("/metrics")).text)
        for table in ("stream_heartbeats", "collection_outages"):
            await conn.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
            try:
                response = await client.get("/metrics")
            finally:
                await conn.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
            assert response.status_code == 200, table
            during = samples(response.text)
            assert value(during, "kirby_api_database_up") == 0, table
            assert not [name for name, _ in during if name.startswith("kirby_collector_")], table
        after = samples((await client.get("/metrics")).text)
    assert value(before, "kirby_collector_state", exchange="hyperliquid", state="running") == 1
    assert value(after, "kirby_api_database_up") == 1
    assert value(after, "kirby_collector_state", exchange="hyperliquid", state="running") == 1


async def test_backup_age_comes_from_the_newest_manifest(api, tmp_path: Path) -> None:
    """Each database's newest complete backup (one with a manifest) in the backup location;
    a database without one reports nothing, and a later backup moves the gauge."""
    location = tmp_path / "backups"
    older = datetime(2026, 12, 1, 0, 45, tzinfo=UTC)
    newer = datetime(2026, 12, 4, 0, 46, tzinfo=UTC)
    plant_backup(location, "realtime", older)
    plant_backup(location, "realtime", newer)
    (location / "training-2026-12-05.dump").write_bytes(b"PGDMP")  # no manifest: incomplete
    name = "kirby_backup_last_success_timestamp_seconds"
    async with api(
        api_auth_enabled=False, backup_url=str(location), api_backup_watch_seconds=0.05
    ) as client:
        found: Samples = {}
        for _ in range(200):  # the watch reads the location in a worker thread
            found = samples((await client.get("/metrics")).text)
            if (name, (("database", "realtime"),)) in found:
                break
            await asyncio.sleep(0.05)
        assert value(found, name, database="realtime") == newer.timestamp()
        assert not [
            key for key in found if key[0] == name and key[1] != (("database", "realtime"),)
        ]
        latest = datetime(2026, 12, 5, 0, 45, tzinfo=UTC)
        plant_backup(location, "training", latest)
        for _ in range(200):
            found = samples((await client.get("/metrics")).text)
            if (name, (("database", "training"),)) in found:
                break
            await asyncio.sleep(0.05)
        assert value(found, name, database="training") == latest.timestamp()
