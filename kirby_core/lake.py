"""The Parquet lake: market data exported from PostgreSQL as hive-partitioned files.

Layout, one file per series and UTC day (the unit a re-export replaces)::

    <lake>/candles/exchange=hyperliquid/symbol=BTC-USD-perps/interval=1m/date=2025-01-05/
        part-0.parquet
    <lake>/funding_rates/exchange=hyperliquid/symbol=BTC-USD-perps/date=2025-01-05/...
    <lake>/open_interest/...            (realtime database, like the two above)
    <lake>/trades/exchange=hyperliquid/symbol=BTC-USD-perps/date=2025-01-05/...
    <lake>/books/...                    (realtime database, per pair like trades)
    <lake>/training_candles/exchange=binance/symbol=BTC-USDT-spot/interval=1m/date=.../...

`symbol` is coin-quote-market type, so Binance spot and perps of one coin stay apart. Files
hold `time` and the table's value columns; the path holds the rest, as DuckDB's
`hive_partitioning` reads it. Numbers are float64 unless exact decimals are asked for.
The trade tape (`trades`: `time` in microseconds, `trade_id`, `price`, `size`, taker
`side`, ordered by time then trade id in byte order) and the book samples (`books`: the
second, `sequence`, each side's prices and sizes as lists, best first) are written
zstd-compressed: they are the lake's largest datasets by far (bench/README.md, "Issue 15:
trade storage").

`export_days` streams each chunk of days out of PostgreSQL with COPY (see
`kirby_core.db.copy_reader`) on two connections, and parses and writes a chunk in a worker
thread while the next one is still arriving: no Python loop ever touches a row. Writing a
(series, day) replaces its file atomically (a local file is renamed into place; an object
store replaces an object whole); a (series, day) without rows loses its file, so
re-exporting is idempotent. The lake's root is a `kirby_core.locations.Location`: a local
directory or any fsspec filesystem (`s3://bucket/lake`).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast

import asyncpg
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.datasets import CANDLES, FUNDING_RATES, OPEN_INTEREST, Dataset
from kirby_core.db import books as book_table
from kirby_core.db import trades as trade_table
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.db.connection import connect
from kirby_core.db.copy_reader import ARROW_TIME, DECIMAL, copy_csv, parse_csv, schema
from kirby_core.locations import Location
from kirby_core.settings import Database
from kirby_core.timeutil import ensure_utc

FILE_NAME = "part-0.parquet"
CHUNK_DAYS = 30
"""Days per COPY: large enough to amortise a round trip, small enough to overlap well."""
CONNECTIONS = 2
"""Parallel COPY streams: on two cores, one parses and writes while the other receives."""
WRITERS = 8
"""Threads writing files."""
_DAY_US = 86_400_000_000
_LOCAL = pafs.LocalFileSystem()
"""Named, so pyarrow does not probe each new path for a URI scheme."""


Codec = Literal["snappy", "zstd"]


ValueKind = Literal["text", "int", "number", "numbers"]
"""How a `RowSource` column lands in a file: string, int64, a number (float64 or exact
decimal128(38, 18)), or a list of numbers (a numeric[]: a book side)."""


@dataclass(frozen=True)
class RowSource:
    """A table the lake exports that is not a minute-keyed `Dataset`: the trade tape (many
    rows per time) and the book samples (one a second, with numeric[] columns)."""

    name: str
    series_column: str
    column_names: tuple[str, ...]
    """Value columns after `time`, in table order."""
    kinds: tuple[ValueKind, ...]
    order: str = ""
    """What orders rows of one time after (series, time), SQL; "" when time is unique."""
    per_starlisting: bool = False

    def schema(self, exact_decimals: bool) -> pa.Schema:
        number = DECIMAL if exact_decimals else pa.float64()
        types: dict[ValueKind, pa.DataType] = {
            "text": pa.string(),
            "int": pa.int64(),
            "number": number,
            "numbers": pa.list_(number),
        }
        columns = [(n, types[k]) for n, k in zip(self.column_names, self.kinds, strict=True)]
        return pa.schema([("time", ARROW_TIME), *columns])

    def query(self) -> str:
        # a numeric[] travels as its elements' exact text joined by commas (NULL: no levels)
        values = [
            f"NULLIF(array_to_string({name}, ','), '')" if kind == "numbers" else name
            for name, kind in zip(self.column_names, self.kinds, strict=True)
        ]
        order = ", ".join(part for part in (self.series_column, "time", self.order) if part)
        # identifiers from the declarations below; values are bind parameters
        return (
            f"SELECT {self.series_column}, time, {', '.join(values)} FROM {self.name}"  # noqa: S608
            f" WHERE {self.series_column} = ANY($1::integer[]) AND time >= $2 AND time < $3"
            f" ORDER BY {order}"
        )

    def parse(self, data: bytes, exact_decimals: bool) -> pa.Table:
        """`query`'s COPY CSV as an Arrow table: series_id, then the files' columns."""
        file_schema = self.schema(exact_decimals)
        lists = {n for n, k in zip(self.column_names, self.kinds, strict=True) if k == "numbers"}
        names = ["series_id", *file_schema.names]
        types = {
            "series_id": pa.int32(),
            **{f.name: pa.string() if f.name in lists else f.type for f in file_schema},
        }
        if not data:
            return pa.table({n: pa.array([], type=t) for n, t in [("series_id", pa.int32()),
                            *((f.name, f.type) for f in file_schema)]})  # fmt: skip
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names),
            # "" stays a string (a trade id), never a null; only a numeric[]'s NULL is one
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
        for name in lists:  # "1.5,2" -> ["1.5", "2"] -> numbers, no Python loop over rows
            texts = table.column(name)
            empty = pc.equal(texts, pa.scalar(""))  # no levels (COPY writes NULL as "")
            texts = pc.if_else(empty, pa.scalar(None, pa.string()), texts)
            levels = pc.fill_null(
                pc.split_pattern(texts, ","), pa.scalar([], type=pa.list_(pa.string()))
            )
            numbers = cast("pa.ChunkedArray[Any]", pc.cast(levels, file_schema.field(name).type))
            table = table.set_column(table.schema.get_field_index(name), name, numbers)
        return table


TRADE_TAPE = RowSource(
    trade_table.TRADES_TABLE,
    trade_table.TRADE_COLUMNS[0],
    trade_table.TRADE_COLUMNS[2:],
    ("text", "number", "number", "text"),
    order='trade_id COLLATE "C"',
)
"""`trades` (`kirby_core.db.trades`): time in microseconds, trade_id, price, size, side."""
BOOK_SAMPLES = RowSource(
    book_table.BOOKS_TABLE,
    book_table.BOOK_COLUMNS[0],
    book_table.BOOK_COLUMNS[2:],
    ("int", "numbers", "numbers", "numbers", "numbers"),
)
"""`books` (`kirby_core.db.books`): the sample's second, sequence, each side's prices and
sizes best first as lists."""


@dataclass(frozen=True)
class LakeDataset:
    """A table of one database as the lake holds it."""

    name: str
    """Directory under the lake root (also the dataset name in reports)."""
    database: Database
    source: Dataset | RowSource
    """The market table it is exported from (in `database`)."""
    compression: Codec = "snappy"
    """Parquet codec of its files."""

    @property
    def per_interval(self) -> bool:
        """Whether series are starlistings (an `interval=` level) or trading pairs."""
        return self.source.per_starlisting

    def schema(self, exact_decimals: bool) -> pa.Schema:
        """Columns of its files: time, then the table's value columns."""
        if isinstance(self.source, RowSource):
            return self.source.schema(exact_decimals)
        return schema(self.source, exact_decimals)

    async def copy(
        self, conn: asyncpg.Connection, ids: list[int], start: datetime, end: datetime
    ) -> bytes:
        """COPY's CSV of the rows of `ids` in [start, end): series id, time, values."""
        if not isinstance(self.source, RowSource):
            return await copy_csv(conn, self.source, ids, start, end)
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        query = self.source.query()
        start, end = ensure_utc(start), ensure_utc(end)
        await conn.copy_from_query(query, ids, start, end, output=sink, format="csv")
        return b"".join(chunks)

    def parse(self, data: bytes, exact_decimals: bool) -> pa.Table:
        """`copy`'s CSV as an Arrow table: series_id, then the files' columns."""
        if not isinstance(self.source, RowSource):
            return parse_csv(data, self.source, exact_decimals)
        return self.source.parse(data, exact_decimals)

    @property
    def hive_keys(self) -> tuple[str, ...]:
        return ("exchange", "symbol", "interval") if self.per_interval else ("exchange", "symbol")


