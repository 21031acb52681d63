"""`kirby export`: lake exports and the merged model run in process, then files per series.

The lake assets (and, for `merged`, the merged_training_dataset model) are materialized for
the days asked, exactly as the daemon would; the files are then cut from the lake by
DuckDB, one per starlisting (or trading pair), named like the original Kirby's exports
(`merged_hyperliquid_BTC_USD_perps_1m_<first>_<last>.parquet`), each with a `.json` of
its parameters and figures. Exact decimals are written to a private lake (removed
afterwards), so the shared lake keeps its float64 columns.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from kirby_core.errors import InvalidRequest
from kirby_core.lake import read_files
from kirby_core.locations import Location, location
from kirby_pipelines.in_process import materialize, raise_on_failure
from kirby_pipelines.runs import RANGE_END_TAG, RANGE_START_TAG

HIVE_COLUMNS = ("database", "exchange", "symbol", "interval", "date")
LAKE_OF = {  # (dataset, database) -> lake assets to export first, and where to read
    ("merged", "realtime"): (
        ("lake_candles", "lake_funding_rates", "lake_open_interest"),
        "models/merged_training_dataset",
    ),
    ("merged", "training"): (("lake_training_candles",), "models/merged_training_dataset"),
    ("candles", "realtime"): (("lake_candles",), "candles"),
    ("candles", "training"): (("lake_training_candles",), "training_candles"),
    ("funding_rates", "realtime"): (("lake_funding_rates",), "funding_rates"),
    ("open_interest", "realtime"): (("lake_open_interest",), "open_interest"),
}
"""Dataset names: `merged` and the tables of `kirby_core.datasets` (the training database
holds candles only)."""


@dataclass(frozen=True)
class ExportRequest:
    dataset: str
    database: str
    coins: set[str]
    intervals: set[str] | None
    days: list[date]
    formats: tuple[str, ...]
    output: Path
    exact_decimals: bool = False


def run_export(
    request: ExportRequest,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    step: Callable[[str], None],
    lake: Location,
) -> list[dict[str, Any]]:
    from kirby_pipelines.defs.lake import assets as lake_assets
    from kirby_pipelines.defs.models.assets import model_assets
    from kirby_pipelines.resources import KirbyResource

    if (request.dataset, request.database) not in LAKE_OF:
        allowed = [d for d, database in LAKE_OF if database == request.database]
        raise InvalidRequest(
            f"the {request.database} database has no {request.dataset} to export; "
            f"expected one of {', '.join(allowed)}"
        )
    lake_names, source = LAKE_OF[(request.dataset, request.database)]
    private = Path(tempfile.mkdtemp(prefix="kirby-export-")) if request.exact_decimals else None
    if private is not None:
        settings = resources["kirby"].settings().model_copy(update={"lake_dir": str(private)})
        resources = {**resources, "kirby": KirbyResource.of(settings)}
        lake = location(private)
    try:
        first, last = request.days[0], request.days[-1]
        tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
        assets = [getattr(lake_assets, name) for name in lake_names]
        config = {"exact_decimals": request.exact_decimals}
        run_ids = []
        exported = materialize(
            assets,
            instance,
            resources,
            tags,
            run_config={"ops": {name: {"config": config} for name in lake_names}},
        )
        raise_on_failure(exported, "lake export")
        run_ids.append(exported.run_id)
        step("lake")
        if request.dataset == "merged":
            [model] = [
                a for a in model_assets if a.key.to_user_string() == "merged_training_dataset"
            ]
            merged = materialize([model], instance, resources, tags)
            raise_on_failure(merged, "merged_training_dataset")
            run_ids.append(merged.run_id)
        step("model")
        files = write_files(request, lake, lake.path(source), run_ids)
        step("files")
        return files
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def write_files(
    request: ExportRequest, lake: Location, source: str, run_ids: list[str]
) -> list[dict]:
    found = sorted(str(f) for f in lake.fs.glob(f"{source}/**/*.parquet"))
    if not found:
        return []
    request.output.mkdir(parents=True, exist_ok=True)
    written = []
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        read_files(con, lake, found, source).create_view("lake")
        columns = [c for c in con.sql("SELECT * FROM lake LIMIT 0").columns]
        conditions = ["date BETWEEN $first AND $last"]
        params: dict[str, Any] = {"first": request.days[0], "last": request.days[-1]}
        if "database" in columns:
            conditions.append("database = $database")
            params["database"] = request.database
        # identifiers and conditions are fixed strings; values are parameters
        keys = "exchange, symbol" + (", interval" if "interval" in columns else "")
        selected = con.sql(
            f"SELECT DISTINCT {keys} FROM lake WHERE {' AND '.join(conditions)}"  # noqa: S608
            " ORDER BY ALL",
            params=params,
        ).fetchall()
        values = ", ".join(c for c in columns if c not in HIVE_COLUMNS)
        for exchange, symbol, *interval in selected:
            coin, quote, market_type = symbol.split("-", 2)
            if request.coins and coin not in request.coins:
                continue
            if interval and request.intervals and interval[0] not in request.intervals:
                continue
            where = [*conditions, "exchange = $exchange", "symbol = $symbol"]
            series_params = {**params, "exchange": exchange, "symbol": symbol}
            if interval:
                where.append("interval = $interval")
                series_params["interval"] = interval[0]
            relation = con.sql(
                f"SELECT {values} FROM lake WHERE {' AND '.join(where)} ORDER BY time",  # noqa: S608
                params=series_params,
            )
            stem = "_".join(
                [
                    request.dataset,
                    exchange,
                    coin,
                    quote,
                    market_type,
                    *interval,
                    request.days[0].isoformat(),
                    request.days[-1].isoformat(),
                ]
            )
            rows, first_time, last_time = con.sql(
                f"SELECT count(*), min(time), max(time) FROM lake WHERE {' AND '.join(where)}",  # noqa: S608
                params=series_params,
            ).fetchall()[0]
            names = []
            if "parquet" in request.formats:
                relation.write_parquet(str(request.output / f"{stem}.parquet"))
                names.append(f"{stem}.parquet")
            if "csv" in request.formats:
                relation.write_csv(str(request.output / f"{stem}.csv"))
                names.append(f"{stem}.csv")
            meta = {
                "dataset": request.dataset,
                "database": request.database,
                "exchange": exchange,
                "coin": coin,
                "quote": quote,
                "market_type": market_type,
                "interval": interval[0] if interval else None,
                "start": request.days[0].isoformat(),
                "end": (request.days[-1] + timedelta(days=1)).isoformat(),
                "rows": rows,
                "first_time": first_time.isoformat() if first_time else None,
                "last_time": last_time.isoformat() if last_time else None,
                "columns": relation.columns,
                "column_types": [str(t) for t in relation.types],
                "exact_decimals": request.exact_decimals,
                "null_strategy": "missing values kept as NULL, never forward-filled",
                "files": names,
                "dagster_runs": run_ids,
                "generated_at": datetime.now(UTC).isoformat(),
            }
            (request.output / f"{stem}.json").write_text(json.dumps(meta, indent=2))
            written.append(meta)
    return written
