"""The API's reads of market data: pages, WebSocket history, changed rows, freshness.

These are the serving counterparts of `kirby_core.db.readers` (same half-open ranges, same
ascending results) tuned for a hot path: decimals come back as their exact text
(`numeric::text`), so rows go from asyncpg records straight into msgspec without a Decimal
round trip, and every query is one prepared statement per dataset and shape. Each one is
index-friendly: it walks the (series, time) primary key and stops after `limit` rows, so it
costs the same on a thousand rows or a hundred million.

On a TimescaleDB hypertable a read also pays planning and executor start-up for every chunk
its time predicate cannot exclude, which grows with history (a year of 1-day chunks made
the unbounded newest-1000 read 37x slower than a plain table). So every read carries a
time bound: the newest (or next) `limit` rows are first read within the span those rows
take at the series' step (candles: their interval; funding and open interest: one row a
minute, the schema's minute-aligned key), doubled for gaps (`SPAN_SLACK`), and read again
without the bound only when the span held fewer (several series: one read per step, as a
daily series' rows span far more than a minute series'). The rows are the same as one
unbounded read, on plain PostgreSQL and hypertables alike; a series whose data stopped
long ago costs two reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg

from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_DATASETS, ServedDataset
from kirby_api.window import MAX_TIME, MIN_TIME, Window
from kirby_core.db import notify
from kirby_core.timeutil import ms_to_datetime


@dataclass(frozen=True)
class _Statements:
    forward: str
    newest: str
    forward_json: str
    newest_json: str
    latest_many_json: str
    changed: str
    since: str
    ranged: str
    latest_times: str


PARAMETERS = ("$1", "$2", "$3", "$4", "$5", "$6")
"""A window's values as bind parameters: series id, lower, upper, limit, and for a keyed
dataset (trades) the lower and upper tiebreaks (`Window.lower_id`, `upper_id`)."""


def window_values(dataset: ServedDataset, series_id: int, window: Window) -> tuple[object, ...]:
    """The values of `PARAMETERS` for a window (the tiebreaks only for a keyed dataset)."""
    values: tuple[object, ...] = (series_id, window.lower, window.upper, window.limit)
    if dataset.tiebreak is not None:
        values += (window.lower_id, window.upper_id)
    return values


def tiebreak(dataset: ServedDataset, prefix: str = "") -> str:
    """A keyed dataset's tiebreak in byte order (`COLLATE "C"`): the same order whatever the
    database's collation, and Python's order of the same strings (the WebSocket's cursors
    compare them in Python)."""
    return f'{prefix}{dataset.tiebreak} COLLATE "C"'


def order_by(dataset: ServedDataset, newest: bool = False, prefix: str = "") -> str:
    """A series' row order: time, then the tiebreak of a keyed dataset."""
    direction = " DESC" if newest else ""
    if dataset.tiebreak is None:
        return f"{prefix}time{direction}"
    return f"{prefix}time{direction}, {tiebreak(dataset, prefix)}{direction}"


def window_rows(
    dataset: ServedDataset, columns: str, newest: bool, values: Sequence[str] = PARAMETERS
) -> str:
    """The one window query: `columns` of a series' rows in [lower, upper), the first
    `limit` of them, or with `newest` the last `limit` (then in descending order).
    `values` are SQL text: bind parameters, or literals the caller formatted safely.
    A keyed dataset's bounds are (time, tiebreak) positions: after (lower, lower_id),
    before (upper, upper_id); a NULL id leaves the time bound as it is."""
    series_id, lower, upper, limit, *ids = values
    # identifiers come from the fixed declarations in `kirby_api.datasets`, never a request
    bounds = f"time >= {lower} AND time < {upper}"
    if dataset.tiebreak is not None:
        lower_id, upper_id = ids[:2]
        tie = tiebreak(dataset)
        bounds = (
            f"time >= {lower} AND time <= {upper}"
            f" AND ({lower_id}::text IS NULL OR time > {lower} OR {tie} > {lower_id}::text)"
            f" AND (time < {upper} OR {tie} < {upper_id}::text)"
        )
    return (
        f"SELECT {columns} FROM {dataset.name} WHERE {dataset.series_column} = {series_id}"  # noqa: S608
        # qualified: a select list may name a formatted column `time` (CSV's text)
        f" AND {bounds} ORDER BY {order_by(dataset, newest, prefix=dataset.name + '.')}"
        f" LIMIT {limit}"
    )


