"""Queries shared by the API and the exports: candles, funding and open interest of one
series in a time range or the latest N, and per-day coverage.

Every range is half-open, [start, end), and every result is ascending in time. The latest-N
queries walk the primary-key index backwards and stop after N rows, so they cost the same on
a series of a thousand rows or of a hundred million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from kirby_core.errors import InvalidRequest
from kirby_core.models import Candle, FundingRate, OpenInterest
from kirby_core.timeutil import ensure_utc, expected_count

MAX_LIMIT = 100_000

_CANDLE_COLUMNS = "time, open, high, low, close, volume, trade_count"
_FUNDING_COLUMNS = (
    "time, settled_funding_rate, settled_premium, predicted_funding_rate, premium, mark_price,"
    " oracle_price, mid_price, next_funding_time"
)
_OI_COLUMNS = "time, open_interest, notional, day_base_volume, day_notional_volume"

# (table, series column, columns, row type): fixed identifiers only.
_DATASETS = {
    "candles": ("candles", "starlisting_id", _CANDLE_COLUMNS, Candle),
    "funding_rates": ("funding_rates", "trading_pair_id", _FUNDING_COLUMNS, FundingRate),
    "open_interest": ("open_interest", "trading_pair_id", _OI_COLUMNS, OpenInterest),
}


def _check(limit: int | None, start: datetime | None, end: datetime | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if start is not None and end is not None and ensure_utc(start) > ensure_utc(end):
        raise InvalidRequest(f"start ({start.isoformat()}) is after end ({end.isoformat()})")


async def read_range(
    conn: asyncpg.Connection,
    dataset: str,
    series_id: int,
    start: datetime,
    end: datetime | None = None,
    limit: int | None = None,
) -> list:
    """Rows of `dataset` for one series with start <= time < end, oldest first."""
    _check(limit, start, end)
    table, series, columns, row_type = _DATASETS[dataset]
    args: list = [series_id, ensure_utc(start)]
    conditions = [f"{series} = $1", "time >= $2"]
    if end is not None:
        args.append(ensure_utc(end))
        conditions.append(f"time < ${len(args)}")
    query = f"SELECT {columns} FROM {table} WHERE {' AND '.join(conditions)} ORDER BY time"  # noqa: S608
    if limit is not None:
        args.append(limit)
        query += f" LIMIT ${len(args)}"
    records = await conn.fetch(query, *args)
    return [row_type(*r) for r in records]


async def read_latest(conn: asyncpg.Connection, dataset: str, series_id: int, limit: int) -> list:
    """The latest `limit` rows of one series, oldest first."""
    _check(limit, None, None)
    table, series, columns, row_type = _DATASETS[dataset]
    records = await conn.fetch(
        f"SELECT {columns} FROM {table} WHERE {series} = $1"  # noqa: S608
        " ORDER BY time DESC LIMIT $2",
        series_id,
        limit,
    )
    return [row_type(*r) for r in reversed(records)]


async def read_candles(
    conn,
    starlisting_id: int,
    start: datetime,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[Candle]:
    return await read_range(conn, "candles", starlisting_id, start, end, limit)


async def latest_candles(conn, starlisting_id: int, limit: int) -> list[Candle]:
    return await read_latest(conn, "candles", starlisting_id, limit)


async def read_funding_rates(
    conn,
    trading_pair_id: int,
    start: datetime,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[FundingRate]:
    return await read_range(conn, "funding_rates", trading_pair_id, start, end, limit)


async def read_open_interest(
    conn,
    trading_pair_id: int,
    start: datetime,
    end: datetime | None = None,
    limit: int | None = None,
) -> list[OpenInterest]:
    return await read_range(conn, "open_interest", trading_pair_id, start, end, limit)


@dataclass(frozen=True)
class DayCoverage:
    day: date
    expected: int
    present: int
    outage_minutes: int
    """Minutes of that day covered by a recorded collection outage."""

    @property
    def missing(self) -> int:
        return self.expected - self.present


async def read_coverage(
    conn: asyncpg.Connection,
    dataset: str,
    series_id: int,
    interval: str,
    start: date,
    end: date,
) -> list[DayCoverage]:
    """Per UTC day in [start, end): rows expected at `interval`, rows present, and minutes
    covered by outages. Funding and OI expect one row a minute (`interval="1m"`)."""
    if start >= end:
        raise InvalidRequest(f"start ({start}) must be before end ({end})")
    table, series, _, _ = _DATASETS[dataset]
    records = await conn.fetch(
        f"""
        WITH days AS (
            SELECT d::date AS day FROM generate_series($2::date, $3::date - 1, '1 day') d
        ), present AS (
            SELECT date_trunc('day', time AT TIME ZONE 'UTC')::date AS day, count(*) AS n
            FROM {table}
            WHERE {series} = $1 AND time >= $2::date::timestamp AT TIME ZONE 'UTC'
              AND time < $3::date::timestamp AT TIME ZONE 'UTC'
            GROUP BY 1
        ), outages AS (
            SELECT days.day, sum(extract(epoch FROM
                       least(o.end_time, (days.day + 1)::timestamp AT TIME ZONE 'UTC')
                       - greatest(o.start_time, days.day::timestamp AT TIME ZONE 'UTC')) / 60
                   )::int AS minutes
            FROM days JOIN collection_outages o
              ON o.dataset = $4 AND o.series_id = $1
             AND o.start_time < (days.day + 1)::timestamp AT TIME ZONE 'UTC'
             AND o.end_time > days.day::timestamp AT TIME ZONE 'UTC'
            GROUP BY days.day
        )
        SELECT days.day, coalesce(present.n, 0) AS present,
               coalesce(outages.minutes, 0) AS outage_minutes
        FROM days LEFT JOIN present USING (day) LEFT JOIN outages USING (day)
        ORDER BY days.day
        """,  # noqa: S608
        series_id,
        start,
        end,
        dataset,
    )
    return [
        DayCoverage(r["day"], _expected_on(r["day"], interval), r["present"], r["outage_minutes"])
        for r in records
    ]


def _expected_on(day: date, interval: str) -> int:
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return expected_count(day_start, day_start + timedelta(days=1), interval)
