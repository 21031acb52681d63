"""Bytes per book snapshot (issue 15, Deliver 3 and 6): the same top-20 samples stored as
Kirby stores them and as the alternatives.

    python -m bench.books.storage [--pairs 10] [--seconds 3600] [--levels 20]

Samples: `pairs` books sampled once a second for `seconds`, `levels` a side, written by
Kirby's writer (`kirby_core.db.books.write_books`) into `books`. Each book is a random walk:
a mid price on a 0.1 tick, levels one to three ticks apart, sizes with up to five decimals;
each second 2-12 levels change size, the mid moves half the time, a level's spacing
changes now and then (consecutive samples look alike, as real ones do: what compression
feeds on; a busier book compresses less).

Layouts, each holding the same samples (table + indexes + TOAST after VACUUM; Parquet: the
file): Kirby's layout (one row a sample, four `numeric[]`) as a plain table and partitioned by
day; a row per level (pair, time, side, level, price, size) for comparison; with TimescaleDB
(run with KIRBY_DATABASE_URL pointing at a server that has it) both as hypertables compressed
by pair; Parquet zstd with the levels as list<float64> (the lake's default) and as exact
list<decimal128(38, 18)>.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import drop_database, scratch_database, timed
from kirby_core.db.books import BookRow, write_books

DATABASE = "kirby_bench_books"
START = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)  # the hour crosses midnight: 2 partitions
TICK = Decimal("0.1")
CATALOG = """
INSERT INTO exchanges (name) VALUES ('bench'); INSERT INTO quote_currencies (symbol) VALUES ('Q');
INSERT INTO market_types (name) VALUES ('perps');
INSERT INTO coins (symbol) SELECT 'C' || n FROM generate_series(1, {pairs}) n;
INSERT INTO trading_pairs (exchange_id, coin_id, quote_currency_id, market_type_id)
    SELECT 1, id, 1, 1 FROM coins ORDER BY id;
"""
LEVELS_TABLE = """
CREATE TABLE {name} (
    trading_pair_id integer NOT NULL, time timestamptz NOT NULL, side "char" NOT NULL,
    level smallint NOT NULL, price numeric NOT NULL, size numeric NOT NULL,
    PRIMARY KEY (trading_pair_id, time, side, level))
