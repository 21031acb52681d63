"""The bodies of the backup assets and their restore check (`kirby_core.backups` does the work).

A backup partition is one UTC day: the run taken after that day ends dumps the database as
it is then (so it holds the whole day), replacing an earlier backup of the same day, and
then applies retention to that database's backups. The check restores the newest backup
into a scratch database on the same server, compares its rows per table with the counts
taken in the dumped snapshot (and, on TimescaleDB, its hypertables and chunk intervals),
and drops the scratch database.
"""

from __future__ import annotations

import asyncio

import dagster as dg

from kirby_core import backups
from kirby_core.errors import NotFound
from kirby_core.locations import backup_location
from kirby_core.settings import Database
from kirby_pipelines.resources import KirbyResource

BACKUP_ASSETS: dict[Database, str] = {"realtime": "realtime_backup", "training": "training_backup"}
"""Database -> its backup asset, declared once (assets, checks and the schedule use it)."""


def store(kirby: KirbyResource) -> backups.BackupStore:
    return backups.BackupStore(backup_location(kirby.settings()))


def back_up(
    context: dg.AssetExecutionContext, kirby: KirbyResource, database: Database
) -> dg.MaterializeResult:
    day = context.partition_time_window.start.date()
    target = store(kirby)
    manifest = asyncio.run(
        backups.take_backup(
            kirby.url(database), database, day, target, bin_dir=kirby.settings().pg_bin_dir
        )
    )
    kept, deleted = target.apply_retention(database)
    context.log.info(
        f"{database} backup of {day}: {manifest.dump_bytes} bytes, {manifest.total_rows} rows "
        f"in {len(manifest.tables)} tables; retention kept {kept}, deleted {len(deleted)}"
        + (f" ({', '.join(b.dump_name for b in deleted)})" if deleted else "")
    )
    dump = backups.Backup(database, day).dump_name
    return dg.MaterializeResult(
        metadata={
            "file": dg.MetadataValue.path(target.location.uri(dump)),
            "bytes": manifest.dump_bytes,
            "tables": len(manifest.tables),
            "rows": manifest.total_rows,
            "taken_at": manifest.taken_at,
            "server_version": manifest.server_version,
            "timescaledb": manifest.timescaledb or "none",
            "hypertables": len(manifest.hypertables),
            "retention_kept": kept,
            "retention_deleted": len(deleted),
        }
    )


def restores(kirby: KirbyResource, database: Database) -> dg.AssetCheckResult:
    target = store(kirby)
    try:
        newest = target.find(database)
    except NotFound as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
    comparison = asyncio.run(
        backups.verify(kirby.url(database), target, newest, bin_dir=kirby.settings().pg_bin_dir)
    )
    differences = {
        name: f"backup {expected}, restored {restored}"
        for name, (expected, restored) in comparison.differences.items()
    } | {
        f"{name} (chunk interval)": f"backup {expected}, restored {restored or 'no hypertable'}"
        for name, (expected, restored) in comparison.hypertable_differences.items()
    }
    return dg.AssetCheckResult(
        passed=comparison.matches,
        metadata={
            "backup": newest.dump_name,
            "tables": len(comparison.expected),
            "rows": sum(comparison.expected.values()),
            "hypertables": len(comparison.expected_hypertables),
            "differences": dg.MetadataValue.json(differences),
        },
    )
