import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from kirby_core.db import writer
from kirby_core.db.writer import upsert_candles, upsert_funding_rates, upsert_open_interest
from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow

T0 = datetime(2024, 5, 1, tzinfo=UTC)
D = Decimal


def candle(sid: int, minute: int, close: str = "100.5", **overrides) -> CandleRow:
    row = CandleRow(
        sid,
        T0 + timedelta(minutes=minute),
        D("100.1"),
        D("101.123456789012345678"),
        D("99.000000000000000001"),
        D(close),
        D("12.5"),
        7,
    )
    return row._replace(**overrides)


async def stored_candles(conn: asyncpg.Connection) -> list[tuple]:
    return [
        tuple(r)
        for r in await conn.fetch(
            "SELECT starlisting_id, time, open, high, low, close, volume, trade_count "
            "FROM candles ORDER BY starlisting_id, time"
        )
    ]


async def test_exact_decimals_round_trip(conn, catalog) -> None:
    rows = [candle(catalog["BTC/1m"], 0)]
    result = await upsert_candles(conn, rows)
    assert (result.received, result.written, result.rejected) == (1, 1, [])
    stored = await stored_candles(conn)
    assert stored == [tuple(rows[0])]
    assert str(stored[0][3]) == "101.123456789012345678"  # every digit kept
    assert str(stored[0][4]) == "99.000000000000000001"


@pytest.mark.parametrize("count", [10, writer.FRESH_PATH_MIN_ROWS + 500])
async def test_fresh_and_merge_paths_store_the_same(conn, catalog, count: int) -> None:
    sid = catalog["BTC/1m"]
    rows = [candle(sid, i, close=f"100.{i}") for i in range(count)]
    first = await upsert_candles(conn, rows)
    assert (first.written, len(first.rejected)) == (count, 0)
    assert await stored_candles(conn) == [tuple(r) for r in rows]
    again = await upsert_candles(conn, rows)  # idempotent: nothing changes, nothing written
    assert (again.received, again.written) == (count, 0)
    changed = [r._replace(close=D("100.9"), high=D("102")) for r in rows[:3]]
    assert (await upsert_candles(conn, changed)).written == 3
    stored = await stored_candles(conn)
    assert stored[:3] == [tuple(r) for r in changed]
    assert stored[3:] == [tuple(r) for r in rows[3:]]


async def test_large_batch_overlapping_stored_rows_merges(conn, catalog) -> None:
    sid = catalog["SOL/1m"]
    n = writer.FRESH_PATH_MIN_ROWS
    await upsert_candles(conn, [candle(sid, i) for i in range(0, n, 2)])  # the even minutes
    result = await upsert_candles(conn, [candle(sid, i) for i in range(n)])
    assert result.written == n // 2  # only the odd minutes were new
    assert await conn.fetchval("SELECT count(*) FROM candles") == n


async def test_nulls_never_overwrite_stored_values(conn, catalog) -> None:
    pair = catalog["BTC"]
    live = FundingRateRow(
        pair,
        T0,
        predicted_funding_rate=D("0.0000125"),
        premium=D("0.0003"),
        mark_price=D("64000.5"),
        oracle_price=D("64001"),
        mid_price=D("64000.25"),
        next_funding_time=T0 + timedelta(hours=1),
    )
    await upsert_funding_rates(conn, [live])
    backfill = FundingRateRow(
        pair, T0, settled_funding_rate=D("0.0000125"), settled_premium=D("0.00029")
    )
    assert (await upsert_funding_rates(conn, [backfill])).written == 1
    row = await conn.fetchrow("SELECT * FROM funding_rates")
    assert tuple(row) == (
        pair,
        T0,
        D("0.0000125"),
        D("0.00029"),
        D("0.0000125"),
        D("0.0003"),
        D("64000.5"),
        D("64001"),
        D("64000.25"),
        T0 + timedelta(hours=1),
    )
    # the same thin backfill again changes nothing
    assert (await upsert_funding_rates(conn, [backfill])).written == 0

    oi = OpenInterestRow(pair, T0, D("1234.5"), D("79012345.25"), D("100"), D("6400000"))
    await upsert_open_interest(conn, [oi])
    await upsert_open_interest(conn, [OpenInterestRow(pair, T0, open_interest=D("1300"))])
    stored = tuple(await conn.fetchrow("SELECT * FROM open_interest"))
    assert stored == (pair, T0, D("1300"), D("79012345.25"), D("100"), D("6400000"))


async def test_bad_rows_are_rejected_one_by_one(conn, catalog, caplog) -> None:
    sid = catalog["BTC/1m"]
    good = [candle(sid, i) for i in range(5)]
    bad = [
        candle(sid, 10, low=D("102"), high=D("101")),
        candle(sid, 11, volume=D("-1")),
        candle(sid, 12, time=T0 + timedelta(seconds=30)),
        candle(9999, 13),
        candle(sid, 14, close=D("105")),  # above high
        candle(sid, 15, trade_count=-3),
    ]
    caplog.set_level(logging.WARNING, logger="kirby_core.db.writer")
    result = await upsert_candles(conn, [*good[:2], *bad, *good[2:]])
    assert result.written == 5
    assert [(r.row, r.reason) for r in result.rejected] == list(
        zip(
            bad,
            [
                "low above high",
                "negative volume",
                "time not minute-aligned",
                "unknown starlisting_id",
                "high below open or close",
                "negative trade count",
            ],
            strict=True,
        )
    )
    assert await stored_candles(conn) == [tuple(r) for r in good]
    assert "rows rejected table=candles rejected=6 of=11" in caplog.text
    assert "reason='negative volume'" in caplog.text


async def test_large_batch_with_a_bad_row_falls_back_to_merge(conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    rows = [candle(sid, i) for i in range(writer.FRESH_PATH_MIN_ROWS)]
    rows[77] = rows[77]._replace(volume=D("-5"))
    result = await upsert_candles(conn, rows)
    assert result.written == len(rows) - 1
    assert [r.reason for r in result.rejected] == ["negative volume"]


async def test_repeated_key_in_a_batch_keeps_the_last(conn, catalog) -> None:
    sid = catalog["BTC/1m"]
    updates = [candle(sid, 0, close=c) for c in ("100.2", "100.7", "100.4")]
    result = await upsert_candles(conn, updates)
    assert result.written == 1
    assert (await stored_candles(conn))[0][5] == D("100.4")


async def test_empty_batch(conn) -> None:
    result = await upsert_candles(conn, [])
    assert (result.received, result.written, result.rejected) == (0, 0, [])
