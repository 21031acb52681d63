"""Trade ingest rows/s and bytes per trade (issue 15, Deliver 3 and the first bench of 6).

    python -m bench.trades.ingest [--rows 500000] [--batch 10000] [--plain]

`--plain` migrates the scratch database without TimescaleDB (KIRBY_TIMESCALEDB=off), so
`trades` is partitioned by day even on a server that has TimescaleDB.

In one run, on the same rows (10 trading pairs over 2 UTC days, exchange-like trades: integer
trade ids as text, prices with one decimal, sizes with up to five, Poisson arrivals):
  (a) PostgreSQL's own server-side `COPY trades FROM '<file>'` into Kirby's `trades` table
      (the engine's limit: no dedupe, one bad or repeated row fails it all);
  (b) Kirby's writer (`kirby_core.db.trades.write_trades`) in batches, fresh rows;
  (c) the writer again on the same rows: every row a duplicate, nothing written.
Target (issue 15): (b) >= 50% of (a). Both load the same empty table with its partitions
already made, so neither pays for creating them.

Then bytes per trade (table + indexes + TOAST, after VACUUM) of the same rows as: a plain
table, a table partitioned by day, a TimescaleDB hypertable compressed by pair (only when the
server has TimescaleDB: run with KIRBY_DATABASE_URL pointing at one), and zstd Parquet
(prices and sizes as float64, the lake's default, and as exact decimal128(38, 18)).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import drop_database, scratch_database, timed
from kirby_core.db import migrate
from kirby_core.db.daily_tables import utc_day
from kirby_core.db.trades import TRADE_COLUMNS, TRADES_BY_DAY, TradeRow, write_trades

DATABASE = "kirby_bench_trades"
PAIRS = 10
DAYS = 2
START = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = """
INSERT INTO exchanges (name) VALUES ('bench'); INSERT INTO quote_currencies (symbol) VALUES ('Q');
INSERT INTO market_types (name) VALUES ('perps');
INSERT INTO coins (symbol) SELECT 'C' || n FROM generate_series(1, $PAIRS) n;
INSERT INTO trading_pairs (exchange_id, coin_id, quote_currency_id, market_type_id)
    SELECT 1, id, 1, 1 FROM coins ORDER BY id;
