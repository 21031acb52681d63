"""Lake exports (hive layout, exact row counts, floats or exact decimals, idempotent) and the
SQL models run by DuckDB over them (merged dataset, daily coverage)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from click.testing import CliRunner

from kirby_cli.pipelines import export_files
from kirby_core.db.writer import upsert_candles, upsert_funding_rates, upsert_open_interest
from kirby_core.models import CandleRow, FundingRateRow, OpenInterestRow
from kirby_pipelines.defs.lake.assets import (
    lake_candles,
    lake_coverage,
    lake_funding_rates,
    lake_open_interest,
    lake_series,
    lake_training_candles,
)
from kirby_pipelines.defs.lake.checks import lake_candles_checks
from kirby_pipelines.defs.models.assets import model_assets
from kirby_pipelines.resources import KirbyResource
from tests.pipelines.conftest import day_tags, materialize, metadata_values, query, run_async
from tests.s3 import S3Server

DAY1, DAY2 = date(2025, 1, 5), date(2025, 1, 6)
LAKE = [lake_candles, lake_funding_rates, lake_open_interest, lake_training_candles]
MODELS = {a.key.to_user_string(): a for a in model_assets}


def at(day: date, minute: int) -> datetime:
    return datetime.combine(day, time(), UTC) + timedelta(minutes=minute)


def series_id(url: str, coin: str, interval: str, market_type: str = "perps") -> int:
    return query(
        url,
        "SELECT s.id FROM starlistings s JOIN coins c ON c.id = s.coin_id"
        " JOIN intervals i ON i.id = s.interval_id JOIN market_types m ON m.id = s.market_type_id"
        " WHERE c.symbol = $1 AND i.name = $2 AND m.name = $3",
        coin,
        interval,
        market_type,
    )[0][0]


def candle(sid: int, moment: datetime, price: str) -> CandleRow:
    p = Decimal(price)
    return CandleRow(
        sid, moment, p, p + Decimal("0.5"), p - Decimal("0.5"), p, Decimal("1.23456789"), 7
    )


@pytest.fixture
def market(catalogs, pipeline_settings):
    """Two days of BTC 1m candles (10 quiet minutes on day 1), hourly settled funding plus
    live rows for the first half hour, OI for the first 30 minutes; Binance spot candles for
    day 1; one collector outage over minutes 100-104 of day 1 (candles missing there)."""
    realtime, training = catalogs.realtime, catalogs.training
    btc = series_id(realtime, "BTC", "1m")
    pair = query(realtime, "SELECT trading_pair_id FROM starlistings WHERE id = $1", btc)[0][0]
    spot = series_id(training, "BTC", "1m", "spot")
    quiet = set(range(100, 110))
    rows = [
        candle(btc, at(day, m), f"{67000 + m}.1")
        for day in (DAY1, DAY2)
        for m in range(1440)
        if not (day == DAY1 and m in quiet)
    ]
    settled = [
        FundingRateRow(pair, at(DAY1, h * 60), settled_funding_rate=Decimal("0.0000125"))
        for h in range(24)
    ]
    live = [
        FundingRateRow(
            pair,
            at(DAY1, m),
            predicted_funding_rate=Decimal("0.00001"),
            mark_price=Decimal("67000.5"),
        )
        for m in range(30)
    ]
    interest = [
        OpenInterestRow(pair, at(DAY1, m), open_interest=Decimal("1234.5"), notional=Decimal("9"))
        for m in range(30)
    ]
    binance = [candle(spot, at(DAY1, m), f"{66000 + m}.12345678") for m in range(1440)]

    async def write() -> None:
        conn = await asyncpg.connect(realtime)
        try:
            await upsert_candles(conn, rows)
            await upsert_funding_rates(conn, settled)
            await upsert_funding_rates(conn, live)  # a later write: COALESCE keeps both
            await upsert_open_interest(conn, interest)
            await conn.execute(
                "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
                " VALUES ('candles', $1, $2, $3, 'planted')",
                btc,
                at(DAY1, 100),
                at(DAY1, 105),
            )
        finally:
            await conn.close()
        conn = await asyncpg.connect(training)
        try:
            await upsert_candles(conn, binance)
        finally:
            await conn.close()

    run_async(write())
    return Path(pipeline_settings.lake_dir)


def test_lake_export_is_hive_partitioned_exact_and_idempotent(market, instance, resources) -> None:
    result = materialize(LAKE, instance, resources, day_tags(DAY1, DAY2))

    assert result.success
    rows = {
        node: metadata_values(result.asset_materializations_for_node(node)[0].metadata)["rows"]
        for node in (a.key.to_user_string() for a in LAKE)
    }
    assert rows == {
        "lake_candles": 2 * 1440 - 10,
        "lake_funding_rates": 24 + 29,  # the live rows of minute 0 share the settled row
        "lake_open_interest": 30,
        "lake_training_candles": 1440,
    }
    day1 = market / "candles/exchange=hyperliquid/symbol=BTC-USD-perps/interval=1m/date=2025-01-05"
    assert sorted(p.name for p in day1.iterdir()) == ["part-0.parquet"]
    table = pq.read_table(day1 / "part-0.parquet")
    assert table.schema.field("close").type == pa.float64()
    assert table.num_rows == 1430
    assert table.column("close")[0].as_py() == 67000.1
    assert table.column("time")[0].as_py() == at(DAY1, 0)
    assert (market / "training_candles/exchange=binance/symbol=BTC-USDT-spot/interval=1m").is_dir()
    with duckdb.connect() as con:
        count = con.sql(
            f"SELECT count(*) FROM read_parquet('{market}/candles/**/*.parquet',"
            " hive_partitioning = true) WHERE symbol = 'BTC-USD-perps' AND interval = '1m'"
        ).fetchall()[0][0]
    assert count == 2 * 1440 - 10

    again = materialize([lake_candles], instance, resources, day_tags(DAY1, DAY2))
    assert pq.read_table(day1 / "part-0.parquet").equals(table)
    assert (
        metadata_values(again.asset_materializations_for_node("lake_candles")[0].metadata)["files"]
        == 2
    )


def test_exact_decimals_on_request(market, instance, resources) -> None:
    result = materialize(
        [lake_training_candles],
        instance,
        resources,
        day_tags(DAY1, DAY1),
        run_config={"ops": {"lake_training_candles": {"config": {"exact_decimals": True}}}},
    )

    assert result.success
    [path] = (market / "training_candles").glob("**/*.parquet")
    table = pq.read_table(path)
    assert table.schema.field("open").type == pa.decimal128(38, 18)
    assert table.column("open")[1].as_py() == Decimal("66001.12345678")
    assert table.column("volume")[0].as_py() == Decimal("1.23456789")


def test_a_day_with_no_rows_left_loses_its_file(market, instance, resources, catalogs) -> None:
    materialize([lake_candles], instance, resources, day_tags(DAY2, DAY2))
    path = market / "candles/exchange=hyperliquid/symbol=BTC-USD-perps/interval=1m/date=2025-01-06"
    assert path.is_dir()
    query(catalogs.realtime, "DELETE FROM candles WHERE time >= $1", at(DAY2, 0))

    result = materialize([lake_candles], instance, resources, day_tags(DAY2, DAY2))

    assert (
        metadata_values(result.asset_materializations_for_node("lake_candles")[0].metadata)["rows"]
        == 0
    )
    assert not path.exists()


def _read(lake: Path, model: str, where: str = "true"):
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return (
            con.sql(
                f"SELECT * FROM read_parquet('{lake}/models/{model}/**/*.parquet',"
                f" hive_partitioning = true) WHERE {where} ORDER BY time"
                if model == "merged_training_dataset"
                else f"SELECT * FROM read_parquet('{lake}/models/{model}/**/*.parquet',"
                f" hive_partitioning = true) WHERE {where}"
            )
            .to_arrow_table()
            .to_pylist()
        )


def test_merged_dataset_aligns_candles_funding_and_oi_without_filling(
    market, instance, resources
) -> None:
    assert materialize(LAKE, instance, resources, day_tags(DAY1, DAY1)).success

    result = materialize(
        [MODELS["merged_training_dataset"]], instance, resources, day_tags(DAY1, DAY1)
    )

    assert result.success
    meta = metadata_values(
        result.asset_materializations_for_node("merged_training_dataset")[0].metadata
    )
    assert meta["rows"] == 1430 + 1440  # every candle, realtime and training
    rows = _read(market, "merged_training_dataset", "database = 'realtime'")
    assert len(rows) == 1430
    first, second, hour = rows[0], rows[1], rows[60 - 0]
    assert (first["settled_funding_rate"], first["predicted_funding_rate"]) == (0.0000125, 0.00001)
    assert first["open_interest"] == 1234.5 and first["mark_price"] == 67000.5
    assert second["settled_funding_rate"] is None  # settled on the hour only: not filled
    assert second["predicted_funding_rate"] == 0.00001
    assert hour["time"] == at(DAY1, 60) and hour["settled_funding_rate"] == 0.0000125
    assert hour["predicted_funding_rate"] is None and hour["open_interest"] is None
    training = _read(market, "merged_training_dataset", "database = 'training'")
    assert len(training) == 1440
    assert {r["settled_funding_rate"] for r in training} == {None}


def test_a_model_run_reads_and_replaces_only_its_days(market, instance, resources) -> None:
    assert materialize(LAKE, instance, resources, day_tags(DAY1, DAY2)).success
    merged = MODELS["merged_training_dataset"]
    assert materialize([merged], instance, resources, day_tags(DAY1, DAY2)).success

    # Day 2 alone: the training lake has no file that day (an empty view of its schema)
    result = materialize([merged], instance, resources, day_tags(DAY2, DAY2))

    assert result.success
    meta = metadata_values(
        result.asset_materializations_for_node("merged_training_dataset")[0].metadata
    )
    assert meta["rows"] == 1440  # realtime candles of day 2 only
    assert len(_read(market, "merged_training_dataset", f"date = '{DAY1}'")) == 1430 + 1440
    assert len(_read(market, "merged_training_dataset", f"date = '{DAY2}'")) == 1440


def test_daily_coverage_separates_outage_from_source_gaps(market, instance, resources) -> None:
    assert materialize([lake_coverage], instance, resources, day_tags(DAY1, DAY1)).success
    assert materialize([lake_series], instance, resources).success

    result = materialize([MODELS["daily_coverage"]], instance, resources, day_tags(DAY1, DAY1))

    assert result.success
    rows = {(r["database"], r["symbol"], r["interval"]): r for r in _read(market, "daily_coverage")}
    btc = rows[("realtime", "BTC-USD-perps", "1m")]
    assert (btc["expected"], btc["present"]) == (1440, 1430)
    # Day 1 is older than Hyperliquid's last 5000 candles: every missing one, the outage's
    # included, is unavailable at source (as /coverage and candles_complete say; no backfill
    # could fill them). The outage still shows in its minutes.
    assert (btc["unavailable_at_source"], btc["collector_outage"], btc["unexplained"]) == (
        10,
        0,
        0,
    )
    assert btc["outage_minutes"] == 5
    btc_15m = rows[("realtime", "BTC-USD-perps", "15m")]
    assert (btc_15m["expected"], btc_15m["present"], btc_15m["unavailable_at_source"]) == (
        96,
        0,
        96,
    )
    spot = rows[("training", "BTC-USDT-spot", "1m")]
    assert (spot["expected"], spot["present"]) == (1440, 1440)
    assert rows[("realtime", "BTC-USD-perps", "1d")]["expected"] == 1
    assert rows[("realtime", "BTC-USD-perps", "4h")]["expected"] == 6


def test_cli_export_reproduces_the_original_options(
    market, pipeline_settings, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # a throwaway instance
    out = tmp_path / "exports"

    result = CliRunner().invoke(
        export_files,
        [
            "--coin",
            "BTC",
            "--intervals",
            "1m,15m",
            "--start-time",
            "2025-01-05",
            "--end-time",
            "2025-01-06",
            "--format",
            "both",
            "--output",
            str(out),
        ],
        obj=pipeline_settings,
    )

    assert result.exit_code == 0, result.output
    # a progress bar and a summary; Dagster's per-event console lines only at --log-level DEBUG
    assert "ASSET_MATERIALIZATION" not in result.output
    stem = "merged_hyperliquid_BTC_USD_perps_1m_2025-01-05_2025-01-05"
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem}.{e}" for e in ("csv", "json", "parquet")
    ]
    table = pq.read_table(out / f"{stem}.parquet")
    assert table.num_rows == 1430
    assert table.column_names[:7] == [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trade_count",
    ]
    assert "settled_funding_rate" in table.column_names and "open_interest" in table.column_names
    meta = json.loads((out / f"{stem}.json").read_text())
    assert (meta["rows"], meta["start"], meta["end"]) == (1430, "2025-01-05", "2025-01-06")
    csv_lines = (out / f"{stem}.csv").read_text().splitlines()
    assert len(csv_lines) == 1431 and csv_lines[0].startswith("time,open,high")

    training = CliRunner().invoke(
        export_files,
        [
            "--database",
            "training",
            "--dataset",
            "candles",
            "--intervals",
            "all",
            "--days",
            "1",
            "--format",
            "parquet",
            "--output",
            str(out / "t"),
            "--exact-decimals",
            "--start",
            "2025-01-05",
            "--end",
            "2025-01-06",
        ],
        obj=pipeline_settings,
    )
    assert training.exit_code == 2 and "either --days or --start" in training.output
    training = CliRunner().invoke(
        export_files,
        [
            "--database",
            "training",
            "--dataset",
            "candles",
            "--intervals",
            "all",
            "--format",
            "parquet",
            "--output",
            str(out / "t"),
            "--exact-decimals",
            "--start",
            "2025-01-05",
            "--end",
            "2025-01-06",
        ],
        obj=pipeline_settings,
    )
    assert training.exit_code == 0, training.output
    [path] = (out / "t").glob("*.parquet")
    assert path.name == "candles_binance_BTC_USDT_spot_1m_2025-01-05_2025-01-05.parquet"
    assert pq.read_table(path).schema.field("open").type == pa.decimal128(38, 18)
    assert not any((Path(pipeline_settings.lake_dir) / "training_candles").glob("**/*.parquet"))


def test_lake_on_object_storage(
    market, instance, pipeline_settings, s3_server: S3Server, s3_bucket: str
) -> None:
    """The exports, their check, the reference files and a SQL model on a real S3-compatible
    server over HTTP: the same rows as on a local disk, read back by a client of its own."""
    on_s3 = pipeline_settings.model_copy(
        update={"lake_dir": f"s3://{s3_bucket}/lake", "s3_endpoint_url": s3_server.endpoint_url}
    )
    resources = {"kirby": KirbyResource.of(on_s3), "progress": None}

    result = materialize(
        [*LAKE, lake_candles_checks, lake_series], instance, resources, day_tags(DAY1, DAY2)
    )
    assert result.success
    candles = metadata_values(result.asset_materializations_for_node("lake_candles")[0].metadata)
    assert candles["rows"] == 2 * 1440 - 10
    assert candles["path"] == f"s3://{s3_bucket}/lake/candles"
    checks = result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in checks) == [
        "lake_candles_rows_match",
        "lake_candles_unique",
    ]
    assert all(e.passed for e in checks), [e.metadata for e in checks]
    merged = materialize(
        [MODELS["merged_training_dataset"]], instance, resources, day_tags(DAY1, DAY1)
    )
    assert merged.success

    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint_url, skip_instance_cache=True)
    day1 = f"{s3_bucket}/lake/candles/exchange=hyperliquid/symbol=BTC-USD-perps/interval=1m"
    assert fs.ls(f"{day1}/date=2025-01-05", detail=False) == [
        f"{day1}/date=2025-01-05/part-0.parquet"
    ]
    with fs.open(f"{day1}/date=2025-01-05/part-0.parquet", "rb") as file:
        table = pq.read_table(file)
    assert table.num_rows == 1430 and table.column("close")[0].as_py() == 67000.1
    assert fs.exists(f"{s3_bucket}/lake/series/part-0.parquet")
    model_files = fs.glob(f"{s3_bucket}/lake/models/merged_training_dataset/**/*.parquet")
    assert sum(pq.read_metadata(fs.open(f)).num_rows for f in model_files) == 1430 + 1440
    assert not Path(pipeline_settings.lake_dir).exists()  # nothing went to the local default
