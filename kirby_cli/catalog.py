"""`kirby catalog`: validate catalog files and sync them into their database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from kirby_cli.options import database_option
from kirby_core.catalog import Catalog, load_catalog
from kirby_core.db import catalog_store, urls
from kirby_core.db.connection import connect
from kirby_core.settings import Database, Settings

_file_option = click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog file (default: KIRBY_REALTIME_CATALOG or KIRBY_TRAINING_CATALOG).",
)


@click.group()
def catalog() -> None:
    """Catalogs: which starlistings (exchange/coin/quote/market type/interval) Kirby keeps."""


@catalog.command()
@database_option
@_file_option
@click.pass_obj
def validate(settings: Settings, database: Database, path: Path | None) -> None:
    """Check a catalog file without touching any database."""
    loaded = load_catalog(path or settings.catalog_path(database))
    click.echo(
        f"{loaded.source}: valid, {len(loaded.starlistings)} starlistings, "
        f"{len(loaded.trading_pairs)} trading pairs"
    )


@catalog.command()
@database_option
@_file_option
@click.pass_obj
def sync(settings: Settings, database: Database, path: Path | None) -> None:
    """Create, reactivate or deactivate starlistings to match the file. Idempotent.

    The whole file is validated first; on any error nothing is written. Entries removed
    from the file are deactivated, never deleted, so their data stays. With DAGSTER_HOME
    set, the sync is recorded there as a materialization of the catalog asset.
    """
    loaded = load_catalog(path or settings.catalog_path(database))
    url = urls.resolve(settings).of(database)
    report = asyncio.run(_sync(url, loaded))
    click.echo(
        f"{database}: {report.active_starlistings} active starlistings, "
        f"{report.active_trading_pairs} active trading pairs"
    )
    if report.changed:
        click.echo(
            f"  starlistings: +{report.starlistings_created} created, "
            f"{report.starlistings_reactivated} reactivated, "
            f"{report.starlistings_deactivated} deactivated; trading pairs: "
            f"+{report.trading_pairs_created} created, {report.trading_pairs_reactivated} "
            f"reactivated, {report.trading_pairs_deactivated} deactivated"
        )
    else:
        click.echo("  no changes")
    _record_in_dagster(report, url, database)


def _record_in_dagster(report: catalog_store.SyncReport, url: str, database: Database) -> None:
    """The sync as a materialization of the catalog asset in the DAGSTER_HOME instance, with
    its series registered as partitions, as if the asset had run."""
    import dagster as dg
    from dagster._core.errors import DagsterHomeNotSetError

    from kirby_pipelines import catalogs

    try:
        instance = dg.DagsterInstance.get()
    except DagsterHomeNotSetError:
        click.echo("  Dagster: DAGSTER_HOME not set, nothing recorded")
        return
    except dg.DagsterError as exc:  # e.g. DAGSTER_HOME is not a directory
        click.echo(f"  Dagster: nothing recorded: {exc}")
        return
    with instance:
        series = asyncio.run(catalogs.read_series(url, database))
        added = catalogs.record_sync(instance, report, series, "kirby catalog sync")
    count = sum(len(keys) for keys in added.values())
    asset = catalogs.ASSETS[series.database]
    click.echo(f"  Dagster: {asset} materialized, {count} partitions added")


async def _sync(url: str, loaded: Catalog) -> catalog_store.SyncReport:
    conn = await connect(url)
    try:
        return await catalog_store.sync_catalog(conn, loaded)
    finally:
        await conn.close()


@catalog.command("list")
@database_option
@click.option("--all", "include_inactive", is_flag=True, help="Include inactive starlistings.")
@click.pass_obj
def list_catalog(settings: Settings, database: Database, include_inactive: bool) -> None:
    """List the starlistings stored in a database."""
    url = urls.resolve(settings).of(database)

    async def fetch():
        conn = await connect(url)
        try:
            return await catalog_store.list_starlistings(conn, active_only=not include_inactive)
        finally:
            await conn.close()

    for item in asyncio.run(fetch()):
        state = "active" if item.active else "inactive"
        click.echo(f"{item.id:>5}  {item.key!s:<40} trading_pair={item.trading_pair_id}  {state}")
