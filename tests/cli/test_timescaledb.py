"""TimescaleDB only where it can load: available *and* in shared_preload_libraries.

The decision is a pure function tested by table, the probe is checked against the real
server, and on plain PostgreSQL `on` and a retention setting are refused by the real
`kirby` (those skip on a TimescaleDB test server; `tests/db/test_timescaledb.py` covers it).
"""

from __future__ import annotations

import pytest

from kirby_core.db import migrate
from kirby_core.db.urls import DatabaseUrls
from kirby_core.errors import ConfigError
from tests.cli.test_errors import assert_short, kirby

NOT_PRELOADED = "shared_preload_libraries"


@pytest.mark.parametrize(
    ("available", "preloaded", "mode", "hypertables", "warning"),
    [
        (True, True, "auto", True, None),
        (True, False, "auto", False, NOT_PRELOADED),
        (False, False, "auto", False, None),
        (True, True, "on", True, None),
        (True, True, "off", False, None),
        (True, False, "off", False, None),
        (False, False, "off", False, None),
    ],
)
def test_plan(available, preloaded, mode, hypertables, warning) -> None:
    made, said = migrate.timescaledb_plan(available, preloaded, mode)
    assert made is hypertables
    assert said is None if warning is None else warning in said


@pytest.mark.parametrize(("available", "preloaded"), [(True, False), (False, False)])
def test_on_refuses_a_server_that_cannot(available: bool, preloaded: bool) -> None:
    with pytest.raises(ConfigError, match=NOT_PRELOADED):
        migrate.timescaledb_plan(available, preloaded, "on")


def test_probe_reads_the_real_server(database_urls: DatabaseUrls, timescaledb: bool) -> None:
    # plain PostgreSQL (embedded, CI): neither installed nor preloaded
    expected = (True, True) if timescaledb else (False, False)
    assert migrate.probe_timescaledb(database_urls.realtime) == expected


@pytest.mark.usefixtures("needs_plain_postgres")
def test_migrate_with_timescaledb_on_refuses_in_one_line(database_urls: DatabaseUrls) -> None:
    result = kirby(
        "db",
        "migrate",
        KIRBY_DATABASE_URL=database_urls.realtime,
        KIRBY_TRAINING_DATABASE_URL=database_urls.training,
        KIRBY_TIMESCALEDB="on",
    )
    output = assert_short(result, NOT_PRELOADED, "KIRBY_TIMESCALEDB")
    assert len(output.splitlines()) == 1


def test_migrate_auto_says_nothing(database_urls: DatabaseUrls) -> None:
    result = kirby(
        "db", "migrate", "--database", "realtime", KIRBY_DATABASE_URL=database_urls.realtime
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.usefixtures("needs_plain_postgres")
def test_retention_on_plain_tables_is_refused_in_one_line(database_urls: DatabaseUrls) -> None:
    result = kirby(
        "db",
        "migrate",
        "--database",
        "realtime",
        KIRBY_DATABASE_URL=database_urls.realtime,
        KIRBY_RETENTION="candles=30d",
    )
    output = assert_short(result, "KIRBY_RETENTION is set", "plain PostgreSQL tables")
    assert len(output.splitlines()) == 1


def test_a_bad_retention_setting_is_refused_naming_it(database_urls: DatabaseUrls) -> None:
    result = kirby(
        "db",
        "migrate",
        KIRBY_DATABASE_URL=database_urls.realtime,
        KIRBY_TRAINING_DATABASE_URL=database_urls.training,
        KIRBY_TRAINING_RETENTION="candles:1m=30",
    )
    assert_short(result, "KIRBY_TRAINING_RETENTION: 'candles:1m=30' is not a retention rule")
