import asyncio

import asyncpg
import pytest

from kirby_core.db import migrate
from kirby_core.db.urls import with_database
from tests.conftest import _run

CORE_TABLES = {  # revision 0001
    "exchanges",
    "coins",
    "quote_currencies",
    "market_types",
    "intervals",
    "trading_pairs",
    "starlistings",
    "candles",
    "funding_rates",
    "open_interest",
    "collection_outages",
    "stream_heartbeats",
    "alembic_version",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


@pytest.fixture
def scratch_url(pg_server: str):
    """An empty database of its own, since this test migrates up and down."""
    url = with_database(pg_server, "kirby_migration_test")
    admin = with_database(pg_server, "postgres")

    asyncio.run(
        _run(
            admin,
            'DROP DATABASE IF EXISTS "kirby_migration_test"',
            'CREATE DATABASE "kirby_migration_test"',
        )
    )
    yield url
    asyncio.run(_run(admin, 'DROP DATABASE "kirby_migration_test" WITH (FORCE)'))


async def test_upgrade_twice_is_a_no_op_and_downgrade_works(scratch_url: str) -> None:
    head = migrate.head_revision()
    assert migrate.current_revision(scratch_url) is None
    migrate.upgrade(scratch_url)
    assert migrate.current_revision(scratch_url) == head
    tables = await _tables(scratch_url)
    assert tables >= CORE_TABLES  # later revisions add tables of their own
    migrate.upgrade(scratch_url)  # nothing to do, nothing fails
    assert migrate.current_revision(scratch_url) == head
    assert await _tables(scratch_url) == tables
    migrate.downgrade(scratch_url)
    assert migrate.current_revision(scratch_url) is None
    assert await _tables(scratch_url) == {"alembic_version"}
    migrate.upgrade(scratch_url)
    assert await _tables(scratch_url) == tables


async def test_initial_revision_creates_the_core_schema(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0001")
    assert await _tables(scratch_url) == CORE_TABLES


@pytest.mark.usefixtures("needs_plain_postgres")
async def test_plain_postgres_gets_brin_indexes_and_exact_numeric(conn: asyncpg.Connection) -> None:
    indexes = {
        r["indexname"]
        for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING brin%'"
        )
    }
    assert indexes == {
        "ix_candles_time_brin",
        "ix_funding_rates_time_brin",
        "ix_open_interest_time_brin",
    }
    types = dict(
        await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'candles'"
        )
    )
    assert types["open"] == types["volume"] == "numeric"
    primary_key = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'candles_pkey'"
    )
    assert primary_key == 'PRIMARY KEY (starlisting_id, "time")'


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        (("100", "90", "95", "99", "1"), "candles_ohlc_consistent"),  # high < low
        (("100", "110", "95", "120", "1"), "candles_ohlc_consistent"),  # close above high
        (("100", "110", "95", "99", "-1"), "candles_volume_non_negative"),
        (("0", "1", "0", "0", "1"), "candles_price_positive"),
    ],
)
async def test_check_constraints_guard_the_table(
    conn: asyncpg.Connection, values: tuple[str, ...], constraint: str
) -> None:
    await conn.execute("""
        INSERT INTO exchanges (name) VALUES ('x'); INSERT INTO coins (symbol) VALUES ('C');
        INSERT INTO quote_currencies (symbol) VALUES ('Q');
        INSERT INTO market_types (name) VALUES ('perps');
        INSERT INTO intervals (name, seconds) VALUES ('1m', 60);
        INSERT INTO trading_pairs (exchange_id, coin_id, quote_currency_id, market_type_id)
            VALUES (1, 1, 1, 1);
        INSERT INTO starlistings (exchange_id, coin_id, quote_currency_id, market_type_id,
            interval_id, trading_pair_id) VALUES (1, 1, 1, 1, 1, 1);""")
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(
            "INSERT INTO candles VALUES (1, '2024-01-01', $1::numeric, $2::numeric, $3::numeric,"
            " $4::numeric, $5::numeric, 3)",
            *values,
        )
    assert caught.value.constraint_name == constraint


async def test_starlisting_must_match_its_trading_pair(conn: asyncpg.Connection) -> None:
    await conn.execute("""
        INSERT INTO exchanges (name) VALUES ('x'); INSERT INTO coins (symbol) VALUES ('A'), ('B');
        INSERT INTO quote_currencies (symbol) VALUES ('Q');
        INSERT INTO market_types (name) VALUES ('perps');
        INSERT INTO intervals (name, seconds) VALUES ('1m', 60);
        INSERT INTO trading_pairs (exchange_id, coin_id, quote_currency_id, market_type_id)
            VALUES (1, 1, 1, 1);""")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(  # coin B, but trading pair 1 is coin A
            "INSERT INTO starlistings (exchange_id, coin_id, quote_currency_id, market_type_id,"
            " interval_id, trading_pair_id) VALUES (1, 2, 1, 1, 1, 1)"
        )
