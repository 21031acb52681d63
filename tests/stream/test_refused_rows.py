"""A batch the database refuses (a value out of range): the rows at fault are isolated,
rejected, counted and logged; the rest is stored and the collector goes on. Before, the
whole batch was retried forever and finally shed as "database unreachable"."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from kirby_core.models import CandleRow
from kirby_core.settings import Settings
from kirby_stream.buffers import Buffers
from kirby_stream.database import SharedConnection
from kirby_stream.flusher import Flusher
from kirby_stream.heartbeat import write_heartbeat
from kirby_stream.stats import Stats
from tests.stream.helpers import fast

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def candle(starlisting_id: int, minute: int, trade_count: int = 7) -> CandleRow:
    price = Decimal(100 + minute)
    return CandleRow(
        starlisting_id, T0 + timedelta(minutes=minute), price, price, price, price, Decimal(1),
        trade_count,
    )  # fmt: skip


@pytest.mark.parametrize("bad_minutes", [(4,), (0, 9), (3, 4, 5)])
async def test_refused_rows_are_rejected_and_the_rest_is_stored(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    bad_minutes: tuple[int, ...],
) -> None:
    series = catalog["BTC/1m"]
    buffers, stats = Buffers(1000), Stats("test", datetime.now(UTC))
    for minute in range(10):  # trade_count is an integer column: 2**31 is out of its range
        buffers.add_candle(candle(series, minute, 2**31 if minute in bad_minutes else 7), 0.0)
    database = SharedConnection(settings.database_url, timeout=5)
    flusher = Flusher(fast(settings), buffers, database, stats, lambda: T0)
    try:
        with caplog.at_level(logging.ERROR, "kirby_stream.flusher"):
            assert await flusher.flush(everything=True)
    finally:
        await database.close()

    stored = await conn.fetch("SELECT time FROM candles WHERE starlisting_id = $1", series)
    expected = {T0 + timedelta(minutes=m) for m in range(10) if m not in bad_minutes}
    assert {r["time"] for r in stored} == expected
    assert stats.refused_rows == len(bad_minutes)
    assert stats.failed_flushes == 0 and stats.flushes == 1
    assert buffers.size == 0 and not buffers.outages  # nothing put back, nothing shed
    refused = [r.getMessage() for r in caplog.records if "event=row_refused" in r.getMessage()]
    assert len(refused) == len(bad_minutes)
    assert all("out of range" in message for message in refused)
    await write_heartbeat(conn, stats)  # the count is on /status (the heartbeat row)
    assert await conn.fetchval("SELECT refused_rows FROM stream_heartbeats") == len(bad_minutes)
