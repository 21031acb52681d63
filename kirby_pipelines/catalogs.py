"""The two catalogs as Dagster sees them: synced series, and the partitions they become.

Syncing a catalog file (`kirby_core.db.catalog_store.sync_catalog`) is followed by
registering each active series as a key of its dynamic partitions: starlistings and trading
pairs of the realtime database, starlistings of the training one. Keys are never removed: a
deactivated series keeps its partitions and their history; automation skips it because it
only ever asks for active series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.catalog_store import Starlisting, SyncReport, TradingPair
from kirby_core.db.connection import connect
from kirby_core.settings import Database, Settings
from kirby_pipelines.partitions import STARLISTINGS, TRADING_PAIRS, TRAINING_STARLISTINGS

QUERY_TIMEOUT_SECONDS = 10.0
"""Bound on a sensor's catalog read: ticks must stay well under Dagster's 60 s."""


@dataclass(frozen=True)
class Series:
    """The active series of one database."""

    database: Database
    starlistings: tuple[Starlisting, ...]
    trading_pairs: tuple[TradingPair, ...]

    def keys(self) -> dict[str, list[str]]:
        """Partition keys by dynamic partitions name."""
        if self.database == "training":
            return {TRAINING_STARLISTINGS.name: [str(s.key) for s in self.starlistings]}
        return {
            STARLISTINGS.name: [str(s.key) for s in self.starlistings],
            TRADING_PAIRS.name: [str(p.key) for p in self.trading_pairs],
        }

    def starlisting(self, key: str) -> Starlisting:
        return next(s for s in self.starlistings if str(s.key) == key)

    def trading_pair(self, key: str) -> TradingPair:
        return next(p for p in self.trading_pairs if str(p.key) == key)


async def read_series(url: str, database: Database, *, active_only: bool = True) -> Series:
    async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
        conn = await connect(url)
        try:
            stars = await catalog_store.list_starlistings(conn, active_only=active_only)
            pairs = await catalog_store.list_trading_pairs(conn, active_only=active_only)
        finally:
            await conn.close()
    return Series(database, tuple(stars), tuple(pairs))


def sync(settings: Settings, url: str, database: Database) -> tuple[SyncReport, Series]:
    """Sync the database's catalog file, then return its active series."""
    catalog = load_catalog(settings.catalog_path(database))

    async def run() -> tuple[SyncReport, Series]:
        conn = await connect(url)
        try:
            report = await catalog_store.sync_catalog(conn, catalog)
        finally:
            await conn.close()
        return report, await read_series(url, database)

    return asyncio.run(run())


def unregistered(instance: dg.DagsterInstance, series: Series) -> dict[str, list[str]]:
    """Keys of `series` not yet partitions, by dynamic partitions name."""
    missing: dict[str, list[str]] = {}
    for name, keys in series.keys().items():
        known = set(instance.get_dynamic_partitions(name))
        new = [key for key in keys if key not in known]
        if new:
            missing[name] = new
    return missing


def register(instance: dg.DagsterInstance, series: Series) -> dict[str, list[str]]:
    """Add the missing partition keys; returns what was added."""
    added = unregistered(instance, series)
    for name, keys in added.items():
        instance.add_dynamic_partitions(name, keys)
    return added


def registered_order(instance: dg.DagsterInstance, name: str) -> Sequence[str]:
    return instance.get_dynamic_partitions(name)
