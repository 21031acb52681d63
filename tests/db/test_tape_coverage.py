"""Coverage of the trade tape and the order books, minute by minute, on a real PostgreSQL:
planted trades, a quiet stretch the live feed watched, a `trades` outage, a collector that
stopped, a backfill report; book samples, an integrity gap and a `books` outage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from kirby_core.datasets import RECORDED_DATASETS
from kirby_core.db import catalog_store, coverage
from kirby_core.db.books import BookRow, IntegrityRow, write_book_integrity, write_books
from kirby_core.db.readers import EXPECTED
from kirby_core.db.trades import TradeRow, write_trades
from kirby_core.errors import InvalidRequest
from tests.db.conftest import catalog_with_usdt_perp

DAY = date(2024, 5, 1)
T0 = datetime(2024, 5, 1, tzinfo=UTC)
D = Decimal
TRADE_MINUTES = (0, 1, 1, 1, 5, 30, 700, 800)
"""Minutes of the day with trades (three in 00:01)."""


def at(minute: int, second: int = 0) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


@pytest.fixture
async def pairs(conn: asyncpg.Connection) -> dict[str, int]:
    """BTC perps of Binance (serves trade history back to the listing) and Hyperliquid
    (serves none): trading pair ids by exchange."""
    await catalog_store.sync_catalog(conn, catalog_with_usdt_perp("binance"))
    return {p.key.exchange: p.id for p in await catalog_store.list_trading_pairs(conn)}


async def plant_tape(conn: asyncpg.Connection, pair: int) -> None:
    """The trades above, a collector alive 00:00-12:00 and a `trades` outage 00:10-00:30
    recorded an hour before now."""
    rows = [
        TradeRow(pair, at(m, i), f"{pair}-{i}", D("64000.5"), D("0.01"), "buy")
        for i, m in enumerate(TRADE_MINUTES)
    ]
    assert (await write_trades(conn, rows)).written == len(rows)
    await conn.execute(
        "INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at)"
        " VALUES ($1, 'test', 1, $2, $3) ON CONFLICT DO NOTHING",
        "collector-a",
        at(0),
        at(720),
    )
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason,"
        " recorded_at) VALUES ('trades', $1, $2, $3, 'disconnect', now() - interval '1 hour')",
        pair,
        at(10),
        at(30),
    )


async def classify(
    conn: asyncpg.Connection, dataset: str, pair: int, exchange: str
) -> coverage.ClassifiedDay:
    now = datetime.now(UTC)
    window = coverage.source_window(exchange, dataset, "1m", now, "perps")
    (day,) = await coverage.classify_days(
        conn, dataset, pair, "1m", exchange, DAY, DAY + timedelta(days=1), now, window.oldest
    )
    return day


def classes(day: coverage.ClassifiedDay) -> dict[str, int]:
    return {
        "expected": day.expected,
        "present": day.present,
        "no_trades": day.no_trades,
        "unavailable_at_source": day.unavailable_at_source,
        "collector_outage": day.collector_outage,
        "unexplained": day.unexplained,
        "outage_minutes": day.outage_minutes,
        "integrity_gap_minutes": day.integrity_gap_minutes,
    }


async def test_trade_minutes_on_an_exchange_with_trade_history(conn, pairs) -> None:
    """Binance: quiet minutes between trades while the collector lived and outside the
    outage are no trades (2-4, 6-9, 31-699, 701-719); the outage's 20 minutes are a
    collector outage; after the collector stopped (720-799) and after the last trade
    (801-1439) nothing says the minute was watched: unexplained. A backfill of the day then
    explains every minute that has no trade."""
    binance = pairs["binance"]
    await plant_tape(conn, binance)
    day = await classify(conn, "trades", binance, "binance")
    assert classes(day) == {
        "expected": 1440,
        "present": 6,
        "no_trades": 3 + 4 + 669 + 19,
        "unavailable_at_source": 0,
        "collector_outage": 20,
        "unexplained": 80 + 639,
        "outage_minutes": 20,
        "integrity_gap_minutes": 0,
    }
    assert day.repairable

    await coverage.record_backfill(
        conn,
        "trades",
        binance,
        [coverage.ServedDay(DAY, 1440, len(TRADE_MINUTES), at(0), at(800), [], None)],
    )
    day = await classify(conn, "trades", binance, "binance")
    assert (day.present, day.no_trades, day.collector_outage, day.unexplained) == (6, 1434, 0, 0)
    assert not day.repairable


async def test_trade_minutes_on_an_exchange_without_trade_history(conn, pairs) -> None:
    """Hyperliquid serves no trade history: what the live feed did not watch (the outage,
    after the collector stopped, after the last trade) is unavailable at source, not
    repairable; the watched quiet minutes are still no trades."""
    hyperliquid = pairs["hyperliquid"]
    await plant_tape(conn, hyperliquid)
    day = await classify(conn, "trades", hyperliquid, "hyperliquid")
    assert classes(day) == {
        "expected": 1440,
        "present": 6,
        "no_trades": 695,
        "unavailable_at_source": 20 + 80 + 639,
        "collector_outage": 0,
        "unexplained": 0,
        "outage_minutes": 20,
        "integrity_gap_minutes": 0,
    }
    assert not day.repairable


async def test_book_minutes(conn, pairs) -> None:
    """Samples in minutes 0-9 but 3; a `books` outage over minute 3; integrity gaps in
    minutes 4 and 5 (minute 6 counted updates, no gap): 9 present, 1 collector outage, the
    rest of the day unexplained (no source serves past books), 2 gap minutes."""
    pair = pairs["binance"]
    bids = ((D("64000.5"), D("1")),)
    asks = ((D("64001"), D("2")),)
    samples = [
        BookRow(pair, at(m, s), m * 100 + s, bids, asks)
        for m in range(10)
        if m != 3
        for s in (0, 30)
    ]
    assert (await write_books(conn, samples)).written == 18
    await write_book_integrity(
        conn,
        [
            IntegrityRow(pair, at(4), 120, 1, 1, 800, 0),
            IntegrityRow(pair, at(5), 110, 2, 2, 1500, 0),
            IntegrityRow(pair, at(6), 130, 0, 0, 0, 0),
        ],
    )
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
        " VALUES ('books', $1, $2, $3, 'disconnect')",
        pair,
        at(3),
        at(4),
    )
    day = await classify(conn, "books", pair, "binance")
    assert classes(day) == {
        "expected": 1440,
        "present": 9,
        "no_trades": 0,
        "unavailable_at_source": 0,
        "collector_outage": 1,
        "unexplained": 1430,
        "outage_minutes": 1,
        "integrity_gap_minutes": 2,
    }


async def test_every_recorded_dataset_is_classified(conn) -> None:
    """The classifier's rules come from `RECORDED_DATASETS`; any other name is refused,
    naming the allowed ones."""
    assert set(EXPECTED) == set(RECORDED_DATASETS)
    with pytest.raises(InvalidRequest, match=r"unknown dataset 'quotes'; expected one of "):
        await coverage.classify_days(
            conn, "quotes", 1, "1m", "binance", DAY, DAY + timedelta(days=1), T0, None
        )
