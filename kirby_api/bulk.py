"""CSV pages written by PostgreSQL: `COPY (...) TO STDOUT (FORMAT csv, HEADER)`, streamed.

A CSV page never becomes Python rows: the database formats every field (the text JSON
pages carry: `...Z` times, exact decimal text; NULL is an empty field) and the API relays
its bytes to the client as they arrive, gathered into pieces of `PIECE_BYTES`, straight
from asyncpg's COPY callback into the HTTP response (no queue, no task in between). So the
event loop only moves bytes, and a slow client slows its own COPY and nothing else.

The page's metadata (count, first and last time, hence the cursors) goes out in headers
before the body, so it is read first, in the same REPEATABLE READ snapshot as the COPY:
headers and body describe the same rows. A download holds a pooled connection while it
streams: `api_bulk_timeout_seconds` bounds that (a client reading too slowly is cut off,
its response ends without the final chunk, so it cannot take the rows for complete), and
at most `api_bulk_streams` downloads (never more than half the pool) stream at once: the
others wait their turn (up to `api_query_timeout_seconds`, then 503), so downloads cannot
starve the other routes of connections, nor the event loop and the database of CPU.

COPY takes no bind parameters: the page's values (an int and two UTC datetimes built by
`kirby_api.window`) are rendered as SQL literals by `_int`/`_time`. The one value that
comes from a request as text, a keyed cursor's trade id (trades), is rendered by `_text`
as a standard-conforming string literal (quotes doubled; a cursor never holds a NUL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from litestar import Response
from litestar.types import Receive, Scope, Send

from kirby_api.database import ConnectionPool
from kirby_api.datasets import ServedDataset
from kirby_api.market_data import PARAMETERS, order_by, window_rows, window_values
from kirby_api.window import Window
from kirby_core.errors import StorageError
from kirby_core.settings import Settings

log = logging.getLogger(__name__)

PIECE_BYTES = 64 * 1024
"""Bytes gathered from COPY (PostgreSQL sends ~8 KiB at a time) per HTTP chunk."""


def _int(value: int) -> str:
    return f"{value:d}"  # refuses anything but an int


def _time(moment: datetime) -> str:
    return f"'{moment.astimezone(UTC).isoformat()}'::timestamptz"


def _text(value: str | None) -> str:
    if value is None:
        return "NULL"
    if "\x00" in value:  # `window.decode_cursor` refuses it before this
        raise ValueError("a NUL in a text literal")
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings (on since 9.1)


def _page_sql(dataset: ServedDataset, columns: str, newest: bool, *values: str) -> str:
    """The page's rows in ascending order (`market_data.window_rows`, re-sorted when it
    walked newest first); values: series id, lower, upper, limit[, lower id, upper id]
    (SQL text)."""
    if newest:
        rows = window_rows(dataset, "*", True, values)
        # qualified: the select list names its formatted text `time`, which must not sort
        return f"SELECT {columns} FROM ({rows}) page ORDER BY {order_by(dataset, prefix='page.')}"  # noqa: S608
    return window_rows(dataset, columns, False, values)


def copy_query(dataset: ServedDataset, series_id: int, window: Window) -> str:
    """The query whose rows `COPY ... TO STDOUT (FORMAT csv, HEADER)` writes as the page."""
    values: tuple[str, ...] = (
        _int(series_id),
        _time(window.lower),
        _time(window.upper),
        _int(window.limit),
    )
    if dataset.tiebreak is not None:
        values += (_text(window.lower_id), _text(window.upper_id))
    return _page_sql(dataset, dataset.csv_select_list, window.newest, *values)


def _range_query(dataset: ServedDataset, newest: bool) -> str:
    """The page's count, first and last time, and a keyed page's first and last id."""
    if dataset.tiebreak is None:
        page = _page_sql(dataset, "time", newest, *PARAMETERS)
        return f"SELECT count(*)::int, min(time), max(time), NULL, NULL FROM ({page}) page"  # noqa: S608
    tie = dataset.tiebreak
    page = _page_sql(dataset, f"time, {tie}", newest, *PARAMETERS)
    return (
        "SELECT count(*)::int, min(time), max(time),"  # noqa: S608
        f" (array_agg({tie} ORDER BY {order_by(dataset)}))[1],"
        f" (array_agg({tie} ORDER BY {order_by(dataset, newest=True)}))[1] FROM ({page}) page"
    )


_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


class CsvPage(NamedTuple):
    row_count: int
    first: datetime | None
    last: datetime | None
    copy: Callable[[Callable[[bytes], Coroutine[Any, Any, None]]], Coroutine[Any, Any, str]]
    """Run the COPY, handing its output to the given coroutine function piece by piece."""
    first_id: str | None = None
    """A keyed page's first and last rows' tiebreaks (trade ids)."""
    last_id: str | None = None


class CsvExport:
    def __init__(self, database: ConnectionPool, settings: Settings) -> None:
        self._db = database
        self._wait = settings.api_query_timeout_seconds
        self.timeout = settings.api_bulk_timeout_seconds
        """Longest a download may take, COPY and sending included."""
        streams = min(settings.api_bulk_streams, max(1, settings.api_pool_size // 2))
        self._slots = asyncio.BoundedSemaphore(streams)

    @asynccontextmanager
    async def open(
        self, dataset: ServedDataset, series_id: int, window: Window
    ) -> AsyncIterator[CsvPage]:
        """The page's metadata and its COPY, on one connection in one snapshot."""
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            raise StorageError("too many CSV downloads at once; retry shortly") from None
        try:
            # a budget of its own, not the request's query deadline: the COPY has `timeout`
            async with self._db.connection(seconds=self._wait + self.timeout) as conn:
                await conn.execute(_SNAPSHOT, timeout=self._wait)
                terminated = False
                try:
                    args = window_values(dataset, series_id, window)
                    query = _range_query(dataset, window.newest)
                    found = await conn.fetchrow(query, *args, timeout=self._wait)
                    assert found is not None  # an aggregate: always one row
                    count, first, last, first_id, last_id = found

                    async def copy(output: Callable[[bytes], Coroutine[Any, Any, None]]) -> str:
                        nonlocal terminated
                        query = copy_query(dataset, series_id, window)
                        try:
                            # Not asyncpg's `timeout`: it wraps each piece's callback in a task.
                            async with asyncio.timeout(self.timeout):
                                return await conn.copy_from_query(
                                    query, output=output, format="csv", header=True
                                )
                        except TimeoutError:
                            # asyncpg may wait forever after a cut-off COPY: no ROLLBACK here,
                            # the pool's connection() terminates a connection that timed out
                            terminated = True
                            raise

                    yield CsvPage(count, first, last, copy, first_id, last_id)
                finally:
                    if not terminated:
                        await conn.execute("ROLLBACK", timeout=self._wait)  # read only
        finally:
            self._slots.release()


