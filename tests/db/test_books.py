"""Order-book storage for real: the `books` writer (exact levels, dedupe, bad samples), the
`book_integrity` upsert, `books`' daily partitions, migration 0010 up and down, and retention
dropping exactly the expired book days and nothing else.

Partition tests run on plain PostgreSQL (the embedded server, CI); the hypertable test needs
a test server with TimescaleDB (`KIRBY_TEST_DATABASE_URL`) and skips elsewhere, saying so.
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

from kirby_core.db import books, daily_tables, migrate, retention
from kirby_core.db.books import BookRow, IntegrityRow, write_book_integrity, write_books
from kirby_core.db.trades import TradeRow, write_trades
from kirby_core.db.urls import sqlalchemy_url, with_database
from tests.conftest import _run
from tests.db.test_migrations import _tables
from tests.db.test_trades import CATALOG

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
D = Decimal
BIDS = ((D("97012.5"), D("0.00012")), (D("97012.4"), D("3")), (D("90000"), D("1E+3")))
ASKS = ((D("97012.6"), D("0.000000012345678901234567890")), (D("97013"), D("2.50")))


def sample(time: datetime = NOW, **changes: object) -> BookRow:
    return BookRow(1, time, 123456789012, BIDS, ASKS)._replace(**changes)


@pytest.fixture
def scratch(pg_server: str) -> Iterator[str]:
    """A migrated database of this test's own (migrations and retention run on it)."""
    name = f"kirby_books_test_{uuid.uuid4().hex[:8]}"
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
            return sorted(books.BOOKS_BY_DAY.existing(connection))
    finally:
        engine.dispose()


async def _stored(conn: asyncpg.Connection) -> list[BookRow]:
    rows = await conn.fetch(
        "SELECT trading_pair_id, time, sequence, bid_prices, bid_sizes, ask_prices, ask_sizes"
        " FROM books ORDER BY trading_pair_id, time"
    )
    return [
        BookRow(
            r["trading_pair_id"],
            r["time"],
            r["sequence"],
            tuple(zip(r["bid_prices"], r["bid_sizes"], strict=True)),
            tuple(zip(r["ask_prices"], r["ask_sizes"], strict=True)),
        )
        for r in rows
    ]


async def test_writer_stores_exact_levels_best_first_and_counts_duplicates(
    conn: asyncpg.Connection,
) -> None:
    rows = [
        sample(),
        sample(NOW + timedelta(seconds=1), sequence=None, bids=(), asks=ASKS[:1]),
        sample(NOW.astimezone(timezone(timedelta(hours=5, minutes=30))) + timedelta(seconds=2)),
    ]
    result = await write_books(conn, rows)
    assert (result.received, result.written, result.duplicates, result.rejected) == (3, 3, 0, [])
    stored = await _stored(conn)
    assert stored == rows
    # exact: trailing zeros kept (numeric writes an exponent out in full)
    assert [str(size) for _, size in stored[0].bids] == ["0.00012", "3", "1000"]
    assert str(stored[0].asks[1][1]) == "2.50"

    again = await write_books(conn, [*rows[:2], sample(NOW + timedelta(seconds=3))])
    assert (again.received, again.written, again.duplicates) == (3, 1, 2)
    # a sample repeated within one batch is written once
    twice = await write_books(conn, [sample(NOW + timedelta(seconds=9))] * 2)
    assert (twice.written, twice.duplicates) == (1, 1)
    assert await conn.fetchval("SELECT count(*) FROM books") == 5


