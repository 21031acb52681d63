"""Per-day coverage of one series: rows expected, rows present, minutes of recorded outage.

Pages of rows are read where they are served: the API's `kirby_api.market` (prepared
statements that build JSON in the database) and the exports' `kirby_core.db.export` (COPY).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from kirby_core.db.export import TABLES
from kirby_core.errors import InvalidRequest
from kirby_core.timeutil import expected_count


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
    spec = TABLES[dataset]  # fixed identifiers only
    table, series = spec.table, spec.series
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
