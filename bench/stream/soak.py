"""Soak: `kirby stream` against `kirby sim` with faults on, then an audit of every minute.

    python -m bench.stream.soak [--minutes 10] [--db-stop-at 240] [--db-stop-for 30]

Three real processes: a private embedded PostgreSQL (its own directory, so it can really be
stopped), `kirby sim` at real speed with scheduled faults (connections dropped every 150 s,
the whole feed stalled for 20 s every 210 s, a malformed frame every 45 s) and `kirby
stream` with default settings on a 10-coin catalog (x 1m/15m/4h/1d). The database is
stopped for `--db-stop-for` seconds in the middle. After `--minutes` the collector gets
SIGTERM, and the audit compares the tables with what the simulated exchange serves:

- every closed 1m and 15m candle of the exchange is stored with exactly its values, or its
  period overlaps an outage row of its starlisting;
- every minute has a funding-rate and an open-interest row per pair, or an outage row;
- no stored candle the exchange does not have, no duplicate outage row, exit code 0.

Prints the figures and "SOAK PASSED" or the violations. Exit status 1 on violations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg

from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store, embedded, migrate
from kirby_core.db.urls import with_database
from kirby_core.timeutil import (
    datetime_to_ms,
    floor_minute,
    floor_time,
    interval_delta,
    ms_to_datetime,
)

COINS = ["BTC", "ETH", "SOL", "AVAX", "BNB", "OP", "LTC", "ARB", "DOGE", "INJ"]
INTERVALS = ["1m", "15m", "4h", "1d"]
AUDITED_INTERVALS = ["1m", "15m"]
SIM_FAULTS = ["--drop-every", "150", "--stall-every", "210", "--stall-for", "20",
              "--malformed-every", "45"]  # fmt: skip
KIRBY = (  # `kirby stream`, registered here if kirby_cli/main.py does not yet
    "from kirby_cli import main; "
    "main.COMMANDS.setdefault('stream', 'kirby_cli.stream:stream'); main.cli()"
)


def catalog():
    return parse_catalog(
        {
            "exchanges": [{"name": "hyperliquid"}],
            "coins": [{"symbol": coin} for coin in COINS],
            "quote_currencies": [{"symbol": "USD"}],
            "market_types": [{"name": "perps"}],
            "starlistings": [
                {"exchange": "hyperliquid", "coin": c, "quote": "USD", "market_type": "perps",
                 "intervals": INTERVALS}
                for c in COINS
            ],
        },
        source="soak",
    )  # fmt: skip


async def postgres(action: str, home: Path) -> None:
    """Start or stop the soak's PostgreSQL from a fresh process (pgserver caches the server
    it started in-process, so it would not notice a stop and start it again)."""
    code = (
        "from pathlib import Path; from kirby_core.db import embedded; "
        f"embedded.{action}(Path({str(home)!r}))"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await process.wait() == 0, f"could not {action} PostgreSQL in {home}"


async def prepare_database(home: Path) -> str:
    server = embedded.start(home, databases=("kirby",))
    url = with_database(server, "kirby")
    migrate.upgrade(url)
    conn = await asyncpg.connect(url)
    try:
        await catalog_store.sync_catalog(conn, catalog())
    finally:
        await conn.close()
    return url


async def start_simulator(log: Path) -> tuple[asyncio.subprocess.Process, str, str]:
    command = [sys.executable, "-c", "from kirby_cli.main import cli; cli()", "sim",
               "--port", "0", *SIM_FAULTS]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    with log.open("w") as out:
        while True:
            line = (await process.stderr.readline()).decode()
            out.write(line)
            if found := re.search(r"hyperliquid_rest=(\S+) hyperliquid_ws=(\S+)", line):
                return process, found.group(1), found.group(2)


async def candle_snapshot(base: str, coin: str, interval: str, start: datetime, end: datetime):
    body = {"type": "candleSnapshot", "req": {"coin": coin, "interval": interval,
            "startTime": datetime_to_ms(start), "endTime": datetime_to_ms(end)}}  # fmt: skip
    async with aiohttp.ClientSession() as session, session.post(f"{base}/info", json=body) as r:
        rows = await r.json()
    return {ms_to_datetime(c["t"]): (*(Decimal(c[k]) for k in "ohlcv"), c["n"]) for c in rows}


def covered(outages: list, dataset: str, series: int, start: datetime, end: datetime) -> bool:
    """Whether [start, end) overlaps an outage window of the series."""
    return any(
        o["dataset"] == dataset and o["series_id"] == series and o["start_time"] < end
        and o["end_time"] >= start
        for o in outages
    )  # fmt: skip


async def audit(url: str, rest: str, first: datetime, last: datetime) -> dict:
    """Check [first, last) minute by minute; returns figures and violations."""
    conn = await asyncpg.connect(url)
    try:
        outages = await conn.fetch("SELECT * FROM collection_outages")
        stars = await catalog_store.list_starlistings(conn)
        pairs = await catalog_store.list_trading_pairs(conn)
        figures: Counter[str] = Counter()
        violations: list[str] = []
        for star in stars:
            interval = star.key.interval
            if interval not in AUDITED_INTERVALS:
                continue
            step = interval_delta(interval)
            start = floor_time(first, interval)
            if start < first:  # the first one fully observed
                start += step
            end = floor_time(last, interval)  # those opening before it closed by `last`
            served = await candle_snapshot(rest, star.key.coin, interval, start, end)
            served = {t: v for t, v in served.items() if start <= t < end}
            stored = {
                r["time"]: tuple(r)[2:]
                for r in await conn.fetch(
                    "SELECT * FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3",
                    star.id, start, end,
                )
            }  # fmt: skip
            for moment in sorted(set(served) | set(stored)):
                is_covered = covered(outages, "candles", star.id, moment, moment + step)
                if stored.get(moment) == served.get(moment):
                    figures[f"candles {interval} stored as served"] += 1
                elif is_covered:
                    figures[f"candles {interval} covered by an outage"] += 1
                elif moment not in served:
                    violations.append(f"{star.key} {moment}: stored but the exchange has none")
                else:
                    what = "missing" if moment not in stored else "differs from the exchange"
                    violations.append(f"{star.key} {moment}: {what}, no outage")
        minute = timedelta(minutes=1)
        for pair in pairs:
            for table in ("funding_rates", "open_interest"):
                times = {
                    r["time"]
                    for r in await conn.fetch(
                        f"SELECT time FROM {table} WHERE trading_pair_id = $1",
                        pair.id,
                    )
                }
                moment = first
                while moment < last:
                    if moment in times:
                        figures[f"{table} minutes stored"] += 1
                    elif covered(outages, table, pair.id, moment, moment + minute):
                        figures[f"{table} minutes covered by an outage"] += 1
                    else:
                        violations.append(f"{pair.key} {table} {moment}: missing, no outage")
                    moment += minute
        duplicates = await conn.fetchval(
            """SELECT count(*) FROM (SELECT 1 FROM collection_outages
               GROUP BY dataset, series_id, start_time, end_time HAVING count(*) > 1) d"""
        )
        if duplicates:
            violations.append(f"{duplicates} duplicated outage rows")
        reasons = Counter(re.sub(r"\d+(\.\d+)? ", "N ", o["reason"]) for o in outages)
        beat = await conn.fetchrow("SELECT * FROM stream_heartbeats")
        return {"figures": figures, "violations": violations, "reasons": reasons, "beat": beat}
    finally:
        await conn.close()


async def soak(minutes: float, db_stop_at: float, db_stop_for: float) -> bool:
    with tempfile.TemporaryDirectory(prefix="kirby-soak-") as tmp:
        home = Path(tmp)
        url = await prepare_database(home)
        sim, rest, ws = await start_simulator(home / "sim.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIRBY_")}
        env |= {"KIRBY_DATABASE_URL": url, "KIRBY_HYPERLIQUID_WS_URL": ws,
                "KIRBY_HOME": str(home / "kirby")}  # fmt: skip
        with (home / "stream.log").open("w") as log:
            collector = await asyncio.create_subprocess_exec(
                sys.executable, "-c", KIRBY, "stream", env=env, stderr=log
            )
        started_at = datetime.now().astimezone()
        began = time.monotonic()
        print(f"soak: {minutes:g} min from {started_at:%H:%M:%S}; logs in {home} (kept on failure)")
        try:
            await asyncio.sleep(db_stop_at)
            await postgres("stop", home)
            print(f"  t={time.monotonic() - began:.0f}s database stopped")
            await asyncio.sleep(db_stop_for)
            await postgres("start", home)
            print(f"  t={time.monotonic() - began:.0f}s database started again")
            await asyncio.sleep(max(0.0, minutes * 60 - (time.monotonic() - began)))
            alive = collector.returncode is None
            collector.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = await asyncio.wait_for(collector.wait(), 30)
            stop_seconds = time.monotonic() - signalled
            stopped_at = datetime.now().astimezone()
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{rest}/_sim/state") as response,
            ):
                faults = (await response.json())["faults"]["injected"]
            first = floor_minute(started_at) + timedelta(minutes=1)
            last = floor_minute(stopped_at) - timedelta(minutes=1)
            result = await audit(url, rest, first, last)
        finally:
            with contextlib.suppress(ProcessLookupError):
                collector.kill()
            sim.terminate()
            await sim.wait()
            await postgres("stop", home)
        beat = result["beat"]
        print(f"faults injected by the simulator: {json.dumps(faults)}")
        print(f"database stopped for {db_stop_for:g} s at t={db_stop_at:g} s")
        print(
            f"collector alive until SIGTERM: {alive}; exit code {code} after {stop_seconds:.1f} s"
        )
        print(
            f"heartbeat: {beat['messages_received']} messages, {beat['invalid_messages']} "
            f"invalid, {beat['reconnects']} reconnects, {beat['dropped_rows']} dropped rows, "
            f"rows written {beat['rows_written']}"
        )
        print(
            f"audited {first:%H:%M} to {last:%H:%M} ({(last - first) // timedelta(minutes=1)} min)"
        )
        for name, count in sorted(result["figures"].items()):
            print(f"  {name}: {count}")
        print("outage rows by reason:")
        for reason, count in result["reasons"].most_common():
            print(f"  {count:>4}  {reason}")
        ok = alive and code == 0 and not result["violations"]
        for violation in result["violations"][:50]:
            print(f"VIOLATION {violation}")
        print("SOAK PASSED" if ok else f"SOAK FAILED ({len(result['violations'])} violations)")
        if not ok:
            keep = Path(tempfile.mkdtemp(prefix="kirby-soak-logs-"))
            for name in ("sim.log", "stream.log"):
                (keep / name).write_bytes((home / name).read_bytes())
            print(f"logs kept in {keep}")
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--db-stop-at", type=float, default=240.0, help="seconds after start")
    parser.add_argument("--db-stop-for", type=float, default=30.0)
    arguments = parser.parse_args()
    ok = asyncio.run(soak(arguments.minutes, arguments.db_stop_at, arguments.db_stop_for))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