async def test_bad_samples_are_set_aside_with_their_reason_and_the_rest_written(
    conn: asyncpg.Connection,
) -> None:
    second = [NOW + timedelta(seconds=n) for n in range(10)]
    rows = [
        sample(second[0]),
        sample(datetime(2026, 1, 1)),  # naive
        sample(second[2] + timedelta(milliseconds=5)),
        sample(second[3], bids=(BIDS[1], BIDS[0])),
        sample(second[4], asks=((D("97013"), D("1")), (D("97013"), D("2")))),
        sample(second[5], bids=((D("97012.5"), D("0")),)),
        sample(second[6], asks=((D("-1"), D("1")),)),
        sample(second[7], bids=((D("97012.6"), D("1")),)),
        sample(second[8], trading_pair_id=99),
        sample(second[9], bids=tuple((D(100000 - n), D(1)) for n in range(1001)), asks=()),
    ]
    result = await write_books(conn, rows)
    assert (result.received, result.written, result.duplicates) == (10, 1, 0)
    reasons = {
        "2026-01-01 00:00:00 has no timezone",
        f"{second[2] + timedelta(milliseconds=5)} is not a whole second",
        "bid price 97012.5 after 97012.4: bid must be best first",
        "ask price 97013 after 97013: ask must be best first",
        "bid size 0 at 97012.5 is not positive",
        "ask price -1 is not positive",
        "crossed: best bid 97012.6 >= best ask 97012.6",
        "unknown trading_pair_id",
        "1001 bid levels; at most 1000",
    }
    got = [r.reason.removeprefix("time ") for r in result.rejected]
    assert sorted(got) == sorted(reasons)
    assert await _stored(conn) == [rows[0]]


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ("'{2}', '{1}', '{1}', '{1}'", "books_not_crossed"),
        ("'{1,0.5}', '{1}', '{2}', '{1}'", "books_bids_paired"),
        ("'{1}', '{1}', '{2}', '{0}'", "books_levels_positive"),
    ],
)
async def test_the_table_itself_refuses_a_crossed_or_malformed_book(
    conn: asyncpg.Connection, values: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(
            "INSERT INTO books (trading_pair_id, time, bid_prices, bid_sizes, ask_prices,"
            f" ask_sizes) VALUES (1, date_trunc('second', now()), {values})"
        )
    assert caught.value.constraint_name == constraint
    with pytest.raises(asyncpg.CheckViolationError, match="books_whole_second"):
        await conn.execute(
            "INSERT INTO books (trading_pair_id, time, bid_prices, bid_sizes, ask_prices,"
            " ask_sizes) VALUES (1, '2026-12-07 00:00:00.5+00', '{}', '{}', '{}', '{}')"
        )


async def test_integrity_counters_upsert_per_pair_and_minute(conn: asyncpg.Connection) -> None:
    minute = NOW.replace(second=0)
    first = IntegrityRow(1, minute, updates=10, gaps=0, resyncs=0, stale_ms=0, crossed=0)
    assert await write_book_integrity(conn, [first]) == 1
    totals = first._replace(updates=25, gaps=1, resyncs=1, stale_ms=1500)
    later = IntegrityRow(1, minute + timedelta(minutes=1), 7, 0, 0, 0, 0)
    assert await write_book_integrity(conn, [totals, later]) == 2
    assert await write_book_integrity(conn, [totals, later]) == 2  # the same totals again
    bad = [
        later._replace(trading_pair_id=99),
        later._replace(time=minute + timedelta(seconds=30)),
        later._replace(stale_ms=60001),
        later._replace(gaps=-1),
    ]
    assert await write_book_integrity(conn, bad) == 0
    stored = await conn.fetch(
        "SELECT trading_pair_id, time, updates, gaps, resyncs, stale_ms, crossed"
        " FROM book_integrity ORDER BY time"
    )
    assert [IntegrityRow(*r) for r in stored] == [totals, later]
    assert books.integrity_reason(bad[2]) == "stale_ms 60001 is more than a minute"
    assert books.integrity_reason(bad[3]) == "gaps -1 is negative"


@pytest.mark.usefixtures("needs_plain_postgres")
async def test_migrate_makes_the_coming_days_and_the_writer_the_days_it_needs(
    conn: asyncpg.Connection, scratch: str
) -> None:
    ahead = [TODAY + timedelta(days=n) for n in range(daily_tables.PARTITIONS_AHEAD + 1)]
    assert _partition_days(scratch) == ahead
    old = datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC)
    result = await write_books(conn, [sample(old), sample(old + timedelta(days=2))])
    assert result.written == 2
    made = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    assert _partition_days(scratch) == made + ahead
    placed = await conn.fetch("SELECT tableoid::regclass::text AS part, time FROM books")
    assert sorted(r["part"] for r in placed) == ["books_p20250301", "books_p20250303"]
    migrate.upgrade(scratch)  # repeated: nothing new, nothing fails
    assert _partition_days(scratch) == made + ahead
    keys = await conn.fetch(
        "SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE 'books%'"
        " AND indexdef LIKE 'CREATE UNIQUE INDEX % (trading_pair_id, \"time\")'"
    )
    assert sorted((r["tablename"], r["indexname"]) for r in keys) == [
        (f"books_p{day:%Y%m%d}", f"books_p{day:%Y%m%d}_key") for day in made + ahead
    ]