class _Pieces:
    """COPY output gathered into HTTP body chunks of at least `PIECE_BYTES`, each sent
    before `deadline`; after a send misses it the rest is dropped (`cut_off`).

    The COPY itself is never interrupted: asyncpg's cancellation of a COPY whose end has
    already arrived leaves the connection waiting forever (0.32), and a page is at most
    5000 rows, so reading it to the end is cheaper than any cancellation.
    """

    def __init__(self, send: Send, deadline: float) -> None:
        self._send = send
        self._deadline = deadline
        self._parts: list[bytes] = []
        self._size = 0
        self.cut_off = False

    async def add(self, data: bytes) -> None:
        if self.cut_off:
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size >= PIECE_BYTES:
            await self.flush(more=True)

    async def flush(self, more: bool) -> None:
        body, self._parts, self._size = b"".join(self._parts), [], 0
        try:
            async with asyncio.timeout_at(self._deadline):
                await self._send({"type": "http.response.body", "body": body, "more_body": more})
        except TimeoutError:
            self.cut_off = True


class CsvResponse(Response):
    """A CSV page as an ASGI app: reads its metadata, sends the headers, then the COPY.

    Errors before the headers go out are the app's usual error responses. A client still
    reading when `api_bulk_timeout_seconds` is up is cut off: its response stays without
    the final chunk (the server closes the connection), so it cannot pass for complete.
    """

    def __init__(
        self,
        export: CsvExport,
        dataset: ServedDataset,
        series_id: int,
        window: Window,
        headers_for: Callable[[CsvPage], dict[str, str]],
    ) -> None:
        super().__init__(None)
        self._export, self._dataset = export, dataset
        self._series_id, self._window = series_id, window
        self._headers_for = headers_for

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + self._export.timeout
        async with self._export.open(self._dataset, self._series_id, self._window) as page:
            headers = self._headers_for(page)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                }
            )
            pieces = _Pieces(send, deadline)
            await page.copy(pieces.add)
            if not pieces.cut_off:
                await pieces.flush(more=False)
        if pieces.cut_off:
            log.warning(
                "csv download cut off: the client read too slowly dataset=%s seconds=%s",
                self._dataset.name,
                self._export.timeout,
            )
