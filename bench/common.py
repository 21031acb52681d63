"""Helpers shared by the benchmarks: a scratch database and a timer.

Benchmarks run against the embedded PostgreSQL (or `KIRBY_DATABASE_URL`'s server) in a
database of their own, dropped afterwards. They print figures; they never assert timings.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from kirby_core.db import migrate
from kirby_core.db.urls import resolve, with_database
from kirby_core.models import CandleRow
from kirby_core.settings import Settings


async def scratch_database(name: str, *, migrated: bool = True) -> str:
    """A fresh database `name` on Kirby's server, migrated to Kirby's schema unless told
    otherwise; returns its URL."""
    server = resolve(Settings()).realtime
    admin = await asyncpg.connect(with_database(server, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server, name)
    if migrated:
        migrate.upgrade(url)
    return url


async def drop_database(url: str, name: str) -> None:
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def random_walk_candles(
    starlisting_id: int, start: datetime, count: int, seed: int = 7, min_trades: int = 0
) -> list[CandleRow]:
    """`count` 1m candles from `start`: a seeded random walk with exchange-like decimals
    (prices with one decimal, volumes with five) that always satisfies the OHLC checks."""
    rng = random.Random(seed)
    price, rows = 60_000.0, []
    for minute in range(count):
        open_ = price
        price *= 1 + rng.gauss(0, 0.0008)
        high = max(open_, price) * (1 + abs(rng.gauss(0, 0.0003)))
        low = min(open_, price) * (1 - abs(rng.gauss(0, 0.0003)))
        rows.append(
            CandleRow(
                starlisting_id,
                start + timedelta(minutes=minute),
                Decimal(f"{open_:.1f}"),
                Decimal(f"{high:.1f}"),
                Decimal(f"{low:.1f}"),
                Decimal(f"{price:.1f}"),
                Decimal(f"{rng.expovariate(0.1):.5f}"),
                rng.randint(min_trades, 500),
            )
        )
    return rows