""".replace("$PAIRS", str(PAIRS))
KEY = "PRIMARY KEY (trading_pair_id, time, trade_id)"


def make_rows(count: int, seed: int = 15) -> list[TradeRow]:
    """`count` trades over `PAIRS` pairs and `DAYS` days: a random walk of prices per pair."""
    rng = random.Random(seed)
    per_pair = count // PAIRS
    mean_gap = DAYS * 86400 / per_pair
    rows: list[TradeRow] = []
    for pair in range(1, PAIRS + 1):
        price, seconds, trade_id = 1000.0 * pair, 0.0, 4_000_000_000 + pair * 10_000_000
        for _ in range(per_pair):
            seconds += rng.expovariate(1 / mean_gap)
            price = max(0.1, price + rng.choice((-0.1, 0.0, 0.0, 0.1)))
            size = Decimal(f"{rng.lognormvariate(-3, 1.5):.5f}") or Decimal("0.00001")
            trade_id += 1
            rows.append(
                TradeRow(
                    pair,
                    START + timedelta(milliseconds=int(seconds * 1000)),
                    str(trade_id),
                    Decimal(f"{price:.1f}"),
                    size,
                    rng.choice(("buy", "sell")),
                )
            )
    rows.sort(key=lambda r: r.time)  # arrival order, as a collector sees them
    return rows


async def bytes_of(conn: asyncpg.Connection, table: str) -> int:
    size = await conn.fetchval(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
        " FROM pg_partition_tree($1::regclass)), pg_total_relation_size($1::regclass))",
        table,
    )
    return int(size)


async def copy_of(conn: asyncpg.Connection, table: str, ddl_tail: str = "") -> None:
    await conn.execute(
        f"CREATE TABLE {table} (LIKE trades INCLUDING DEFAULTS INCLUDING CONSTRAINTS, {KEY})"
        f" {ddl_tail}"
    )


async def storage(conn: asyncpg.Connection, rows: list[TradeRow]) -> dict[str, int]:
    """Bytes of the same rows in each layout."""
    sizes: dict[str, int] = {}
    ordered = "SELECT * FROM trades ORDER BY trading_pair_id, time"
    await copy_of(conn, "bench_plain")
    await conn.execute(f"INSERT INTO bench_plain {ordered}")
    await copy_of(conn, "bench_part", "PARTITION BY RANGE (time)")
    for day in range(DAYS + 1):
        lo, hi = START + timedelta(days=day), START + timedelta(days=day + 1)
        await conn.execute(
            f"CREATE TABLE bench_part_{day} PARTITION OF bench_part"
            f" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
    await conn.execute(f"INSERT INTO bench_part {ordered}")
    await conn.execute("VACUUM ANALYZE bench_plain, bench_part")
    sizes["plain table"] = await bytes_of(conn, "bench_plain")
    sizes["partitioned by day"] = await bytes_of(conn, "bench_part")

    if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"):
        await copy_of(conn, "bench_ts")
        await conn.execute(
            "SELECT create_hypertable('bench_ts', 'time', chunk_time_interval => interval '1 day')"
        )
        await conn.execute(f"INSERT INTO bench_ts {ordered}")
        await conn.execute("VACUUM ANALYZE bench_ts")
        sizes["hypertable, uncompressed"] = await conn.fetchval(
            "SELECT hypertable_size('bench_ts')"
        )
        await conn.execute(
            "ALTER TABLE bench_ts SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'trading_pair_id',"
            " timescaledb.compress_orderby = 'time, trade_id')"
        )
        await conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('bench_ts') c")
        sizes["hypertable, compressed by pair"] = await conn.fetchval(
            "SELECT hypertable_size('bench_ts')"
        )

    ordered_rows = sorted(rows, key=lambda r: (r.trading_pair_id, r.time))
    with tempfile.TemporaryDirectory() as tmp:
        for label, numeric in (("float64", pa.float64()), ("decimal128(38, 18)", None)):
            decimal = pa.decimal128(38, 18)
            columns = {
                "trading_pair_id": pa.array([r.trading_pair_id for r in ordered_rows], pa.int32()),
                "time": pa.array([r.time for r in ordered_rows], pa.timestamp("ms", tz="UTC")),
                "trade_id": pa.array([r.trade_id for r in ordered_rows], pa.string()),
                "price": pa.array(
                    [float(r.price) if numeric else r.price for r in ordered_rows],
                    numeric or decimal,
                ),
                "size": pa.array(
                    [float(r.size) if numeric else r.size for r in ordered_rows],
                    numeric or decimal,
                ),
                "side": pa.array([r.side for r in ordered_rows], pa.string()),
            }
            path = Path(tmp) / f"trades_{len(sizes)}.parquet"
            pq.write_table(pa.table(columns), path, compression="zstd")
            sizes[f"Parquet zstd, {label}"] = path.stat().st_size
    return sizes


async def run(count: int, batch: int, plain: bool) -> dict[str, float]:
    url = await scratch_database(DATABASE, migrated=False)
    migrate.upgrade(url, timescaledb="off" if plain else "auto")
    conn = await asyncpg.connect(url)
    rates: dict[str, float] = {}
    try:
        await conn.execute(CATALOG)
        rows = make_rows(count)
        count = len(rows)
        kind = await conn.fetchval(
            "SELECT CASE WHEN relkind = 'p' THEN 'partitioned by day' ELSE 'hypertable' END"
            " FROM pg_class WHERE oid = 'trades'::regclass"
        )
        print(
            f"{count:,} trades, {PAIRS} pairs, {DAYS} days; trades is {kind};"
            f" writer batches of {batch:,}"
        )
        await TRADES_BY_DAY.create(conn, utc_day(rows[0].time), utc_day(rows[-1].time))

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trades.tsv"
            path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
            os.chmod(tmp, 0o755)  # the server may run as its own system user
            os.chmod(path, 0o644)
            await conn.execute("CHECKPOINT")
            with timed() as t:
                await conn.execute(f"COPY trades ({', '.join(TRADE_COLUMNS)}) FROM '{path}'")
        rates["(a) server COPY FROM file"] = count / t.seconds
        assert await conn.fetchval("SELECT count(*) FROM trades") == count

        async def kirby() -> tuple[int, int]:
            written = duplicates = 0
            for i in range(0, count, batch):
                result = await write_trades(conn, rows[i : i + batch])
                written, duplicates = written + result.written, duplicates + result.duplicates
            return written, duplicates

        await conn.execute("TRUNCATE trades")
        await conn.execute("CHECKPOINT")
        with timed() as t:
            assert await kirby() == (count, 0)
        rates["(b) kirby writer, fresh"] = count / t.seconds
        with timed() as t:
            assert await kirby() == (0, count)
        rates["(c) kirby writer, all duplicates"] = count / t.seconds
        for label, rate in rates.items():
            print(f"{label:<34} {rate:>10,.0f} rows/s")
        a, b = rates["(a) server COPY FROM file"], rates["(b) kirby writer, fresh"]
        print(f"(b)/(a) = {b / a:.0%} (target >= 50%)\n")

        for label, size in (await storage(conn, rows)).items():
            print(f"{label:<34} {size / count:>8.1f} bytes/trade  ({size / 1e6:,.1f} MB)")
            rates[f"bytes/trade {label}"] = size / count
    finally:
        await conn.close()
        await drop_database(url, DATABASE)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="trades to write")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per writer call")
    parser.add_argument("--plain", action="store_true", help="trades partitioned, not hypertable")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.batch, args.plain))


if __name__ == "__main__":
    main()