LAKE_DATASETS = {
    dataset.name: dataset
    for dataset in (
        *(LakeDataset(d.name, "realtime", d) for d in (CANDLES, FUNDING_RATES, OPEN_INTEREST)),
        LakeDataset(TRADE_TAPE.name, "realtime", TRADE_TAPE, compression="zstd"),
        LakeDataset(BOOK_SAMPLES.name, "realtime", BOOK_SAMPLES, compression="zstd"),
        LakeDataset("training_candles", "training", CANDLES),
    )
}


@dataclass(frozen=True)
class LakeSeries:
    """One series (a starlisting, or a trading pair) with the names its path uses."""

    series_id: int
    exchange: str
    symbol: str
    interval: str | None = None

    @classmethod
    def of_starlisting(cls, starlisting: Starlisting) -> LakeSeries:
        key = starlisting.key
        return cls(starlisting.id, key.exchange, symbol(key), key.interval)

    @classmethod
    def of_trading_pair(cls, pair: TradingPair) -> LakeSeries:
        return cls(pair.id, pair.key.exchange, symbol(pair.key))

    def hive_values(self) -> tuple[str, ...]:
        if self.interval is None:
            return (self.exchange, self.symbol)
        return (self.exchange, self.symbol, self.interval)


def symbol(key: StarlistingKey | TradingPairKey) -> str:
    """The lake's `symbol` of a starlisting or trading pair key: BTC-USD-perps."""
    return f"{key.coin}-{key.quote}-{key.market_type}"


