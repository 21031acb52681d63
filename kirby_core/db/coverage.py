"""Coverage decided once: every expected (series, time) of a day is present or missing for
one reason, and every surface counts the same classes.

`classify_days` is the one classifier, for every recorded dataset
(`kirby_core.datasets.RECORDED_DATASETS`). For each UTC day it counts the rows the dataset
expects (`readers.expected_rows`: candles per the series' interval, open interest per
point of the exchange's declared open-interest history, funding per settlement of its
declared `funding_interval`, trades and books per minute), the expected times with a stored
row that counts (for open interest, any row inside the point's interval; for trades a
minute with a trade, for books a minute with a sample), and sorts every expected time
without a row into exactly one class, first match wins:

1. no trades (trades only): the minute lies between the pair's first and last stored trade,
   inside a collector's life (`stream_heartbeats`: started_at .. heartbeat_at) and outside
   every `trades` outage of the pair: the live feed was watching and nothing traded (the
   collector records an outage from the last trade before any interruption to the first
   after it);
2. unavailable at source: older than the exchange serves today (`source_window`: for trades
   the registry's `TradeHistory` of the pair's market type, so every such minute of an
   exchange without trade history), or inside the window the day's last backfill found gone
   (`backfill_reports`);
3. no trades: the day's last backfill asked the exchange and it served no row for that time;
4. collector outage: inside a `collection_outages` window recorded after the day's last
   backfill (or with no backfill at all): repairable;
5. no trades (trades only): the day has a backfill report: the exchange served its trades of
   the day and none fell in the minute;
6. unexplained: anything else (never backfilled, or rows gone since): repairable.

Books have no history anywhere (`source_window` says so): their missing minutes are
collector outages or unexplained, and `ClassifiedDay.integrity_gap_minutes` counts the
minutes whose `book_integrity` row saw a sequence gap.

The API's /coverage and /status, the Dagster completeness checks (whose failures the
gap-repair sensor repairs), and the `lake_coverage` export that `daily_coverage.sql`
reads all call it. `record_backfill` writes the per-day reports it reads; it does not
fetch anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from kirby_core.datasets import DATASETS, RECORDED_DATASETS
from kirby_core.db import books as book_store
from kirby_core.db import trades as trade_store
from kirby_core.db.readers import EXPECTED, coverage_interval, expected_rows
from kirby_core.errors import InvalidRequest, NotFound
from kirby_core.timeutil import EPOCH, floor_time, interval_delta, interval_seconds

BOOKS_NOTE = (
    "no exchange serves past order books: only the samples Kirby recorded live; a missing "
    "minute is a collector outage or unexplained, and no backfill can fill it"
)
CLASSES = ("present", "unavailable_at_source", "no_trades", "collector_outage", "unexplained")


@dataclass(frozen=True)
class SourceWindow:
    oldest: datetime | None
    """Oldest time the exchange still serves (None: all of its history)."""
    note: str


def source_window(
    exchange: str, dataset: str, interval: str, now: datetime, market_type: str | None = None
) -> SourceWindow:
    """What `exchange` still serves of `dataset` at `now` (`interval`: the series' own;
    `market_type`: the series', which decides its trade history), as its declaration says
    (`kirby_core.exchanges.registry`); an undeclared exchange is assumed to serve its whole
    history. No exchange serves past order books: a missing minute of `books` is a collector
    outage or unexplained, never refetched."""
    if dataset == book_store.BOOKS_TABLE:
        return SourceWindow(None, BOOKS_NOTE)
    # Imported here: kirby_core.exchanges pulls in ccxt, which only this answer needs.
    from kirby_core.exchanges.registry import declaration

    declared = declaration(exchange)
    if declared is None:
        return SourceWindow(None, f"{exchange}: assumed to serve its whole history")
    return declared.source_window(dataset, interval, now, market_type)


@dataclass(frozen=True)
class ClassifiedDay:
    day: date
    expected: int
    """Rows `expected_rows` wants for the day as of `now`."""
    present: int
    """Expected times of the day with a stored row that counts (`Expected.counted`); for
    open interest, any row inside the point's interval."""
    outage_minutes: int
    """Minutes of that day covered by a recorded collection outage."""
    unavailable_at_source: int = 0
    no_trades: int = 0
    collector_outage: int = 0
    unexplained: int = 0
    integrity_gap_minutes: int = 0
    """Books: minutes of the day whose `book_integrity` row counts a sequence gap (their
    samples are present, each taken after the resync); 0 for every other dataset."""

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)

    @property
    def repairable(self) -> bool:
        """Whether a backfill should run for the day (the checks fail, the sensor repairs)."""
        return self.collector_outage > 0 or self.unexplained > 0


