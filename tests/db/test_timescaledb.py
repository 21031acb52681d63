"""TimescaleDB for real: chunk intervals, retention reconciled on migrate, the per-interval
delete job, and hot reads that exclude chunks.

These need a test server with timescaledb available and preloaded
(`KIRBY_TEST_DATABASE_URL`); elsewhere (the embedded server, CI) they skip, saying so.
Background jobs are not relied on: each job is run with `CALL run_job(id)`. They use a
scratch database of their own, so no policy ever touches the shared test databases.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import create_engine, pool

from kirby_api.datasets import SERVED_CANDLES
from kirby_api.market_data import _SQL, narrowed
from kirby_api.window import MAX_TIME, MIN_TIME, Window
from kirby_core.db import migrate, retention
from kirby_core.db.urls import sqlalchemy_url, with_database
from tests.cli.test_errors import kirby
from tests.conftest import _run

pytestmark = pytest.mark.usefixtures("needs_timescaledb")

NOW = datetime.now(UTC).replace(second=0, microsecond=0)

INSERT_CANDLES = """
INSERT INTO candles (starlisting_id, time, open, high, low, close, volume)
SELECT $1, t, 10, 11, 9, 10, 1 FROM generate_series($2::timestamptz, $3, $4::interval) t
"""


@pytest.fixture(scope="module")
def scratch(pg_server: str) -> Iterator[str]:
    """A migrated database of this module's own."""
    name = f"kirby_tsdb_test_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")
    asyncio.run(_run(admin, f'CREATE DATABASE "{name}"'))
    url = with_database(pg_server, name)
    migrate.upgrade(url)
    yield url
    asyncio.run(_run(admin, f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
async def conn(scratch: str) -> AsyncIterator[asyncpg.Connection]:
    """The scratch database, emptied and without retention afterwards."""
    connection = await asyncpg.connect(scratch)
    try:
        yield connection
    finally:
        migrate.upgrade(scratch)  # no retention asked: every policy and job removed
        await connection.execute(
            "TRUNCATE candles, funding_rates, open_interest, starlistings, trading_pairs,"
            " exchanges, coins, quote_currencies, market_types, intervals CASCADE"
        )
        await connection.close()


def _installed(url: str) -> retention.Installed:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return retention.installed(connection)
    finally:
        engine.dispose()


async def test_chunk_intervals_are_the_measured_ones(conn: asyncpg.Connection) -> None:
    intervals = dict(
        await conn.fetch(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
        )
    )
    assert intervals == {table: timedelta(days=30) for table in retention.DATASETS} | {
        # a day of trades is millions of rows; retention by day (books: likewise)
        "trades": timedelta(days=1),
        "books": timedelta(days=1),
    }


async def test_migrate_reconciles_retention_with_the_setting(
    conn: asyncpg.Connection, scratch: str
) -> None:
    first = retention.parse_retention(
        "candles:1m=7d,candles=365d,funding_rates=90d", "KIRBY_RETENTION"
    )
    migrate.upgrade(scratch, retention=first)
    installed = _installed(scratch)
    assert installed.tables == {"candles": 365, "funding_rates": 90}
    assert list(installed.delete_jobs.values()) == [{"1m": 7}]
    (job_id,) = installed.delete_jobs

    migrate.upgrade(scratch, retention=first)  # repeated: nothing changes
    assert _installed(scratch) == installed

    second = retention.parse_retention(
        "candles:1m=3d,candles:15m=30d,open_interest=5d", "KIRBY_RETENTION"
    )
    migrate.upgrade(scratch, retention=second)
    assert _installed(scratch) == retention.Installed(
        {"open_interest": 5}, {job_id: {"1m": 3, "15m": 30}}
    )

    migrate.upgrade(scratch)
    assert _installed(scratch) == retention.Installed({}, {})


async def test_kirby_db_migrate_applies_and_removes_the_setting(
    conn: asyncpg.Connection, scratch: str
) -> None:
    def migrate_with(**env: str) -> None:
        result = kirby("db", "migrate", "--database", "realtime", KIRBY_DATABASE_URL=scratch, **env)
        assert result.returncode == 0, result.stderr

    migrate_with(KIRBY_RETENTION="candles:1m=30d,open_interest=400d")
    installed = _installed(scratch)
    assert installed.tables == {"open_interest": 400}
    assert list(installed.delete_jobs.values()) == [{"1m": 30}]
    migrate_with()
    assert _installed(scratch) == retention.Installed({}, {})


async def test_the_interval_job_deletes_only_its_interval_even_compressed(
    conn: asyncpg.Connection, scratch: str, catalog: dict[str, int]
) -> None:
    old, recent = NOW - timedelta(days=100), NOW - timedelta(hours=2)
    for name, step in (("BTC/1m", timedelta(minutes=1)), ("BTC/15m", timedelta(minutes=15))):
        await conn.execute(INSERT_CANDLES, catalog[name], old, old + timedelta(hours=1), step)
        await conn.execute(INSERT_CANDLES, catalog[name], recent, recent + timedelta(hours=1), step)
    compressed = await conn.fetchval(
        "SELECT count(compress_chunk(c)) FROM show_chunks('candles', older_than => $1::interval) c",
        timedelta(days=30),
    )
    assert compressed >= 1

    migrate.upgrade(
        scratch, retention=retention.parse_retention("candles:1m=30d", "KIRBY_RETENTION")
    )
    (job_id,) = _installed(scratch).delete_jobs
    await conn.execute(f"CALL run_job({job_id})")

    counts = await conn.fetch(
        "SELECT starlisting_id, time >= $1 AS recent, count(*) FROM candles GROUP BY 1, 2",
        NOW - timedelta(days=30),
    )
    assert {(r[0], r[1]): r[2] for r in counts} == {
        (catalog["BTC/1m"], True): 61,
        (catalog["BTC/15m"], False): 5,
        (catalog["BTC/15m"], True): 5,
    }


async def test_a_table_policy_drops_old_chunks(
    conn: asyncpg.Connection, scratch: str, catalog: dict[str, int]
) -> None:
    pair = catalog["BTC"]
    for start in (NOW - timedelta(days=200), NOW - timedelta(hours=1)):
        await conn.execute(
            "INSERT INTO funding_rates (trading_pair_id, time, premium) SELECT $1, t, 0.1"
            " FROM generate_series($2::timestamptz, $2 + interval '30 minutes', '1 minute') t",
            pair,
            start,
        )
    migrate.upgrade(
        scratch, retention=retention.parse_retention("funding_rates=90d", "KIRBY_RETENTION")
    )
    job_id = await conn.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_retention' AND hypertable_name = 'funding_rates'"
    )
    await conn.execute(f"CALL run_job({job_id})")
    assert await conn.fetchval("SELECT min(time) FROM funding_rates") == NOW - timedelta(hours=1)
    assert await conn.fetchval("SELECT count(*) FROM funding_rates") == 31


def _chunks(plan: object) -> set[str]:
    """Names of the chunks a plan reads."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if str(plan.get("Relation Name", "")).startswith("_hyper_"):
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _chunks(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _chunks(value)
    return found


async def test_hot_reads_exclude_old_chunks(
    conn: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    star = catalog["BTC/1m"]
    # a year: a row every 6 hours, then the last 3000 minutes whole
    await conn.execute(INSERT_CANDLES, star, NOW - timedelta(days=365), NOW, timedelta(hours=6))
    await conn.execute(
        INSERT_CANDLES + " ON CONFLICT DO NOTHING",
        star,
        NOW - timedelta(minutes=2999),
        NOW,
        timedelta(minutes=1),
    )
    chunks = await conn.fetchval("SELECT count(*) FROM show_chunks('candles')")
    assert chunks >= 12
    sql = _SQL[SERVED_CANDLES.name]
    latest = Window(MIN_TIME, MAX_TIME, 1000, newest=True, open_ended=True)
    bounded = narrowed(latest, 60, datetime.now(UTC))
    assert bounded is not None

    async def read(query: str, *args: object) -> tuple[set[str], object]:
        (explained,) = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args))
        return _chunks(explained), await conn.fetchrow(query, *args)

    pruned, rows = await read(sql.newest_json, star, bounded.lower, bounded.upper, 1000)
    everything, same = await read(sql.newest_json, star, MIN_TIME, MAX_TIME, 1000)
    assert len(pruned) == 1 < chunks == len(everything)
    assert rows == same
    assert rows[0] == 1000

    since = NOW - timedelta(minutes=100)
    pruned, _ = await read(sql.latest_many_json, [star], 100, since)
    assert len(pruned) == 1
    pruned, _ = await read(sql.changed, [star], [NOW], NOW, NOW)
    assert len(pruned) == 1
    pruned, _ = await read(sql.since, [star], [since], 10, since)
    assert len(pruned) == 1
