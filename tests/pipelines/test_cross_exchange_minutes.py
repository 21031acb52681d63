"""`cross_exchange_minutes` run by DuckDB over a small lake of several venues (some minutes
missing on some venues): every output value, the NULLs included, its checks, its venue
columns drawn from the exchange registry, and the model as a Dagster asset with its checks."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.db.writer import upsert_candles, upsert_funding_rates
from kirby_core.errors import ConfigError
from kirby_core.locations import Location, location
from kirby_core.models import CandleRow, FundingRateRow
from kirby_pipelines.defs.lake.assets import lake_candles, lake_funding_rates, lake_series
from kirby_pipelines.defs.models.assets import MODEL_RELATIONS, MODELS, model_assets
from kirby_pipelines.defs.models.checks import cross_exchange_minutes_checks, findings
from kirby_pipelines.sql_models import _parse, run_model, venue_names
from tests.pipelines.conftest import check_results, day_tags, materialize, run_async
from tests.pipelines.cross_exchange_lake import DAY, at, write_lake

DAY2 = date(2025, 1, 6)
MODEL = next(m for m in MODELS if m.name == "cross_exchange_minutes")
D = Decimal

CLOSES = {
    ("binance", "BTC", "spot"): {
        at(0): "100000.5",
        at(1): "100001.1",
        at(2): "100002",
        at(3): "100003.3",
        at(0, DAY2): "101000",
    },  # no minute 4
    ("binance", "BTC", "perps"): {
        at(0): "100050.25",
        at(1): "99990.7",
        at(3): "100003.3",
        at(4): "100010",
    },  # no minute 2
    ("bybit", "BTC", "spot"): {at(0): "100001"},
    ("bybit", "BTC", "perps"): {at(0): "100002"},
    ("okx", "BTC", "perps"): {at(0): "100020", at(1): "100021"},  # OKX spot: none
    ("hyperliquid", "BTC", "perps"): {at(m): f"1000{m}0" for m in range(5)},
    ("coinbase", "BTC", "spot"): {at(2): "100005.01"},
    ("binance", "ETH", "spot"): {at(0): "3500.12345678"},
    ("hyperliquid", "ETH", "perps"): {at(0): "3501.5"},
    # halves at the 13th place: rounded away from zero, not truncated
    ("bybit", "XRP", "spot"): {at(0): "2", at(1): "2"},
    ("bybit", "XRP", "perps"): {at(0): "2.000000000001", at(1): "1.999999999999"},
}
FUNDING = {  # settled rates: Binance and OKX per 8 h, Hyperliquid per hour
    ("binance", "BTC"): {at(0): "0.0001", at(480): "-0.00008"},
    ("hyperliquid", "BTC"): {at(0): "0.0000125", at(60): "0.00002", at(480): "0.00001"},
    ("okx", "BTC"): {at(0): "0.00016"},
}
SPOT_VENUES = ["binance", "bybit", "coinbase", "okx"]
PERPS_VENUES = ["binance", "bybit", "hyperliquid", "okx"]
BASIS_VENUES = ["binance", "bybit", "okx"]
COLUMNS = [
    "coin",
    "time",
    *(f"{e}_spot_close" for e in SPOT_VENUES),
    *(f"{e}_perps_close" for e in PERPS_VENUES),
    *(f"{e}_basis" for e in BASIS_VENUES),
    *(c for e in PERPS_VENUES for c in (f"{e}_funding_per_hour", f"{e}_funding_spread")),
    "date",
]
EXPECTED: dict[tuple[str, datetime], dict[str, Decimal]] = {  # the non-NULL values
    ("BTC", at(0)): {
        "binance_spot_close": D("100000.5"),
        "binance_perps_close": D("100050.25"),
        "binance_basis": D("0.000497497513"),  # 49.75 / 100000.5 = 0.000497497512512...
        "bybit_spot_close": D("100001"),
        "bybit_perps_close": D("100002"),
        "bybit_basis": D("0.000009999900"),  # 1 / 100001 = 0.0000099999000009...
        "okx_perps_close": D("100020"),
        "hyperliquid_perps_close": D("100000"),
        "binance_funding_per_hour": D("0.0000125"),  # 0.0001 per 8 h
        "binance_funding_spread": D(0),
        "hyperliquid_funding_per_hour": D("0.0000125"),
        "hyperliquid_funding_spread": D(0),
        "okx_funding_per_hour": D("0.00002"),  # 0.00016 per 8 h
        "okx_funding_spread": D("0.0000075"),
    },
    ("BTC", at(1)): {
        "binance_spot_close": D("100001.1"),
        "binance_perps_close": D("99990.7"),
        "binance_basis": D("-0.000103998856"),  # -10.4 / 100001.1 = -0.00010399885601...
        "okx_perps_close": D("100021"),
        "hyperliquid_perps_close": D("100010"),
    },
    ("BTC", at(2)): {  # Binance perps missing: no basis
        "binance_spot_close": D("100002"),
        "coinbase_spot_close": D("100005.01"),
        "hyperliquid_perps_close": D("100020"),
    },
    ("BTC", at(3)): {
        "binance_spot_close": D("100003.3"),
        "binance_perps_close": D("100003.3"),
        "binance_basis": D(0),
        "hyperliquid_perps_close": D("100030"),
    },
    ("BTC", at(4)): {  # Binance spot missing: no basis
        "binance_perps_close": D("100010"),
        "hyperliquid_perps_close": D("100040"),
    },
    ("BTC", at(60)): {  # only Hyperliquid settles: no spread
        "hyperliquid_funding_per_hour": D("0.00002"),
    },
    ("BTC", at(480)): {
        "binance_funding_per_hour": D("-0.00001"),
        "binance_funding_spread": D(0),
        "hyperliquid_funding_per_hour": D("0.00001"),
        "hyperliquid_funding_spread": D("0.00002"),
    },
    ("BTC", at(0, DAY2)): {"binance_spot_close": D("101000")},
    ("ETH", at(0)): {
        "binance_spot_close": D("3500.12345678"),
        "hyperliquid_perps_close": D("3501.5"),
    },
    ("XRP", at(0)): {
        "bybit_spot_close": D("2"),
        "bybit_perps_close": D("2.000000000001"),
        "bybit_basis": D("0.000000000001"),  # 0.0000000000005
    },
    ("XRP", at(1)): {
        "bybit_spot_close": D("2"),
        "bybit_perps_close": D("1.999999999999"),
        "bybit_basis": D("-0.000000000001"),  # -0.0000000000005
    },
}


def _lake(tmp_path: Path, exact_decimals: bool = False) -> Location:
    root = location(tmp_path / "lake")
    write_lake(root, CLOSES, FUNDING, exact_decimals=exact_decimals)
    return root


def _output(root: Location) -> duckdb.DuckDBPyRelation:
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{root.path('models', MODEL.name)}/**/*.parquet',"
        " hive_partitioning = true) ORDER BY coin, time"
    )


@pytest.mark.parametrize("exact_decimals", [False, True], ids=["float64 lake", "decimal lake"])
def test_every_value_and_every_null(tmp_path, exact_decimals) -> None:
    root = _lake(tmp_path, exact_decimals)

    run = run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY2)

    assert run.rows_by_date == {DAY: 10, DAY2: 1}
    output = _output(root)
    assert output.columns == COLUMNS
    types = dict(zip(output.columns, map(str, output.types), strict=True))
    assert {types[c] for c in COLUMNS if c.endswith("_close")} == {"DECIMAL(38,18)"}
    assert {types[c] for c in COLUMNS if c.endswith("_basis")} == {"DECIMAL(38,12)"}
    assert {types[c] for c in COLUMNS if c.startswith(tuple(PERPS_VENUES)) and "fund" in c} == {
        "DECIMAL(38,24)"
    }
    values = [c for c in COLUMNS if c not in ("coin", "time", "date")]
    found = {
        (row["coin"], row["time"]): row
        for row in (dict(zip(COLUMNS, r, strict=True)) for r in output.fetchall())
    }
    assert list(found) == sorted(EXPECTED)
    for key, expected in EXPECTED.items():
        assert {c: found[key][c] for c in values} == {c: expected.get(c) for c in values}, key
        assert found[key]["date"] == key[1].date()


def test_a_rerun_of_one_day_replaces_only_that_day(tmp_path) -> None:
    root = _lake(tmp_path)
    run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY2)

    run = run_model(MODEL, MODEL_RELATIONS, root, DAY2, DAY2)

    assert run.rows == 1
    assert _output(root).count("*").fetchall() == [(11,)]


def test_checks_pass_on_the_output(tmp_path) -> None:
    root = _lake(tmp_path)
    run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY2)

    unique, nulls, values = findings(root, [DAY])[0]

    assert (unique.passed, nulls.passed, values.passed) == (True, True, True)
    assert unique.figures == {"rows": 10, "duplicates": 0}
    # 24 closes and 6 settled rates on the first day
    assert values.figures == {"model_values": 30, "lake_rows": 30, "venues_differing": "-"}


def test_checks_fail_on_a_duplicate_an_invented_value_and_a_basis_without_leg(tmp_path) -> None:
    root = _lake(tmp_path)
    run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY2)
    [path] = Path(root.path("models", MODEL.name, f"date={DAY}")).glob("*.parquet")
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[-1]["okx_spot_close"] = D("2")  # XRP on OKX spot: not in the lake
    rows[2]["binance_basis"] = D("0.001")  # BTC minute 2: no Binance perps close
    tampered = pa.Table.from_pylist([*rows, rows[0]], schema=table.schema)  # BTC minute 0 twice
    pq.write_table(tampered, path)

    unique, nulls, values = findings(root, [DAY])[0]

    assert unique.figures == {"rows": 11, "duplicates": 1}
    assert nulls.figures == {"rows": 11, "mismatches": 1}
    assert not values.passed
    assert values.figures["venues_differing"] == (
        "binance/perps, binance/spot, bybit/perps, bybit/spot, hyperliquid/perps, okx/perps, "
        "okx/spot, binance/funding, hyperliquid/funding, okx/funding"
    )


def test_an_empty_output_fails_values_match_lake(tmp_path) -> None:
    root = _lake(tmp_path)

    unique, nulls, values = findings(root, [DAY])[0]

    assert unique.passed and nulls.passed
    assert values.figures["model_values"] == 0
    assert values.figures["lake_rows"] == 30
    assert not values.passed


def test_two_quotes_of_one_venue_fail_the_run_naming_them(tmp_path) -> None:
    root = location(tmp_path / "lake")
    write_lake(
        root,
        {
            ("binance", "BTC", "spot"): {at(0): "100000"},
            ("binance", "BTC", "spot", "USDC"): {at(0): "100001"},
        },
        {},
    )

    with pytest.raises(duckdb.Error, match="2 series of binance BTC spot at 2025-01-05 00:00"):
        run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY)


def test_venues_come_from_the_exchange_registry() -> None:
    assert venue_names(["spot"]) == SPOT_VENUES
    assert venue_names(["perps"]) == PERPS_VENUES
    assert venue_names(["spot", "perps"]) == BASIS_VENUES
    rendered = MODEL.render()
    assert "PIVOT venue_closes ON exchange IN ('binance', 'bybit', 'coinbase', 'okx')" in rendered
    assert "('binance', 'perps', CAST('0.125000' AS DECIMAL(18, 6)))" in rendered
    assert "('hyperliquid', 'perps', CAST('1.000000' AS DECIMAL(18, 6)))" in rendered
    assert "r.exchange = 'binance'" in rendered
    assert "{{" not in rendered


HEADER = """-- m: a model
-- grain: one row
-- key: time
-- upstreams: lake_candles
-- partition_by: date
"""


def _model(tmp_path: Path, select: str, header: str = HEADER) -> Path:
    path = tmp_path / "m.sql"
    body = f"SELECT {select} FROM {{{{ ref('lake_candles') }}}}"
    path.write_text(header + body + " WHERE date BETWEEN $start_date AND $end_date\n")
    return path


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("* WHERE exchange IN ({{ venues('futures') }})", "unknown market type 'futures'"),
        ("{{ header('reference_venue') }}", r"needs a header line '-- reference_venue: "),
    ],
)
def test_a_bad_macro_fails_the_load(tmp_path, select, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(_model(tmp_path, select))


def test_the_asset_runs_with_its_checks_in_dagster(pipeline_settings, instance, resources) -> None:
    root = location(pipeline_settings.lake_dir)
    write_lake(root, CLOSES, FUNDING)
    asset = next(a for a in model_assets if a.key.to_user_string() == MODEL.name)

    result = materialize(
        [asset, cross_exchange_minutes_checks], instance, resources, day_tags(DAY, DAY2)
    )

    assert result.success
    checks = check_results(result)
    assert {name: c.passed for name, c in checks.items()} == {
        "cross_exchange_minutes_unique": True,
        "cross_exchange_minutes_nulls_follow_legs": True,
        "cross_exchange_minutes_values_match_lake": True,
    }
    assert checks["cross_exchange_minutes_values_match_lake"].metadata["partitions"].value == 2


def test_checks_of_a_model_whose_last_day_was_emptied(tmp_path) -> None:
    root = location(tmp_path / "lake")
    write_lake(root, {("binance", "BTC", "spot"): {at(0): "100000"}}, {})
    run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY)
    for path in Path(root.path("candles")).rglob("*.parquet"):
        path.unlink()
    assert run_model(MODEL, MODEL_RELATIONS, root, DAY, DAY).rows == 0

    unique, nulls, values = findings(root, [DAY])[0]

    assert (unique.passed, nulls.passed, values.passed) == (True, True, True)
    assert values.figures == {"model_values": 0, "lake_rows": 0, "venues_differing": "-"}


CATALOG = """
exchanges:
  - {name: hyperliquid, display_name: Hyperliquid}
  - {name: binance, display_name: Binance}
  - {name: coinbase, display_name: Coinbase}