_CLASSIFY = """
WITH RECURSIVE days AS (
    SELECT d::date AS day FROM generate_series($2::date, $3::date - 1, '1 day') d
), slots AS (
    SELECT t, (t AT TIME ZONE 'UTC')::date AS day
    FROM generate_series($5::timestamptz, $6::timestamptz - make_interval(secs => $7),
                         make_interval(secs => $7)) t
    WHERE $6::timestamptz > $5::timestamptz
), bins(time) AS (
    -- the slots with a row that counts: its own time for candles and funding (on the grid),
    -- the history point's interval for open interest (a live minute row counts for its 5
    -- minutes), the minute of a trade or a book sample. Found by skipping from each slot to
    -- the next row after it (one index probe per slot with rows), so a day of a busy trade
    -- tape costs its minutes, not its millions of trades.
    SELECT date_bin(make_interval(secs => $7), min(time), $5::timestamptz)
    FROM {table}
    WHERE {series} = $1 AND time >= $2::date::timestamp AT TIME ZONE 'UTC'
      AND time < $3::date::timestamp AT TIME ZONE 'UTC' AND {counted}
    UNION ALL
    SELECT (SELECT date_bin(make_interval(secs => $7), min(x.time), $5::timestamptz)
            FROM {table} x
            WHERE x.{series} = $1 AND x.time >= b.time + make_interval(secs => $7)
              AND x.time < $3::date::timestamp AT TIME ZONE 'UTC' AND {counted})
    FROM bins b WHERE b.time IS NOT NULL
), stored AS (
    SELECT time FROM bins WHERE time IS NOT NULL
), tape AS (
    -- trades: the pair's first and last stored trade (a quiet minute between them, outside
    -- every outage and inside a collector's life, was watched by the live feed)
    SELECT (SELECT min(time) FROM {table} WHERE {series} = $1) AS first_time,
           (SELECT max(time) FROM {table} WHERE {series} = $1) AS last_time
    WHERE $9
), reports AS (
    SELECT day, backfilled_at, absent_times, unavailable_start, unavailable_end
    FROM backfill_reports WHERE dataset = $4 AND series_id = $1 AND day >= $2 AND day < $3
), absent AS (
    SELECT DISTINCT unnest(absent_times) AS t FROM reports
), classified AS (
    SELECT s.day, CASE
        WHEN p.time IS NOT NULL THEN 'present'
        WHEN $9 AND tape.first_time < s.t AND tape.last_time >= s.t + make_interval(secs => $7)
          AND EXISTS (SELECT 1 FROM stream_heartbeats h WHERE h.started_at <= s.t
                      AND h.heartbeat_at >= s.t + make_interval(secs => $7))
          AND NOT EXISTS (SELECT 1 FROM collection_outages o
                          WHERE o.dataset = $4 AND o.series_id = $1
                            AND o.start_time < s.t + make_interval(secs => $7)
                            AND o.end_time > s.t)
            THEN 'no_trades'
        WHEN s.t < $8::timestamptz
          OR (s.t >= r.unavailable_start AND s.t < r.unavailable_end) THEN 'unavailable'
        WHEN a.t IS NOT NULL THEN 'no_trades'
        WHEN EXISTS (SELECT 1 FROM collection_outages o
                     WHERE o.dataset = $4 AND o.series_id = $1
                       AND o.start_time < s.t + make_interval(secs => $7) AND o.end_time > s.t
                       AND (r.backfilled_at IS NULL OR o.recorded_at > r.backfilled_at))
            THEN 'outage'
        -- trades: a backfill fetched every trade the exchange serves of the day
        WHEN $9 AND r.day IS NOT NULL THEN 'no_trades'
        ELSE 'unexplained' END AS class
    FROM slots s LEFT JOIN reports r ON r.day = s.day
         LEFT JOIN tape ON true
         LEFT JOIN stored p ON p.time = s.t  -- distinct slots: one row at most
         LEFT JOIN absent a ON a.t = s.t
), counts AS (
    SELECT day, count(*) FILTER (WHERE class = 'unavailable') AS unavailable,
           count(*) FILTER (WHERE class = 'no_trades') AS no_trades,
           count(*) FILTER (WHERE class = 'outage') AS outage,
           count(*) FILTER (WHERE class = 'unexplained') AS unexplained
    FROM classified GROUP BY day
), present AS (
    SELECT (time AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM stored GROUP BY 1
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
), gaps AS (
    SELECT (time AT TIME ZONE 'UTC')::date AS day, count(*) AS minutes
    FROM book_integrity
    WHERE $10 AND trading_pair_id = $1 AND gaps > 0
      AND time >= $2::date::timestamp AT TIME ZONE 'UTC'
      AND time < $3::date::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1
)
SELECT days.day, coalesce(present.n, 0) AS present,
       coalesce(gaps.minutes, 0) AS gap_minutes,
       coalesce(outages.minutes, 0) AS outage_minutes,
       coalesce(counts.unavailable, 0) AS unavailable, coalesce(counts.no_trades, 0) AS no_trades,
       coalesce(counts.outage, 0) AS outage, coalesce(counts.unexplained, 0) AS unexplained
FROM days LEFT JOIN present USING (day) LEFT JOIN outages USING (day)
     LEFT JOIN counts USING (day) LEFT JOIN gaps USING (day)
ORDER BY days.day
"""


