"""`kirby db`: the embedded server and schema migrations."""

from __future__ import annotations

import click

from kirby_core.db import embedded, migrate, retention, urls
from kirby_core.settings import Database, Settings

BOTH: tuple[Database, ...] = ("realtime", "training")


@click.group()
def db() -> None:
    """Databases: start/stop the embedded PostgreSQL, migrate both schemas."""


@db.command()
@click.pass_obj
def start(settings: Settings) -> None:
    """Start the embedded PostgreSQL (or reuse it) and create both databases."""
    if settings.database_url:
        raise click.UsageError("KIRBY_DATABASE_URL is set: Kirby uses that server, not its own.")
    resolved = urls.resolve(settings)
    click.echo(f"embedded PostgreSQL running in {embedded.data_dir(settings.home)}")
    for name in BOTH:
        click.echo(f"  {name:<9} {resolved.of(name)}")


@db.command()
@click.pass_obj
def stop(settings: Settings) -> None:
    """Stop the embedded PostgreSQL."""
    stopped = embedded.stop(settings.home)
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show which databases Kirby uses and their schema revision."""
    if not settings.database_url and not embedded.is_running(settings.home):
        click.echo(f"embedded PostgreSQL is not running (data: {embedded.data_dir(settings.home)})")
        return
    resolved = urls.resolve(settings)
    for name in BOTH:
        url = resolved.of(name)
        revision = migrate.current_revision(url) or "not migrated"
        click.echo(f"{name:<9} {urls.redact(url)}  revision={revision}")


@db.command("url")
@click.option("--database", type=click.Choice(BOTH), default="realtime", show_default=True)
@click.pass_obj
def show_url(settings: Settings, database: Database) -> None:
    """Print a database URL (starting the embedded server if needed), e.g. for psql."""
    click.echo(urls.resolve(settings).of(database))


@db.command("migrate")
@click.option("--database", type=click.Choice([*BOTH, "both"]), default="both", show_default=True)
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def migrate_command(settings: Settings, database: Database, revision: str) -> None:
    """Create or upgrade the schema (both databases by default). Safe to repeat."""
    resolved = urls.resolve(settings)
    targets = BOTH if database == "both" else (database,)
    shared = resolved.realtime == resolved.training
    # one database for both: KIRBY_RETENTION describes it; every setting checked up front
    owners: dict[Database, Database] = {n: "realtime" if shared else n for n in targets}
    wanted = {n: retention.for_database(settings, owner, shared) for n, owner in owners.items()}
    for name in owners:
        url = resolved.of(name)
        before = migrate.current_revision(url)
        warning = migrate.upgrade(
            url,
            revision,
            timescaledb=settings.timescaledb,
            retention=wanted[name],
            retention_setting=retention.SETTING[owners[name]],
        )
        if warning:
            click.echo(f"warning: {name}: {warning}", err=True)
        after = migrate.current_revision(url)
        change = "unchanged" if before == after else f"{before or 'empty'} -> {after}"
        click.echo(f"{name:<9} {urls.redact(url)}  revision {after} ({change})")


@db.command()
@click.option("--database", type=click.Choice(BOTH), required=True)
@click.option(
    "--revision",
    default="base",
    show_default=True,
    help="Target revision; 'base' drops every Kirby table and its data.",
)
@click.confirmation_option(prompt="This drops tables and their data. Continue?")
@click.pass_obj
def downgrade(settings: Settings, database: Database, revision: str) -> None:
    """Downgrade one database's schema (destroys data above the target revision)."""
    url = urls.resolve(settings).of(database)
    migrate.downgrade(url, revision)
    click.echo(f"{database} downgraded to {migrate.current_revision(url) or 'base'}")


@db.command("restore")
@click.option(
    "--database",
    type=click.Choice(BOTH),
    required=True,
    help="Whose backups to read (realtime-<day>.dump or training-<day>.dump).",
)
@click.option(
    "--backup",
    "name",
    metavar="NAME",
    default=None,
    help="A backup's file name or day (realtime-2026-12-05.dump, 2026-12-05). Default: the newest.",
)
@click.option(
    "--target-url",
    metavar="URL",
    default=None,
    help="Database to restore into (postgresql://…). Default: the configured one of "
    "--database. Its password may come from PGPASSWORD.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Restore into a database that already holds tables, replacing those the backup has.",
)
@click.option("--list", "list_only", is_flag=True, help="List the backups and restore nothing.")
@click.pass_obj
def restore_command(
    settings: Settings,
    database: Database,
    name: str | None,
    target_url: str | None,
    force: bool,
    list_only: bool,
) -> None:
    """Restore a backup taken by the realtime_backup / training_backup assets.

    Backups are read from KIRBY_BACKUP_URL (a directory or s3://bucket/prefix). A database
    that already holds tables is refused unless --force. The restore is one transaction,
    and the restored rows per table are compared with the counts taken at backup time.
    A TimescaleDB backup needs timescaledb of the same version on the target's server: the
    extension is created at that version, and the restore runs between
    timescaledb_pre_restore() and timescaledb_post_restore(), still in one transaction.
    """
    import asyncio

    from kirby_core import backups
    from kirby_core.locations import backup_location

    store = backups.BackupStore(backup_location(settings))
    if list_only:
        listed = store.backups_of(database)
        if not listed:
            click.echo(f"no {database} backup in {store.location.url}")
        for backup in listed:
            manifest = store.manifest(backup)
            click.echo(
                f"{backup.dump_name}  taken {manifest.taken_at}  {manifest.dump_bytes} bytes  "
                f"{manifest.total_rows} rows"
            )
        return
    backup = store.find(database, name)
    url = urls.plain_url(target_url) if target_url else urls.resolve(settings).of(database)
    click.echo(f"restoring {backup.dump_name} from {store.location.url} into {urls.redact(url)}")
    comparison = asyncio.run(
        backups.restore(url, store, backup, force=force, bin_dir=settings.pg_bin_dir)
    )
    rows = sum(comparison.expected.values())
    if comparison.extra:
        click.echo(f"kept tables the backup does not have: {', '.join(comparison.extra)}")
    chunked = comparison.expected_hypertables
    shown = f" ({len(chunked)} hypertables)" if chunked else ""
    if comparison.matches:
        click.echo(f"restored {len(comparison.expected)} tables{shown}, {rows} rows (as backed up)")
        return
    for table, (expected, restored) in comparison.differences.items():
        click.echo(f"  {table}: backup {expected}, restored {restored}", err=True)
    for table, (interval, now) in comparison.hypertable_differences.items():
        click.echo(
            f"  {table}: backup a hypertable of {interval} chunks, restored "
            + (f"{now} chunks" if now else "a plain table"),
            err=True,
        )
    raise click.ClickException(f"the restored database differs from {backup.manifest_name}")
