"""Market-data rows as Arrow tables, straight from PostgreSQL's COPY: the exports' reader.

`copy_csv` runs `COPY (SELECT ...) TO STDOUT (FORMAT csv)` and `parse_csv` hands the bytes to
Arrow's multi-threaded CSV parser, so no Python code touches a row: the server formats, Arrow
parses (the lake export parses one chunk in a thread while the next one arrives).
Numeric columns become float64 (the default, for ML) or exact `decimal128(38, 18)`; times
are `timestamp[us, UTC]`. Queries are built from the declarations in `kirby_core.datasets`; values
(series ids, time bounds) are bind parameters, which asyncpg quotes server-side for COPY.

What it does not do: write files (see `kirby_core.lake`), or read one series at a time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv

from kirby_core.datasets import TIME as TIME_COLUMN
from kirby_core.datasets import Column, Dataset
from kirby_core.timeutil import ensure_utc

DECIMAL = pa.decimal128(38, 18)
"""Exact decimals: 20 integer and 18 fractional digits, as the original Kirby stored them."""
ARROW_TIME = pa.timestamp("us", tz="UTC")


def arrow_type(column: Column, exact_decimals: bool) -> pa.DataType:
    if column.pg_type == "numeric":
        return DECIMAL if exact_decimals else pa.float64()
    return ARROW_TIME if column.pg_type == "timestamptz" else pa.int32()


def schema(dataset: Dataset, exact_decimals: bool) -> pa.Schema:
    """Columns of a lake file: time, then the table's value columns."""
    return pa.schema(
        [(TIME_COLUMN.name, ARROW_TIME)]
        + [(column.name, arrow_type(column, exact_decimals)) for column in dataset.columns]
    )


def _query(dataset: Dataset) -> str:
    series = dataset.series_column
    columns = ", ".join([TIME_COLUMN.name, *dataset.column_names])
    return (
        f"SELECT {series}, {columns} FROM {dataset.name}"  # noqa: S608
        f" WHERE {series} = ANY($1::integer[]) AND time >= $2 AND time < $3"
        f" ORDER BY {series}, time"
    )


async def copy_csv(
    conn: asyncpg.Connection,
    dataset: Dataset,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
) -> bytes:
    """Rows of `series_ids` with start <= time < end, ordered by series then time, as COPY's
    CSV: `series_id`, `time`, then the table's columns."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(
        _query(dataset),
        list(series_ids),
        ensure_utc(start),
        ensure_utc(end),
        output=sink,
        format="csv",
    )
    return b"".join(chunks)


def parse_csv(data: bytes, dataset: Dataset, exact_decimals: bool) -> pa.Table:
    """COPY's CSV (session time zone UTC or not: offsets are parsed) as an Arrow table."""
    file_schema = schema(dataset, exact_decimals)
    names = ["series_id", *file_schema.names]
    types = {"series_id": pa.int32(), **{f.name: f.type for f in file_schema}}
    if not data:
        return pa.table({name: pa.array([], type=types[name]) for name in names})
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
