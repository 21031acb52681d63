"""Market-data rows as Arrow tables, straight from PostgreSQL's COPY: the exports' reader.

`read_arrow` runs `COPY (SELECT ...) TO STDOUT (FORMAT csv)` and hands the bytes to Arrow's
multi-threaded CSV parser, so no Python code touches a row: the server formats, Arrow parses.
Numeric columns become float64 (the default, for ML) or exact `decimal128(38, 18)`; times
are `timestamp[us, UTC]`. Queries are built from the fixed table specs below; values
(series ids, time bounds) are bind parameters, which asyncpg quotes server-side for COPY.

What it does not do: write files (see `kirby_core.lake`), or read one series at a time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv

from kirby_core.timeutil import ensure_utc

DECIMAL = pa.decimal128(38, 18)
"""Exact decimals: 20 integer and 18 fractional digits, as the original Kirby stored them."""
TIME = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    """A market-data table as exports see it; identifiers only from this module."""

    table: str
    series: str
    columns: tuple[tuple[str, str], ...]
    """(column, kind) after `time`; kind is "numeric", "int" or "time"."""

    def arrow_type(self, kind: str, exact_decimals: bool) -> pa.DataType:
        if kind == "numeric":
            return DECIMAL if exact_decimals else pa.float64()
        return TIME if kind == "time" else pa.int32()

    def schema(self, exact_decimals: bool) -> pa.Schema:
        """Columns of a lake file: time, then the table's value columns."""
        return pa.schema(
            [("time", TIME)]
            + [(name, self.arrow_type(kind, exact_decimals)) for name, kind in self.columns]
        )

    def query(self) -> str:
        columns = ", ".join(["time", *(name for name, _ in self.columns)])
        return (
            f"SELECT {self.series}, {columns} FROM {self.table}"  # noqa: S608
            f" WHERE {self.series} = ANY($1::integer[]) AND time >= $2 AND time < $3"
            f" ORDER BY {self.series}, time"
        )


CANDLES = TableSpec(
    "candles",
    "starlisting_id",
    (
        ("open", "numeric"),
        ("high", "numeric"),
        ("low", "numeric"),
        ("close", "numeric"),
        ("volume", "numeric"),
        ("trade_count", "int"),
    ),
)
FUNDING_RATES = TableSpec(
    "funding_rates",
    "trading_pair_id",
    (
        ("settled_funding_rate", "numeric"),
        ("settled_premium", "numeric"),
        ("predicted_funding_rate", "numeric"),
        ("premium", "numeric"),
        ("mark_price", "numeric"),
        ("oracle_price", "numeric"),
        ("mid_price", "numeric"),
        ("next_funding_time", "time"),
    ),
)
OPEN_INTEREST = TableSpec(
    "open_interest",
    "trading_pair_id",
    (
        ("open_interest", "numeric"),
        ("notional", "numeric"),
        ("day_base_volume", "numeric"),
        ("day_notional_volume", "numeric"),
    ),
)
TABLES = {spec.table: spec for spec in (CANDLES, FUNDING_RATES, OPEN_INTEREST)}


async def read_arrow(
    conn: asyncpg.Connection,
    spec: TableSpec,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    exact_decimals: bool = False,
) -> pa.Table:
    """Rows of `series_ids` with start <= time < end, ordered by series then time, as one
    Arrow table: `series_id` (int32), `time`, then the table's columns."""
    return parse_csv(await copy_csv(conn, spec, series_ids, start, end), spec, exact_decimals)


async def copy_csv(
    conn: asyncpg.Connection,
    spec: TableSpec,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
) -> bytes:
    """The same rows as COPY's CSV, unparsed: callers that overlap receiving and parsing
    (the lake export) parse in a worker thread while the next COPY arrives."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(
        spec.query(),
        list(series_ids),
        ensure_utc(start),
        ensure_utc(end),
        output=sink,
        format="csv",
    )
    return b"".join(chunks)


def parse_csv(data: bytes, spec: TableSpec, exact_decimals: bool) -> pa.Table:
    """COPY's CSV (session time zone UTC or not: offsets are parsed) as an Arrow table."""
    schema = spec.schema(exact_decimals)
    names = ["series_id", *schema.names]
    types = {"series_id": pa.int32(), **{f.name: f.type for f in schema}}
    if not data:
        return pa.table({name: pa.array([], type=types[name]) for name in names})
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
