"""Database backups: `pg_dump` custom-format files in a backup location, kept by retention.

One backup is two files in the location (`KIRBY_BACKUP_URL`, a directory or an fsspec URL):

    <location>/realtime-2026-12-05.dump    pg_dump --format=custom
    <location>/realtime-2026-12-05.json    manifest: when, server, rows per table

The manifest is written last, so a backup exists once its manifest does: a dump cut off
half-way is never listed, restored or counted by retention. Its row counts are taken inside
the very snapshot `pg_dump` dumps (`pg_export_snapshot()` in a REPEATABLE READ transaction
held open while `pg_dump --snapshot` runs), so a restore can be checked against them while
the collector keeps writing.

Retention (`keep`) follows restic's `--keep-daily 7 --keep-weekly 4 --keep-monthly 12`:
the newest backup of each of the last 7 days that have one, of the last 4 ISO weeks, and of
the last 12 months. It is a pure function of the days present, so it is tested by table.

TimescaleDB is detected, never configured: a database with the extension has its version
and its hypertables' chunk intervals in the manifest. Restoring such a backup creates the
extension at that version in the target first (a server without it, or a target holding
another version, is refused by name), restores between `timescaledb_pre_restore()` and
`timescaledb_post_restore()` (the latter whatever happened) in one transaction through
`psql` (so `--force` can drop the hypertables first, in it), and compares the restored
hypertables and their chunk intervals as well as the rows. Rows are counted through each
table of the public schema, so a hypertable's count is that of all its chunks (compressed
ones included); chunk tables are never counted on their own.

What this module does not do: schedule anything (Dagster does).

It stays whole past 400 lines because the manifest is one contract: what `take_backup`
writes into it is exactly what `restore` reads back and compares, and split apart the
writer and the reader of one file format would drift.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import get_args

import asyncpg

from kirby_core.db import pgtools
from kirby_core.db.connection import connect
from kirby_core.db.urls import redact, with_database
from kirby_core.errors import InvalidRequest, NotFound
from kirby_core.locations import Location
from kirby_core.settings import Database

log = logging.getLogger(__name__)

DAILY, WEEKLY, MONTHLY = 7, 4, 12
"""Retention: newest backup of each of this many most recent days / ISO weeks / months."""
_NAME = re.compile(r"^(?P<database>realtime|training)-(?P<day>\d{4}-\d{2}-\d{2})\.(dump|json)$")
_HYPERTABLES = """
    SELECT hypertable_name, time_interval::text FROM timescaledb_information.dimensions
    WHERE hypertable_schema = 'public' AND dimension_number = 1 ORDER BY hypertable_name
"""
_EXTENSION = re.compile(r" (EXTENSION|COMMENT) - (EXTENSION )?timescaledb\b")
"""The dump's entries that create (or comment) the extension: restore creates it itself."""
_TIMESCALEDB_VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
_USER_RELATIONS = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""


@dataclass(frozen=True, order=True)
class Backup:
    """One backup in a location (found by its manifest)."""

    database: Database
    day: date

    @property
    def stem(self) -> str:
        return f"{self.database}-{self.day.isoformat()}"

    @property
    def dump_name(self) -> str:
        return f"{self.stem}.dump"

    @property
    def manifest_name(self) -> str:
        return f"{self.stem}.json"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, written beside it."""

    database: str
    day: str
    taken_at: str
    server_version: str
    pg_dump_major: int
    dump_bytes: int
    tables: dict[str, int]
    """Rows per table of the public schema, counted in the dumped snapshot."""
    timescaledb: str | None = None
    """The TimescaleDB extension's version in the dumped database (None: plain PostgreSQL)."""
    hypertables: dict[str, str] = field(default_factory=dict)
    """Hypertable -> its chunk interval (`30 days`), as dumped."""

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())


@dataclass(frozen=True)
class Comparison:
    """Rows per table (and hypertables with their chunk intervals) of a restored database
    against its backup's manifest."""

    expected: dict[str, int]
    restored: dict[str, int]
    expected_hypertables: dict[str, str] = field(default_factory=dict)
    restored_hypertables: dict[str, str] = field(default_factory=dict)

    @property
    def differences(self) -> dict[str, tuple[int, int | None]]:
        """Tables of the backup whose restored rows differ (None: the table is missing)."""
        return {
            name: (rows, self.restored.get(name))
            for name, rows in sorted(self.expected.items())
            if self.restored.get(name) != rows
        }

    @property
    def extra(self) -> list[str]:
        """Tables the target held that the backup has not (a `--force` restore keeps them)."""
        return sorted(set(self.restored) - set(self.expected))

    @property
    def hypertable_differences(self) -> dict[str, tuple[str, str | None]]:
        """Hypertables of the backup restored with another chunk interval (None: not a
        hypertable after the restore)."""
        return {
            name: (interval, self.restored_hypertables.get(name))
            for name, interval in sorted(self.expected_hypertables.items())
            if self.restored_hypertables.get(name) != interval
        }

    @property
    def matches(self) -> bool:
        return not self.differences and not self.hypertable_differences


