"""Backups: the Dagster asset dumps a real database, retention prunes, the check restores,
`kirby db restore` refuses and restores; and the same on a real S3-compatible server.

Everything runs the real pg_dump/pg_restore against the test PostgreSQL. The object-storage
tests start `moto_server` (moto's standalone S3, from PyPI) on a loopback port and talk to it
over HTTP through s3fs, as a deployment talks to S3.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import dagster as dg
import pytest
from click.testing import CliRunner

from kirby_cli.main import cli
from kirby_core import backups
from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store, migrate, pgtools
from kirby_core.db.urls import DatabaseUrls, with_database
from kirby_core.errors import ConfigError
from kirby_core.locations import location
from kirby_core.settings import Settings
from kirby_pipelines.defs.backups.assets import realtime_backup
from kirby_pipelines.defs.backups.checks import realtime_backup_restores
from kirby_pipelines.resources import KirbyResource
from tests.conftest import REPO, empty_tables
from tests.s3 import S3Server

DAY = date(2026, 3, 1)


def d(text: str) -> date:
    return date.fromisoformat(text)


def daily(first: str, last: str) -> list[date]:
    days, day = [], d(first)
    while day <= d(last):
        days.append(day)
        day += timedelta(days=1)
    return days


@pytest.mark.parametrize(
    ("days", "kept"),
    [
        pytest.param([], set(), id="nothing"),
        pytest.param([d("2026-03-01")], {d("2026-03-01")}, id="one"),
        pytest.param(
            daily("2026-03-01", "2026-03-07"), set(daily("2026-03-01", "2026-03-07")), id="7 days"
        ),
        # 2026-03-01 is a Sunday: 03-02..03-08 are one ISO week. Ten days: the newest 7,
        # 03-01 (newest of the week 02-23..03-01) and 02-28 (newest of February).
        pytest.param(
            daily("2026-02-27", "2026-03-08"),
            {*daily("2026-03-02", "2026-03-08"), d("2026-03-01"), d("2026-02-28")},
            id="10 days: week and month",
        ),
        # a year and a half of dailies: 7 days; 4 weeks (06-29.., 06-22..28 among the days,
        # then the Sundays 06-21 and 06-14); 12 months' last days
        pytest.param(
            daily("2025-01-01", "2026-06-30"),
            {
                *daily("2026-06-24", "2026-06-30"),
                d("2026-06-21"),
                d("2026-06-14"),
                *(d(f"2026-0{m}-{last}") for m, last in ((1, 31), (2, 28), (3, 31), (4, 30))),
                d("2026-05-31"),
                *(d(f"2025-{m:02d}-{last}") for m, last in ((7, 31), (8, 31), (9, 30))),
                *(d(f"2025-{m}-{last}") for m, last in ((10, 31), (11, 30), (12, 31))),
            },
            id="18 months",
        ),
        # gaps: buckets are the days that have a backup, not calendar days
        pytest.param(
            [d("2026-01-05"), d("2026-02-10"), d("2026-03-20")],
            {d("2026-01-05"), d("2026-02-10"), d("2026-03-20")},
            id="sparse",
        ),
    ],
)
def test_retention_keeps_7_daily_4_weekly_12_monthly(days: list[date], kept: set[date]) -> None:
    assert backups.keep(days) == kept


def test_retention_takes_the_newest_of_each_bucket() -> None:
    days = daily("2026-01-01", "2026-01-31")
    assert backups.keep(days, daily=0, weekly=0, monthly=1) == {d("2026-01-31")}
    assert backups.keep(days, daily=0, weekly=2, monthly=0) == {d("2026-01-31"), d("2026-01-25")}


@pytest.fixture
def backup_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"backup_url": str(tmp_path / "backups")})


@pytest.fixture
def synced(database_urls: DatabaseUrls):
    """The realtime test database with its catalog synced (rows in the reference tables)."""

    async def sync() -> None:
        conn = await asyncpg.connect(database_urls.realtime)
        try:
            await catalog_store.sync_catalog(
                conn, load_catalog(REPO / "config/starlistings.hyperliquid.yaml")
            )
        finally:
            await conn.close()

    asyncio.run(sync())
    yield
    asyncio.run(_on(database_urls.realtime, empty_tables))


async def _on(url: str, action):
    conn = await asyncpg.connect(url)
    try:
        return await action(conn)
    finally:
        await conn.close()


def source_counts(url: str) -> dict[str, int]:
    return asyncio.run(_on(url, backups.count_rows))


def test_backup_asset_dumps_prunes_and_its_check_restores(
    backup_settings: Settings, database_urls: DatabaseUrls, synced
) -> None:
    store = backups.BackupStore(location(backup_settings.backup_url))
    old = Path(backup_settings.backup_url).parent / "old.dump"
    old.write_bytes(b"not a real dump")
    for day in daily("2026-02-10", "2026-02-27"):  # 18 earlier backups, one February month
        store.put(old, backups.Backup("realtime", day), fake_manifest(day))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [realtime_backup, realtime_backup_restores],
            partition_key=DAY.isoformat(),
            resources={"kirby": KirbyResource.of(backup_settings)},
            instance=instance,
        )

    assert result.success
    [materialization] = result.asset_materializations_for_node("realtime_backup")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    expected = source_counts(database_urls.realtime)
    assert expected["starlistings"] > 0
    assert metadata["rows"] == sum(expected.values())
    # the new day plus 6 newest older days, the newest of 2 more ISO weeks (02-22 and 02-15);
    # February's newest (02-27) is among the days
    assert [b.day for b in store.backups_of("realtime")] == [
        d("2026-02-15"),
        *daily("2026-02-22", "2026-02-27"),
        DAY,
    ]
    assert metadata["retention_deleted"] == 18 - 7
    assert store.manifest(store.find("realtime")).tables == expected
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    assert check.metadata["rows"].value == sum(expected.values())
    assert not asyncio.run(scratch_databases(database_urls.realtime))  # dropped


def fake_manifest(day: date) -> backups.Manifest:
    return backups.Manifest("realtime", day.isoformat(), f"{day}T00:45:00+00:00", "16", 16, 15, {})


async def scratch_databases(url: str) -> list[str]:
    rows = await _on(
        url,
        lambda conn: conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'kirby_restore_check_%'"
        ),
    )
    return [r["datname"] for r in rows]


def test_check_fails_when_there_is_no_backup(backup_settings: Settings) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [realtime_backup_restores],
            resources={"kirby": KirbyResource.of(backup_settings)},
            instance=instance,
            raise_on_error=False,
            selection=dg.AssetSelection.checks(realtime_backup_restores),
        )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert "no realtime backup in" in check.metadata["error"].value


@pytest.fixture
def empty_database(pg_server: str):
    name = f"kirby_restore_target_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")
    asyncio.run(_on(admin, lambda conn: conn.execute(f'CREATE DATABASE "{name}"')))
    yield with_database(pg_server, name)
    asyncio.run(_on(admin, lambda conn: conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')))


def _env(settings: Settings) -> dict[str, str]:
    return {
        "KIRBY_DATABASE_URL": settings.database_url or "",
        "KIRBY_TRAINING_DATABASE_URL": settings.training_database_url or "",
        "KIRBY_BACKUP_URL": settings.backup_url,
        "KIRBY_HOME": str(settings.home),
    }


def test_restore_cli_refuses_a_non_empty_database_and_restores_into_an_empty_one(
    backup_settings: Settings, database_urls: DatabaseUrls, synced, empty_database: str
) -> None:
    store = backups.BackupStore(location(backup_settings.backup_url))
    asyncio.run(backups.take_backup(database_urls.realtime, "realtime", DAY, store))
    runner = CliRunner()
    env = _env(backup_settings)

    refused = runner.invoke(cli, ["db", "restore", "--database", "realtime"], env=env)
    assert refused.exit_code == 1
    assert "is not empty" in refused.output and "--force" in refused.output
    assert "Traceback" not in refused.output

    unknown = runner.invoke(
        cli, ["db", "restore", "--database", "realtime", "--backup", "2020-01-01"], env=env
    )
    assert unknown.exit_code == 1
    assert "no realtime backup named '2020-01-01'" in unknown.output
    assert "realtime-2026-03-01.dump" in unknown.output

    restored = runner.invoke(
        cli,
        ["db", "restore", "--database", "realtime", "--target-url", empty_database],
        env=env,
    )
    assert restored.exit_code == 0, restored.output
    assert "(as backed up)" in restored.output
    assert source_counts(empty_database) == source_counts(database_urls.realtime)

    asyncio.run(
        _on(
            empty_database,
            lambda conn: conn.execute(
                "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept');"
                " DELETE FROM starlistings WHERE id IN (SELECT min(id) FROM starlistings)"
            ),
        )
    )
    again = runner.invoke(
        cli,
        ["db", "restore", "--database", "realtime", "--target-url", empty_database, "--force"],
        env=env,
    )
    assert again.exit_code == 0, again.output
    assert "kept tables the backup does not have: notes" in again.output
    assert source_counts(empty_database) == {**source_counts(database_urls.realtime), "notes": 1}

    listed = runner.invoke(cli, ["db", "restore", "--database", "realtime", "--list"], env=env)
    assert "realtime-2026-03-01.dump" in listed.output


def test_restore_cli_without_backups_says_where_it_looked(backup_settings: Settings) -> None:
    result = CliRunner().invoke(
        cli, ["db", "restore", "--database", "training"], env=_env(backup_settings)
    )
    assert result.exit_code == 1
    assert f"no training backup in {backup_settings.backup_url}" in result.output


def test_client_programs_match_the_server_or_are_refused() -> None:
    tools = pgtools.find_tools(15)
    assert tools.major >= 15
    assert pgtools.major_version(tools.pg_dump) == tools.major
    with pytest.raises(ConfigError, match="no pg_dump/pg_restore/psql of PostgreSQL 99 or newer"):
        pgtools.find_tools(99)


def test_passwords_travel_in_the_environment_not_the_command_line() -> None:
    target, env = pgtools.libpq_target("postgresql://kirby:s%40cret@db:5432/kirby?sslmode=off")
    assert target == "postgresql://kirby@db:5432/kirby?sslmode=off"
    assert env["PGPASSWORD"] == "s@cret"


def test_backups_on_object_storage(
    backup_settings: Settings, database_urls: DatabaseUrls, synced, s3_server: S3Server, s3_bucket
) -> None:
    on_s3 = backup_settings.model_copy(
        update={
            "backup_url": f"s3://{s3_bucket}/kirby/backups",
            "s3_endpoint_url": s3_server.endpoint_url,
        }
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [realtime_backup, realtime_backup_restores],
            partition_key=DAY.isoformat(),
            resources={"kirby": KirbyResource.of(on_s3)},
            instance=instance,
        )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata

    # what is in the bucket, read back over HTTP by a client of its own
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint_url, skip_instance_cache=True)
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3_bucket}/kirby/backups")) == [
        "realtime-2026-03-01.dump",
        "realtime-2026-03-01.json",
    ]
    assert fs.cat(f"{s3_bucket}/kirby/backups/realtime-2026-03-01.dump")[:5] == b"PGDMP"
    [materialization] = result.asset_materializations_for_node("realtime_backup")
    file = materialization.metadata["file"].value
    assert file == f"s3://{s3_bucket}/kirby/backups/realtime-2026-03-01.dump"


def test_a_location_is_a_path_or_a_known_filesystem_url(tmp_path: Path) -> None:
    local = location(tmp_path / "lake")
    assert local.is_local and local.uri("candles") == f"{tmp_path}/lake/candles"
    with pytest.raises(ConfigError, match="nosuch://bucket/lake: not a filesystem URL"):
        location("nosuch://bucket/lake")


CANDLES_OVER_200_DAYS = """
INSERT INTO candles (starlisting_id, time, open, high, low, close, volume)
SELECT (SELECT min(id) FROM starlistings), t, 10, 11, 9, 10, 1
FROM generate_series(date_trunc('hour', now()) - interval '200 days', now(), interval '1 hour') t
"""
CHUNKS = """
SELECT hypertable_name, count(*) FROM timescaledb_information.chunks GROUP BY 1 ORDER BY 1
"""
POLICIES = """
SELECT hypertable_name, proc_name, config FROM timescaledb_information.jobs
WHERE hypertable_name IS NOT NULL ORDER BY 1, 2
"""

REFUSE_INDEXES = """
CREATE FUNCTION public.refuse_indexes() RETURNS event_trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'no index today'; END $$;
CREATE EVENT TRIGGER refuse_indexes ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
EXECUTE FUNCTION public.refuse_indexes();
"""


async def _fill_hypertables(conn: asyncpg.Connection) -> None:
    """Candles over 200 days (several 30-day chunks), the older chunks compressed."""
    await conn.execute(CANDLES_OVER_200_DAYS)
    compressed = await conn.fetchval(
        "SELECT count(compress_chunk(c)) FROM show_chunks('candles', older_than => interval"
        " '60 days') c"
    )
    assert compressed >= 4


def _timescaledb_state(url: str) -> tuple[dict[str, str], list[tuple], list[tuple], str]:
    """Hypertables with chunk intervals, chunks per hypertable, their policies, and whether
    a new session is still in restoring mode. (Which chunks are compressed is not compared:
    the 7-day compression policy, running again after the restore, compresses more.)"""

    async def read(conn: asyncpg.Connection):
        return (
            await backups.chunk_intervals(conn),
            [tuple(row) for row in await conn.fetch(CHUNKS)],
            [tuple(row) for row in await conn.fetch(POLICIES)],
            await conn.fetchval("SELECT current_setting('timescaledb.restoring')"),
        )

    return asyncio.run(_on(url, read))


@pytest.mark.usefixtures("needs_timescaledb")
def test_timescaledb_hypertables_back_up_restore_and_check_as_hypertables(
    backup_settings: Settings, database_urls: DatabaseUrls, synced, empty_database: str
) -> None:
    source = database_urls.realtime
    asyncio.run(_on(source, _fill_hypertables))
    hypertables, chunks, policies, _ = _timescaledb_state(source)
    assert hypertables["candles"] == "30 days"
    assert ("candles", "policy_compression", "7 days") in [
        (name, proc, json.loads(config).get("compress_after")) for name, proc, config in policies
    ]
    version = asyncio.run(_on(source, backups.timescaledb_version))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [realtime_backup, realtime_backup_restores],
            partition_key=DAY.isoformat(),
            resources={"kirby": KirbyResource.of(backup_settings)},
            instance=instance,
        )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    assert check.metadata["hypertables"].value == len(hypertables)
    store = backups.BackupStore(location(backup_settings.backup_url))
    manifest = store.manifest(store.find("realtime"))
    assert manifest.timescaledb == version
    assert manifest.hypertables == hypertables
    assert manifest.tables["candles"] == source_counts(source)["candles"] > 4000

    runner, env = CliRunner(), _env(backup_settings)
    target = ["db", "restore", "--database", "realtime", "--target-url", empty_database]
    restored = runner.invoke(cli, target, env=env)
    assert restored.exit_code == 0, restored.output
    assert f"({len(hypertables)} hypertables)" in restored.output
    assert source_counts(empty_database) == source_counts(source)
    assert _timescaledb_state(empty_database) == (hypertables, chunks, policies, "off")

    # the restored database works as TimescaleDB: a row a year ahead gets a chunk of its own
    asyncio.run(
        _on(
            empty_database,
            lambda conn: conn.execute(
                "INSERT INTO candles (starlisting_id, time, open, high, low, close, volume)"
                " SELECT min(id), date_trunc('hour', now()) + interval '1 year', 1, 1, 1, 1, 1"
                " FROM starlistings"
            ),
        )
    )
    # --force replaces the hypertables, the chunk the backup never had included
    again = runner.invoke(cli, [*target, "--force"], env=env)
    assert again.exit_code == 0, again.output
    assert source_counts(empty_database) == source_counts(source)
    assert _timescaledb_state(empty_database) == (hypertables, chunks, policies, "off")

    # a forced restore that fails half-way (an event trigger of the target's refuses the
    # dump's first CREATE INDEX) leaves everything as it was: nothing dropped, no job lost
    asyncio.run(_on(empty_database, lambda conn: conn.execute(REFUSE_INDEXES)))
    failed = runner.invoke(cli, [*target, "--force"], env=env)
    assert failed.exit_code == 1
    assert "psql failed (exit 3), nothing restored" in failed.output
    assert "no index today" in failed.output
    assert "Traceback" not in failed.output
    assert source_counts(empty_database) == source_counts(source)
    assert _timescaledb_state(empty_database) == (hypertables, chunks, policies, "off")


def test_a_timescaledb_backup_needs_its_version_on_the_target_server(
    backup_settings: Settings,
    database_urls: DatabaseUrls,
    synced,
    empty_database: str,
    timescaledb: bool,
) -> None:
    """On TimescaleDB: a backup claiming another version; on plain PostgreSQL (CI): a
    backup claiming TimescaleDB at all. Both are refused before anything is restored."""
    store = backups.BackupStore(location(backup_settings.backup_url))
    manifest = asyncio.run(backups.take_backup(database_urls.realtime, "realtime", DAY, store))
    claimed = "2.0.0" if timescaledb else "2.28.3"
    edited = dataclasses.asdict(manifest) | {"timescaledb": claimed}
    (Path(backup_settings.backup_url) / "realtime-2026-03-01.json").write_text(json.dumps(edited))

    result = CliRunner().invoke(
        cli,
        ["db", "restore", "--database", "realtime", "--target-url", empty_database],
        env=_env(backup_settings),
    )
    assert result.exit_code == 1
    assert f"realtime-2026-03-01.dump was taken with TimescaleDB {claimed}" in result.output
    offers = f"offers only {manifest.timescaledb}" if timescaledb else "offers no timescaledb"
    assert offers in result.output
    assert "Traceback" not in result.output
    assert asyncio.run(_on(empty_database, backups.timescaledb_version)) is None
    assert not asyncio.run(_on(empty_database, backups.user_relations))


def test_a_hypertable_restored_plain_or_with_other_chunks_does_not_match() -> None:
    rows = {"candles": 5, "coins": 2}
    chunked = {"candles": "30 days", "funding_rates": "30 days"}
    assert backups.Comparison(rows, rows, chunked, dict(chunked)).matches
    comparison = backups.Comparison(rows, rows, chunked, {"candles": "1 day"})
    assert not comparison.matches and not comparison.differences
    assert comparison.hypertable_differences == {
        "candles": ("30 days", "1 day"),
        "funding_rates": ("30 days", None),
    }
    assert backups.Comparison(rows, rows).matches  # plain PostgreSQL: rows only


def test_restore_cli_reports_a_hypertable_that_came_back_plain(
    backup_settings: Settings, database_urls: DatabaseUrls, synced, empty_database: str
) -> None:
    """A manifest saying `coins` was a hypertable (it never is): the restore succeeds, the
    comparison names the table and the command fails."""
    store = backups.BackupStore(location(backup_settings.backup_url))
    manifest = asyncio.run(backups.take_backup(database_urls.realtime, "realtime", DAY, store))
    edited = dataclasses.asdict(manifest) | {"hypertables": {"coins": "30 days"}}
    (Path(backup_settings.backup_url) / "realtime-2026-03-01.json").write_text(json.dumps(edited))

    result = CliRunner().invoke(
        cli,
        ["db", "restore", "--database", "realtime", "--target-url", empty_database],
        env=_env(backup_settings),
    )
    assert result.exit_code == 1
    assert "coins: backup a hypertable of 30 days chunks, restored a plain table" in result.output
    assert "the restored database differs from realtime-2026-03-01.json" in result.output
    assert source_counts(empty_database) == source_counts(database_urls.realtime)


def test_a_cut_off_dump_restores_nothing(
    backup_settings: Settings, database_urls: DatabaseUrls, synced, empty_database: str
) -> None:
    """pg_restore fails on the dump's last bytes: the target stays empty (on TimescaleDB,
    where the SQL goes through psql, no COMMIT is sent)."""
    store = backups.BackupStore(location(backup_settings.backup_url))
    asyncio.run(backups.take_backup(database_urls.realtime, "realtime", DAY, store))
    dump = Path(backup_settings.backup_url) / "realtime-2026-03-01.dump"
    dump.write_bytes(dump.read_bytes()[:-100])

    result = CliRunner().invoke(
        cli,
        ["db", "restore", "--database", "realtime", "--target-url", empty_database],
        env=_env(backup_settings),
    )
    assert result.exit_code == 1
    assert "pg_restore failed" in result.output, result.output
    assert "Traceback" not in result.output
    assert not asyncio.run(_on(empty_database, backups.user_relations))


@pytest.mark.usefixtures("needs_timescaledb")
def test_a_plain_backup_replaces_hypertables_on_force(
    backup_settings: Settings, pg_server: str, empty_database: str
) -> None:
    """A backup of plain tables, forced into a database of hypertables (the prelude drops
    them; --clean alone is refused on a hypertable): plain tables, as backed up."""
    plain = f"kirby_plain_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")
    asyncio.run(_on(admin, lambda conn: conn.execute(f'CREATE DATABASE "{plain}"')))
    try:
        source = with_database(pg_server, plain)
        migrate.upgrade(source, timescaledb="off")
        catalog = load_catalog(REPO / "config/starlistings.hyperliquid.yaml")
        asyncio.run(_on(source, lambda conn: catalog_store.sync_catalog(conn, catalog)))
        store = backups.BackupStore(location(backup_settings.backup_url))
        manifest = asyncio.run(backups.take_backup(source, "realtime", DAY, store))
        assert manifest.timescaledb is None and not manifest.hypertables
        migrate.upgrade(empty_database)
        assert _timescaledb_state(empty_database)[0]  # hypertables before

        result = CliRunner().invoke(
            cli,
            ["db", "restore", "--database", "realtime", "--target-url", empty_database, "--force"],
            env=_env(backup_settings),
        )
        assert result.exit_code == 0, result.output
        assert source_counts(empty_database) == source_counts(source)
        assert source_counts(source)["starlistings"] > 0
        assert _timescaledb_state(empty_database)[:2] == ({}, [])
    finally:
        asyncio.run(_on(admin, lambda conn: conn.execute(f'DROP DATABASE "{plain}" WITH (FORCE)')))