@pytest.mark.usefixtures("needs_plain_postgres")
async def test_retention_drops_exactly_the_expired_book_days_and_nothing_else(
    conn: asyncpg.Connection, scratch: str
) -> None:
    await write_books(conn, [sample(NOW - timedelta(days=n)) for n in range(12)])
    await write_trades(
        conn,
        [TradeRow(1, NOW - timedelta(days=n), f"{n}", D(1), D(1), "buy") for n in range(12)],
    )
    minutes = [(NOW - timedelta(days=n)).replace(second=0) for n in range(12)]
    await write_book_integrity(conn, [IntegrityRow(1, m, 1, 0, 0, 0, 0) for m in minutes])
    before = _partition_days(scratch)
    trade_days = await conn.fetchval("SELECT count(*) FROM trades")

    keep = retention.parse_retention("books=7d", "KIRBY_RETENTION")
    start = datetime.now(UTC)
    migrate.upgrade(scratch, retention=keep)
    end = datetime.now(UTC)
    kept = _partition_days(scratch)
    dropped = set(before) - set(kept)
    names = {day: f"books_p{day:%Y%m%d}" for day in before}
    assert set(daily_tables.expired_partitions(names, start, 7)) <= {names[d] for d in dropped}
    assert {names[d] for d in dropped} <= set(daily_tables.expired_partitions(names, end, 7))
    assert len(dropped) in (4, 5)  # 11..8 days old wholly expired; 7 only past midnight
    left = {r["time"] for r in await conn.fetch("SELECT time FROM books")}
    assert left == {NOW - timedelta(days=n) for n in range(12)} - {
        NOW - timedelta(days=n) for n in range(12) if (NOW - timedelta(days=n)).date() in dropped
    }
    # nothing else: trades and the integrity history stay whole
    assert await conn.fetchval("SELECT count(*) FROM trades") == trade_days == 12
    assert await conn.fetchval("SELECT count(*) FROM book_integrity") == 12

    migrate.upgrade(scratch, retention=keep)  # again: nothing more to drop
    assert _partition_days(scratch) == kept


def test_books_is_a_retained_table_and_its_rules_are_checked() -> None:
    rules = retention.parse_retention("books=7d,trades=30d", "KIRBY_RETENTION")
    assert rules.tables == {"books": 7, "trades": 30}
    with pytest.raises(Exception, match="only candles have intervals; write books=<days>d"):
        retention.parse_retention("books:1m=7d", "KIRBY_RETENTION")
    with pytest.raises(Exception, match="unknown dataset 'book_integrity'"):
        retention.parse_retention("book_integrity=7d", "KIRBY_RETENTION")


async def test_migration_0010_up_and_down(scratch: str) -> None:
    with_books = await _tables(scratch)
    assert {"books", "book_integrity"} <= with_books
    migrate.downgrade(scratch, "0009")
    without = await _tables(scratch)
    assert with_books - without == {n for n in with_books if n.startswith("book")}
    conn = await asyncpg.connect(scratch)
    try:
        assert not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'kirby_create_book_partitions')"
        )
    finally:
        await conn.close()
    migrate.upgrade(scratch)
    assert {"books", "book_integrity"} <= await _tables(scratch)


@pytest.mark.usefixtures("needs_timescaledb")
async def test_with_timescaledb_books_is_a_compressed_hypertable_by_pair(
    conn: asyncpg.Connection, scratch: str
) -> None:
    settings = dict(
        await conn.fetch(
            "SELECT attname, segmentby_column_index"
            " FROM timescaledb_information.compression_settings WHERE hypertable_name = 'books'"
        )
    )
    assert settings["trading_pair_id"] == 1
    old = NOW - timedelta(days=10)
    assert (await write_books(conn, [sample(old), sample()])).written == 2
    compressed = await conn.fetchval(
        "SELECT count(compress_chunk(c)) FROM show_chunks('books', older_than => $1::interval) c",
        timedelta(days=5),
    )
    assert compressed == 1
    again = await write_books(conn, [sample(old), sample()])  # dedupe on a compressed chunk
    assert (again.written, again.duplicates) == (0, 2)
    assert await _stored(conn) == [sample(old), sample()]

    migrate.upgrade(scratch, retention=retention.parse_retention("books=5d", "KIRBY_RETENTION"))
    assert await _stored(conn) == [sample()]
