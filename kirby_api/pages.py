"""One page of a series as an HTTP response: read, describe, encode, cache.

The data routes hand over (dataset, series, window, format); this reads the rows
(`kirby_api.market_data`), works out the metadata and cursors, and answers JSON (rows encoded by
PostgreSQL, so this process only joins bytes), CSV (written by PostgreSQL's COPY and
streamed, `kirby_api.bulk`) or Parquet (encoded in a worker thread, at most
`PARQUET_THREADS` at a time, so the event loop never waits on it). Plain latest-N JSON pages
go through `LatestCache`. Page metadata is in the JSON body and, for every
format, in `Kirby-Count`, `Kirby-Next-Cursor` and `Kirby-Prev-Cursor` headers.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from litestar import MediaType, Response

from kirby_api.bulk import CsvExport, CsvResponse
from kirby_api.datasets import ServedDataset
from kirby_api.formats import MEDIA_TYPES, Format, Metadata, Range, encode_message, parquet_file
from kirby_api.latest_cache import LatestCache, Page
from kirby_api.market_data import MarketData
from kirby_api.window import Window, page_cursors
from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.db.catalog_store import Starlisting, TradingPair

Series = Starlisting | TradingPair


def _identity(series: Series) -> dict[str, Any]:
    key: StarlistingKey | TradingPairKey = series.key
    extra: dict[str, Any] = {}
    if isinstance(series, Starlisting):
        extra = {"interval": series.key.interval, "starlisting_id": series.id}
        pair_id = series.trading_pair_id
    else:
        pair_id = series.id
    return {
        "series": str(key),
        "exchange": key.exchange,
        "coin": key.coin,
        "quote": key.quote,
        "trading_pair": f"{key.coin}/{key.quote}",
        "market_type": key.market_type,
        "trading_pair_id": pair_id,
        **extra,
    }


PARQUET_THREADS = 2
"""Parquet files encoded at once; more would only queue for the two cores' GIL and CPU."""


class Pages:
    def __init__(self, market: MarketData, cache: LatestCache, csv: CsvExport) -> None:
        self._market = market
        self._cache = cache
        self._csv = csv
        self._encoders = asyncio.Semaphore(PARQUET_THREADS)

    async def serve(
        self, dataset: ServedDataset, series: Series, window: Window, fmt: Format
    ) -> Response:
        if fmt == "json" and window.latest:
            page = await self._cache.get(
                (dataset.name, series.id, window.limit),
                lambda: self._json_page(dataset, series, window),
            )
        elif fmt == "json":
            page = await self._json_page(dataset, series, window)
        elif fmt == "csv":
            return CsvResponse(
                self._csv,
                dataset,
                series.id,
                window,
                lambda page: _file_headers(
                    dataset,
                    fmt,
                    *_describe(
                        dataset,
                        series,
                        window,
                        page.row_count,
                        page.first,
                        page.last,
                        (page.first_id, page.last_id),
                    ),
                ),
            )
        else:
            return await self._parquet(dataset, series, window)
        return Response(page.body, media_type=MediaType.JSON, headers=page.headers)

    async def _json_page(self, dataset: ServedDataset, series: Series, window: Window) -> Page:
        rows = await self._market.page_json(dataset, series.id, window)
        metadata, headers = _describe(
            dataset,
            series,
            window,
            rows.count,
            rows.first,
            rows.last,
            (rows.first_id, rows.last_id),
        )
        body = b'{"data":[' + rows.body + b'],"metadata":' + encode_message(metadata) + b"}"
        return Page(body, headers)

    async def _parquet(self, dataset: ServedDataset, series: Series, window: Window) -> Response:
        records = await self._market.page(dataset, series.id, window)
        first = records[0][0] if records else None
        last = records[-1][0] if records else None
        ids: tuple[str | None, str | None] = (None, None)
        if dataset.tiebreak is not None and records:
            column = dataset.field_names.index(dataset.tiebreak)
            ids = (records[0][column], records[-1][column])
        metadata, headers = _describe(dataset, series, window, len(records), first, last, ids)
        headers = _file_headers(dataset, "parquet", metadata, headers)
        async with self._encoders:
            body = await asyncio.to_thread(parquet_file, dataset, records, metadata)
        return Response(body, media_type=MEDIA_TYPES["parquet"], headers=headers)


def _file_headers(
    dataset: ServedDataset, fmt: Format, metadata: Metadata, headers: dict[str, str]
) -> dict[str, str]:
    """A CSV or Parquet page's headers: its metadata's, plus media type and file name."""
    name = metadata.series.replace("/", "_")
    headers["Content-Type"] = MEDIA_TYPES[fmt]
    headers["Content-Disposition"] = f'attachment; filename="{name}_{dataset.name}.{fmt}"'
    return headers


def _describe(
    dataset: ServedDataset,
    series: Series,
    window: Window,
    count: int,
    first: datetime | None,
    last: datetime | None,
    ids: tuple[str | None, str | None] = (None, None),
) -> tuple[Metadata, dict[str, str]]:
    """A page's metadata and cursors, in the JSON body's form and as headers; `ids`: a
    keyed page's first and last tiebreaks."""
    keyed = dataset.tiebreak is not None
    next_cursor, prev_cursor = page_cursors(window, first, last, count, keyed, *ids)
    metadata = Metadata(
        **_identity(series),
        count=count,
        range=Range(first, last),
        next_cursor=next_cursor,
        prev_cursor=prev_cursor,
        columns=dataset.notes,
    )
    headers = {"Kirby-Count": str(count)}
    if next_cursor:
        headers["Kirby-Next-Cursor"] = next_cursor
    if prev_cursor:
        headers["Kirby-Prev-Cursor"] = prev_cursor
    return metadata, headers
