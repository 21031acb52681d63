"""The `kirby` command as a user runs it: help everywhere, the embedded server, catalogs."""

import asyncio
from pathlib import Path

import asyncpg
import click
import pytest
from click.testing import CliRunner

from kirby_cli.main import cli
from kirby_core.db import migrate
from kirby_core.db.urls import DatabaseUrls
from tests.conftest import REPO, empty_tables


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(cli)], ids=lambda p: " ".join(p) or "kirby")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="kirby")
    assert result.exit_code == 0, result.output
    assert "Usage: kirby" in result.output
    assert len(result.output.splitlines()) > 3


def _query(url: str, sql: str):
    async def run():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def clean(database_urls: DatabaseUrls):
    """The CLI commits for real: empty both databases afterwards."""
    yield

    async def empty(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await empty_tables(conn)
        finally:
            await conn.close()

    for url in (database_urls.realtime, database_urls.training):
        asyncio.run(empty(url))


def _env(urls: DatabaseUrls) -> dict[str, str]:
    return {
        "KIRBY_DATABASE_URL": urls.realtime,
        "KIRBY_TRAINING_DATABASE_URL": urls.training,
        "KIRBY_REALTIME_CATALOG": str(REPO / "config" / "starlistings.hyperliquid.yaml"),
        "KIRBY_TRAINING_CATALOG": str(REPO / "config" / "training_stars.yaml"),
    }


def test_migrate_and_sync_are_repeatable(database_urls: DatabaseUrls, clean) -> None:
    runner = CliRunner()
    env = {**_env(database_urls), "DAGSTER_HOME": None}
    migrated = runner.invoke(cli, ["db", "migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    assert migrated.output.count(f"revision {migrate.head_revision()} (unchanged)") == 2

    for expected in ("+8 created", "no changes"):
        result = runner.invoke(cli, ["catalog", "sync"], env=env)
        assert result.exit_code == 0, result.output
        assert "realtime: 8 active starlistings, 2 active trading pairs" in result.output
        assert expected in result.output
    training = runner.invoke(cli, ["catalog", "sync", "--database", "training"], env=env)
    assert "training: 24 active starlistings, 4 active trading pairs" in training.output
    listed = runner.invoke(cli, ["catalog", "list"], env=env)
    assert "hyperliquid/SOL/USD/perps/1d" in listed.output
    assert _query(database_urls.training, "SELECT count(*) FROM starlistings") == 24


def test_broken_catalog_is_refused_and_nothing_written(
    database_urls: DatabaseUrls, clean, tmp_path: Path
) -> None:
    broken = tmp_path / "starlistings.hyperliquid.yaml"
    text = (REPO / "config" / "starlistings.hyperliquid.yaml").read_text()
    broken.write_text(text.replace("intervals: [1m, 15m, 4h, 1d]", "intervals: [1m, 2d]", 1))
    result = CliRunner().invoke(
        cli, ["catalog", "sync", "--file", str(broken)], env=_env(database_urls)
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert (
        f"Error: {broken}: starlistings[0] (hyperliquid/BTC/USD/perps): interval '2d' is not "
        "supported on hyperliquid" in result.output
    )
    assert _query(database_urls.realtime, "SELECT count(*) FROM starlistings") == 0


def test_embedded_server_lifecycle(tmp_path: Path) -> None:
    """No URL set: Kirby starts its own server, reuses it, and stops it."""
    runner = CliRunner()
    env = {"KIRBY_HOME": str(tmp_path / "home")}
    started = runner.invoke(cli, ["db", "start"], env=env)
    assert started.exit_code == 0, started.output
    assert "/kirby?host=" in started.output and "/kirby_training?host=" in started.output
    migrated = runner.invoke(cli, ["db", "migrate"], env=env)
    assert migrated.output.count(f"(empty -> {migrate.head_revision()})") == 2
    status = runner.invoke(cli, ["db", "status"], env=env)
    # reused: the same server and data
    assert status.output.count(f"revision={migrate.head_revision()}") == 2
    assert runner.invoke(cli, ["db", "stop"], env=env).stdout.strip() == (
        "embedded PostgreSQL stopped"
    )
    assert "is not running" in runner.invoke(cli, ["db", "status"], env=env).output
    assert "was not running" in runner.invoke(cli, ["db", "stop"], env=env).output


def test_start_refuses_when_a_url_is_configured() -> None:
    result = CliRunner().invoke(
        cli, ["db", "start"], env={"KIRBY_DATABASE_URL": "postgresql://u@db/kirby"}
    )
    assert result.exit_code == 2
    assert "KIRBY_DATABASE_URL is set" in result.output