coins:
  - {symbol: BTC, name: Bitcoin}
quote_currencies:
  - {symbol: USD, name: US Dollar}
  - {symbol: USDT, name: Tether}
market_types:
  - {name: perps, display_name: Perpetuals}
  - {name: spot, display_name: Spot}
starlistings:
  - {exchange: hyperliquid, coin: BTC, quote: USD, market_type: perps, intervals: [1m]}
  - {exchange: binance, coin: BTC, quote: USDT, market_type: perps, intervals: [1m]}
  - {exchange: binance, coin: BTC, quote: USDT, market_type: spot, intervals: [1m]}
  - {exchange: coinbase, coin: BTC, quote: USD, market_type: spot, intervals: [1m]}
"""


def test_from_the_database_through_the_lake_exports(
    catalogs, pipeline_settings, instance, resources, tmp_path
) -> None:
    """The lineage for real: rows written by the upsert writer, exported by the lake assets
    (their series file and hive paths), then the model and its checks in one run."""
    (tmp_path / "venues.yaml").write_text(CATALOG)
    url = catalogs.realtime

    async def write() -> None:
        conn = await asyncpg.connect(url)
        try:
            await catalog_store.sync_catalog(conn, load_catalog(tmp_path / "venues.yaml"))
            ids = {
                (r["exchange"], r["market_type"]): (r["id"], r["trading_pair_id"])
                for r in await conn.fetch(
                    "SELECT s.id, s.trading_pair_id, e.name AS exchange, m.name AS market_type"
                    " FROM starlistings s JOIN exchanges e ON e.id = s.exchange_id"
                    " JOIN market_types m ON m.id = s.market_type_id"
                    " JOIN coins c ON c.id = s.coin_id JOIN intervals i ON i.id = s.interval_id"
                    " WHERE c.symbol = 'BTC' AND i.name = '1m'"
                )
            }
            prices = {  # minute 1: no Binance spot candle
                ("binance", "spot"): {0: "100000.5", 2: "100002"},
                ("binance", "perps"): {0: "100050.25", 1: "100051", 2: "100001"},
                ("hyperliquid", "perps"): {0: "100040", 1: "100041"},
                ("coinbase", "spot"): {1: "100003.07"},
            }
            await upsert_candles(
                conn,
                [
                    CandleRow(ids[leg][0], at(m), D(p), D(p), D(p), D(p), D(1), 1)
                    for leg, by_minute in prices.items()
                    for m, p in by_minute.items()
                ],
            )
            await upsert_funding_rates(
                conn,
                [
                    FundingRateRow(
                        ids[("binance", "perps")][1], at(0), settled_funding_rate=D("0.0001")
                    ),
                    FundingRateRow(
                        ids[("hyperliquid", "perps")][1], at(0), settled_funding_rate=D("0.00002")
                    ),
                ],
            )
        finally:
            await conn.close()

    run_async(write())
    model = next(a for a in model_assets if a.key.to_user_string() == MODEL.name)

    result = materialize(
        [lake_series, lake_candles, lake_funding_rates, model, cross_exchange_minutes_checks],
        instance,
        resources,
        day_tags(DAY, DAY),
    )

    assert result.success
    assert all(c.passed for c in check_results(result).values())
    rows = _output(location(pipeline_settings.lake_dir)).fetchall()
    found = {r[1]: dict(zip(COLUMNS, r, strict=True)) for r in rows}
    assert sorted(found) == [at(0), at(1), at(2)]
    assert {c: v for c, v in found[at(0)].items() if v is not None and "_" in c} == {
        "binance_spot_close": D("100000.5"),
        "binance_perps_close": D("100050.25"),
        "hyperliquid_perps_close": D("100040"),
        "binance_basis": D("0.000497497513"),
        "binance_funding_per_hour": D("0.0000125"),
        "binance_funding_spread": D(0),
        "hyperliquid_funding_per_hour": D("0.00002"),
        "hyperliquid_funding_spread": D("0.0000075"),
    }
    assert {c: v for c, v in found[at(1)].items() if v is not None and "_" in c} == {
        "binance_perps_close": D("100051"),
        "hyperliquid_perps_close": D("100041"),
        "coinbase_spot_close": D("100003.07"),
    }
    assert found[at(2)]["binance_basis"] == D("-0.000009999800")  # -1 / 100002 = -0.00000999980000
