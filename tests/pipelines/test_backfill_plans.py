"""What `kirby backfill` and the stack's start-up backfill run, decided in kirby_pipelines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from click.testing import CliRunner

from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.errors import InvalidRequest
from kirby_core.exchanges import CANDLE_LIMIT
from kirby_pipelines.backfill_plans import (
    BACKFILL_ASSETS,
    LAKE_REFRESH_ASSETS,
    BackfillRequest,
    backfilled_datasets,
    checks_of,
    history_partitions,
    plan_backfill,
)
from kirby_pipelines.catalogs import DatabaseSeries
from kirby_pipelines.lake_export import LAKE_ASSETS

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
BTC_1M = StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1m")
BTC_1D = StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1d")
BTC_PAIR = TradingPairKey("hyperliquid", "BTC", "USD", "perps")
ETH_SPOT_1M = StarlistingKey("binance", "ETH", "USDT", "spot", "1m")
REALTIME = DatabaseSeries(
    "realtime",
    (Starlisting(1, BTC_1M, 1, 60, True), Starlisting(2, BTC_1D, 1, 86400, True)),
    (TradingPair(1, BTC_PAIR, True),),
)
TRAINING = DatabaseSeries("training", (Starlisting(1, ETH_SPOT_1M, 1, 60, True),), ())


@pytest.mark.parametrize(
    ("asset", "checks"),
    [
        (
            "candles",
            [
                ["candles_complete"],
                ["candles_ohlc_sane", "candles_timestamps_aligned"],
                ["candles_live_agrees"],
            ],
        ),
        ("funding_rates", [["funding_rates_settled_hourly"]]),
        (
            "training_candles",
            [
                ["training_candles_complete"],
                ["training_candles_ohlc_sane", "training_candles_timestamps_aligned"],
            ],
        ),
    ],
)
def test_each_backfill_asset_runs_with_the_checks_defined_on_it(
    asset: str, checks: list[list[str]]
) -> None:
    # a multi-asset check holds its checks as a set: compare each definition's names sorted
    assert [sorted(key.name for key in c.check_keys) for c in checks_of(asset)] == checks


def test_backfilled_datasets_per_database() -> None:
    assert backfilled_datasets("realtime") == ["candles", "funding_rates"]
    assert backfilled_datasets("training") == ["candles"]
    assert backfilled_datasets() == ["candles", "funding_rates"]
    assert set(BACKFILL_ASSETS.values()) == {"candles", "funding_rates", "training_candles"}


def test_the_stack_refreshes_every_lake_table_then_the_merged_dataset() -> None:
    assert LAKE_REFRESH_ASSETS[:-1] == tuple(LAKE_ASSETS)
    assert LAKE_REFRESH_ASSETS[-1] == "merged_training_dataset"
    assert set(LAKE_ASSETS) == {
        "lake_candles",
        "lake_funding_rates",
        "lake_open_interest",
        "lake_trades",
        "lake_books",
        "lake_training_candles",
    }


def test_history_partitions_keep_only_the_candle_days_the_exchange_still_serves() -> None:
    days = [date(2025, 3, 9) - timedelta(days=i) for i in (4, 3, 2, 1, 0)]
    # 1m candles: CANDLE_LIMIT minutes back from NOW reach into the day before NOW only
    oldest_1m = (NOW - CANDLE_LIMIT * timedelta(minutes=1)).date()
    served_1m = [d for d in days if d >= oldest_1m]
    assert 0 < len(served_1m) < len(days)
    assert history_partitions("candles", REALTIME, TRAINING, days, NOW) == [
        *(f"{d}|BTC@hyperliquid/USD/perps/1m" for d in served_1m),
        *(f"{d}|BTC@hyperliquid/USD/perps/1d" for d in days),
    ]
    assert history_partitions("funding_rates", REALTIME, TRAINING, days, NOW) == [
        f"{d}|BTC@hyperliquid/USD/perps" for d in days
    ]
    assert history_partitions("training_candles", REALTIME, TRAINING, days, NOW) == [
        f"{d}|ETH@binance/USDT/spot/1m" for d in days
    ]


@pytest.mark.parametrize(
    ("database", "dataset", "allowed"),
    [
        ("realtime", "open_interest", "candles, funding_rates or trades"),
        ("training", "funding_rates", "candles"),
    ],
)
def test_a_dataset_no_asset_backfills_is_refused_before_anything_runs(
    database, dataset, allowed
) -> None:
    request = BackfillRequest(database, (dataset,), (date(2025, 3, 9),))
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(InvalidRequest) as refused:
        plan_backfill(request, instance, {}, NOW)
    assert str(refused.value) == f"{database}: no backfill for {dataset}; expected {allowed}"


def test_the_cli_accepts_declared_aliases_and_says_what_it_cannot_backfill(
    settings, monkeypatch
) -> None:
    from kirby_cli.main import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(cli, ["backfill", "--dataset", "oi", "--days", "1"], obj=settings)
    assert result.exit_code == 1
    assert "realtime: no backfill for open_interest; expected candles, funding_rates" in (
        result.output
    )
    assert "Traceback" not in result.output
    refused = CliRunner().invoke(cli, ["backfill", "--dataset", "open-interest"], obj=settings)
    assert refused.exit_code == 2 and "'open-interest' is not one of" in refused.output
