"""How recent the live tables are: the newest row of each, read cheaply for the sensor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from kirby_core.datasets import DATASETS
from kirby_core.db.connection import connect

LIVE_TABLES = {f"live_{table}": table for table in DATASETS}
"""Live asset -> table; fixed identifiers only."""


@dataclass(frozen=True)
class Latest:
    asset: str
    last_time: datetime | None
    rows_last_hour: int


async def read_latest(url: str) -> list[Latest]:
    """The newest row time of each live table, and its rows of the last hour (only the last
    day is looked at: the time index stops the scan there)."""
    async with asyncio.timeout(10):
        conn = await connect(url)
        try:
            found = []
            for asset, table in LIVE_TABLES.items():
                record = await conn.fetchrow(
                    f"SELECT max(time) AS last_time, count(*) FILTER (WHERE time > now()"  # noqa: S608
                    f" - interval '1 hour') AS recent FROM {table}"
                    " WHERE time > now() - interval '1 day'"
                )
                assert record is not None  # an aggregate without GROUP BY: always one row
                found.append(Latest(asset, record["last_time"], record["recent"]))
            return found
        finally:
            await conn.close()