async def classify_days(
    conn: asyncpg.Connection,
    dataset: str,
    series_id: int,
    interval: str,
    exchange: str,
    start: date,
    end: date,
    now: datetime,
    served_from: datetime | None,
) -> list[ClassifiedDay]:
    """Per UTC day in [start, end): expected rows (as of `now`), stored rows that count,
    outage minutes, and every missing expected time in one class (see the module).
    `interval` is the series' own (candles), `exchange` its exchange (funding settles on its
    declared `funding_interval`); `served_from`: `SourceWindow.oldest`."""
    if start >= end:
        raise InvalidRequest(f"start ({start}) must be before end ({end})")
    table, series = _identifiers(dataset)
    step = coverage_interval(dataset, interval, exchange)
    first, last = _slot_range(dataset, step, start, end, now)
    records = await conn.fetch(
        _CLASSIFY.format(table=table, series=series, counted=EXPECTED[dataset].counted),
        series_id,
        start,
        end,
        dataset,
        first,
        last,
        interval_seconds(step),
        served_from or EPOCH,
        dataset == trade_store.TRADES_TABLE,
        dataset == book_store.BOOKS_TABLE,
    )
    return [
        ClassifiedDay(
            r["day"],
            expected_rows(dataset, interval, exchange, *_day_bounds(r["day"]), now),
            r["present"],
            r["outage_minutes"],
            r["unavailable"],
            r["no_trades"],
            r["outage"],
            r["unexplained"],
            r["gap_minutes"],
        )
        for r in records
    ]


def _identifiers(dataset: str) -> tuple[str, str]:
    """(table, series column) of a recorded dataset: fixed identifiers, never from a request;
    `InvalidRequest` naming the allowed ones for any other name."""
    if dataset == trade_store.TRADES_TABLE:
        return trade_store.TRADES_TABLE, trade_store.TRADE_COLUMNS[0]
    if dataset == book_store.BOOKS_TABLE:
        return book_store.BOOKS_TABLE, book_store.BOOK_COLUMNS[0]
    declared = DATASETS.get(dataset)
    if declared is None:
        raise InvalidRequest(
            f"unknown dataset {dataset!r}; expected one of {', '.join(RECORDED_DATASETS)}"
        )
    return declared.name, declared.series_column


