"""The Parquet lake: market data exported from PostgreSQL as hive-partitioned files.

Layout, one file per series and UTC day (the unit a re-export replaces)::

    <lake>/candles/exchange=hyperliquid/symbol=BTC-USD-perps/interval=1m/date=2025-01-05/
        part-0.parquet
    <lake>/funding_rates/exchange=hyperliquid/symbol=BTC-USD-perps/date=2025-01-05/...
    <lake>/open_interest/...            (realtime database, like the two above)
    <lake>/training_candles/exchange=binance/symbol=BTC-USDT-spot/interval=1m/date=.../...

`symbol` is coin-quote-market type, so Binance spot and perps of one coin stay apart. Files
hold `time` and the table's value columns; the path holds the rest, as DuckDB's
`hive_partitioning` reads it. Numbers are float64 unless exact decimals are asked for.

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
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.datasets import CANDLES, FUNDING_RATES, OPEN_INTEREST, Dataset
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.db.connection import connect
from kirby_core.db.copy_reader import copy_csv, parse_csv, schema
from kirby_core.locations import Location
from kirby_core.settings import Database

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


@dataclass(frozen=True)
class LakeDataset:
    """A table of one database as the lake holds it."""

    name: str
    """Directory under the lake root (also the dataset name in reports)."""
    database: Database
    source: Dataset
    """The market table it is exported from (in `database`)."""

    @property
    def per_interval(self) -> bool:
        """Whether series are starlistings (an `interval=` level) or trading pairs."""
        return self.source.per_starlisting

    def schema(self, exact_decimals: bool) -> pa.Schema:
        """Columns of its files: time, then the table's value columns."""
        return schema(self.source, exact_decimals)

    @property
    def hive_keys(self) -> tuple[str, ...]:
        return ("exchange", "symbol", "interval") if self.per_interval else ("exchange", "symbol")


LAKE_DATASETS = {
    dataset.name: dataset
    for dataset in (
        *(LakeDataset(d.name, "realtime", d) for d in (CANDLES, FUNDING_RATES, OPEN_INTEREST)),
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
        table = parse_csv(data, dataset.source, exact_decimals)
        written.extend(_write_chunk(lake, dataset, by_id, table, chunk, writers))

    async def worker() -> None:
        conn = await connect(url)
        pending: asyncio.Future[None] | None = None
        try:
            while not chunks.empty():
                chunk = chunks.get_nowait()
                start = datetime.combine(chunk[0], time(), UTC)
                end = datetime.combine(chunk[-1], time(), UTC) + timedelta(days=1)
                data = await copy_csv(conn, dataset.source, list(by_id), start, end)
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
    list(pool.map(lambda item: write_table(lake, *item), files))
    exported = []
    for series_id, series in by_id.items():
        for day in days:
            directory = partition_dir(lake, dataset, series, day)
            rows = found.get((series_id, day), 0)
            if rows == 0:
                remove_directory(lake, directory)  # nothing left for that day: no stale file
            exported.append(ExportedFile(series, day, rows, f"{directory}/{FILE_NAME}"))
    return exported


def write_table(lake: Location, table: pa.Table, path: str) -> None:
    """Write one lake file at `path` (inside the lake's filesystem) atomically."""
    if not lake.is_local:  # an object store replaces an object whole: no partial file
        pq.write_table(table, path, filesystem=lake.fs, use_dictionary=False)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    directory, name = os.path.split(path)
    partial = os.path.join(directory, f".{name}.{os.getpid()}.partial")
    pq.write_table(table, partial, filesystem=_LOCAL, use_dictionary=False)
    os.replace(partial, path)  # readers see the old file or the new one, never half of one


def remove_directory(lake: Location, directory: str) -> None:
    """Remove `directory` and what it holds, if it exists."""
    if lake.is_local:
        shutil.rmtree(directory, ignore_errors=True)
    elif lake.fs.exists(directory):
        lake.fs.rm(directory, recursive=True)


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
