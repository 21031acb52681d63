"""The API's reads of market data: pages, WebSocket history, changed rows, freshness.

These are the serving counterparts of `kirby_core.db.readers` (same half-open ranges, same
ascending results) tuned for a hot path: decimals come back as their exact text
(`numeric::text`), so rows go from asyncpg records straight into msgspec without a Decimal
round trip, and every query is one prepared statement per dataset and shape. Each one is
index-friendly: it walks the (series, time) primary key and stops after `limit` rows, so it
costs the same on a thousand rows or a hundred million.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg

from kirby_api.database import ConnectionPool
from kirby_api.datasets import SERVED_DATASETS, ServedDataset
from kirby_api.window import Window
from kirby_core.db import notify


@dataclass(frozen=True)
class _Statements:
    forward: str
    newest: str
    forward_json: str
    newest_json: str
    latest_many_json: str
    changed: str
    since: str


PARAMETERS = ("$1", "$2", "$3", "$4")
"""A window's values as bind parameters: series id, lower, upper, limit."""


def window_rows(
    dataset: ServedDataset, columns: str, newest: bool, values: Sequence[str] = PARAMETERS
) -> str:
    """The one window query: `columns` of a series' rows in [lower, upper), the first
    `limit` of them, or with `newest` the last `limit` (then in descending time order).
    `values` are SQL text: bind parameters, or literals the caller formatted safely."""
    series_id, lower, upper, limit = values
    order = "time DESC" if newest else "time"
    # identifiers come from the fixed declarations in `kirby_api.datasets`, never a request
    return (
        f"SELECT {columns} FROM {dataset.name} WHERE {dataset.series_column} = {series_id}"  # noqa: S608
        f" AND time >= {lower} AND time < {upper} ORDER BY {order} LIMIT {limit}"
    )


def _statements(d: ServedDataset) -> _Statements:
    # Identifiers come from the fixed declarations in `kirby_api.datasets`, never a request.
    cols, table, series = d.select_list, d.name, d.series_column

    def as_json(newest: bool) -> str:
        return (
            "SELECT count(*)::int, min(time), max(time),"  # noqa: S608
            f" convert_to(coalesce(string_agg({d.json_object}, ',' ORDER BY time), ''), 'UTF8')"
            f" FROM ({window_rows(d, '*', newest)}) page"
        )

    return _Statements(
        forward=window_rows(d, cols, newest=False),
        newest=window_rows(d, cols, newest=True),
        forward_json=as_json(newest=False),
        newest_json=as_json(newest=True),
        # One index walk per series (LATERAL), however long the series are.
        latest_many_json="SELECT s.id, count(*)::int,"  # noqa: S608
        f" convert_to(string_agg({d.json_object}, ',' ORDER BY r.time), 'UTF8')"
        " FROM unnest($1::int[]) AS s(id) CROSS JOIN LATERAL ("
        f" SELECT * FROM {table} WHERE {series} = s.id ORDER BY time DESC LIMIT $2) r"
        " GROUP BY s.id",
        changed=f"SELECT k.id, r.* FROM unnest($1::int[], $2::timestamptz[]) AS k(id, t)"  # noqa: S608
        f" CROSS JOIN LATERAL (SELECT {cols} FROM {table} WHERE {series} = k.id AND time = k.t) r"
        " ORDER BY r.time, k.id",
        since=f"SELECT s.id, r.* FROM unnest($1::int[], $2::timestamptz[]) AS s(id, t)"  # noqa: S608
        f" CROSS JOIN LATERAL (SELECT {cols} FROM {table} WHERE {series} = s.id"
        " AND time >= s.t ORDER BY time LIMIT $3) r ORDER BY r.time, s.id",
    )


_SQL = {name: _statements(d) for name, d in SERVED_DATASETS.items()}

_LATEST_TIMES = """
SELECT s.id, (SELECT max(time) FROM {table} WHERE {series} = s.id) AS latest
FROM unnest($1::int[]) AS s(id)
"""


class JsonRows(NamedTuple):
    """A page as PostgreSQL encoded it: the rows' JSON objects, comma-separated."""

    count: int  # type: ignore[assignment]  # shadows tuple.count: the page's row count
    first: datetime | None
    last: datetime | None
    body: bytes


class MarketData:
    def __init__(self, database: ConnectionPool) -> None:
        self._db = database

    async def page(
        self, dataset: ServedDataset, series_id: int, window: Window
    ) -> list[asyncpg.Record]:
        """One page of a series, ascending in time."""
        sql = _SQL[dataset.name]
        query = sql.newest if window.newest else sql.forward
        records = await self._db.fetch(query, series_id, window.lower, window.upper, window.limit)
        if window.newest:
            records.reverse()
        return records

    async def page_json(self, dataset: ServedDataset, series_id: int, window: Window) -> JsonRows:
        """The same page as `page`, already encoded as JSON objects by the database."""
        sql = _SQL[dataset.name]
        query = sql.newest_json if window.newest else sql.forward_json
        record = await self._db.fetchrow(query, series_id, window.lower, window.upper, window.limit)
        assert record is not None  # an aggregate without GROUP BY: always one row
        return JsonRows(*record)

    async def latest_many_json(
        self, dataset: ServedDataset, series_ids: Sequence[int], limit: int
    ) -> dict[int, tuple[int, bytes]]:
        """The latest `limit` rows of each series, as (count, JSON objects) ascending in
        time; series without rows are left out."""
        query = _SQL[dataset.name].latest_many_json
        records = await self._db.fetch(query, list(series_ids), limit)
        return {series_id: (count, body) for series_id, count, body in records}

    async def changed(
        self, dataset: ServedDataset, keys: Sequence[tuple[int, datetime]]
    ) -> list[asyncpg.Record]:
        """The current state of the named (series id, time) rows: (series id, *row)."""
        ids, times = zip(*keys, strict=True) if keys else ((), ())
        return await self._db.fetch(_SQL[dataset.name].changed, list(ids), list(times))

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
        return await self._db.fetch(_SQL[dataset.name].since, list(ids), list(times), limit)

    async def latest_times(
        self, dataset: ServedDataset, series_ids: Sequence[int]
    ) -> dict[int, datetime | None]:
        """Time of the newest row of each series (None when it has none)."""
        query = _LATEST_TIMES.format(table=dataset.name, series=dataset.series_column)
        return {
            series_id: latest for series_id, latest in await self._db.fetch(query, list(series_ids))
        }
