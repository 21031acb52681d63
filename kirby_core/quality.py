"""Data-quality rules for one series and UTC day, evaluated in PostgreSQL or over the lake.

Completeness (why rows are missing) is not decided here: `kirby_core.db.coverage` is the
one classifier. The rules here: OHLC sanity (consistent prices, no spikes, volume and trade
count agreeing), timestamps aligned to the interval with no duplicate, settled funding once
per settlement of the exchange's declared `funding_interval`, on its grid, within
Hyperliquid's cap, and lake files holding exactly the rows of
the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import duckdb

from kirby_core.db.readers import coverage_interval, expected_rows
from kirby_core.lake import read_files
from kirby_core.locations import Location
from kirby_core.timeutil import DAY, interval_seconds

MAX_HOURLY_FUNDING = 0.04
"""Hyperliquid caps funding at 4% an hour; a rate beyond it is not a real rate (applied to
every settlement: the 8-hourly exchanges cap theirs lower)."""


def max_move(interval: str) -> float:
    """Largest believable move within one candle or from one close to the next."""
    seconds = interval_seconds(interval)
    return 0.2 if seconds <= 3600 else 0.5 if seconds <= 86400 else 1.0


@dataclass(frozen=True)
class CandleSanity:
    day: date
    rows: int
    inconsistent: int
    """Prices out of order (low above open/close, high below) or not positive."""
    spikes: int
    """Candles whose range, or whose move from the previous close, exceeds `max_move`."""
    volume_mismatch: int
    """Volume without trades, trades without volume, or negative values."""
    misaligned: int
    """Open times not on the interval's boundaries."""
    duplicates: int

    @property
    def ohlc_passed(self) -> bool:
        return self.inconsistent == 0 and self.spikes == 0 and self.volume_mismatch == 0

    @property
    def timestamps_passed(self) -> bool:
        return self.misaligned == 0 and self.duplicates == 0


_SANITY = """
WITH day AS (
    SELECT *, lag(close) OVER (ORDER BY time) AS previous_close
    FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3
)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE NOT (low > 0 AND low <= least(open, close)
                                   AND high >= greatest(open, close))) AS inconsistent,
       count(*) FILTER (WHERE low > 0 AND (high / low - 1 > $4
           OR abs(close / previous_close - 1) > $4)) AS spikes,
       count(*) FILTER (WHERE volume < 0 OR trade_count < 0 OR (volume = 0 AND trade_count > 0)
           OR (volume > 0 AND trade_count = 0)) AS volume_mismatch,
       count(*) FILTER (WHERE (extract(epoch FROM time)::bigint + $6) % $5 <> 0) AS misaligned,
       count(*) - count(DISTINCT time) AS duplicates
FROM day
"""


async def candle_sanity(
    conn: asyncpg.Connection, starlisting_id: int, interval: str, day: date
) -> CandleSanity:
    start = datetime.combine(day, time(), UTC)
    week_offset = 3 * 86400 if interval == "1w" else 0  # weeks open on Monday
    record = await conn.fetchrow(
        _SANITY,
        starlisting_id,
        start,
        start + DAY,
        max_move(interval),
        interval_seconds(interval),
        week_offset,
    )
    assert record is not None  # an aggregate without GROUP BY: always one row
    return CandleSanity(day, **dict(record))


@dataclass(frozen=True)
class FundingSanity:
    day: date
    expected: int
    settlements: int
    off_schedule: int
    """Settled rates stamped off the settlement grid (every `funding_interval` from 00:00)."""
    out_of_range: int
    """Settled or predicted rates beyond Hyperliquid's 4%/hour cap."""
    gaps: int
    """Consecutive settlements more than one `funding_interval` apart."""
    unavailable: int = 0

    @property
    def passed(self) -> bool:
        """The rules of the rates themselves; completeness is the classifier's to decide."""
        return not (self.off_schedule or self.out_of_range or self.gaps)


_FUNDING = """
WITH settled AS (
    SELECT time, settled_funding_rate AS rate,
           time - lag(time) OVER (ORDER BY time) AS since_previous
    FROM funding_rates
    WHERE trading_pair_id = $1 AND time >= $2 AND time < $3 AND settled_funding_rate IS NOT NULL
)
SELECT (SELECT count(*) FROM settled) AS settlements,
       (SELECT count(*) FROM settled WHERE extract(epoch FROM time)::bigint % $5 <> 0)
           AS off_schedule,
       (SELECT count(*) FROM settled WHERE since_previous > make_interval(secs => $5)) AS gaps,
       (SELECT count(*) FROM funding_rates
        WHERE trading_pair_id = $1 AND time >= $2 AND time < $3
          AND (abs(settled_funding_rate) > $4 OR abs(predicted_funding_rate) > $4))
           AS out_of_range
"""


async def funding_sanity(
    conn: asyncpg.Connection,
    trading_pair_id: int,
    exchange: str,
    day: date,
    now: datetime,
    unavailable: int,
) -> FundingSanity:
    """Settled funding of a pair of `exchange` on `day`; `unavailable`: settlements the
    classifier finds unavailable at source."""
    start = datetime.combine(day, time(), UTC)
    expected = expected_rows("funding_rates", "1m", exchange, start, start + DAY, now)
    step = interval_seconds(coverage_interval("funding_rates", "1m", exchange))
    end = start + expected * timedelta(seconds=step)  # settled ones only
    record = await conn.fetchrow(_FUNDING, trading_pair_id, start, end, MAX_HOURLY_FUNDING, step)
    assert record is not None  # scalar subqueries without FROM: always one row
    return FundingSanity(
        day,
        expected,
        record["settlements"],
        record["off_schedule"],
        record["out_of_range"],
        record["gaps"],
        unavailable=unavailable,
    )


@dataclass(frozen=True)
class LakeCount:
    rows: int
    distinct_times: int


def lake_counts(lake: Location, dataset: str, day: date) -> dict[tuple[str, ...], LakeCount]:
    """Rows and distinct times per series in the lake files of one day, keyed by the hive
    values (exchange, symbol[, interval])."""
    base = lake.path(dataset)
    files = sorted(lake.fs.glob(f"{base}/**/date={day.isoformat()}/*.parquet"))
    if not files:
        return {}
    with duckdb.connect() as con:
        relation = read_files(con, lake, [str(f) for f in files], base)
        keys = [c for c in ("exchange", "symbol", "interval") if c in relation.columns]
        grouped = ", ".join(keys)
        rows = con.sql(
            f"SELECT {grouped}, count(*), count(DISTINCT time) FROM relation GROUP BY {grouped}"  # noqa: S608
        ).fetchall()
    return {tuple(r[: len(keys)]): LakeCount(r[-2], r[-1]) for r in rows}