def keep(
    days: Iterable[date], daily: int = DAILY, weekly: int = WEEKLY, monthly: int = MONTHLY
) -> set[date]:
    """The days whose backups retention keeps (the rest are deleted)."""
    kept: set[date] = set()
    newest_first = sorted(set(days), reverse=True)
    rules = (
        (daily, lambda d: d),
        (weekly, lambda d: d.isocalendar()[:2]),
        (monthly, lambda d: (d.year, d.month)),
    )
    for count, bucket in rules:
        seen: set[object] = set()
        for day in newest_first:
            if len(seen) == count:
                break
            if bucket(day) not in seen:
                seen.add(bucket(day))
                kept.add(day)  # the newest of its bucket
    return kept


class BackupStore:
    """The backups in one location."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def backups_of(self, database: Database) -> list[Backup]:
        """Complete backups of `database` (those with a manifest), oldest first."""
        fs, root = self.location.fs, self.location.root
        if not fs.exists(root):
            return []
        found = []
        for path in fs.ls(root, detail=False):
            match = _NAME.match(str(path).rsplit("/", 1)[-1])
            if match and match["database"] == database and str(path).endswith(".json"):
                found.append(Backup(database, date.fromisoformat(match["day"])))
        return sorted(found)

    def find(self, database: Database, name: str | None = None) -> Backup:
        """The backup called `name` (file name or day, `2026-12-05`), or the newest."""
        backups = self.backups_of(database)
        if not backups:
            raise NotFound(f"no {database} backup in {self.location.url}")
        if name is None:
            return backups[-1]
        for backup in backups:
            if name in (backup.stem, backup.dump_name, backup.manifest_name, str(backup.day)):
                return backup
        names = ", ".join(b.dump_name for b in backups[-5:])
        raise NotFound(
            f"no {database} backup named {name!r} in {self.location.url} (newest: {names})"
        )

    def manifest(self, backup: Backup) -> Manifest:
        with self.location.fs.open(self.location.path(backup.manifest_name), "rb") as file:
            return Manifest(**json.loads(file.read()))

    def put(self, dump_file: Path, backup: Backup, manifest: Manifest) -> None:
        fs = self.location.fs
        fs.makedirs(self.location.root, exist_ok=True)
        fs.put_file(str(dump_file), self.location.path(backup.dump_name))
        with fs.open(self.location.path(backup.manifest_name), "wb") as file:
            file.write(json.dumps(asdict(manifest), indent=2).encode())

    def fetch(self, backup: Backup, into: Path) -> Path:
        target = into / backup.dump_name
        self.location.fs.get_file(self.location.path(backup.dump_name), str(target))
        return target

    def delete(self, backup: Backup) -> None:
        fs = self.location.fs
        fs.rm(self.location.path(backup.manifest_name))  # first: never a listed half-backup
        dump = self.location.path(backup.dump_name)
        if fs.exists(dump):
            fs.rm(dump)

    def newest_taken_at(self) -> dict[str, datetime]:
        """When the newest complete backup of each database was taken (databases with none
        are absent): what `kirby_backup_last_success_timestamp_seconds` reports."""
        newest: dict[str, datetime] = {}
        for database in get_args(Database):
            backups = self.backups_of(database)
            if backups:
                taken_at = self.manifest(backups[-1]).taken_at
                newest[database] = datetime.fromisoformat(taken_at)
        return newest

    def apply_retention(self, database: Database) -> tuple[int, list[Backup]]:
        """Delete what `keep` does not keep; (kept count, deleted backups)."""
        backups = self.backups_of(database)
        kept = keep(b.day for b in backups)
        deleted = [b for b in backups if b.day not in kept]
        for backup in deleted:
            self.delete(backup)
        log.info(
            "event=backup_retention database=%s kept=%d deleted=%d location=%s",
            database,
            len(backups) - len(deleted),
            len(deleted),
            self.location.url,
        )
        return len(backups) - len(deleted), deleted


async def server_major(conn: asyncpg.Connection) -> tuple[int, str]:
    number = int(await conn.fetchval("SHOW server_version_num"))
    return number // 10000, str(await conn.fetchval("SHOW server_version"))


async def count_rows(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per table of the public schema (names from pg_class, quoted by the server)."""
    counts = {}
    for row in await conn.fetch(_USER_RELATIONS):
        name = row["relname"]
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        counts[name] = int(await conn.fetchval(f"SELECT count(*) FROM public.{quoted}"))  # noqa: S608  # identifier from pg_class, quoted by the server
    return counts


