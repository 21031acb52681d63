"""The trade tape's storage for real: the writer (exact decimals, dedupe, bad rows), the daily
partitions, migration 0008 up and down, and retention dropping exactly the expired days.

Partition tests run on plain PostgreSQL (the embedded server, CI); the hypertable tests need
a test server with TimescaleDB (`KIRBY_TEST_DATABASE_URL`) and skip elsewhere, saying so.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import create_engine, pool

from kirby_core.db import daily_tables, migrate, retention, trades
from kirby_core.db.trades import TradeRow, write_trades
from kirby_core.db.urls import sqlalchemy_url, with_database
from kirby_core.errors import ConfigError
from tests.conftest import _run
from tests.db.test_migrations import _tables

NOW = datetime.now(UTC)
TODAY = NOW.date()
CATALOG = """
INSERT INTO exchanges (id, name) VALUES (1, 'bench');
INSERT INTO coins (id, symbol) VALUES (1, 'BTC');
INSERT INTO quote_currencies (id, symbol) VALUES (1, 'USD');
INSERT INTO market_types (id, name) VALUES (1, 'perps');
INSERT INTO trading_pairs (id, exchange_id, coin_id, quote_currency_id, market_type_id)
    VALUES (1, 1, 1, 1, 1);
"""


def trade(trade_id: str, time: datetime = NOW, **changes: object) -> TradeRow:
    row = TradeRow(1, time, trade_id, Decimal("97012.5"), Decimal("0.00012"), "buy")
    return row._replace(**changes)


@pytest.fixture
def scratch(pg_server: str) -> Iterator[str]:
    """A migrated database of this test's own (migrations and retention run on it)."""
    name = f"kirby_trades_test_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")
    asyncio.run(_run(admin, f'CREATE DATABASE "{name}"'))
    url = with_database(pg_server, name)
    migrate.upgrade(url)
    asyncio.run(_run(url, CATALOG))
    yield url
    asyncio.run(_run(admin, f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
async def conn(scratch: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(scratch)
    try:
        yield connection
    finally:
        await connection.close()


def _partition_days(url: str) -> list[date]:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return sorted(trades.TRADES_BY_DAY.existing(connection))
    finally:
        engine.dispose()


async def test_writer_stores_exact_decimals_and_counts_duplicates(
    conn: asyncpg.Connection,
) -> None:
    rows = [
        trade("1"),
        trade("2", price=Decimal("0.000000012345678901234567890"), side="sell"),
        trade("tab\there\\", size=Decimal("123456789012345678901234567890.5")),
        trade("4", NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))),
    ]
    result = await write_trades(conn, rows)
    assert (result.received, result.written, result.duplicates) == (4, 4, 0)
    stored = await conn.fetch(
        "SELECT trading_pair_id, time, trade_id, price, size, side FROM trades ORDER BY trade_id"
    )
    assert sorted(TradeRow(*r) for r in stored) == sorted(rows)

    again = await write_trades(conn, [*rows[:2], trade("3"), trade("3")])
    assert (again.received, again.written, again.duplicates) == (4, 1, 3)
    assert await conn.fetchval("SELECT count(*) FROM trades") == 5


async def test_a_trade_repeated_within_a_fresh_batch_is_written_once(
    conn: asyncpg.Connection,
) -> None:
    later = NOW + timedelta(seconds=1)
    result = await write_trades(conn, [trade("1"), trade("2", later), trade("1")])
    assert (result.received, result.written, result.duplicates) == (3, 2, 1)
    # a batch after the stored ones (no overlap): written as is
    result = await write_trades(conn, [trade("3", later + timedelta(seconds=1))])
    assert (result.written, result.duplicates) == (1, 0)
    assert await conn.fetchval("SELECT count(*) FROM trades") == 3


async def test_bad_rows_are_set_aside_with_their_reason_and_the_rest_written(
    conn: asyncpg.Connection,
) -> None:
    rows = [
        trade("1"),
        trade("2", side="long"),
        trade("3", price=Decimal(0)),
        trade("4", size=Decimal("-1")),
        trade("", time=NOW),
        trade("6", time=datetime(2026, 1, 1)),  # naive
        trade("7", trading_pair_id=99),
        trade("8"),
    ]
    result = await write_trades(conn, rows)
    assert (result.received, result.written, result.duplicates) == (8, 2, 0)
    assert {r.row.trade_id: r.reason for r in result.rejected} == {
        "2": "side 'long' is not one of buy, sell",
        "3": "price 0 is not positive",
        "4": "size -1 is not positive",
        "": "no trade id",
        "6": "time 2026-01-01 00:00:00 has no timezone",
        "7": "unknown trading_pair_id",
    }
    assert await conn.fetchval("SELECT array_agg(trade_id ORDER BY trade_id) FROM trades") == [
        "1",
        "8",
    ]


@pytest.mark.usefixtures("needs_plain_postgres")
async def test_migrate_makes_the_coming_days_and_the_writer_the_days_it_needs(
    conn: asyncpg.Connection, scratch: str
) -> None:
    ahead = [TODAY + timedelta(days=n) for n in range(daily_tables.PARTITIONS_AHEAD + 1)]
    assert _partition_days(scratch) == ahead
    assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'trades'") == "p"

    old = datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    result = await write_trades(conn, [trade("a", old), trade("b", old + timedelta(days=2))])
    assert result.written == 2
    made = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    assert _partition_days(scratch) == made + ahead
    # each row is in its UTC day's partition
    placed = await conn.fetch("SELECT tableoid::regclass::text AS part, trade_id FROM trades")
    assert {r["trade_id"]: r["part"] for r in placed} == {
        "a": "trades_p20250301",
        "b": "trades_p20250303",
    }
    migrate.upgrade(scratch)  # repeated: nothing new, nothing fails
    assert _partition_days(scratch) == made + ahead
    # every partition has its own unique key (the parent has none: see migration 0008)
    keys = await conn.fetch(
        "SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE 'trades%'"
        " AND indexdef LIKE 'CREATE UNIQUE INDEX % (trading_pair_id, \"time\", trade_id)'"
    )
    assert sorted((r["tablename"], r["indexname"]) for r in keys) == [
        (f"trades_p{day:%Y%m%d}", f"trades_p{day:%Y%m%d}_key") for day in made + ahead
    ]


def test_expired_partitions_are_the_days_wholly_older_than_the_rule() -> None:
    days = {date(2026, 1, d): f"trades_p202601{d:02}" for d in range(1, 6)}
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    # 2 days before now is Jan 3 12:00: Jan 1 and 2 end before it, Jan 3 does not
    assert daily_tables.expired_partitions(days, now, 2) == ["trades_p20260101", "trades_p20260102"]
    # exactly at a day's end: that day's newest possible row is older than the rule
    at_midnight = datetime(2026, 1, 5, tzinfo=UTC)
    assert daily_tables.expired_partitions(days, at_midnight, 2) == [
        "trades_p20260101",
        "trades_p20260102",
    ]
    assert daily_tables.expired_partitions(days, now, 30) == []


@pytest.mark.usefixtures("needs_plain_postgres")
async def test_retention_on_migrate_drops_exactly_the_expired_days(
    conn: asyncpg.Connection, scratch: str
) -> None:
    await write_trades(
        conn,
        [trade(f"{n}", NOW - timedelta(days=n)) for n in range(40)],
    )
    before = _partition_days(scratch)
    assert before[0] == TODAY - timedelta(days=39)

    keep = retention.parse_retention("trades=30d", "KIRBY_RETENTION")
    start = datetime.now(UTC)
    migrate.upgrade(scratch, retention=keep)
    end = datetime.now(UTC)
    kept = _partition_days(scratch)
    dropped = set(before) - set(kept)
    names = {day: f"trades_p{day:%Y%m%d}" for day in before}
    # the days wholly older than 30 days at the migrate's moment (between start and end)
    assert set(daily_tables.expired_partitions(names, start, 30)) <= {names[d] for d in dropped}
    assert {names[d] for d in dropped} <= set(daily_tables.expired_partitions(names, end, 30))
    assert len(dropped) in (9, 10)  # 39..31 days old wholly expired; 30 only past midnight
    assert set(kept) <= set(before)
    # only rows of dropped days are gone
    left = {r["trade_id"] for r in await conn.fetch("SELECT trade_id FROM trades")}
    assert left == {f"{n}" for n in range(40) if (NOW - timedelta(days=n)).date() not in dropped}
    assert "29" in left  # 29 days old: kept

    migrate.upgrade(scratch, retention=keep)  # again: nothing more to drop
    assert _partition_days(scratch) == kept


@pytest.mark.usefixtures("needs_plain_postgres")
def test_other_retention_rules_are_still_refused_on_plain_tables(scratch: str) -> None:
    with pytest.raises(ConfigError) as caught:
        migrate.upgrade(
            scratch,
            retention=retention.parse_retention("trades=30d,candles=90d", "KIRBY_RETENTION"),
        )
    assert "KIRBY_RETENTION is set but this database's market tables are plain PostgreSQL" in str(
        caught.value
    )
    assert "only trades=<N>d works without it" in str(caught.value)


async def test_migration_0008_up_and_down(scratch: str) -> None:
    with_trades = await _tables(scratch)
    assert "trades" in with_trades
    migrate.downgrade(scratch, "0007")
    without = await _tables(scratch)
    assert not any(name.startswith("trades") for name in without)
    assert with_trades - without == {  # and 0010's book tables, above it
        n for n in with_trades if n.startswith(("trades", "book"))
    }
    conn = await asyncpg.connect(scratch)
    try:
        assert not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'kirby_create_trade_partitions')"
        )
    finally:
        await conn.close()
    migrate.upgrade(scratch)
    assert "trades" in await _tables(scratch)