def _statements(d: ServedDataset) -> _Statements:
    # Identifiers come from the fixed declarations in `kirby_api.datasets`, never a request.
    cols, table, series = d.select_list, d.name, d.series_column

    order = order_by(d)
    # a keyed page also reports its first and last rows' tiebreaks (for its cursors)
    ends = (
        f", (array_agg({d.tiebreak} ORDER BY {order}))[1],"
        f" (array_agg({d.tiebreak} ORDER BY {order_by(d, newest=True)}))[1]"
        if d.tiebreak
        else ", NULL::text, NULL::text"
    )

    last_id = (
        f"(array_agg({d.tiebreak} ORDER BY {order_by(d, newest=True)}))[1]"
        if d.tiebreak
        else "NULL::text"
    )

    def as_json(newest: bool) -> str:
        return (
            "SELECT count(*)::int, min(time), max(time),"  # noqa: S608
            f" convert_to(coalesce(string_agg({d.json_object}, ',' ORDER BY {order}), ''), 'UTF8')"
            f"{ends} FROM ({window_rows(d, '*', newest)}) page"
        )

    return _Statements(
        forward=window_rows(d, cols, newest=False),
        newest=window_rows(d, cols, newest=True),
        forward_json=as_json(newest=False),
        newest_json=as_json(newest=True),
        # One index walk per series (LATERAL), however long the series are.
        latest_many_json="SELECT s.id, count(*)::int,"  # noqa: S608
        f" convert_to(string_agg({d.json_object}, ',' ORDER BY {order}), 'UTF8'), max(time),"
        f" {last_id} FROM unnest($1::int[]) AS s(id) CROSS JOIN LATERAL ("
        f" SELECT * FROM {table} WHERE {series} = s.id AND time >= $3"
        f" ORDER BY {order_by(d, newest=True)} LIMIT $2) r GROUP BY s.id",
        # $3, $4: the least and greatest of the times, constants the chunks are pruned by
        changed=f"SELECT k.id, r.* FROM unnest($1::int[], $2::timestamptz[]) AS k(id, t)"  # noqa: S608
        f" CROSS JOIN LATERAL (SELECT {cols} FROM {table} WHERE {series} = k.id AND time = k.t"
        " AND time >= $3 AND time <= $4) r ORDER BY r.time, k.id",
        since=f"SELECT s.id, r.* FROM unnest($1::int[], $2::timestamptz[]) AS s(id, t)"  # noqa: S608
        f" CROSS JOIN LATERAL (SELECT {cols} FROM {table} WHERE {series} = s.id"
        f" AND time >= s.t AND time >= $4 ORDER BY {order} LIMIT $3) r"
        f" ORDER BY {order_by(d, prefix='r.')}, s.id",
        # keyed datasets (trades): a change event names a [first, last] time range per series
        ranged=f"SELECT k.id, r.* FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[])"  # noqa: S608
        f" AS k(id, first_time, last_time) CROSS JOIN LATERAL (SELECT {cols} FROM {table}"
        f" WHERE {series} = k.id AND time >= k.first_time AND time <= k.last_time"
        f" AND time >= $4 AND time <= $5 ORDER BY {order}) r"
        f" ORDER BY k.id, {order_by(d, prefix='r.')}",
        latest_times=f"SELECT s.id, (SELECT max(time) FROM {table}"  # noqa: S608
        f" WHERE {series} = s.id AND time >= $2) FROM unnest($1::int[]) AS s(id)",
    )


_SQL = {name: _statements(d) for name, d in SERVED_DATASETS.items()}

_LAST_TIMES_THROUGH = """
SELECT e.key, max((e.value ->> -1)::bigint)
FROM change_events c CROSS JOIN LATERAL jsonb_each(c.payload::jsonb) AS e
WHERE c.dataset = $1 AND c.id <= $2 AND e.key = ANY($3::int[]::text[])
GROUP BY e.key
"""

