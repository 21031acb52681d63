"""`kirby backfill`: the original script's options, running the backfill assets in process."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from click.testing import CliRunner

from kirby_cli.pipelines import backfill
from kirby_core.errors import InvalidRequest
from kirby_pipelines.runs import EXCHANGE_TAG, RANGE_START_TAG
from tests.conftest import REPO
from tests.pipelines.conftest import empty_databases, query, yesterday


def test_backfill_a_coin_for_some_days_with_the_same_assets(
    database_urls, pipeline_settings, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # a default instance, read after
    try:
        result = CliRunner().invoke(
            backfill, ["--coin", "SOL", "--days", "2", "--dataset", "all"], obj=pipeline_settings
        )

        assert result.exit_code == 0, result.output
        assert "realtime: 5 series, 10 series-days" in result.output
        by_interval = dict(
            query(
                database_urls.realtime,
                "SELECT i.name, count(*) FROM candles c"
                " JOIN starlistings s ON s.id = c.starlisting_id"
                " JOIN intervals i ON i.id = s.interval_id GROUP BY 1",
            )
        )
        assert by_interval["1d"] == 2 and by_interval["4h"] == 12 and by_interval["15m"] == 192
        assert 2 * 1440 * 0.9 < by_interval["1m"] <= 2 * 1440
        settled = query(
            database_urls.realtime,
            "SELECT count(*) FROM funding_rates WHERE settled_funding_rate IS NOT NULL"
            " AND time >= $1::date",
            yesterday() - timedelta(days=1),
        )[0][0]
        assert settled == 48
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            backfills = [r for r in instance.get_runs() if RANGE_START_TAG in r.tags]
        # one run per series (four candle intervals, one pair), each under its exchange
        assert len(backfills) == 5
        assert {r.tags[EXCHANGE_TAG] for r in backfills} == {"hyperliquid"}

        again = CliRunner().invoke(
            backfill, ["--coin", "SOL", "--days", "2"], obj=pipeline_settings
        )
        assert again.exit_code == 0, again.output
        assert " 0 written" in again.output
    finally:
        empty_databases(database_urls)


def test_export_takes_declared_aliases_and_says_what_a_database_cannot_export(
    settings, monkeypatch, tmp_path
) -> None:
    from kirby_cli.main import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    args = ["export", "--database", "training", "--days", "1", "--output", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--dataset", "oi"], obj=settings)
    assert result.exit_code == 1
    assert (
        "the training database has no open_interest to export; expected one of merged, candles"
        in result.output
    )
    assert "Traceback" not in result.output
    refused = CliRunner().invoke(cli, [*args, "--dataset", "open-interest"], obj=settings)
    assert refused.exit_code == 2 and "'open-interest' is not one of" in refused.output


def test_backfill_trades_names_the_exchanges_without_trade_history(
    database_urls, pipeline_settings, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    five = pipeline_settings.model_copy(
        update={"realtime_catalog": REPO / "config" / "starlistings.yaml"}
    )
    try:
        refused = CliRunner().invoke(
            backfill,
            ["--dataset", "trades", "--exchange", "bybit", "--days", "1"],
            obj=five,
        )
        # a KirbyError: `kirby`'s group prints its message (no traceback) and exits 1
        assert isinstance(refused.exception, InvalidRequest), refused.output
        message = str(refused.exception)
        assert message.startswith("nothing to backfill: trades on bybit has no history (Bybit")
        assert message.endswith("exchanges with trade history: binance (perps, spot), okx (spot)")

        training = CliRunner().invoke(
            backfill,
            ["--dataset", "trades", "--database", "training", "--days", "1"],
            obj=pipeline_settings,
        )
        assert str(training.exception) == "training: no backfill for trades; expected candles"

        done = CliRunner().invoke(
            backfill,
            ["--dataset", "trades", "--exchange", "binance", "--coin", "BTC", "--days", "1"],
            obj=five,
        )
        assert done.exit_code == 0, done.output
        assert "realtime: 2 series, 2 series-days" in done.output  # spot and perps
        stored = query(
            database_urls.realtime,
            "SELECT count(DISTINCT trading_pair_id) FROM trades WHERE time >= $1::date",
            yesterday(),
        )[0][0]
        assert stored == 2
    finally:
        empty_databases(database_urls)
