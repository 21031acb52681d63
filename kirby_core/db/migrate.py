"""Alembic, driven from code: `kirby db migrate` runs it on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from kirby_core.db.urls import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config(url: str, retention_days: int | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = sqlalchemy_url(url)
    config.attributes["retention_days"] = retention_days
    return config


def upgrade(url: str, revision: str = "head", retention_days: int | None = None) -> None:
    command.upgrade(_config(url, retention_days), revision)


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
