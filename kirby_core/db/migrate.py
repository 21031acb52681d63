"""Alembic, driven from code: `kirby db migrate` runs it on both databases.

Whether the market tables become TimescaleDB hypertables is decided here, before Alembic
runs, by `timescaledb_plan` on what the server offers: the extension must be available
*and* preloaded (`shared_preload_libraries`), else `CREATE EXTENSION` ends the session
with FATAL "must be preloaded". The migration only reads the decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from kirby_core.db.retention import PARTITIONED, Retention
from kirby_core.db.retention import apply as apply_retention
from kirby_core.db.urls import sqlalchemy_url
from kirby_core.errors import ConfigError

TimescaleMode = Literal["auto", "on", "off"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
NO_RETENTION = Retention()


def _config(url: str, hypertables: bool = False) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = sqlalchemy_url(url)
    config.attributes["hypertables"] = hypertables
    return config


def upgrade(
    url: str,
    revision: str = "head",
    timescaledb: TimescaleMode = "auto",
    retention: Retention = NO_RETENTION,
    retention_setting: str = "KIRBY_RETENTION",
) -> str | None:
    """Migrate `url` to `revision`, then (at head) make the coming days' trade and book
    partitions and reconcile its retention with `retention` (`retention_setting` names where it
    came from); returns a warning line, if any."""
    hypertables, warning = timescaledb_plan(*probe_timescaledb(url), timescaledb)
    command.upgrade(_config(url, hypertables), revision)
    if revision in ("head", head_revision()):
        engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            with engine.begin() as connection:
                for partitions in PARTITIONED.values():
                    if partitions.is_partitioned(connection):
                        partitions.create_ahead(connection)
                apply_retention(connection, retention, retention_setting)
        finally:
            engine.dispose()
    return warning


def probe_timescaledb(url: str) -> tuple[bool, bool]:
    """(extension available, library preloaded) on the server at `url`."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            available, created, libraries = connection.exec_driver_sql(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions"
                "               WHERE name = 'timescaledb'),"
                "       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
                # NULL without the right to read it (superuser or pg_read_all_settings)
                "       (SELECT setting FROM pg_settings"
                "        WHERE name = 'shared_preload_libraries')"
            ).one()
    finally:
        engine.dispose()
    preloaded = {name.strip().strip('"') for name in (libraries or "").split(",")}
    # an extension already created is loaded (it could not have been created otherwise)
    return bool(available), bool(created) or "timescaledb" in preloaded


def timescaledb_plan(
    available: bool, preloaded: bool, mode: TimescaleMode
) -> tuple[bool, str | None]:
    """(make hypertables?, warning line): `on` refuses a server that cannot, `auto` falls
    back to plain tables, saying why when TimescaleDB is installed but not preloaded."""
    if mode == "off":
        return False, None
    if available and preloaded:
        return True, None
    if mode == "on":
        missing = (
            "is not in the server's shared_preload_libraries"
            if available
            else "is not installed on the server (pg_available_extensions)"
        )
        raise ConfigError(
            f"KIRBY_TIMESCALEDB=on but timescaledb {missing}; add timescaledb to "
            "shared_preload_libraries and restart PostgreSQL, or set KIRBY_TIMESCALEDB=auto"
        )
    if available:
        return False, (
            "timescaledb is installed but not in shared_preload_libraries: plain tables "
            "(add it there and restart PostgreSQL before the first migrate for hypertables)"
        )
    return False, None


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(_config(url), revision)


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config("")).get_current_head()
    assert head is not None  # there is always at least the initial migration
    return head


def current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
