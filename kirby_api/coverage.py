"""Per-day completeness of a series as the API serves it (/coverage, /status).

The numbers come from the one classifier, `kirby_core.db.coverage.classify_days`: rows
expected (candles at the series' interval, open interest per point of the exchange's
history, funding one settled rate per settlement, trades and books a minute; today only up
to now), rows present (trades: minutes with a trade; books: minutes with a sample),
minutes covered by recorded collection outages, and every missing row in one class:
unavailable at source (the exchange no longer serves it,
`kirby_core.db.coverage.source_window`), no trades (the last backfill found none at the
exchange, or, for trades, the live feed watched a quiet minute), collector outage, or
unexplained; for books also the minutes with an integrity gap. This module only adds the
day's status and the JSON shape.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from kirby_api.database import ConnectionPool
from kirby_api.datasets import ServedDataset
from kirby_core.db.coverage import SourceWindow, classify_days

DayStatus = Literal[
    "complete", "partial", "missing", "outage", "unavailable_at_source", "no_trades", "future"
]
MAX_DAYS = 366
DEFAULT_DAYS = 30


class DayCoverage(msgspec.Struct):
    date: date
    expected: int
    """Rows the dataset implies for the day (today: up to now); funding: settlements."""
    present: int
    missing: int
    completeness: float
    """present / expected, 1.0 for a day that expects nothing yet."""
    outage_minutes: int
    """Minutes of the day inside recorded collection outages (the collector was down)."""
    unavailable_at_source: bool
    """Missing rows the exchange no longer serves: no backfill can fill them."""
    status: DayStatus
    unavailable_rows: int = 0
    """Missing rows unavailable at source."""
    no_trades: int = 0
    """Missing rows the exchange served nothing for at the day's last backfill."""
    outage_rows: int = 0
    """Missing rows inside a collection outage recorded after the day's last backfill."""
    unexplained: int = 0
    """Missing rows no fact explains: a backfill can still fill them."""
    integrity_gap_minutes: int = 0
    """Books: minutes whose integrity counters saw a sequence gap (the book was resynced;
    their samples count as present). 0 for the other datasets."""


def _status(day: DayCoverage) -> DayStatus:
    if day.expected == 0:
        return "future"
    if day.missing == 0:
        return "complete"
    if day.unavailable_at_source and day.present == 0:
        return "unavailable_at_source"
    if day.outage_minutes:
        return "outage"
    if day.no_trades and not (day.outage_rows or day.unexplained):
        return "no_trades"
    return "missing" if day.present == 0 else "partial"


async def day_coverage(
    database: ConnectionPool,
    dataset: ServedDataset,
    series_id: int,
    interval: str,
    exchange: str,
    start: date,
    end: date,
    source: SourceWindow,
    now: datetime,
) -> list[DayCoverage]:
    async with database.connection() as conn:
        days = await classify_days(
            conn, dataset.name, series_id, interval, exchange, start, end, now, source.oldest
        )
    result = []
    for stored in days:
        expected = stored.expected
        present = min(stored.present, expected) if expected else stored.present
        day = DayCoverage(
            date=stored.day,
            expected=expected,
            present=stored.present,
            missing=stored.missing,
            completeness=round(present / expected, 6) if expected else 1.0,
            outage_minutes=stored.outage_minutes,
            unavailable_at_source=stored.unavailable_at_source > 0,
            status="complete",
            unavailable_rows=stored.unavailable_at_source,
            no_trades=stored.no_trades,
            outage_rows=stored.collector_outage,
            unexplained=stored.unexplained,
            integrity_gap_minutes=stored.integrity_gap_minutes,
        )
        result.append(msgspec.structs.replace(day, status=_status(day)))
    return result
