"""The trade tape and the book samples in the lake (daily zstd Parquet per pair, exact,
checked) and the two trade models over the tape (VWAP per minute, volume profile per
minute): every value, and their checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kirby_core.db.books import BookRow, write_books
from kirby_core.db.trades import TradeRow, write_trades
from kirby_pipelines.defs.lake.assets import lake_books, lake_trades
from kirby_pipelines.defs.lake.checks import lake_books_checks, lake_trades_checks
from kirby_pipelines.defs.models.assets import model_assets
from kirby_pipelines.defs.models.trade_checks import (
    trade_volume_profile_checks,
    trade_vwap_minutes_checks,
)
from tests.pipelines.conftest import (
    check_results,
    day_tags,
    materialize,
    metadata_values,
    query,
    run_async,
)

DAY1, DAY2 = date(2025, 1, 5), date(2025, 1, 6)
MODELS = {a.key.to_user_string(): a for a in model_assets}
D = Decimal
PATH = "trades/exchange=hyperliquid/symbol=BTC-USD-perps/date={day}/part-0.parquet"


def at(day: date, seconds: float) -> datetime:
    return datetime.combine(day, time(), UTC) + timedelta(seconds=seconds)


def tape(pair: int) -> list[TradeRow]:
    return [
        # minute 0 of day 1: two trades in one millisecond, one with microseconds
        TradeRow(pair, at(DAY1, 0.001), "t2", D("100.25"), D("1"), "sell"),
        TradeRow(pair, at(DAY1, 0.001), "t1", D("100.5"), D("2"), "buy"),
        TradeRow(pair, at(DAY1, 30.123456), "t3", D("101"), D("0.3"), "buy"),
        # minute 1: both in one 0.01-wide bucket
        TradeRow(pair, at(DAY1, 60), "t4", D("99.99"), D("3"), "sell"),
        TradeRow(pair, at(DAY1, 70), "t6", D("99.995"), D("1"), "buy"),
        # day 2
        TradeRow(pair, at(DAY2, 5), "t7", D("64213.5"), D("0.00012345"), "buy"),
    ]


@pytest.fixture
def trades(catalogs, pipeline_settings) -> Path:
    realtime = catalogs.realtime
    pair = query(
        realtime,
        "SELECT p.id FROM trading_pairs p JOIN coins c ON c.id = p.coin_id WHERE c.symbol = 'BTC'",
    )[0][0]

    async def write() -> None:
        conn = await asyncpg.connect(realtime)
        try:
            assert (await write_trades(conn, tape(pair))).written == 6
        finally:
            await conn.close()

    run_async(write())
    return Path(pipeline_settings.lake_dir)


def test_lake_trades_are_daily_zstd_files_exact_and_checked(trades, instance, resources) -> None:
    result = materialize(
        [lake_trades, lake_trades_checks], instance, resources, day_tags(DAY1, DAY2)
    )
    assert result.success
    meta = metadata_values(result.asset_materializations_for_node("lake_trades")[0].metadata)
    assert (meta["rows"], meta["files"], meta["days"]) == (6, 2, 2)
    checks = check_results(result)
    assert set(checks) == {"lake_trades_rows_match", "lake_trades_unique"}
    assert all(c.passed for c in checks.values()), [c.metadata for c in checks.values()]

    path = trades / PATH.format(day=DAY1)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    assert table.schema.names == ["time", "trade_id", "price", "size", "side"]
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert table.column("trade_id").to_pylist() == ["t1", "t2", "t3", "t4", "t6"]
    assert table.column("time").to_pylist()[2] == at(DAY1, 30.123456)
    assert table.column("price").to_pylist() == [100.5, 100.25, 101.0, 99.99, 99.995]

    exact = materialize(
        [lake_trades],
        instance,
        resources,
        day_tags(DAY2, DAY2),
        run_config={"ops": {"lake_trades": {"config": {"exact_decimals": True}}}},
    )
    assert exact.success
    table = pq.read_table(trades / PATH.format(day=DAY2))
    assert table.schema.field("size").type == pa.decimal128(38, 18)
    assert table.column("size").to_pylist() == [D("0.00012345")]
    assert table.column("side").to_pylist() == ["buy"]


def test_lake_trades_unique_fails_on_a_repeated_trade(trades, instance, resources) -> None:
    assert materialize([lake_trades], instance, resources, day_tags(DAY1, DAY1)).success
    path = trades / PATH.format(day=DAY1)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)

    checks = check_results(
        materialize(
            [lake_trades, lake_trades_checks],
            instance,
            resources,
            day_tags(DAY1, DAY1),
            selection=dg.AssetSelection.checks_for_assets(lake_trades),
        )
    )

    assert not checks["lake_trades_unique"].passed
    assert not checks["lake_trades_rows_match"].passed


def _model(lake: Path, name: str) -> list[dict]:
    relation = duckdb.sql(
        f"SELECT * FROM read_parquet('{lake}/models/{name}/**/*.parquet', hive_partitioning = true)"
        " ORDER BY ALL"
    )
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def test_vwap_and_volume_profile_every_value(trades, instance, resources) -> None:
    models = [MODELS["trade_vwap_minutes"], MODELS["trade_volume_profile"]]
    checks = [trade_vwap_minutes_checks, trade_volume_profile_checks]
    assert materialize([lake_trades], instance, resources, day_tags(DAY1, DAY2)).success
    result = materialize([*models, *checks], instance, resources, day_tags(DAY1, DAY2))
    assert result.success
    evaluations = check_results(result)
    assert set(evaluations) == {
        "trade_vwap_minutes_unique",
        "trade_vwap_minutes_matches_lake",
        "trade_volume_profile_unique",
        "trade_volume_profile_adds_up",
    }
    assert all(e.passed for e in evaluations.values()), [e.metadata for e in evaluations.values()]

    base = {"exchange": "hyperliquid", "symbol": "BTC-USD-perps"}
    assert _model(trades, "trade_vwap_minutes") == [
        {
            **base,
            "time": at(DAY1, 0),
            "trades": 3,
            "volume": D("3.3"),
            "buy_volume": D("2.3"),
            "sell_volume": D("1"),
            "notional": D("331.55"),  # 100.5 x 2 + 100.25 x 1 + 101 x 0.3
            "vwap": D("100.469696969697"),  # 331.55 / 3.3 = 100.4696969696969696..., rounded
            "first_price": D("100.5"),  # t1 before t2 in the same millisecond
            "last_price": D("101"),
            "low_price": D("100.25"),
            "high_price": D("101"),
            "date": DAY1,
        },
        {
            **base,
            "time": at(DAY1, 60),
            "trades": 2,
            "volume": D("4"),
            "buy_volume": D("1"),
            "sell_volume": D("3"),
            "notional": D("399.965"),
            "vwap": D("99.99125"),
            "first_price": D("99.99"),
            "last_price": D("99.995"),
            "low_price": D("99.99"),
            "high_price": D("99.995"),
            "date": DAY1,
        },
        {
            **base,
            "time": at(DAY2, 0),
            "trades": 1,
            "volume": D("0.00012345"),
            "buy_volume": D("0.00012345"),
            "sell_volume": D("0"),
            "notional": D("7.927156575"),  # 64213.5 x 0.00012345
            "vwap": D("64213.5"),
            "first_price": D("64213.5"),
            "last_price": D("64213.5"),
            "low_price": D("64213.5"),
            "high_price": D("64213.5"),
            "date": DAY2,
        },
    ]

    def bucket(moment, low, width, trades, volume, buy, sell, day=DAY1):
        return {
            **base,
            "time": moment,
            "bucket_low": D(low),
            "bucket_width": D(width),
            "trades": trades,
            "volume": D(volume),
            "buy_volume": D(buy),
            "sell_volume": D(sell),
            "date": day,
        }

    assert _model(trades, "trade_volume_profile") == [
        # minute 0: first price 100.5 -> 0.1-wide buckets
        bucket(at(DAY1, 0), "100.2", "0.1", 1, "1", "0", "1"),
        bucket(at(DAY1, 0), "100.5", "0.1", 1, "2", "2", "0"),
        bucket(at(DAY1, 0), "101.0", "0.1", 1, "0.3", "0.3", "0"),
        # minute 1: first price 99.99 -> 0.01-wide buckets, both trades in one
        bucket(at(DAY1, 60), "99.99", "0.01", 2, "4", "1", "3"),
        # day 2: 64213.5 -> 10-wide buckets
        bucket(at(DAY2, 0), "64210", "10", 1, "0.00012345", "0.00012345", "0", DAY2),
    ]


def test_trade_model_checks_fail_on_a_lost_bucket(trades, instance, resources) -> None:
    assert materialize([lake_trades], instance, resources, day_tags(DAY1, DAY1)).success
    models = [MODELS["trade_vwap_minutes"], MODELS["trade_volume_profile"]]
    assert materialize(models, instance, resources, day_tags(DAY1, DAY1)).success
    [path] = (trades / "models/trade_volume_profile" / f"date={DAY1}").rglob("*.parquet")
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # drop minute 0's first bucket

    profile = MODELS["trade_volume_profile"]
    checks = check_results(
        materialize(
            [*models, trade_volume_profile_checks],
            instance,
            resources,
            day_tags(DAY1, DAY1),
            selection=dg.AssetSelection.checks_for_assets(profile),
        )
    )

    assert checks["trade_volume_profile_unique"].passed
    assert not checks["trade_volume_profile_adds_up"].passed
    assert checks["trade_volume_profile_adds_up"].metadata["minutes_differing"].value == 1


def test_lake_books_hold_each_side_as_lists_exactly(catalogs, instance, resources) -> None:
    realtime = catalogs.realtime
    pair = query(
        realtime,
        "SELECT p.id FROM trading_pairs p JOIN coins c ON c.id = p.coin_id WHERE c.symbol = 'BTC'",
    )[0][0]
    samples = [
        BookRow(pair, at(DAY1, 1), 901, ((D("100.5"), D("1.25")), (D("100.4"), D("3"))),
                ((D("100.6"), D("0.001")),)),
        BookRow(pair, at(DAY1, 2), None, (), ((D("100.7"), D("2")),)),  # no bids at all
    ]  # fmt: skip

    async def write() -> None:
        conn = await asyncpg.connect(realtime)
        try:
            assert (await write_books(conn, samples)).written == 2
        finally:
            await conn.close()

    run_async(write())
    lake = resources["kirby"].lake()
    exact = {"ops": {"lake_books": {"config": {"exact_decimals": True}}}}
    for run_config, number in ((None, float), (exact, D)):
        result = materialize(
            [lake_books, lake_books_checks], instance, resources, day_tags(DAY1, DAY1),
            run_config=run_config,
        )  # fmt: skip
        assert result.success
        assert all(c.passed for c in check_results(result).values())
        path = lake.path("books/exchange=hyperliquid/symbol=BTC-USD-perps", f"date={DAY1}")
        parquet = pq.ParquetFile(f"{path}/part-0.parquet")
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
        rows = parquet.read().to_pylist()
        assert rows == [
            {
                "time": at(DAY1, 1),
                "sequence": 901,
                "bid_prices": [number("100.5"), number("100.4")],
                "bid_sizes": [number("1.25"), number("3")],
                "ask_prices": [number("100.6")],
                "ask_sizes": [number("0.001")],
            },
            {
                "time": at(DAY1, 2),
                "sequence": None,
                "bid_prices": [],
                "bid_sizes": [],
                "ask_prices": [number("100.7")],
                "ask_sizes": [number("2")],
            },
        ]