SPAN_SLACK = 2
"""A bounded read's span is this many times the span its rows take without gaps."""
_UNKNOWN_STEP = 60
"""The step of a starlisting not in the catalog (it has no rows: any step will do)."""
LATEST_TIME_SPAN = timedelta(days=1)
"""Span of a freshness read (`latest_times`) before it looks further back."""
_STEPS = (
    "SELECT s.id, i.seconds FROM starlistings s JOIN intervals i ON i.id = s.interval_id"
    " WHERE s.id = ANY($1::int[])"
)


def narrowed(window: Window, step_seconds: int, now: datetime) -> Window | None:
    """`window` bounded to the span its `limit` rows take at `step_seconds` (with slack),
    or None when that span does not make it narrower."""
    span = timedelta(seconds=step_seconds * window.limit * SPAN_SLACK)
    if window.newest:
        top = min(window.upper, now)
        if top - window.lower <= span:
            return None
        return replace(window, lower=top - span, lower_id=None)
    if window.upper - window.lower <= span:
        return None
    return replace(window, upper=window.lower + span, upper_id=None)


class JsonRows(NamedTuple):
    """A page as PostgreSQL encoded it: the rows' JSON objects, comma-separated."""

    count: int  # type: ignore[assignment]  # shadows tuple.count: the page's row count
    first: datetime | None
    last: datetime | None
    body: bytes
    first_id: str | None = None
    """A keyed dataset's first row's tiebreak (None otherwise)."""
    last_id: str | None = None


class LatestRows(NamedTuple):
    """A series' latest rows as JSON objects, and where the last one sits."""

    count: int  # type: ignore[assignment]  # shadows tuple.count: the rows' count
    body: bytes
    last: datetime
    last_id: str | None
    """A keyed dataset's last row's tiebreak (None otherwise)."""


