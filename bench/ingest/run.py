"""Candle upsert throughput: Kirby's writer vs. the common approach vs. the engine's limit.

    python -m bench.ingest.run [--rows 1000000] [--batch 100000]

In one run, on the same rows (8 starlistings of 1m candles, exchange-like decimals):
  (a) Kirby's writer (`kirby_core.db.writer.upsert_candles`), fresh rows then re-upserts;
  (b) asyncpg `executemany` of INSERT ... ON CONFLICT DO UPDATE with COALESCE, the common
      approach, fresh then re-upsert;
  (c) PostgreSQL's own server-side `COPY candles FROM '<file>'` of the same rows, fresh only
      (it cannot upsert): the most this server can ingest into this table.
Targets (issue 2): (a) >= 3x (b), and (a) >= 50% of (c) for fresh rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.common import drop_database, random_walk_candles, scratch_database, timed
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow

DATABASE = "kirby_bench_ingest"
SERIES = 8
EXECUTEMANY = """
INSERT INTO candles AS t (starlisting_id, time, open, high, low, close, volume, trade_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (starlisting_id, time) DO UPDATE SET
    open = coalesce(EXCLUDED.open, t.open), high = coalesce(EXCLUDED.high, t.high),
    low = coalesce(EXCLUDED.low, t.low), close = coalesce(EXCLUDED.close, t.close),
    volume = coalesce(EXCLUDED.volume, t.volume),
    trade_count = coalesce(EXCLUDED.trade_count, t.trade_count)
"""


def make_rows(count: int) -> list[CandleRow]:
    """`count` candles spread over the benchmark's starlistings, one random walk each."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    per_series = count // SERIES
    return [
        row
        for sid in range(1, SERIES + 1)
        for row in random_walk_candles(sid, start, per_series, seed=7 + sid)
    ]


async def prepare_catalog(conn: asyncpg.Connection) -> None:
    await conn.execute("""
        INSERT INTO exchanges (name) VALUES ('bench'); INSERT INTO coins (symbol) VALUES ('B');
        INSERT INTO quote_currencies (symbol) VALUES ('Q');
        INSERT INTO market_types (name) VALUES ('perps');
        INSERT INTO trading_pairs (exchange_id, coin_id, quote_currency_id, market_type_id)
            VALUES (1, 1, 1, 1);""")
    for sid in range(1, SERIES + 1):
        await conn.execute("INSERT INTO intervals (name, seconds) VALUES ($1, 60)", f"i{sid}")
        await conn.execute(
            "INSERT INTO starlistings (exchange_id, coin_id, quote_currency_id, market_type_id,"
            " interval_id, trading_pair_id) VALUES (1, 1, 1, 1, $1, 1)",
            sid,
        )


async def run(count: int, batch: int) -> dict[str, float]:
    url = await scratch_database(DATABASE)
    conn = await asyncpg.connect(url)
    rates: dict[str, float] = {}
    try:
        await prepare_catalog(conn)
        rows = make_rows(count)
        count = len(rows)
        print(f"{count:,} candles, {SERIES} starlistings, writer batches of {batch:,}")

        async def kirby() -> None:
            for i in range(0, count, batch):
                await upsert_candles(conn, rows[i : i + batch])

        async def executemany() -> None:
            for i in range(0, count, batch):
                await conn.executemany(EXECUTEMANY, rows[i : i + batch])

        for label, write in (("(a) kirby writer", kirby), ("(b) asyncpg executemany", executemany)):
            await conn.execute("TRUNCATE candles")
            for phase in ("fresh", "re-upsert"):
                with timed() as t:
                    await write()
                rates[f"{label} {phase}"] = count / t.seconds
                print(
                    f"{label:<26} {phase:<10} {count / t.seconds:>10,.0f} rows/s  "
                    f"({t.seconds:.1f} s)"
                )

        await conn.execute("TRUNCATE candles")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "candles.tsv"
            path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
            os.chmod(tmp, 0o755)  # the server may run as its own system user
            os.chmod(path, 0o644)
            with timed() as t:
                await conn.execute(f"COPY candles FROM '{path}'")
        rates["(c) server COPY fresh"] = count / t.seconds
        print(
            f"{'(c) server COPY FROM file':<26} {'fresh':<10} {count / t.seconds:>10,.0f} "
            f"rows/s  ({t.seconds:.1f} s)"
        )
        assert await conn.fetchval("SELECT count(*) FROM candles") == count
    finally:
        await conn.close()
        await drop_database(url, DATABASE)

    a, b, c = (
        rates["(a) kirby writer fresh"],
        rates["(b) asyncpg executemany fresh"],
        rates["(c) server COPY fresh"],
    )
    a_re, b_re = rates["(a) kirby writer re-upsert"], rates["(b) asyncpg executemany re-upsert"]
    print(
        f"\nfresh:     (a)/(b) = {a / b:.2f}x (target >= 3x)   "
        f"(a)/(c) = {a / c:.0%} (target >= 50%)"
    )
    print(f"re-upsert: (a)/(b) = {a_re / b_re:.2f}x")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="candles to write")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per writer call")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.batch))


if __name__ == "__main__":
    main()
