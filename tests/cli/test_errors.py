"""The real `kirby` command, in a subprocess, as a user meets its failures.

Each case ends in a few lines that say what to do, never a traceback (README's promise);
`--log-level DEBUG` shows the traceback. The subprocess runs in the test's empty working
directory, so the default catalogs must be found from anywhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from kirby_cli import failures
from kirby_core.db.urls import DatabaseUrls, with_database
from kirby_core.errors import ExchangeUnavailable, StorageError
from kirby_core.settings import Settings
from tests.conftest import REPO, empty_tables

KIRBY = Path(sys.executable).with_name("kirby")


ONE_EXCHANGE = REPO / "config" / "starlistings.hyperliquid.yaml"
"""The catalog these tests name values from (Hyperliquid's BTC and SOL perps)."""


def kirby(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [str(KIRBY), *args],
        env={**base, "PYTHONPATH": str(REPO), "KIRBY_REALTIME_CATALOG": str(ONE_EXCHANGE), **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def assert_short(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A failure in at most four lines on stderr, naming each of `expected`."""
    output = result.stderr.strip()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in output + result.stdout
    assert len(output.splitlines()) <= 4, output
    for text in expected:
        assert text in output
    return output


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    """A database nobody has migrated."""
    name = f"kirby_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = with_database(pg_server, "postgres")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield with_database(pg_server, name)
    asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
def realtime(database_urls: DatabaseUrls) -> Iterator[str]:
    """The migrated realtime database, emptied afterwards (the CLI commits for real)."""
    yield database_urls.realtime

    async def empty() -> None:
        conn = await asyncpg.connect(database_urls.realtime)
        try:
            await empty_tables(conn)
        finally:
            await conn.close()

    asyncio.run(empty())


@pytest.mark.parametrize(
    "args", [("db", "migrate"), ("catalog", "sync"), ("backfill", "--days", "1")]
)
def test_database_unreachable_names_host_and_port(args: tuple[str, ...]) -> None:
    port = _closed_port()
    result = kirby(*args, KIRBY_DATABASE_URL=f"postgresql://kirby@127.0.0.1:{port}/kirby")
    assert_short(result, f"PostgreSQL at 127.0.0.1:{port}", "KIRBY_DATABASE_URL")


@pytest.mark.parametrize("args", [("catalog", "sync"), ("backfill", "--days", "1")])
def test_database_not_migrated_says_run_migrate(empty_database: str, args) -> None:
    result = kirby(*args, KIRBY_DATABASE_URL=empty_database)
    output = assert_short(result, "not migrated", "run `kirby db migrate`")
    # a Dagster run (backfill) reports its root cause, not the op wrapper
    assert "Error occurred while executing op" not in output


@pytest.mark.parametrize(
    ("url", "host", "reason"),
    [
        ("http://127.0.0.1:{port}", "127.0.0.1:{port}", "refused"),
        ("http://kirby-test.invalid", "kirby-test.invalid", "Name or service not known"),
    ],
)
def test_exchange_unreachable_names_host_and_error(
    realtime: str, url: str, host: str, reason: str
) -> None:
    port = str(_closed_port())
    result = kirby(
        *("backfill", "--days", "1", "--coin", "BTC"),
        KIRBY_DATABASE_URL=realtime,
        KIRBY_HYPERLIQUID_REST_URL=url.format(port=port),
        KIRBY_HTTP_MAX_RETRIES="0",
    )
    output = assert_short(result, f"cannot reach {host.format(port=port)}", reason)
    assert "Error occurred while executing op" not in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("backfill", "--coin", "BTC,DOGE"), ("'--coin'", "DOGE", "BTC, SOL")),
        (("backfill", "--exchange", "binance"), ("'--exchange'", "binance", "hyperliquid")),
        (
            ("export", "--database", "training", "--intervals", "1m,7m"),
            ("'--intervals'", "7m", "1m, 5m, 15m, 1h, 4h, 1d"),
        ),
        # --database is read first wherever it stands
        (("export", "--coin", "ETH", "--database", "realtime"), ("ETH", "BTC, SOL")),
    ],
)
def test_unknown_catalog_values_are_named_with_the_allowed_ones(args, expected) -> None:
    result = kirby(*args)
    assert result.returncode == 2
    assert_short(result, *expected)


def test_default_catalogs_found_from_any_directory(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path  # tests run in an empty directory
    result = kirby("catalog", "validate", "--database", "training")
    assert result.returncode == 0, result.stderr
    assert f"{REPO / 'config' / 'training_stars.yaml'}: valid" in result.stdout


def test_unknown_error_is_one_line_and_debug_shows_the_traceback(realtime: str) -> None:
    args = ("db", "migrate", "--database", "realtime", "--revision", "nosuch")
    result = kirby(*args, KIRBY_DATABASE_URL=realtime)
    assert_short(result, "nosuch", "run with --log-level DEBUG for the traceback")
    debug = kirby("--log-level", "DEBUG", *args, KIRBY_DATABASE_URL=realtime)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise error from cause
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "first_line"),
    [
        # a full disk is not a database outage
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
        (
            _raised(StorageError("flush failed"), ConnectionRefusedError(111, "refused")),
            "cannot connect to PostgreSQL at db.example:6543: [Errno 111] refused",
        ),
        # reached, but rate limited: the exchange's own words
        (ExchangeUnavailable("Hyperliquid candleSnapshot rate limited"), "Hyperliquid"),
    ],
)
def test_explain_rules(error: BaseException, first_line: str) -> None:
    settings = Settings(_env_file=None, database_url="postgresql://k@db.example:6543/kirby")
    assert failures.explain(error, settings)[0].startswith(first_line)