async def timescaledb_version(conn: asyncpg.Connection) -> str | None:
    """The TimescaleDB extension's version in this database (None: not created)."""
    version = await conn.fetchval(_TIMESCALEDB_VERSION)
    return None if version is None else str(version)


async def chunk_intervals(conn: asyncpg.Connection) -> dict[str, str]:
    """Hypertables of the public schema -> chunk interval (empty without TimescaleDB)."""
    if await timescaledb_version(conn) is None:
        return {}
    return {row[0]: row[1] for row in await conn.fetch(_HYPERTABLES)}


async def take_backup(
    url: str, database: Database, day: date, store: BackupStore, *, bin_dir: Path | None = None
) -> Manifest:
    """Dump `database` as the backup of `day` (replacing one of that day) and return its
    manifest; row counts come from the dumped snapshot."""
    conn = await connect(url, application_name="kirby-backup")
    try:
        major, version = await server_major(conn)
        tools = pgtools.find_tools(major, bin_dir)
        backup = Backup(database, day)
        with tempfile.TemporaryDirectory(prefix="kirby-backup-") as work:
            dump_file = Path(work) / backup.dump_name
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                tables = await count_rows(conn)
                timescaledb = await timescaledb_version(conn)
                chunked = await chunk_intervals(conn)
                # the exporting transaction stays open until pg_dump has imported it
                await pgtools.run_tool(
                    tools.pg_dump,
                    ["--format=custom", f"--snapshot={snapshot}", f"--file={dump_file}"],
                    url,
                )
            manifest = Manifest(
                database=database,
                day=day.isoformat(),
                taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
                server_version=version,
                pg_dump_major=tools.major,
                dump_bytes=dump_file.stat().st_size,
                tables=tables,
                timescaledb=timescaledb,
                hypertables=chunked,
            )
            store.put(dump_file, backup, manifest)
    finally:
        await conn.close()
    log.info(
        "event=backup_taken database=%s day=%s bytes=%d tables=%d rows=%d timescaledb=%s"
        " hypertables=%d location=%s",
        database,
        day,
        manifest.dump_bytes,
        len(tables),
        manifest.total_rows,
        manifest.timescaledb or "none",
        len(manifest.hypertables),
        store.location.url,
    )
    return manifest


async def user_relations(conn: asyncpg.Connection) -> list[str]:
    return [r["relname"] for r in await conn.fetch(_USER_RELATIONS)]


async def _quoted(conn: asyncpg.Connection, names: Iterable[str]) -> str:
    quoted = [await conn.fetchval("SELECT quote_ident($1)", name) for name in names]
    return ", ".join(f"public.{name}" for name in quoted)


async def _create_timescaledb(
    conn: asyncpg.Connection, backup: Backup, wanted: str, have: str | None, target: str
) -> None:
    """The extension at the backup's version in the target, or InvalidRequest saying why
    it cannot be (pg_restore of a TimescaleDB dump needs the very same version)."""
    taken = f"{backup.dump_name} was taken with TimescaleDB {wanted}"
    if have is not None:
        if have != wanted:
            raise InvalidRequest(
                f"{taken}, but {target} has TimescaleDB {have}: restore into an empty "
                f"database on a server with timescaledb {wanted}"
            )
        return
    offered = await conn.fetchval(
        "SELECT array_agg(version ORDER BY version) FROM pg_available_extension_versions"
        " WHERE name = 'timescaledb'"
    )
    if wanted not in (offered or []):
        found = f"only {', '.join(offered)}" if offered else "no timescaledb"
        raise InvalidRequest(
            f"{taken}, but the server of {target} offers {found}: install timescaledb "
            f"{wanted} there (and add it to shared_preload_libraries)"
        )
    preloaded = str(await conn.fetchval("SELECT current_setting('shared_preload_libraries')"))
    if "timescaledb" not in preloaded:
        raise InvalidRequest(
            f"{taken}, but the server of {target} does not preload it: add timescaledb to "
            "shared_preload_libraries and restart it"
        )
    quoted_version = await conn.fetchval("SELECT quote_literal($1)", wanted)
    await conn.execute(f"CREATE EXTENSION timescaledb VERSION {quoted_version}")


