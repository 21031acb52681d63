"""Helpers shared by the benchmarks: a scratch database and a timer.

Benchmarks run against the embedded PostgreSQL (or `KIRBY_DATABASE_URL`'s server) in a
database of their own, dropped afterwards. They print figures; they never assert timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from kirby_core.db import migrate
from kirby_core.db.urls import resolve, with_database
from kirby_core.settings import Settings


async def scratch_database(name: str) -> str:
    """A freshly migrated database `name` on Kirby's server; returns its URL."""
    server = resolve(Settings()).realtime
    admin = await asyncpg.connect(with_database(server, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server, name)
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