@dataclass(frozen=True)
class ExportedFile:
    series: LakeSeries
    day: date
    rows: int
    path: str
    """Where the file is in the lake's filesystem, or would be when `rows` is 0 (no file is
    kept then)."""


def partition_dir(lake: Location, dataset: LakeDataset, series: LakeSeries, day: date) -> str:
    parts = [f"{k}={v}" for k, v in zip(dataset.hive_keys, series.hive_values(), strict=True)]
    return lake.path(dataset.name, *parts, f"date={day.isoformat()}")


async def export_days(
    url: str,
    lake: Location,
    dataset: LakeDataset,
    series: Sequence[LakeSeries],
    days: Iterable[date],
    *,
    exact_decimals: bool = False,
) -> list[ExportedFile]:
    """Export every (series, day): one file each, replacing what was there. Returns one
    entry per (series, day), in series then day order, with its exact row count."""
    ordered = sorted(set(days))
    if not series or not ordered:
        return []
    by_id = {s.series_id: s for s in series}
    chunks: asyncio.Queue[list[date]] = asyncio.Queue()
    for chunk in _chunks(ordered, CHUNK_DAYS):
        chunks.put_nowait(chunk)
    written: list[ExportedFile] = []
    # Creating a directory and a file costs a millisecond or more on a busy disk: several
    # threads keep the disk busy (pyarrow and the syscalls release the GIL).
    writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="lake-writer")

    def write(data: bytes, chunk: list[date]) -> None:
        table = dataset.parse(data, exact_decimals)
        written.extend(_write_chunk(lake, dataset, by_id, table, chunk, writers))

    async def worker() -> None:
        conn = await connect(url)
        pending: asyncio.Future[None] | None = None
        try:
            while not chunks.empty():
                chunk = chunks.get_nowait()
                start = datetime.combine(chunk[0], time(), UTC)
                end = datetime.combine(chunk[-1], time(), UTC) + timedelta(days=1)
                data = await dataset.copy(conn, list(by_id), start, end)
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(write, data, chunk))
            if pending is not None:
                await pending
        finally:
            await conn.close()

    with writers:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(CONNECTIONS, chunks.qsize())):
                group.create_task(worker())
    position = {s.series_id: i for i, s in enumerate(series)}
    written.sort(key=lambda f: (position[f.series.series_id], f.day))
    return written


def _chunks(days: list[date], size: int) -> Iterable[list[date]]:
    """Runs of consecutive days, each at most `size` long."""
    chunk: list[date] = []
    for day in days:
        if chunk and (len(chunk) == size or day != chunk[-1] + timedelta(days=1)):
            yield chunk
            chunk = []
        chunk.append(day)
    if chunk:
        yield chunk


