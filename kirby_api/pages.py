"""One page of a series as an HTTP response: read, describe, encode, cache.

The data routes hand over (dataset, series, window, format); this reads the rows
(`kirby_api.market`), works out the metadata and cursors, and answers JSON (rows encoded by
PostgreSQL, so this process only joins bytes) or CSV / Parquet as a stream. Plain latest-N
JSON pages go through `LatestCache`. Page metadata is in the JSON body and, for every
format, in `Kirby-Count`, `Kirby-Next-Cursor` and `Kirby-Prev-Cursor` headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from litestar import MediaType, Response
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from kirby_api.datasets import Dataset
from kirby_api.formats import (
    MEDIA_TYPES,
    Format,
    Metadata,
    Range,
    Rows,
    csv_chunks,
    encode_message,
    parquet_chunks,
)
from kirby_api.latest_cache import LatestCache, Page
from kirby_api.market import MarketData
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


class _Stream(Stream):
    """Litestar 2.25's `Stream` lets the handler's media type (JSON here) override its own,
    contrary to its docstring; this keeps the one the response was made with."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        return super().to_asgi_response(*args, **{**kwargs, "media_type": self.media_type})


async def _chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class Pages:
    def __init__(self, market: MarketData, cache: LatestCache) -> None:
        self._market = market
        self._cache = cache

    async def serve(
        self, dataset: Dataset, series: Series, window: Window, fmt: Format
    ) -> Response:
        if fmt == "json" and window.latest:
            page = await self._cache.get(
                (dataset.name, series.id, window.limit),
                lambda: self._json_page(dataset, series, window),
            )
        elif fmt == "json":
            page = await self._json_page(dataset, series, window)
        else:
            return await self._bulk(dataset, series, window, fmt)
        return Response(page.body, media_type=MediaType.JSON, headers=page.headers)

    async def _read(
        self, dataset: Dataset, series: Series, window: Window
    ) -> tuple[Rows, Metadata, dict[str, str]]:
        records = await self._market.page(dataset, series.id, window)
        first = records[0][0] if records else None
        last = records[-1][0] if records else None
        return records, *_describe(dataset, series, window, len(records), first, last)

    async def _json_page(self, dataset: Dataset, series: Series, window: Window) -> Page:
        rows = await self._market.page_json(dataset, series.id, window)
        metadata, headers = _describe(dataset, series, window, rows.count, rows.first, rows.last)
        body = b'{"data":[' + rows.body + b'],"metadata":' + encode_message(metadata) + b"}"
        return Page(body, headers)

    async def _bulk(self, dataset: Dataset, series: Series, window: Window, fmt: Format) -> Stream:
        records, metadata, headers = await self._read(dataset, series, window)
        name = metadata.series.replace("/", "_")
        headers["Content-Disposition"] = f'attachment; filename="{name}_{dataset.name}.{fmt}"'
        chunks = (
            csv_chunks(dataset, records)
            if fmt == "csv"
            else parquet_chunks(dataset, records, metadata)
        )
        return _Stream(_chunks(chunks), media_type=MEDIA_TYPES[fmt], headers=headers)


def _describe(
    dataset: Dataset,
    series: Series,
    window: Window,
    count: int,
    first: datetime | None,
    last: datetime | None,
) -> tuple[Metadata, dict[str, str]]:
    """A page's metadata and cursors, in the JSON body's form and as headers."""
    next_cursor, prev_cursor = page_cursors(window, first, last, count)
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