"""
TO_LEVELS = """
INSERT INTO {name}
SELECT b.trading_pair_id, b.time, 'b', l.n, l.price, l.size
FROM books b, unnest(b.bid_prices, b.bid_sizes) WITH ORDINALITY AS l(price, size, n)
UNION ALL
SELECT b.trading_pair_id, b.time, 'a', l.n, l.price, l.size
FROM books b, unnest(b.ask_prices, b.ask_sizes) WITH ORDINALITY AS l(price, size, n)
"""


def _size(rng: random.Random) -> Decimal:
    return Decimal(f"{rng.lognormvariate(0, 1.2):.5f}") or Decimal("0.00001")


def make_samples(pairs: int, seconds: int, levels: int, seed: int = 15) -> list[BookRow]:
    rng = random.Random(seed)
    rows = []
    for pair in range(1, pairs + 1):
        mid = Decimal(1000 * pair)
        gaps = [rng.randint(1, 3) for _ in range(2 * levels)]
        sizes = [_size(rng) for _ in range(2 * levels)]
        sequence = 10_000_000 * pair
        for second in range(seconds):
            if rng.random() < 0.5:
                mid += TICK * rng.choice((-1, 1))
            for _ in range(rng.randint(2, 12)):
                sizes[rng.randrange(2 * levels)] = _size(rng)
            if rng.random() < 0.2:
                gaps[rng.randrange(2 * levels)] = rng.randint(1, 3)
            sequence += rng.randint(1, 40)
            bids, asks, price_bid, price_ask = [], [], mid, mid + TICK
            for n in range(levels):
                price_bid -= TICK * gaps[n] if n else 0
                price_ask += TICK * gaps[levels + n] if n else 0
                bids.append((price_bid, sizes[n]))
                asks.append((price_ask, sizes[levels + n]))
            time = START + timedelta(seconds=second)
            rows.append(BookRow(pair, time, sequence, tuple(bids), tuple(asks)))
    rows.sort(key=lambda r: r.time)  # arrival order: every pair's sample of a second together
    return rows


async def bytes_of(conn: asyncpg.Connection, table: str) -> int:
    size = await conn.fetchval(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
        " FROM pg_partition_tree($1::regclass)), pg_total_relation_size($1::regclass))",
        table,
    )
    return int(size)


async def hypertable(conn: asyncpg.Connection, name: str, orderby: str, fill: str) -> int:
    """Bytes of table `name` made a hypertable, filled by `fill`, compressed by pair."""
    await conn.execute(
        f"SELECT create_hypertable('{name}', 'time', chunk_time_interval => interval '1 day',"
        " create_default_indexes => false)"
    )
    await conn.execute(fill)
    await conn.execute(
        f"ALTER TABLE {name} SET (timescaledb.compress,"
        f" timescaledb.compress_segmentby = 'trading_pair_id',"
        f" timescaledb.compress_orderby = '{orderby}')"
    )
    await conn.execute(f"SELECT count(compress_chunk(c)) FROM show_chunks('{name}') c")
    return int(await conn.fetchval(f"SELECT hypertable_size('{name}')"))


def parquet_sizes(rows: list[BookRow], directory: Path) -> dict[str, int]:
    ordered = sorted(rows, key=lambda r: (r.trading_pair_id, r.time))
    sizes = {}
    for label, kind in (("list<float64>", pa.float64()), ("list<decimal128(38, 18)>", None)):
        decimal = pa.decimal128(38, 18)

        def side(levels: tuple[tuple[Decimal, Decimal], ...], at: int, exact: bool) -> list:
            return [level[at] if exact else float(level[at]) for level in levels]

        exact = kind is None
        listed = pa.list_(kind or decimal)
        table = pa.table(
            {
                "trading_pair_id": pa.array([r.trading_pair_id for r in ordered], pa.int32()),
                "time": pa.array([r.time for r in ordered], pa.timestamp("s", tz="UTC")),
                "sequence": pa.array([r.sequence for r in ordered], pa.int64()),
                "bid_prices": pa.array([side(r.bids, 0, exact) for r in ordered], listed),
                "bid_sizes": pa.array([side(r.bids, 1, exact) for r in ordered], listed),
                "ask_prices": pa.array([side(r.asks, 0, exact) for r in ordered], listed),
                "ask_sizes": pa.array([side(r.asks, 1, exact) for r in ordered], listed),
            }
        )
        path = directory / f"books_{len(sizes)}.parquet"
        pq.write_table(table, path, compression="zstd")
        sizes[f"Parquet zstd, {label}"] = path.stat().st_size
    return sizes


async def run(pairs: int, seconds: int, levels: int) -> dict[str, float]:
    url = await scratch_database(DATABASE)
    conn = await asyncpg.connect(url)
    figures: dict[str, float] = {}
    try:
        await conn.execute(CATALOG.format(pairs=pairs))
        rows = make_samples(pairs, seconds, levels)
        count = len(rows)
        kind = await conn.fetchval(
            "SELECT CASE WHEN relkind = 'p' THEN 'partitioned by day' ELSE 'hypertable' END"
            " FROM pg_class WHERE oid = 'books'::regclass"
        )
        print(f"{count:,} samples ({pairs} pairs x {seconds:,} s), {levels} levels a side;"
              f" books is {kind}")  # fmt: skip
        with timed() as t:
            for i in range(0, count, pairs * 5):  # a flush every 5 s of samples
                assert (await write_books(conn, rows[i : i + pairs * 5])).written == min(
                    pairs * 5, count - i
                )
        print(f"writer: {count / t.seconds:,.0f} samples/s in flushes of 5 s of samples\n")
        figures["writer samples/s"] = count / t.seconds

        sizes: dict[str, int] = {}
        ordered = "SELECT * FROM books ORDER BY trading_pair_id, time"
        await conn.execute(
            "CREATE TABLE bench_plain (LIKE books INCLUDING CONSTRAINTS,"
            " PRIMARY KEY (trading_pair_id, time))"
        )
        await conn.execute(f"INSERT INTO bench_plain {ordered}")
        await conn.execute(LEVELS_TABLE.format(name="bench_levels"))
        await conn.execute(TO_LEVELS.format(name="bench_levels"))
        await conn.execute("VACUUM ANALYZE bench_plain, bench_levels, books")
        sizes["arrays, plain table"] = await bytes_of(conn, "bench_plain")
        if kind == "partitioned by day":
            sizes["arrays, partitioned by day (Kirby's books)"] = await bytes_of(conn, "books")
        sizes["row per level, plain table"] = await bytes_of(conn, "bench_levels")
        if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
            await conn.execute(
                "CREATE TABLE bench_ts (LIKE books INCLUDING CONSTRAINTS);"
                " CREATE UNIQUE INDEX ON bench_ts (trading_pair_id, time)"
            )
            sizes["arrays, hypertable compressed by pair"] = await hypertable(
                conn, "bench_ts", "time", f"INSERT INTO bench_ts {ordered}"
            )
            await conn.execute(LEVELS_TABLE.format(name="bench_ts_levels"))
            sizes["row per level, hypertable compressed by pair"] = await hypertable(
                conn,
                "bench_ts_levels",
                "time, side, level",
                TO_LEVELS.format(name="bench_ts_levels"),
            )
        with tempfile.TemporaryDirectory() as tmp:
            sizes |= parquet_sizes(rows, Path(tmp))
        for label, size in sizes.items():
            print(f"{label:<48} {size / count:>8.1f} bytes/sample  ({size / 1e6:,.1f} MB)")
            figures[f"bytes/sample {label}"] = size / count
    finally:
        await conn.close()
        await drop_database(url, DATABASE)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--levels", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.pairs, args.seconds, args.levels))


if __name__ == "__main__":
    main()