async def _restore_timescaledb(
    conn: asyncpg.Connection,
    tools: pgtools.PgTools,
    options: list[str],
    dump_file: Path,
    *,
    replaced: list[str],
    manifest: Manifest,
    target_timescaledb: str | None,
    url: str,
) -> None:
    """The restore when the backup or the target has TimescaleDB (see `restore`)."""
    prelude = []
    if replaced:  # dropped with the extension active: their chunks and catalog rows go too
        prelude.append(f"DROP TABLE {await _quoted(conn, replaced)} CASCADE")
    if manifest.timescaledb is None:
        await pgtools.restore_in_one_transaction(tools, [*options, str(dump_file)], prelude, url)
        return
    if target_timescaledb is not None:  # the dump brings its own jobs, with their ids
        prelude.append(
            "SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        )
    # timescaledb.restoring on for the session (and the database), its jobs stopped
    prelude.append("SELECT timescaledb_pre_restore()")
    # the extension exists already at its version: never dropped nor re-created
    listing = dump_file.parent / "contents.list"
    entries = await pgtools.contents(tools.pg_restore, dump_file)
    listing.write_text("\n".join(e for e in entries if not _EXTENSION.search(e)))
    try:
        await pgtools.restore_in_one_transaction(
            tools, [*options, f"--use-list={listing}", str(dump_file)], prelude, url
        )
    finally:
        await conn.execute("SELECT timescaledb_post_restore()")


async def restore(
    url: str,
    store: BackupStore,
    backup: Backup,
    *,
    force: bool = False,
    bin_dir: Path | None = None,
) -> Comparison:
    """Restore `backup` into the database at `url` and compare it with the manifest.

    A database that holds tables is refused unless `force`, which replaces the tables the
    backup holds (`pg_restore --clean`). One transaction: a failed restore leaves the
    database as it was (but for the extension, created at the backup's version when the
    target lacks it). With TimescaleDB in the backup or the target, `--clean` cannot drop
    hypertables (it alters them `ONLY` and misses chunks newer than the dump) nor replace
    TimescaleDB's catalog rows and jobs, so the same transaction first drops the backup's
    tables (CASCADE) and the target's jobs (`pgtools.restore_in_one_transaction`).
    """
    manifest = store.manifest(backup)
    target = redact(url)
    conn = await connect(url, application_name="kirby-restore")
    try:
        existing = await user_relations(conn)
        if existing and not force:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise InvalidRequest(
                f"{target} is not empty ({len(existing)} tables: {shown}); restoring would "
                "overwrite it: pass --force to replace its tables with the backup's"
            )
        major, _ = await server_major(conn)
        tools = pgtools.find_tools(major, bin_dir)
        target_timescaledb = await timescaledb_version(conn)
        if manifest.timescaledb is not None:
            await _create_timescaledb(
                conn, backup, manifest.timescaledb, target_timescaledb, target
            )
        options = ["--no-owner", "--no-privileges"]
        if existing:
            options += ["--clean", "--if-exists"]
        with tempfile.TemporaryDirectory(prefix="kirby-restore-") as work:
            dump_file = store.fetch(backup, Path(work))
            if manifest.timescaledb is None and target_timescaledb is None:
                args = [*options, "--exit-on-error", "--single-transaction", str(dump_file)]
                await pgtools.run_tool(tools.pg_restore, args, url)
            else:
                await _restore_timescaledb(
                    conn,
                    tools,
                    options,
                    dump_file,
                    replaced=[name for name in manifest.tables if name in existing],
                    manifest=manifest,
                    target_timescaledb=target_timescaledb,
                    url=url,
                )
    finally:
        await conn.close()
    conn = await connect(url, application_name="kirby-restore")  # a session out of restoring
    try:
        restored = await count_rows(conn)
        restored_hypertables = await chunk_intervals(conn)
    finally:
        await conn.close()
    comparison = Comparison(manifest.tables, restored, manifest.hypertables, restored_hypertables)
    log.info(
        "event=backup_restored backup=%s target=%s tables=%d hypertables=%d matches=%s",
        backup.dump_name,
        target,
        len(restored),
        len(restored_hypertables),
        comparison.matches,
    )
    return comparison


async def verify(
    url: str, store: BackupStore, backup: Backup, *, bin_dir: Path | None = None
) -> Comparison:
    """Restore `backup` into a scratch database on `url`'s server, compare its rows with
    the manifest, and drop the scratch database (whatever happened)."""
    scratch = f"kirby_restore_check_{uuid.uuid4().hex[:12]}"
    conn = await connect(url, application_name="kirby-backup-check")
    try:
        await conn.execute(f'CREATE DATABASE "{scratch}" TEMPLATE template0')
        try:
            return await restore(with_database(url, scratch), store, backup, bin_dir=bin_dir)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    finally:
        await conn.close()