def _slot_range(
    dataset: str, step: str, start: date, end: date, now: datetime
) -> tuple[datetime, datetime]:
    """[first expected open time, end of the last expected one) over the days: the times
    `expected_rows` counts, on the interval's grid."""
    low, _ = _day_bounds(start)
    high, _ = _day_bounds(end)
    first = floor_time(low, step)
    if first < low:
        first += interval_delta(step)
    rule = EXPECTED[dataset]
    due = floor_time(now - (rule.due_after or interval_delta(step)), step) + interval_delta(step)
    return first, max(first, min(high, due))


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class ServedDay:
    """What the exchange served for one series and day at a backfill."""

    day: date
    expected: int
    fetched: int
    first_time: datetime | None
    last_time: datetime | None
    absent_times: Sequence[datetime]
    """Expected times the exchange still serves but served no row for (no trades)."""
    unavailable: tuple[datetime, datetime] | None
    """The part of the day the exchange no longer has, or never had."""


async def record_backfill(
    conn: asyncpg.Connection, dataset: str, series_id: int, days: Sequence[ServedDay]
) -> None:
    """Replace the backfill reports of `days` (one row per day, stamped now)."""
    if not days:
        return
    # One row per day (a run holds at most 100 days of a series), and `absent_times` is an
    # array per row, which `unnest` cannot take ragged: executemany is the plain way here.
    await conn.executemany(
        """
        INSERT INTO backfill_reports (dataset, series_id, day, backfilled_at, expected, fetched,
            first_time, last_time, absent_times, unavailable_start, unavailable_end)
        VALUES ($1, $2, $3, clock_timestamp(), $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (dataset, series_id, day) DO UPDATE SET
            backfilled_at = EXCLUDED.backfilled_at, expected = EXCLUDED.expected,
            fetched = EXCLUDED.fetched, first_time = EXCLUDED.first_time,
            last_time = EXCLUDED.last_time, absent_times = EXCLUDED.absent_times,
            unavailable_start = EXCLUDED.unavailable_start,
            unavailable_end = EXCLUDED.unavailable_end
        """,
        [
            (
                dataset,
                series_id,
                d.day,
                d.expected,
                d.fetched,
                d.first_time,
                d.last_time,
                list(d.absent_times),
                *(d.unavailable or (None, None)),
            )
            for d in days
        ],
    )


async def record_window_backfill(
    conn: asyncpg.Connection,
    dataset: str,
    series_id: int,
    served: ServedDay,
    window: tuple[datetime, datetime],
) -> None:
    """Merge a window repair's report (`served`: what the exchange served inside `window`
    of the day) into the day's report: the times the day's earlier reports found absent
    outside the window are kept, those inside replaced; an earlier window gone at source and
    this one are joined into their span. The span is exact for what makes a window of today
    gone: a dataset the exchange keeps no history of (trades of Bybit, Coinbase, Hyperliquid;
    Hyperliquid's open interest), none of which it serves at any time of the day."""
    async with conn.transaction():
        old = await conn.fetchrow(
            "SELECT absent_times, unavailable_start, unavailable_end, first_time, last_time"
            " FROM backfill_reports WHERE dataset = $1 AND series_id = $2 AND day = $3"
            " FOR UPDATE",
            dataset,
            series_id,
            served.day,
        )
        if old is not None:
            kept = [t for t in old["absent_times"] if not window[0] <= t < window[1]]
            gone = served.unavailable
            if old["unavailable_start"] is not None:
                before = (old["unavailable_start"], old["unavailable_end"])
                gone = (
                    before if gone is None else (min(gone[0], before[0]), max(gone[1], before[1]))
                )
            firsts = [t for t in (old["first_time"], served.first_time) if t is not None]
            lasts = [t for t in (old["last_time"], served.last_time) if t is not None]
            served = ServedDay(
                served.day,
                served.expected,
                served.fetched,
                min(firsts, default=None),
                max(lasts, default=None),
                sorted({*kept, *served.absent_times}),
                gone,
            )
        await record_backfill(conn, dataset, series_id, [served])