@pytest.mark.usefixtures("needs_timescaledb")
async def test_with_timescaledb_trades_is_a_compressed_hypertable_by_pair(
    conn: asyncpg.Connection, scratch: str
) -> None:
    settings = dict(
        await conn.fetch(
            "SELECT attname, segmentby_column_index"
            " FROM timescaledb_information.compression_settings WHERE hypertable_name = 'trades'"
        )
    )
    assert settings["trading_pair_id"] == 1
    old = NOW - timedelta(days=10)
    result = await write_trades(conn, [trade("old", old), trade("new")])
    assert result.written == 2
    compressed = await conn.fetchval(
        "SELECT count(compress_chunk(c)) FROM show_chunks('trades', older_than => $1::interval) c",
        timedelta(days=5),
    )
    assert compressed == 1
    # dedupe holds on a compressed chunk too
    again = await write_trades(conn, [trade("old", old), trade("new")])
    assert (again.written, again.duplicates) == (0, 2)

    migrate.upgrade(scratch, retention=retention.parse_retention("trades=5d", "KIRBY_RETENTION"))
    assert {r["trade_id"] for r in await conn.fetch("SELECT trade_id FROM trades")} == {"new"}
    engine = create_engine(sqlalchemy_url(scratch), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            assert retention.installed(connection).tables == {"trades": 5}
    finally:
        engine.dispose()
