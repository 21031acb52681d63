from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from kirby_core.db import catalog_store, coverage
from kirby_core.db.readers import expected_rows
from kirby_core.db.writer import upsert_candles, upsert_open_interest
from kirby_core.models import CandleRow, OpenInterestRow
from tests.db.conftest import bybit_catalog

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


async def test_open_interest_counts_points_of_the_exchanges_declared_history(conn) -> None:
    """Bybit serves open interest every 5 minutes: a backfilled day (288 points) is complete,
    and so is a live day of minute rows; a 5-minute slot with no row at all is missing. On
    Hyperliquid, which publishes no history, every minute counts."""
    await catalog_store.sync_catalog(conn, bybit_catalog())
    pairs = {p.key.exchange: p.id for p in await catalog_store.list_trading_pairs(conn)}
    bybit, hyperliquid = pairs["bybit"], pairs["hyperliquid"]

    def points(pair: int, minutes: Iterable[int]) -> list[OpenInterestRow]:
        return [OpenInterestRow(pair, T0 + timedelta(minutes=m), Decimal(m)) for m in minutes]

    backfilled = range(0, 1440, 5)  # May 1st from the 5-minute history
    # May 2nd live, every minute but 10:02-10:04 (inside one point) and 11:00-11:09 (two)
    live = [m for m in range(1440, 2880) if not (2042 <= m <= 2044 or 2100 <= m < 2110)]
    await upsert_open_interest(conn, points(bybit, [*backfilled, *live]))
    await upsert_open_interest(conn, points(hyperliquid, [*backfilled, *live]))

    async def classify(pair: int, exchange: str) -> list[tuple]:
        days = await coverage.classify_days(
            conn,
            "open_interest",
            pair,
            "1m",
            exchange,
            date(2024, 5, 1),
            date(2024, 5, 3),
            datetime.now(UTC),
            None,
        )
        return [(d.day, d.expected, d.present, d.missing, d.unexplained) for d in days]

    assert await classify(bybit, "bybit") == [
        (date(2024, 5, 1), 288, 288, 0, 0),
        (date(2024, 5, 2), 288, 286, 2, 2),
    ]
    assert await classify(hyperliquid, "hyperliquid") == [
        (date(2024, 5, 1), 1440, 288, 1152, 1152),
        (date(2024, 5, 2), 1440, 1427, 13, 13),
    ]
    assert (
        expected_rows("open_interest", "1m", "okx", T0, T0 + timedelta(days=1), datetime.now(UTC))
        == 288
    )