@dataclass(frozen=True)
class ClassifiedOutage:
    """The slots of one recorded outage (the series' interval for candles, minutes for the
    other datasets), each in one class of `CLASSES` (see `classify_outage`)."""

    outage_id: int
    present: int = 0
    unavailable_at_source: int = 0
    no_trades: int = 0
    collector_outage: int = 0
    unexplained: int = 0

    @property
    def closed(self) -> bool:
        """Every slot stored or missing for a known reason: nothing left to repair."""
        return self.collector_outage == 0 and self.unexplained == 0


_CLASSIFY_OUTAGE = """
WITH o AS (
    SELECT id, start_time, end_time, recorded_at FROM collection_outages
    WHERE id = $1 AND dataset = $2 AND series_id = $3
), slots AS (
    SELECT t FROM o, generate_series(
        date_bin(make_interval(secs => $4), o.start_time, 'epoch'::timestamptz),
        o.end_time - interval '1 microsecond', make_interval(secs => $4)) t
), classified AS (
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM {table} x WHERE x.{series} = $3
                     AND x.time >= s.t AND x.time < s.t + make_interval(secs => $4))
            THEN 'present'
        WHEN r.backfilled_at IS NULL OR r.backfilled_at < o.recorded_at THEN 'outage'
        WHEN $5 OR (s.t >= r.unavailable_start AND s.t < r.unavailable_end)
            THEN 'unavailable'
        WHEN s.t = ANY (r.absent_times) OR $6 THEN 'no_trades'
        ELSE 'unexplained' END AS class
    FROM slots s CROSS JOIN o
    LEFT JOIN backfill_reports r ON r.dataset = $2 AND r.series_id = $3
         AND r.day = (s.t AT TIME ZONE 'UTC')::date
)
SELECT (SELECT count(*) FROM o) AS found, count(*) FILTER (WHERE class = 'present') AS present,
       count(*) FILTER (WHERE class = 'unavailable') AS unavailable,
       count(*) FILTER (WHERE class = 'no_trades') AS no_trades,
       count(*) FILTER (WHERE class = 'outage') AS outage,
       count(*) FILTER (WHERE class = 'unexplained') AS unexplained
FROM classified
"""


async def classify_outage(
    conn: asyncpg.Connection, outage_id: int, dataset: str, series_id: int, interval: str = "1m"
) -> ClassifiedOutage:
    """Every slot of a recorded outage (`interval`: the series' own for candles; a minute
    for funding, open interest and trades) in one class, first match wins:

    1. present: the series has a row (a trade) in the slot;
    2. collector outage: no backfill report of the slot's day newer than the outage: open;
    3. unavailable at source: inside the window the report found gone, or a minute of
       funding or open interest (their minute rows are the live feed's: history serves
       settlements and points, which count as present where they land);
    4. no trades: the report found the slot absent at the exchange (trades: the exchange
       served its trades of the window and none fell in the slot);
    5. unexplained: anything else (a backfill ran and its row is still missing).

    An outage is closed when no slot is in class 2 or 5 (`ClassifiedOutage.closed`)."""
    table, series = _identifiers(dataset)
    rule = EXPECTED.get(dataset)
    live_only = rule is not None and (rule.per_settlement or rule.per_history_point)
    step = interval if dataset == "candles" else "1m"
    record = await conn.fetchrow(
        _CLASSIFY_OUTAGE.format(table=table, series=series),
        outage_id,
        dataset,
        series_id,
        interval_seconds(step),
        live_only,
        dataset == trade_store.TRADES_TABLE,
    )
    if record is None or not record["found"]:
        raise NotFound(f"no {dataset} outage {outage_id} of series {series_id}")
    return ClassifiedOutage(
        outage_id,
        record["present"],
        record["unavailable"],
        record["no_trades"],
        record["outage"],
        record["unexplained"],
    )