def _write_chunk(
    lake: Location,
    dataset: LakeDataset,
    by_id: dict[int, LakeSeries],
    table: pa.Table,
    days: list[date],
    pool: ThreadPoolExecutor,
) -> list[ExportedFile]:
    """Split a chunk (ordered by series, time) into (series, day) files."""
    ids = table.column("series_id").to_numpy()
    day_index = table.column("time").cast(pa.int64()).to_numpy() // _DAY_US
    change = np.flatnonzero((np.diff(ids) != 0) | (np.diff(day_index) != 0)) + 1
    starts = np.concatenate(([0], change)) if len(ids) else np.array([], dtype=np.int64)
    ends = np.concatenate((change, [len(ids)])) if len(ids) else np.array([], dtype=np.int64)
    values = table.drop_columns(["series_id"])
    epoch = date(1970, 1, 1)
    found: dict[tuple[int, date], int] = {}
    files: list[tuple[pa.Table, str]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        key = (int(ids[start]), epoch + timedelta(days=int(day_index[start])))
        found[key] = end - start
        path = f"{partition_dir(lake, dataset, by_id[key[0]], key[1])}/{FILE_NAME}"
        files.append((values.slice(start, end - start), path))
    list(pool.map(lambda item: write_table(lake, item[0], item[1], dataset.compression), files))
    exported = []
    for series_id, series in by_id.items():
        for day in days:
            directory = partition_dir(lake, dataset, series, day)
            rows = found.get((series_id, day), 0)
            if rows == 0:
                remove_directory(lake, directory)  # nothing left for that day: no stale file
            exported.append(ExportedFile(series, day, rows, f"{directory}/{FILE_NAME}"))
    return exported


def write_table(lake: Location, table: pa.Table, path: str, compression: Codec = "snappy") -> None:
    """Write one lake file at `path` (inside the lake's filesystem) atomically."""
    if not lake.is_local:  # an object store replaces an object whole: no partial file
        pq.write_table(
            table, path, filesystem=lake.fs, use_dictionary=False, compression=compression
        )
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    directory, name = os.path.split(path)
    partial = os.path.join(directory, f".{name}.{os.getpid()}.partial")
    pq.write_table(table, partial, filesystem=_LOCAL, use_dictionary=False, compression=compression)
    os.replace(partial, path)  # readers see the old file or the new one, never half of one


def remove_directory(lake: Location, directory: str) -> None:
    """Remove `directory` and what it holds, if it exists."""
    if lake.is_local:
        shutil.rmtree(directory, ignore_errors=True)
    elif lake.fs.exists(directory):
        lake.fs.rm(directory, recursive=True)


def tape_counts(lake: Location, name: str, day: date) -> dict[tuple[str, ...], tuple[int, int]]:
    """Rows and distinct trade ids per series in the trade tape's files of one day, keyed
    by the hive values (exchange, symbol)."""
    base = lake.path(name)
    files = sorted(lake.fs.glob(f"{base}/**/date={day.isoformat()}/*.parquet"))
    if not files:
        return {}
    with duckdb.connect() as con:
        relation = read_files(con, lake, [str(f) for f in files], base)  # noqa: F841
        rows = con.sql(
            "SELECT exchange, symbol, count(*), count(DISTINCT trade_id) FROM relation"
            " GROUP BY exchange, symbol"
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def read_files(
    con: duckdb.DuckDBPyConnection, lake: Location, files: list[str], base_dir: str
) -> duckdb.DuckDBPyRelation:
    """Lake files (of one dataset, under `base_dir`) as one DuckDB relation, the hive values
    of their paths as columns (`date` a DATE, the others text). A local lake is read by
    DuckDB itself; another filesystem through a pyarrow dataset over fsspec, which DuckDB
    scans lazily (its own S3 reader is an extension that downloads at run time)."""
    if lake.is_local:
        return con.read_parquet(files, hive_partitioning=True)
    relative = files[0][len(base_dir) :].strip("/").split("/")[:-1]
    keys = [part.split("=", 1)[0] for part in relative if "=" in part]
    partitioning = ds.partitioning(
        pa.schema([pa.field(k, pa.date32() if k == "date" else pa.string()) for k in keys]),
        flavor="hive",
    )
    dataset = ds.dataset(
        files,
        filesystem=lake.fs,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=base_dir,
    )
    return con.from_arrow(dataset)
