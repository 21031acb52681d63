"""Retention settings and the statements that reconcile a server with them (pure, run
everywhere; what the statements do on TimescaleDB is in `test_timescaledb.py`)."""

from __future__ import annotations

import pytest

from kirby_core.db import retention
from kirby_core.db.retention import Installed, Retention
from kirby_core.errors import ConfigError
from kirby_core.settings import Settings

NOTHING = Installed({}, {})


@pytest.mark.parametrize(
    ("text", "tables", "intervals"),
    [
        (None, {}, {}),
        ("", {}, {}),
        ("candles=30d", {"candles": 30}, {}),
        (
            " candles:1m=7d , candles=365d,funding_rates=90d,open_interest=1d ",
            {"candles": 365, "funding_rates": 90, "open_interest": 1},
            {"1m": 7},
        ),
        ("candles:1m=30d,candles:15m=90d", {}, {"1m": 30, "15m": 90}),
        ("candles:1m=30d,candles=30d", {"candles": 30}, {"1m": 30}),
        ("trades=30d,candles=365d", {"trades": 30, "candles": 365}, {}),
    ],
)
def test_parse(text, tables, intervals) -> None:
    assert retention.parse_retention(text, "KIRBY_RETENTION") == Retention(tables, intervals)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("candles=30", "'candles=30' is not a retention rule; expected <dataset>"),
        ("candles=1w", "'candles=1w' is not a retention rule"),
        (
            "book_integrity=30d",
            "unknown dataset 'book_integrity' in 'book_integrity=30d';"
            " allowed: candles, funding_rates, open_interest, trades, books",
        ),
        ("funding=30d", "unknown dataset 'funding'"),
        ("candles:2m=3d", "unknown interval '2m' in 'candles:2m=3d'; allowed: 1m, 3m"),
        ("funding_rates:1m=3d", "only candles have intervals; write funding_rates=<days>d"),
        ("candles=0d", "'candles=0d' keeps nothing; use at least 1d"),
        ("candles=3d,candles=4d", "'candles=4d' repeats a rule for candles; give it once"),
        ("candles:1m=3d,candles:1m=4d", "repeats a rule for 1m"),
        ("candles:1m=90d,candles=30d", "candles:1m=90d is longer than candles=30d"),
    ],
)
def test_parse_refuses_naming_the_setting_and_value(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        retention.parse_retention(text, "KIRBY_TRAINING_RETENTION")
    assert str(caught.value).startswith("KIRBY_TRAINING_RETENTION: ")
    assert says in str(caught.value)


def test_each_database_reads_its_own_setting() -> None:
    settings = Settings(_env_file=None, retention="candles=30d", training_retention="candles=9d")
    assert retention.for_database(settings, "realtime").tables == {"candles": 30}
    assert retention.for_database(settings, "training").tables == {"candles": 9}
    assert not retention.for_database(Settings(_env_file=None, retention="candles=3d"), "training")


def test_one_database_for_both_takes_only_the_realtime_setting() -> None:
    settings = Settings(_env_file=None, retention="candles=30d")
    assert retention.for_database(settings, "realtime", shared=True).tables == {"candles": 30}
    both = Settings(_env_file=None, retention="candles=30d", training_retention="candles=9d")
    with pytest.raises(ConfigError, match=r"KIRBY_TRAINING_RETENTION is set but .* are one"):
        retention.for_database(both, "realtime", shared=True)


ADD_JOB = (
    "SELECT add_job('kirby_drop_expired_candles', interval '1 hour',"
    ' config => \'{"intervals": {"15m": 60, "1m": 7}}\'::jsonb)'
)


@pytest.mark.parametrize(
    ("wanted", "installed", "statements"),
    [
        (Retention(), NOTHING, []),
        (
            Retention({"candles": 30, "funding_rates": 90}),
            NOTHING,
            [
                "SELECT add_retention_policy('candles', drop_after => interval '30 days')",
                "SELECT add_retention_policy('funding_rates', drop_after => interval '90 days')",
            ],
        ),
        (Retention({"candles": 30}), Installed({"candles": 30}, {}), []),
        (
            Retention({"candles": 60}),
            Installed({"candles": 30, "open_interest": 5}, {}),
            [
                "SELECT remove_retention_policy('candles')",
                "SELECT add_retention_policy('candles', drop_after => interval '60 days')",
                "SELECT remove_retention_policy('open_interest')",
            ],
        ),
        (Retention({}, {"1m": 7, "15m": 60}), NOTHING, [ADD_JOB]),
        (Retention({}, {"1m": 7}), Installed({}, {4: {"1m": 7}}), []),
        (
            Retention({}, {"1m": 8}),
            Installed({}, {4: {"1m": 7}, 9: {"1m": 7}}),
            [
                'SELECT alter_job(4, config => \'{"intervals": {"1m": 8}}\'::jsonb)',
                "SELECT delete_job(9)",
            ],
        ),
        (Retention(), Installed({}, {4: {"1m": 7}}), ["SELECT delete_job(4)"]),
    ],
)
def test_plan(wanted: Retention, installed: Installed, statements: list[str]) -> None:
    assert retention.plan_statements(wanted, installed) == statements
