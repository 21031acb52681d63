from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from kirby_core.db import coverage
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow

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
    days = await coverage.classify_days(
        conn,
        "candles",
        sid,
        "1m",
        "hyperliquid",
        date(2024, 5, 1),
        date(2024, 5, 4),
        datetime.now(UTC),
        None,
    )
    assert [(d.day, d.expected, d.present, d.outage_minutes) for d in days] == [
        (date(2024, 5, 1), 1440, 720, 30),
        (date(2024, 5, 2), 1440, 10, 15),
        (date(2024, 5, 3), 1440, 0, 0),
    ]
    four_hour = await coverage.classify_days(
        conn,
        "candles",
        catalog["BTC/4h"],
        "4h",
        "hyperliquid",
        date(2024, 5, 1),
        date(2024, 5, 2),
        datetime.now(UTC),
        None,
    )
    assert (four_hour[0].expected, four_hour[0].present) == (6, 0)
