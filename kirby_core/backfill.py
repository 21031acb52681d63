"""Backfills: history of one series fetched from an exchange and upserted, reported per day.

A backfill covers whole UTC days of one series (days still under way stop at the last closed
candle, the last settlement of funding, or the last published open-interest point). For
every day it reports what the exchange served (rows, first and last time) and, of what the
day should hold, what is missing and why:

- unavailable at source: older than the exchange keeps (Hyperliquid: its last 5000 candles
  per interval, `candle_coverage`), or a day the exchange served nothing for although it
  publishes every interval (Binance before a listing, funding before a listing), or open
  interest of an exchange that publishes no history of it (Hyperliquid, Coinbase);
- missing: the exchange served no row (Hyperliquid leaves out minutes without trades).

With a `window` (gap repair of the day under way, `kirby_pipelines.live_repair`), each
function covers only that part of its days: it fetches, expects and reports the window's
times only, and what it finds gone is the window, never the rest of the day.

Before writing, fetched candles are compared with what is already stored for the same open
times (normally the live collector's rows): minutes compared, minutes disagreeing beyond
`PRICE_TOLERANCE` / `VOLUME_TOLERANCE`, the largest price difference.

Writes go through `kirby_core.db.writer` (COALESCE upserts that skip unchanged rows): running
a backfill twice writes nothing the second time, and a thin REST row never erases a live
value with NULL. Fetches are chunked (`FETCH_DAYS`) to bound memory on long ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Protocol

import asyncpg

from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.db.writer import (
    WriteResult,
    upsert_candles,
    upsert_funding_rates,
    upsert_open_interest,
)
from kirby_core.exchanges.base import SourceCoverage
from kirby_core.exchanges.registry import ExchangeDeclaration
from kirby_core.models import (
    Candle,
    CandleRow,
    FundingRate,
    FundingRateRow,
    OpenInterest,
    OpenInterestRow,
)
from kirby_core.timeutil import DAY, expected_count, floor_time, interval_delta, iter_open_times

FETCH_DAYS = 30
"""Days fetched and written per round: bounds memory (30 days of 1m = 43,200 candles)."""
PRICE_TOLERANCE = Decimal("0.001")
"""A stored candle agrees with the exchange's when every price is within 0.1%..."""
VOLUME_TOLERANCE = Decimal("0.01")
"""...and its volume within 1% (a live candle that missed its last trades falls outside)."""

RepairWindow = tuple[datetime, datetime]
"""[start, end) of a window repair: the part of today an outage covered."""

UNAVAILABLE = "unavailable_at_source"
PARTIAL = "partially_unavailable_at_source"
OK = "ok"


class CandleHistory(Protocol):
    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]: ...


class FundingHistory(Protocol):
    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]: ...


