"""Time-bounded hot reads (`kirby_api.market_data`) return exactly what an unbounded read does.

Recent data takes the bounded path (the span holds enough rows), old or sparse data the
fallback; every read is compared with the unbounded SQL on the same rows. Runs on plain
PostgreSQL and on TimescaleDB (where `tests/db/test_timescaledb.py` checks the pruning).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_CANDLES
from kirby_api.market_data import _SQL, MarketData, narrowed
from kirby_api.window import MAX_TIME, MIN_TIME, Window
from kirby_core.db.writer import upsert_candles
from kirby_core.settings import Settings
from tests.api.conftest import candle_rows

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
RECENT = NOW - timedelta(minutes=3000)  # 3000 whole minutes up to now
OLD = NOW - timedelta(days=200)  # and 500 minutes long ago


@pytest.fixture
async def market(
    conn: asyncpg.Connection, settings: Settings, catalog: dict[str, int]
) -> AsyncIterator[MarketData]:
    await upsert_candles(conn, candle_rows(catalog["BTC/1m"], range(3000), RECENT))
    await upsert_candles(conn, candle_rows(catalog["BTC/1m"], range(500), OLD))
    await upsert_candles(conn, candle_rows(catalog["SOL/1m"], range(500), OLD))
    await upsert_candles(conn, candle_rows(catalog["BTC/4h"], range(0, 3000, 240), OLD))
    database = ConnectionPool(settings.database_url or "", settings)
    await database.open()
    try:
        yield MarketData(database)
    finally:
        await database.close()


def window(limit: int, lower: datetime = MIN_TIME, upper: datetime = MAX_TIME, newest=True):
    return Window(lower, upper, limit, newest=newest, open_ended=upper == MAX_TIME)


@pytest.mark.parametrize(
    ("case", "star", "win"),
    [
        ("latest, bounded path", "BTC/1m", window(1000)),
        ("latest, needs the old rows too", "BTC/1m", window(3200)),
        ("newest before an end", "BTC/1m", window(100, upper=NOW - timedelta(minutes=10))),
        ("latest of a long-silent series", "SOL/1m", window(100)),
        ("latest of a 4h series", "BTC/4h", window(5)),
        ("forward from a start, bounded", "BTC/1m", window(50, lower=RECENT, newest=False)),
        ("forward across the gap", "BTC/1m", window(600, lower=OLD, newest=False)),
        ("nothing there", "SOL/1m", window(10, lower=NOW, newest=False)),
    ],
)
async def test_pages_equal_the_unbounded_read(
    market: MarketData, conn: asyncpg.Connection, catalog: dict[str, int], case, star, win
) -> None:
    series = catalog[star]
    sql = _SQL[SERVED_CANDLES.name]
    query = sql.newest_json if win.newest else sql.forward_json
    expected = await conn.fetchrow(query, series, win.lower, win.upper, win.limit)
    assert tuple(await market.page_json(SERVED_CANDLES, series, win)) == tuple(expected)
    rows = await market.page(SERVED_CANDLES, series, win)
    assert len(rows) == expected[0]
    assert [r["time"] for r in rows[:1] + rows[-1:]] == ([expected[1], expected[2]] if rows else [])


def test_the_bound_is_the_span_of_the_rows_asked_for() -> None:
    latest = narrowed(window(1000), 60, NOW)
    assert latest == window(1000, lower=NOW - timedelta(minutes=2000))
    forward = narrowed(window(10, lower=OLD, newest=False), 3600, NOW)
    assert forward is not None
    assert (forward.lower, forward.upper) == (OLD, OLD + timedelta(hours=20))
    assert narrowed(window(20000), 86400, NOW) is None  # 110 years: no narrower than all
    assert narrowed(window(10, lower=OLD, upper=OLD + timedelta(minutes=5)), 60, NOW) is None


async def test_multi_series_reads_equal_the_unbounded_read(
    market: MarketData, conn: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    ids = [catalog[name] for name in ("BTC/1m", "SOL/1m", "BTC/4h", "SOL/4h")]
    sql = _SQL[SERVED_CANDLES.name]
    for limit in (1, 100, 4000):
        expected = await conn.fetch(sql.latest_many_json, ids, limit, MIN_TIME)
        found = await market.latest_many_json(SERVED_CANDLES, ids, limit)
        assert found == {r[0]: tuple(r[1:]) for r in expected}
    assert await market.latest_times(SERVED_CANDLES, ids) == {
        catalog["BTC/1m"]: NOW - timedelta(minutes=1),
        catalog["SOL/1m"]: OLD + timedelta(minutes=499),
        catalog["BTC/4h"]: OLD + timedelta(minutes=2880),
        catalog["SOL/4h"]: None,
    }
    keys = [(catalog["BTC/1m"], NOW - timedelta(minutes=1)), (catalog["SOL/1m"], OLD)]
    changed = await market.changed(SERVED_CANDLES, keys)
    assert [(r[0], r["time"]) for r in changed] == sorted(
        [(catalog["SOL/1m"], OLD), (catalog["BTC/1m"], NOW - timedelta(minutes=1))],
        key=lambda k: k[1],
    )
    since = await market.since(
        SERVED_CANDLES, [(catalog["BTC/1m"], NOW - timedelta(minutes=3))], 10
    )
    assert [r["time"] for r in since] == [NOW - timedelta(minutes=m) for m in (3, 2, 1)]
