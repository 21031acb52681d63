"""Test harness: a real PostgreSQL, fresh databases per run, no real environment.

With `KIRBY_TEST_DATABASE_URL` (a server URL whose user may create databases) the tests use
that server; otherwise they start an embedded PostgreSQL in a temporary directory and stop
it at the end. Either way each run creates its own pair of databases (realtime, training),
migrates them, and drops them afterwards; tests clean the tables they touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from kirby_core.db import embedded, migrate
from kirby_core.db.urls import DatabaseUrls, plain_url, with_database
from kirby_core.settings import Settings

pytest_plugins = ["tests.redis_server"]  # redis_server, shared

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_SERVER_URL = os.environ.get("KIRBY_TEST_DATABASE_URL")


async def empty_tables(conn: asyncpg.Connection) -> None:
    """Truncate every Kirby table (whatever the migrations created), keeping the schema."""
    names = [
        r["tablename"]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
    ]
    await conn.execute(
        f"TRUNCATE {', '.join(f'public.{n}' for n in names)} RESTART IDENTITY CASCADE"
    )


@pytest.fixture(autouse=True)
def _no_real_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings must come from the test, never from the developer's shell or .env."""
    for name in list(os.environ):
        if name.startswith("KIRBY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server the run may create databases on.

    The embedded server gets a directory of its own rather than pytest's tmp tree, which
    another pytest process may prune while this one runs.
    """
    if _SERVER_URL:
        yield plain_url(_SERVER_URL)
        return
    home = Path(tempfile.mkdtemp(prefix="kirby-test-"))
    url = embedded.start(home, databases=())
    yield url
    embedded.stop(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def database_urls(pg_server: str) -> Iterator[DatabaseUrls]:
    """A migrated realtime and training database, private to this test run."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"kirby_test_{suffix}", f"kirby_training_test_{suffix}")
    admin = with_database(pg_server, "postgres")
    asyncio.run(_run(admin, *(f'CREATE DATABASE "{name}"' for name in names)))
    resolved = DatabaseUrls(*(with_database(pg_server, name) for name in names))
    for url in (resolved.realtime, resolved.training):
        migrate.upgrade(url)
    yield resolved
    asyncio.run(_run(admin, *(f'DROP DATABASE "{name}" WITH (FORCE)' for name in names)))


@pytest.fixture(scope="session")
def timescaledb(pg_server: str) -> bool:
    """Whether the test server can make hypertables: timescaledb available *and* preloaded
    (the embedded server and CI's have neither; tests that need it skip, saying so)."""
    return migrate.timescaledb_plan(
        *migrate.probe_timescaledb(with_database(pg_server, "postgres")), "auto"
    )[0]


@pytest.fixture
def needs_timescaledb(timescaledb: bool) -> None:
    if not timescaledb:
        pytest.skip(
            "TimescaleDB is not available and preloaded on the test server (point"
            " KIRBY_TEST_DATABASE_URL at one with timescaledb in shared_preload_libraries)"
        )


@pytest.fixture
def needs_plain_postgres(timescaledb: bool) -> None:
    if timescaledb:
        pytest.skip("the test server has TimescaleDB; this test is about plain PostgreSQL")


async def _run(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def settings(database_urls: DatabaseUrls, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_urls.realtime,
        training_database_url=database_urls.training,
        home=tmp_path / ".kirby",
        realtime_catalog=REPO / "config" / "starlistings.hyperliquid.yaml",
        training_catalog=REPO / "config" / "training_stars.yaml",
        lake_dir=tmp_path / "lake",
    )


@pytest.fixture
async def conn(database_urls: DatabaseUrls) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the realtime test database; every table is emptied afterwards."""
    connection = await asyncpg.connect(database_urls.realtime)
    try:
        yield connection
    finally:
        try:
            await empty_tables(connection)
        finally:
            await connection.close()


@pytest.fixture
async def training_conn(database_urls: DatabaseUrls) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_urls.training)
    try:
        yield connection
    finally:
        try:
            await empty_tables(connection)
        finally:
            await connection.close()
