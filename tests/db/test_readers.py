from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.db import readers
from kirby_core.db.writer import upsert_candles, upsert_open_interest
from kirby_core.errors import InvalidRequest
from kirby_core.models import Candle, CandleRow, OpenInterest, OpenInterestRow

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def rows(sid: int, minutes: range) -> list[CandleRow]:
    return [
        CandleRow(
            sid,
            T0 + timedelta(minutes=m),
            Decimal(m + 100),
            Decimal(m + 101),
            Decimal(m + 99),
            Decimal(m + 100),
            Decimal("1.5"),
            m,
        )
        for m in minutes
    ]


async def test_range_and_latest(conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await upsert_candles(conn, rows(sid, range(100)))
    await upsert_candles(conn, rows(catalog["SOL/1m"], range(100)))  # never mixed in
    got = await readers.read_candles(
        conn, sid, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    )
    assert [c.time for c in got] == [T0 + timedelta(minutes=m) for m in range(10, 20)]
    assert got[0] == Candle(
        T0 + timedelta(minutes=10),
        Decimal(110),
        Decimal(111),
        Decimal(109),
        Decimal(110),
        Decimal("1.5"),
        10,
    )
    limited = await readers.read_candles(conn, sid, T0, limit=3)
    assert [c.trade_count for c in limited] == [0, 1, 2]
    latest = await readers.latest_candles(conn, sid, 5)
    assert [c.trade_count for c in latest] == [95, 96, 97, 98, 99]  # ascending


async def test_bad_requests(conn) -> None:
    with pytest.raises(InvalidRequest, match="limit must be between 1 and 100000, got 0"):
        await readers.latest_candles(conn, 1, 0)
    with pytest.raises(InvalidRequest, match="is after end"):
        await readers.read_candles(conn, 1, T0, T0 - timedelta(minutes=1))


async def test_open_interest_range(conn, catalog) -> None:
    pair = catalog["SOL"]
    oi = [OpenInterestRow(pair, T0 + timedelta(minutes=m), Decimal(m)) for m in range(3)]
    await upsert_open_interest(conn, oi)
    got = await readers.read_open_interest(conn, pair, T0)
    assert got == [OpenInterest(T0 + timedelta(minutes=m), Decimal(m)) for m in range(3)]


async def test_coverage_counts_rows_and_outages(conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    await upsert_candles(conn, rows(sid, range(0, 1440, 2)))  # half of May 1st
    await upsert_candles(conn, rows(sid, range(1440, 1450)))  # 10 minutes of May 2nd
    await conn.execute(
        "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason) "
        "VALUES ('candles', $1, $2, $3, 'disconnect')",
        sid,
        T0 + timedelta(hours=23, minutes=30),
        T0 + timedelta(days=1, minutes=15),
    )
    days = await readers.read_coverage(
        conn, "candles", sid, "1m", date(2024, 5, 1), date(2024, 5, 4)
    )
    assert [(d.day, d.expected, d.present, d.outage_minutes) for d in days] == [
        (date(2024, 5, 1), 1440, 720, 30),
        (date(2024, 5, 2), 1440, 10, 15),
        (date(2024, 5, 3), 1440, 0, 0),
    ]
    four_hour = await readers.read_coverage(
        conn, "candles", catalog["BTC/4h"], "4h", date(2024, 5, 1), date(2024, 5, 2)
    )
    assert (four_hour[0].expected, four_hour[0].present) == (6, 0)
