"""The two catalogs as Dagster sees them: synced series, and the partitions they become.

Syncing a catalog file (`kirby_core.db.catalog_store.sync_catalog`) is followed by
registering each active series as a key of its dynamic partitions: starlistings and trading
pairs of the realtime database, starlistings of the training one. Keys are never removed: a
deactivated series keeps its partitions and their history; automation skips it because it
only ever asks for active series. A sync made outside Dagster (`kirby catalog sync`, the
demo) is recorded as a runless materialization of the catalog asset (`record_sync`), so
the UI never calls its downstream assets' upstream "never materialized".
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
from kirby_pipelines.partitions import (
    STARLISTINGS,
    TRADING_PAIRS,
    TRAINING_STARLISTINGS,
    current_key,
    name_of,
    series_key,
)

ASSETS: dict[Database, str] = {"realtime": "realtime_catalog", "training": "training_catalog"}
"""The catalog asset of each database."""
QUERY_TIMEOUT_SECONDS = 10.0
"""Bound on a sensor's catalog read: ticks must stay well under Dagster's 60 s."""


@dataclass(frozen=True)
class DatabaseSeries:
    """The active series of one database."""

    database: Database
    starlistings: tuple[Starlisting, ...]
    trading_pairs: tuple[TradingPair, ...]

    def keys(self) -> dict[str, list[str]]:
        """Partition keys by dynamic partitions name."""
        if self.database == "training":
            return {name_of(TRAINING_STARLISTINGS): [series_key(s.key) for s in self.starlistings]}
        return {
            name_of(STARLISTINGS): [series_key(s.key) for s in self.starlistings],
            name_of(TRADING_PAIRS): [series_key(p.key) for p in self.trading_pairs],
        }

    def starlisting(self, key: str) -> Starlisting:
        return next(s for s in self.starlistings if series_key(s.key) == key)

    def trading_pair(self, key: str) -> TradingPair:
        return next(p for p in self.trading_pairs if series_key(p.key) == key)


async def read_series(url: str, database: Database, *, active_only: bool = True) -> DatabaseSeries:
    async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
        conn = await connect(url)
        try:
            stars = await catalog_store.list_starlistings(conn, active_only=active_only)
            pairs = await catalog_store.list_trading_pairs(conn, active_only=active_only)
        finally:
            await conn.close()
    return DatabaseSeries(database, tuple(stars), tuple(pairs))


def sync(settings: Settings, url: str, database: Database) -> tuple[SyncReport, DatabaseSeries]:
    """Sync the database's catalog file, then return its active series."""
    catalog = load_catalog(settings.catalog_path(database))

    async def run() -> tuple[SyncReport, DatabaseSeries]:
        conn = await connect(url)
        try:
            report = await catalog_store.sync_catalog(conn, catalog)
        finally:
            await conn.close()
        return report, await read_series(url, database)

    return asyncio.run(run())


def unregistered(instance: dg.DagsterInstance, series: DatabaseSeries) -> dict[str, list[str]]:
    """Keys of `series` not yet partitions, by dynamic partitions name."""
    missing: dict[str, list[str]] = {}
    for name, keys in series.keys().items():
        known = set(instance.get_dynamic_partitions(name))
        new = [key for key in keys if key not in known]
        if new:
            missing[name] = new
    return missing


def outdated(instance: dg.DagsterInstance, series: DatabaseSeries) -> dict[str, list[str]]:
    """Registered keys of an older spelling (`current_key` differs), by partitions name."""
    found: dict[str, list[str]] = {}
    for name, _ in series.keys().items():
        old = [k for k in instance.get_dynamic_partitions(name) if current_key(k) != k]
        if old:
            found[name] = old
    return found


def register(instance: dg.DagsterInstance, series: DatabaseSeries) -> dict[str, list[str]]:
    """Add the missing partition keys and drop those of an older spelling (their series are
    added in today's); returns what was added."""
    for name, keys in outdated(instance, series).items():
        for key in keys:
            instance.delete_dynamic_partition(name, key)
    added = unregistered(instance, series)
    for name, keys in added.items():
        instance.add_dynamic_partitions(name, keys)
    return added


def registered_order(instance: dg.DagsterInstance, name: str) -> Sequence[str]:
    return instance.get_dynamic_partitions(name)


def sync_metadata(report: SyncReport, series: DatabaseSeries, added: dict[str, list[str]]) -> dict:
    """The catalog asset's materialization metadata."""
    return {
        "active_starlistings": report.active_starlistings,
        "active_trading_pairs": report.active_trading_pairs,
        "starlistings_created": report.starlistings_created,
        "starlistings_reactivated": report.starlistings_reactivated,
        "starlistings_deactivated": report.starlistings_deactivated,
        "partitions_added": dg.MetadataValue.json(added),
        "starlistings": dg.MetadataValue.json([str(s.key) for s in series.starlistings]),
    }


def record_sync(
    instance: dg.DagsterInstance, report: SyncReport, series: DatabaseSeries, description: str
) -> dict[str, list[str]]:
    """What the catalog asset does after its sync, for a sync made outside Dagster: register
    the series as partitions and record the asset as materialized. Returns what was added."""
    added = register(instance, series)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            ASSETS[series.database],
            description=description,
            metadata=sync_metadata(report, series, added),
        )
    )
    return added