class MarketData:
    def __init__(self, database: ConnectionPool) -> None:
        self._db = database
        self._intervals: dict[int, int] = {}
        """Starlisting id -> interval seconds (fixed for an id's lifetime)."""

    async def _step(self, dataset: ServedDataset, series_ids: Sequence[int]) -> int:
        """The longest step (seconds between rows) of these series."""
        if dataset.step_seconds is not None:
            return dataset.step_seconds
        missing = [i for i in series_ids if i not in self._intervals]
        if missing:
            for series_id, seconds in await self._db.fetch(_STEPS, missing):
                self._intervals[series_id] = seconds
        # an id not in the catalog has no rows: any step will do
        return max(
            (self._intervals.get(i, _UNKNOWN_STEP) for i in series_ids), default=_UNKNOWN_STEP
        )

    async def _bounded(self, dataset: ServedDataset, series_id: int, window: Window) -> Window:
        step = await self._step(dataset, (series_id,))
        return narrowed(window, step, datetime.now(UTC)) or window

    async def page(
        self, dataset: ServedDataset, series_id: int, window: Window
    ) -> list[asyncpg.Record]:
        """One page of a series, ascending in time."""
        sql = _SQL[dataset.name]
        query = sql.newest if window.newest else sql.forward
        bounded = await self._bounded(dataset, series_id, window)
        records = await self._db.fetch(query, *window_values(dataset, series_id, bounded))
        if len(records) < window.limit and bounded != window:
            records = await self._db.fetch(query, *window_values(dataset, series_id, window))
        if window.newest:
            records.reverse()
        return records

    async def page_json(self, dataset: ServedDataset, series_id: int, window: Window) -> JsonRows:
        """The same page as `page`, already encoded as JSON objects by the database."""
        sql = _SQL[dataset.name]
        query = sql.newest_json if window.newest else sql.forward_json
        bounded = await self._bounded(dataset, series_id, window)
        record = await self._db.fetchrow(query, *window_values(dataset, series_id, bounded))
        if record is not None and record[0] < window.limit and bounded != window:
            record = await self._db.fetchrow(query, *window_values(dataset, series_id, window))
        assert record is not None  # an aggregate without GROUP BY: always one row
        return JsonRows(*record)

    async def latest_many_json(
        self, dataset: ServedDataset, series_ids: Sequence[int], limit: int
    ) -> dict[int, LatestRows]:
        """The latest `limit` rows of each series, as JSON objects ascending in time;
        series without rows are left out."""
        query = _SQL[dataset.name].latest_many_json
        await self._step(dataset, series_ids)  # learns every id's step
        by_step: dict[int, list[int]] = {}
        for series_id in series_ids:  # one bound per step: a daily series' 100 rows span
            by_step.setdefault(await self._step(dataset, (series_id,)), []).append(series_id)
        now = datetime.now(UTC)
        found: dict[int, LatestRows] = {}
        short: list[int] = []
        for step, ids in by_step.items():
            span = timedelta(seconds=step * limit * SPAN_SLACK)
            since = now - span if span < now - MIN_TIME else MIN_TIME
            for series_id, *rows in await self._db.fetch(query, ids, limit, since):
                found[series_id] = LatestRows(*rows)
            if since > MIN_TIME:
                short += [i for i in ids if i not in found or found[i].count < limit]
        if short:
            for series_id, *rows in await self._db.fetch(query, short, limit, MIN_TIME):
                found[series_id] = LatestRows(*rows)
        return found

    async def changed(
        self, dataset: ServedDataset, keys: Sequence[tuple[int, datetime]]
    ) -> list[asyncpg.Record]:
        """The current state of the named (series id, time) rows: (series id, *row)."""
        ids, times = zip(*keys, strict=True) if keys else ((), ())
        first, last = (min(times), max(times)) if times else (MIN_TIME, MIN_TIME)
        return await self._db.fetch(_SQL[dataset.name].changed, list(ids), list(times), first, last)

    async def ranged(
        self, dataset: ServedDataset, ranges: Sequence[tuple[int, datetime, datetime]]
    ) -> list[asyncpg.Record]:
        """Every row of each (series id, first time, last time), both ends included:
        (series id, *row), by series then in the series' order."""
        if not ranges:
            return []
        ids, firsts, lasts = (list(column) for column in zip(*ranges, strict=True))
        return await self._db.fetch(
            _SQL[dataset.name].ranged, ids, firsts, lasts, min(firsts), max(lasts)
        )

    async def last_times_through(
        self, dataset: ServedDataset, series_ids: Sequence[int], through: int
    ) -> dict[int, datetime]:
        """Per series, the last time the kept change events up to id `through` named (a
        keyed dataset's events name [first, last] per series); series none named are left
        out."""
        rows = await self._db.fetch(_LAST_TIMES_THROUGH, dataset.name, through, list(series_ids))
        return {int(key): ms_to_datetime(ms) for key, ms in rows}

    async def event_bounds(self) -> tuple[int, int] | None:
        """(oldest, newest) change event id kept (`kirby_core.db.notify`)."""
        return await notify.event_bounds(self._db)

    async def events_after(self, after: int, through: int) -> list[notify.ChangeEvent]:
        return await notify.events_after(self._db, after, through)

    async def since(
        self, dataset: ServedDataset, starts: Sequence[tuple[int, datetime]], limit: int
    ) -> list[asyncpg.Record]:
        """Rows of each series from its start time on (at most `limit` each)."""
        ids, times = zip(*starts, strict=True) if starts else ((), ())
        first = min(times, default=MAX_TIME)
        return await self._db.fetch(_SQL[dataset.name].since, list(ids), list(times), limit, first)

    async def latest_times(
        self, dataset: ServedDataset, series_ids: Sequence[int]
    ) -> dict[int, datetime | None]:
        """Time of the newest row of each series (None when it has none)."""
        query = _SQL[dataset.name].latest_times
        step = await self._step(dataset, series_ids)
        since = datetime.now(UTC) - max(LATEST_TIME_SPAN, timedelta(seconds=step * SPAN_SLACK))
        latest: dict[int, datetime | None] = {}
        for series_id, moment in await self._db.fetch(query, list(series_ids), since):
            latest[series_id] = moment
        if stale := [i for i, moment in latest.items() if moment is None]:
            for series_id, moment in await self._db.fetch(query, stale, MIN_TIME):
                latest[series_id] = moment
        return latest
