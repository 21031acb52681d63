"""Response bodies of the data endpoints: JSON page types, and Parquet files.

JSON pages are built by PostgreSQL (`ServedDataset.json_object`, `kirby_api.market_data`); the page
types here describe them in OpenAPI and match them byte for byte. CSV is written by
PostgreSQL too (`kirby_api.bulk`); Parquet is encoded here by `parquet_file`, one row group
per `CHUNK_ROWS` rows, in a worker thread. Decimals stay exact in every format: strings in
JSON and Parquet, the same text in CSV; times are UTC (`...Z` in text, timestamp[ms, UTC]
in Parquet; a trade's time keeps its microseconds: timestamp[us, UTC]). Page metadata
rides in the JSON body, and in headers for every format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from kirby_api.datasets import (
    BookData,
    CandleData,
    FundingData,
    OpenInterestData,
    ServedDataset,
    TradeData,
)

Format = Literal["json", "csv", "parquet"]
Rows = Sequence[Sequence[object]] | Sequence[asyncpg.Record]
CHUNK_ROWS = 1000

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


class Range(msgspec.Struct):
    start_time: datetime | None
    """Time of the first row returned (null when there is none)."""
    end_time: datetime | None
    """Time of the last row returned."""


class Metadata(msgspec.Struct, omit_defaults=True):
    series: str
    """e.g. hyperliquid/BTC/USD/perps/1m (candles) or hyperliquid/BTC/USD/perps."""
    exchange: str
    coin: str
    quote: str
    trading_pair: str
    market_type: str
    trading_pair_id: int
    count: int
    range: Range
    next_cursor: str | None
    """Pass as `cursor` for the rows after this page (also the way to poll for new rows);
    null when the requested range has no more."""
    prev_cursor: str | None
    """Pass as `cursor` for the rows before this page; null when there are none."""
    interval: str | None = None
    starlisting_id: int | None = None
    columns: dict[str, str] | None = None
    """What the less obvious columns mean (funding: which rate is settled, which predicted)."""


class CandlesPage(msgspec.Struct):
    data: list[CandleData]
    metadata: Metadata


class FundingPage(msgspec.Struct):
    data: list[FundingData]
    metadata: Metadata


class OpenInterestPage(msgspec.Struct):
    data: list[OpenInterestData]
    metadata: Metadata


class TradesPage(msgspec.Struct):
    data: list[TradeData]
    metadata: Metadata


class BooksPage(msgspec.Struct):
    data: list[BookData]
    metadata: Metadata


_encoder = msgspec.json.Encoder()


def encode_message(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


_ARROW_TYPES = {
    "time": pa.timestamp("ms", tz="UTC"),
    "instant": pa.timestamp("us", tz="UTC"),
    "decimal": pa.string(),
    "int": pa.int64(),
    "text": pa.string(),
    "bigint": pa.int64(),
    "decimals": pa.list_(pa.string()),
}


def parquet_schema(dataset: ServedDataset, metadata: Metadata) -> pa.Schema:
    fields = [pa.field(name, _ARROW_TYPES[kind]) for name, _, kind in dataset.columns]
    return pa.schema(
        fields,
        metadata={
            "kirby.series": metadata.series,
            "kirby.dataset": dataset.name,
            "kirby.decimals": "exact decimal strings",
            "kirby.columns": json.dumps(dataset.notes),
        },
    )


def parquet_file(
    dataset: ServedDataset,
    records: Sequence[Sequence[Any]] | Sequence[asyncpg.Record],
    metadata: Metadata,
) -> bytes:
    """The page as one Parquet file; CPU-bound, so callers run it in a worker thread."""
    schema = parquet_schema(dataset, metadata)
    columns = list(zip(*records, strict=True)) if records else [()] * len(schema)
    arrays = [
        pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)
    ]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink, row_group_size=CHUNK_ROWS)
    return sink.getvalue().to_pybytes()
