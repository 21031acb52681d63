"""Per-day completeness of a series, telling apart the three reasons a row can be missing.

For each UTC day: rows expected (`kirby_core.db.readers.expected_rows`, the one definition:
candles at the series' interval, open interest a minute, funding one settled rate an hour;
today only up to now), rows present, minutes covered by recorded collection outages ("the
collector was down"), and whether the missing rows are unavailable at source ("the
exchange no longer serves them", so no backfill can fill them). What is left is a gap a
backfill can still close, or a market with no trades.

What each exchange keeps comes from `kirby_core.exchanges`: Hyperliquid serves only its
latest 5000 candles per interval and has no open-interest history; its funding history
serves every settled hour (the per-minute live funding fields are not counted: no source
can re-fetch them). Other exchanges are taken to serve their whole history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import msgspec

from kirby_api.database import Database
from kirby_api.datasets import Dataset
from kirby_core.db.readers import read_coverage
from kirby_core.timeutil import EPOCH

Status = Literal["complete", "partial", "missing", "outage", "unavailable_at_source", "future"]
MAX_DAYS = 366
DEFAULT_DAYS = 30


class DayCoverage(msgspec.Struct):
    date: date
    expected: int
    """Rows the dataset implies for the day (today: up to now); funding: settled hours."""
    present: int
    missing: int
    completeness: float
    """present / expected, 1.0 for a day that expects nothing yet."""
    outage_minutes: int
    """Minutes of the day inside recorded collection outages (the collector was down)."""
    unavailable_at_source: bool
    """Missing rows the exchange no longer serves: no backfill can fill them."""
    status: Status


@dataclass(frozen=True)
class SourceRetention:
    oldest: datetime | None
    """Oldest time the exchange still serves (None: all of its history)."""
    note: str


def source_retention(
    exchange: str, dataset: Dataset, interval: str, now: datetime
) -> SourceRetention:
    if exchange != "hyperliquid":
        return SourceRetention(None, f"{exchange}: assumed to serve its whole history")
    # Imported here: kirby_core.exchanges pulls in ccxt, which only this route needs.
    from kirby_core.exchanges import candle_coverage

    if dataset.name == "candles":
        coverage = candle_coverage(interval, EPOCH, now, now)
        oldest = coverage.available.start if coverage.available else now
        return SourceRetention(oldest, "Hyperliquid serves only its latest 5000 candles")
    if dataset.name == "open_interest":
        return SourceRetention(now, "Hyperliquid publishes no open-interest history")
    return SourceRetention(
        None,
        "coverage counts settled hours (settled_funding_rate); Hyperliquid's funding history "
        "serves every settled hour, the per-minute live fields cannot be re-fetched",
    )


def _status(day: DayCoverage) -> Status:
    if day.expected == 0:
        return "future"
    if day.missing == 0:
        return "complete"
    if day.unavailable_at_source and day.present == 0:
        return "unavailable_at_source"
    if day.outage_minutes:
        return "outage"
    return "missing" if day.present == 0 else "partial"


async def day_coverage(
    database: Database,
    dataset: Dataset,
    series_id: int,
    interval: str,
    start: date,
    end: date,
    retention: SourceRetention,
    now: datetime,
) -> list[DayCoverage]:
    async with database.connection() as conn:
        days = await read_coverage(conn, dataset.name, series_id, interval, start, end, now)
    result = []
    for stored in days:
        day_start = datetime(stored.day.year, stored.day.month, stored.day.day, tzinfo=UTC)
        expected, missing = stored.expected, stored.missing
        present = min(stored.present, expected) if expected else stored.present
        unavailable = (
            bool(missing) and retention.oldest is not None and day_start < retention.oldest
        )
        day = DayCoverage(
            date=stored.day,
            expected=expected,
            present=stored.present,
            missing=missing,
            completeness=round(present / expected, 6) if expected else 1.0,
            outage_minutes=stored.outage_minutes,
            unavailable_at_source=unavailable,
            status="complete",
        )
        result.append(msgspec.structs.replace(day, status=_status(day)))
    return result