class OpenInterestHistory(Protocol):
    async def fetch_open_interest(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[OpenInterest]: ...


@dataclass(frozen=True)
class CandleSource:
    """An exchange's candle history and what it promises about it."""

    name: str
    client: CandleHistory
    every_interval: bool
    """True when the exchange has a candle for every interval, quiet ones included
    (Binance); False when minutes without trades have none (Hyperliquid)."""
    coverage: Callable[[str, datetime, datetime, datetime], SourceCoverage] | None = None
    """Which part of a range the exchange still serves at `now`; None: all of it."""


def candle_source(exchange: ExchangeDeclaration, client: CandleHistory) -> CandleSource:
    """`client`'s candles with what `exchange`'s declaration promises about them."""
    return CandleSource(exchange.name, client, exchange.every_interval, exchange.candle_coverage)


@dataclass(frozen=True)
class DayReport:
    day: date
    expected: int
    """Rows the day should hold: closed candles, or settled funding hours, up to now."""
    fetched: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    unavailable: int = 0
    """Expected rows the exchange no longer (or never) serves."""
    compared: int = 0
    """Fetched candles that were already stored (live rows), compared value by value."""
    disagreeing: int = 0
    max_price_diff: float = 0.0
    """Largest relative price difference among the compared candles."""
    unavailable_window: tuple[datetime, datetime] | None = None
    """The part of the day the exchange no longer has, or never had."""
    absent_times: tuple[datetime, ...] = ()
    """Expected times the exchange could serve but served no row for (no trades)."""

    @property
    def missing(self) -> int:
        """Expected rows the exchange could serve but did not (no trades in the minute)."""
        return max(0, self.expected - self.fetched - self.unavailable)

    @property
    def status(self) -> str:
        if self.expected and self.unavailable >= self.expected:
            return UNAVAILABLE
        return PARTIAL if self.unavailable else OK


@dataclass
class BackfillResult:
    days: list[DayReport] = field(default_factory=list)
    write: WriteResult = field(default_factory=WriteResult)


DayReportCallback = Callable[[DayReport], None]


async def backfill_candles(
    conn: asyncpg.Connection,
    source: CandleSource,
    starlisting: Starlisting,
    days: Iterable[date],
    now: datetime,
    progress: DayReportCallback | None = None,
    window: RepairWindow | None = None,
) -> BackfillResult:
    """Fetch and upsert the candles of `starlisting` for `days`; one report per day
    (`window`: only that part of them, see the module)."""
    key = starlisting.key
    closed_until = floor_time(now, key.interval)
    result = BackfillResult()
    for chunk in _chunks(sorted(set(days))):
        bounds = [_day_bounds(day, closed_until, window) for day in chunk]
        reports = {
            day: DayReport(day, expected_count(start, end, key.interval) if end > start else 0)
            for day, (start, end) in zip(chunk, bounds, strict=True)
        }
        fetch_start, fetch_end = bounds[0][0], max(end for _, end in bounds)
        if source.coverage is not None and fetch_end > fetch_start:
            for day, (start, end) in zip(chunk, bounds, strict=True):
                if end > start:
                    gone = source.coverage(key.interval, start, end, now).unavailable
                    if gone is not None:
                        reports[day] = replace(
                            reports[day],
                            unavailable=expected_count(*gone, key.interval),
                            unavailable_window=(gone.start, gone.end),
                        )
            available = source.coverage(key.interval, fetch_start, fetch_end, now).available
            fetch_start, fetch_end = available if available else (fetch_end, fetch_end)
        candles: list[Candle] = []
        if fetch_end > fetch_start:
            candles = await source.client.fetch_candles(
                key.coin, key.quote, key.market_type, key.interval, fetch_start, fetch_end
            )
        agreement = await _compare_with_stored(conn, starlisting.id, candles)
        for day, rows in _by_day(candles).items():
            stats = agreement.get(day, (0, 0, 0.0))
            reports[day] = replace(
                reports[day],
                fetched=len(rows),
                first_time=rows[0].time,
                last_time=rows[-1].time,
                compared=stats[0],
                disagreeing=stats[1],
                max_price_diff=stats[2],
            )
        spans = dict(zip(chunk, bounds, strict=True))
        if source.every_interval:
            reports = {
                d: _nothing_served_is_unavailable(r, window and spans[d])
                for d, r in reports.items()
            }
        reports = _with_absent(reports, spans, candles, key.interval)
        result.write += await upsert_candles(
            conn, [CandleRow(starlisting.id, *candle) for candle in candles]
        )
        _report(result, reports, progress)
    return result


async def backfill_funding_rates(
    conn: asyncpg.Connection,
    client: FundingHistory,
    pair: TradingPair,
    days: Iterable[date],
    now: datetime,
    progress: DayReportCallback | None = None,
    settlement: str = "1h",
    window: RepairWindow | None = None,
) -> BackfillResult:
    """Fetch and upsert the settled funding of `pair` for `days`, one settlement every
    `settlement` (the exchange's declared `funding_interval`).

    Only the settled columns are written; the live feed's predicted rate and prices in the
    same rows are kept (the writer's COALESCE).
    """
    # A settlement is stamped on its boundary plus a few hundred ms: count a stamp once a
    # minute has passed since it.
    settled_until = floor_time(now - timedelta(minutes=1), settlement) + timedelta(minutes=1)
    result = BackfillResult()
    for chunk in _chunks(sorted(set(days))):
        bounds = [_day_bounds(day, settled_until, window) for day in chunk]
        reports = {
            day: DayReport(day, expected_count(start, end, settlement) if end > start else 0)
            for day, (start, end) in zip(chunk, bounds, strict=True)
        }
        start, end = bounds[0][0], max(end for _, end in bounds)
        rates: list[FundingRate] = []
        if end > start:
            rates = await client.fetch_funding_rates(pair.key.coin, pair.key.quote, start, end)
        for day, rows in _by_day(rates).items():
            reports[day] = replace(
                reports[day], fetched=len(rows), first_time=rows[0].time, last_time=rows[-1].time
            )
        spans = dict(zip(chunk, bounds, strict=True))
        reports = {
            d: _nothing_served_is_unavailable(r, window and spans[d]) for d, r in reports.items()
        }
        reports = _with_absent(reports, spans, rates, settlement)
        result.write += await upsert_funding_rates(
            conn,
            [
                FundingRateRow(
                    pair.id,
                    rate.time,
                    settled_funding_rate=rate.settled_funding_rate,
                    settled_premium=rate.settled_premium,
                )
                for rate in rates
            ],
        )
        _report(result, reports, progress)
    return result


async def backfill_open_interest(
    conn: asyncpg.Connection,
    client: OpenInterestHistory | None,
    pair: TradingPair,
    days: Iterable[date],
    now: datetime,
    progress: DayReportCallback | None = None,
    *,
    step: str = "5m",
    served_from: datetime | None = None,
    window: RepairWindow | None = None,
) -> BackfillResult:
    """Fetch and upsert the open-interest history of `pair` for `days`, one point every
    `step` (the exchange's declared `open_interest_interval`). `client` None: the exchange
    publishes no history, every day is unavailable at source; `served_from`: the oldest time
    it still serves (None: all of it), earlier points are unavailable at source.

    Only the history's columns (open interest, notional) are written; the live feed's
    24 h volumes in the same rows are kept (the writer's COALESCE)."""
    published_until = floor_time(now, step)  # a point exists once its time has passed
    oldest = now if client is None else served_from
    if oldest is not None:
        # The first point strictly after it: the exchange's clock runs on while the request
        # is on its way, and a start before what it keeps is refused (Binance).
        oldest = floor_time(oldest, step) + interval_delta(step)
    result = BackfillResult()
    for chunk in _chunks(sorted(set(days))):
        bounds = {day: _day_bounds(day, published_until, window) for day in chunk}
        reports = {
            day: _gone_before(
                DayReport(day, expected_count(s, e, step) if e > s else 0),
                s,
                e,
                step,
                oldest,
                whole_day=window is None,
            )
            for day, (s, e) in bounds.items()
        }
        start = max(bounds[chunk[0]][0], oldest or bounds[chunk[0]][0])
        end = max(e for _, e in bounds.values())
        points: list[OpenInterest] = []
        if client is not None and end > start:
            points = await client.fetch_open_interest(pair.key.coin, pair.key.quote, start, end)
        for day, rows in _by_day(points).items():
            reports[day] = replace(
                reports[day], fetched=len(rows), first_time=rows[0].time, last_time=rows[-1].time
            )
        reports = {
            d: r if r.unavailable else _nothing_served_is_unavailable(r, window and bounds[d])
            for d, r in reports.items()
        }
        reports = _with_absent(reports, bounds, points, step)
        result.write += await upsert_open_interest(
            conn,
            [OpenInterestRow(pair.id, p.time, p.open_interest, p.notional) for p in points],
        )
        _report(result, reports, progress)
    return result


def _gone_before(
    report: DayReport,
    start: datetime,
    end: datetime,
    step: str,
    oldest: datetime | None,
    *,
    whole_day: bool = True,
) -> DayReport:
    """`report` (the day's expected times in [start, end)) with those before `oldest`
    unavailable at source (None: all of them served); when all are gone and `whole_day`,
    the rest of the day is too (a window repair claims its window only)."""
    if not report.expected or oldest is None or oldest <= start:
        return report
    gone_until = min(end, oldest)
    whole = gone_until == end and whole_day
    return replace(
        report,
        unavailable=expected_count(start, gone_until, step),
        unavailable_window=(start, start + DAY if whole else gone_until),
    )


def _chunks(days: Sequence[date]) -> Iterable[list[date]]:
    """Runs of consecutive days, at most FETCH_DAYS long."""
    chunk: list[date] = []
    for day in days:
        if chunk and (len(chunk) == FETCH_DAYS or day != chunk[-1] + DAY):
            yield chunk
            chunk = []
        chunk.append(day)
    if chunk:
        yield chunk


def _day_bounds(
    day: date, until: datetime, window: RepairWindow | None = None
) -> tuple[datetime, datetime]:
    """The part of `day` a backfill covers: up to `until`, inside `window` if given."""
    start = datetime.combine(day, time(), UTC)
    end = min(start + DAY, until)
    if window is not None:
        start, end = max(start, window[0]), min(end, window[1])
    return start, max(start, end)


def _by_day(
    rows: Sequence[Candle | FundingRate | OpenInterest],
) -> dict[date, list[Candle | FundingRate | OpenInterest]]:
    grouped: dict[date, list[Candle | FundingRate | OpenInterest]] = {}
    for row in rows:
        grouped.setdefault(row.time.date(), []).append(row)
    return grouped


def _nothing_served_is_unavailable(
    report: DayReport, span: RepairWindow | None = None
) -> DayReport:
    """An exchange that publishes every interval and served nothing for a day does not
    have that day (before a listing): unavailable at source, not an empty success. `span`:
    the part of the day a window repair covered (it claims that part only)."""
    if report.expected and report.fetched == 0:
        start = datetime.combine(report.day, time(), UTC)
        gone = span or (start, start + DAY)
        return replace(report, unavailable=report.expected, unavailable_window=gone)
    return report


def _with_absent(
    reports: dict[date, DayReport],
    bounds: dict[date, tuple[datetime, datetime]],
    served: Sequence[Candle] | Sequence[FundingRate] | Sequence[OpenInterest],
    step: str,
) -> dict[date, DayReport]:
    """Each report with the expected times the exchange served no row for, outside the
    window it no longer has (what coverage calls "no trades")."""
    times = {floor_time(row.time, step) for row in served}
    found = {}
    for day, report in reports.items():
        gone = report.unavailable_window
        absent = tuple(
            t
            for t in iter_open_times(*bounds[day], step)
            if t not in times and not (gone and gone[0] <= t < gone[1])
        )
        found[day] = replace(report, absent_times=absent)
    return found


def _report(
    result: BackfillResult, reports: dict[date, DayReport], progress: DayReportCallback | None
) -> None:
    for day in sorted(reports):
        result.days.append(reports[day])
        if progress is not None:
            progress(reports[day])


_COMPARE = """
SELECT (r.time AT TIME ZONE 'UTC')::date AS day, count(*) AS compared,
       count(*) FILTER (WHERE d.price > $8 OR abs(c.volume - r.volume) > $9 * greatest(
           c.volume, r.volume)) AS disagreeing,
       coalesce(max(d.price), 0)::float8 AS max_price_diff
FROM unnest($2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[],
            $7::numeric[]) AS r(time, open, high, low, close, volume)
JOIN candles c ON c.starlisting_id = $1 AND c.time = r.time
CROSS JOIN LATERAL (SELECT greatest(abs(c.open - r.open), abs(c.high - r.high),
                                    abs(c.low - r.low), abs(c.close - r.close)) / r.close
                    AS price) d
GROUP BY 1
"""


async def _compare_with_stored(
    conn: asyncpg.Connection, starlisting_id: int, candles: Sequence[Candle]
) -> dict[date, tuple[int, int, float]]:
    """Per day: stored candles at the fetched open times, how many disagree, worst diff."""
    if not candles:
        return {}
    columns = list(zip(*candles, strict=True))
    records = await conn.fetch(
        _COMPARE, starlisting_id, *columns[:6], PRICE_TOLERANCE, VOLUME_TOLERANCE
    )
    return {r["day"]: (r["compared"], r["disagreeing"], r["max_price_diff"]) for r in records}
