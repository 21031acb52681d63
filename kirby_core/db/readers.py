"""Per-day coverage of one series: rows expected, rows present, minutes of recorded outage.

What "expected" means is declared once per dataset (`EXPECTED`) and computed by one
function, `expected_rows`: the API's /coverage and /status, and the funding asset check,
all ask it. Candles and open interest expect one row per interval once it has closed;
funding expects one *settled* rate per hour (the rows the funding history backfills and
the only ones any source can re-fetch), counted once the hour has settled, so a day of
backfilled funding reads 24 of 24, not 24 of 1440 minutes.

Pages of rows are read where they are served: the API's `kirby_api.market` (prepared
statements that build JSON in the database) and the exports' `kirby_core.db.export` (COPY).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from kirby_core.datasets import DATASETS
from kirby_core.errors import InvalidRequest
from kirby_core.timeutil import expected_count, floor_time, interval_delta


@dataclass(frozen=True)
class Expected:
    """Which rows of a dataset coverage expects."""

    interval: str | None
    """One row per this interval; None: the series' own interval (candles)."""
    counted: str
    """SQL condition a stored row must meet to count (fixed text, never from a request)."""
    due_after: timedelta | None
    """How long after its time a row can exist; None: one interval (the row has closed)."""


EXPECTED = {
    "candles": Expected(None, "true", None),
    "funding_rates": Expected("1h", "settled_funding_rate IS NOT NULL", timedelta(minutes=1)),
    "open_interest": Expected("1m", "true", None),
}


def coverage_interval(dataset: str, interval: str) -> str:
    """The interval coverage counts `dataset` in (`interval`: the series' own)."""
    return EXPECTED[dataset].interval or interval


def expected_rows(
    dataset: str, interval: str, start: datetime, end: datetime, now: datetime
) -> int:
    """Rows of `dataset` that should exist with start <= time < end as of `now`."""
    rule = EXPECTED[dataset]
    step = coverage_interval(dataset, interval)
    due = floor_time(now - (rule.due_after or interval_delta(step)), step) + interval_delta(step)
    end = min(end, due)
    return expected_count(start, end, step) if end > start else 0


@dataclass(frozen=True)
class DayCoverage:
    day: date
    expected: int
    """Rows `expected_rows` wants for the day as of `now`."""
    present: int
    """Stored rows that count (`Expected.counted`)."""
    outage_minutes: int
    """Minutes of that day covered by a recorded collection outage."""

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)


async def read_coverage(
    conn: asyncpg.Connection,
    dataset: str,
    series_id: int,
    interval: str,
    start: date,
    end: date,
    now: datetime,
) -> list[DayCoverage]:
    """Per UTC day in [start, end): rows expected (as of `now`), rows present that count,
    and minutes covered by outages. `interval` is the series' own (candles)."""
    if start >= end:
        raise InvalidRequest(f"start ({start}) must be before end ({end})")
    declared = DATASETS[dataset]  # fixed identifiers only
    table, series, counted = declared.name, declared.series_column, EXPECTED[dataset].counted
    records = await conn.fetch(
        f"""
        WITH days AS (
            SELECT d::date AS day FROM generate_series($2::date, $3::date - 1, '1 day') d
        ), present AS (
            SELECT date_trunc('day', time AT TIME ZONE 'UTC')::date AS day, count(*) AS n
            FROM {table}
            WHERE {series} = $1 AND time >= $2::date::timestamp AT TIME ZONE 'UTC'
              AND time < $3::date::timestamp AT TIME ZONE 'UTC' AND {counted}
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
        DayCoverage(
            r["day"],
            expected_rows(dataset, interval, *_day_bounds(r["day"]), now),
            r["present"],
            r["outage_minutes"],
        )
        for r in records
    ]


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)
