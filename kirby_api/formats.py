"""Response bodies of the data endpoints: JSON pages, and CSV / Parquet streams.

JSON pages are built by PostgreSQL (`Dataset.json_object`, `kirby_api.market`); the page
types here describe them in OpenAPI and match them byte for byte. CSV and Parquet are
generated chunk by chunk while they are sent (Parquet one row group per chunk), so a client
starts receiving before the body is complete and the server never holds a second copy of
it. Decimals stay exact in every format: strings in JSON and Parquet, the same text in CSV;
times are UTC (`...Z` in text, timestamp[ms, UTC] in Parquet). Page metadata rides in the
JSON body, and in headers for every format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from kirby_api.datasets import CandleData, Dataset, FundingData, OpenInterestData

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


_encoder = msgspec.json.Encoder()


def encode_message(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def csv_chunks(dataset: Dataset, records: Rows) -> Iterator[bytes]:
    """Header, then rows. Values never contain commas or quotes (numbers and times)."""
    yield (",".join(dataset.field_names) + "\n").encode()
    for i in range(0, len(records), CHUNK_ROWS):
        lines = (",".join(map(_text, r)) for r in records[i : i + CHUNK_ROWS])
        yield ("\n".join(lines) + "\n").encode()


_ARROW_TYPES = {"time": pa.timestamp("ms", tz="UTC"), "decimal": pa.string(), "int": pa.int64()}


def parquet_schema(dataset: Dataset, metadata: Metadata) -> pa.Schema:
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


class _Sink:
    """A write-only file for pyarrow whose bytes are taken out after each row group."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def parquet_chunks(dataset: Dataset, records: Rows, metadata: Metadata) -> Iterator[bytes]:
    schema = parquet_schema(dataset, metadata)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)  # type: ignore[arg-type]  # pyarrow takes any writer
    try:
        for i in range(0, len(records), CHUNK_ROWS):
            columns = list(zip(*records[i : i + CHUNK_ROWS], strict=True))
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(columns, schema, strict=True)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()
