"""Every coverage surface reports the same numbers, because they all ask one classifier.

One day of each class is planted for BTC 15m (96 candles a day): complete, no trades (the
day's backfill report lists the absent times), collector outage, unexplained, unavailable at
source (the backfill report's unavailable window). The API's /coverage, /status.json, the
Dagster check `candles_complete`, the `daily_coverage` SQL model and the gap-repair sensor's
choice of partitions must agree, day by day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
from litestar.testing import TestClient

from kirby_api import create_app
from kirby_core.db.writer import upsert_candles
from kirby_core.models import CandleRow
from kirby_pipelines.defs.backfills import checks
from kirby_pipelines.defs.backfills.assets import candles
from kirby_pipelines.defs.lake.assets import lake_coverage, lake_series
from kirby_pipelines.defs.models.assets import model_assets
from kirby_pipelines.defs.repair.sensors import gap_repair
from kirby_pipelines.runs import RANGE_END_TAG, RANGE_START_TAG
from tests.pipelines.conftest import (
    BTC_15M,
    check_results,
    day_tags,
    materialize,
    metadata_values,
    query,
    range_tags,
    run_async,
    tick,
    yesterday,
)

SERIES = "hyperliquid/BTC/USD/perps/15m"
SLOT = timedelta(minutes=15)
# every surface's numbers, as (expected, present, unavailable at source, no trades,
# collector outage, unexplained)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _rows(sid: int, day: date, slots: range) -> list[CandleRow]:
    price = Decimal("67000")
    return [
        CandleRow(sid, _start(day) + i * SLOT, price, price, price, price, Decimal("1"), 3)
        for i in slots
    ]


def _plant(url: str, sid: int, days: dict[str, date]) -> None:
    async def write() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await upsert_candles(conn, _rows(sid, days["complete"], range(96)))
            for name in ("no_trades", "outage", "unexplained"):
                await upsert_candles(conn, _rows(sid, days[name], range(90)))
            quiet = [_start(days["no_trades"]) + i * SLOT for i in range(90, 96)]
            gone = _start(days["unavailable"])
            await conn.execute(
                "INSERT INTO backfill_reports (dataset, series_id, day, expected, fetched,"
                " absent_times, unavailable_start, unavailable_end) VALUES"
                " ('candles', $1, $2, 96, 90, $3, NULL, NULL),"
                " ('candles', $1, $4, 96, 0, '{}', $5, $6)",
                sid,
                days["no_trades"],
                quiet,
                days["unavailable"],
                gone,
                gone + timedelta(days=1),
            )
            await conn.execute(
                "INSERT INTO collection_outages (dataset, series_id, start_time, end_time, reason)"
                " VALUES ('candles', $1, $2, $3, 'planted: connection lost')",
                sid,
                _start(days["outage"]) + 90 * SLOT,
                _start(days["outage"]) + timedelta(days=1),
            )
        finally:
            await conn.close()

    run_async(write())


def _api_numbers(day: dict) -> tuple[int, ...]:
    return (
        day["expected"],
        day["present"],
        day["unavailable_rows"],
        day["no_trades"],
        day["outage_rows"],
        day["unexplained"],
    )


def _check_numbers(markdown: str) -> dict[date, tuple[int, ...]]:
    """The check's per-partition table: | partition | passed | expected | present | ... |."""

    def split(line: str) -> list[str]:  # partition keys hold a bare "|" themselves
        return line.strip().removeprefix("| ").removesuffix(" |").split(" | ")

    lines = markdown.splitlines()
    header = split(lines[0])
    found = {}
    for line in lines[2:]:
        cells = dict(zip(header, split(line), strict=True))
        day = date.fromisoformat(cells["partition"].split("|")[0])
        found[day] = tuple(
            int(cells[c])
            for c in (
                "expected",
                "present",
                "unavailable_at_source",
                "no_trades",
                "collector_outage",
                "unexplained",
            )
        )
    return found


def test_one_day_of_each_class_reads_the_same_everywhere(
    catalogs, instance, resources, pipeline_settings
) -> None:
    first = yesterday()
    days = {
        "complete": first,
        "no_trades": first - timedelta(days=1),
        "outage": first - timedelta(days=2),
        "unexplained": first - timedelta(days=3),
        "unavailable": first - timedelta(days=4),
    }
    planted = {
        days["complete"]: (96, 96, 0, 0, 0, 0),
        days["no_trades"]: (96, 90, 0, 6, 0, 0),
        days["outage"]: (96, 90, 0, 0, 6, 0),
        days["unexplained"]: (96, 90, 0, 0, 0, 6),
        days["unavailable"]: (96, 0, 96, 0, 0, 0),
    }
    oldest = min(planted)
    [sid] = [
        r["id"]
        for r in query(
            catalogs.realtime,
            "SELECT s.id FROM starlistings s JOIN coins c ON c.id = s.coin_id"
            " JOIN intervals i ON i.id = s.interval_id JOIN exchanges e ON e.id = s.exchange_id"
            " WHERE c.symbol = 'BTC' AND i.name = '15m' AND e.name = 'hyperliquid'",
        )
    ]
    _plant(catalogs.realtime, sid, days)

    # the API: /coverage and /status.json
    settings = pipeline_settings.model_copy(
        update={"api_auth_enabled": False, "api_catalog_refresh_seconds": 3600}
    )
    with TestClient(app=create_app(settings), timeout=30) as client:
        body = client.get(
            f"/coverage/candles/{SERIES}",
            params={"start_time": oldest.isoformat(), "end_time": first.isoformat()},
        ).json()
        status = client.get("/status.json", params={"days": 6}).json()
    api = {date.fromisoformat(d["date"]): _api_numbers(d) for d in body["data"]}
    [board] = [c for c in status["coverage"] if (c["dataset"], c["series"]) == ("candles", SERIES)]
    status_days = {
        date.fromisoformat(d["date"]): _api_numbers(d)
        for d in board["days"]
        if date.fromisoformat(d["date"]) in planted
    }
    statuses = {date.fromisoformat(d["date"]): d["status"] for d in body["data"]}

    # the Dagster check, on exactly these partitions
    result = materialize(
        [candles, checks.candles_complete],
        instance,
        resources,
        range_tags(oldest, first, BTC_15M),
        selection=dg.AssetSelection.checks_for_assets(candles),
    )
    assert result.success
    evaluation = check_results(result)["candles_complete"]
    dagster = _check_numbers(metadata_values(evaluation.metadata)["by_partition"])

    # daily_coverage, over the lake
    assert materialize([lake_coverage], instance, resources, day_tags(oldest, first)).success
    assert materialize([lake_series], instance, resources).success
    [model] = [a for a in model_assets if a.key == dg.AssetKey("daily_coverage")]
    assert materialize([model], instance, resources, day_tags(oldest, first)).success
    files = str(Path(pipeline_settings.lake_dir) / "models" / "daily_coverage" / "**" / "*.parquet")
    with duckdb.connect() as con:
        rows = con.sql(
            "SELECT date, expected, present, unavailable_at_source, no_trades, collector_outage,"
            " unexplained FROM read_parquet(?, hive_partitioning = true)"
            " WHERE database = 'realtime' AND symbol = 'BTC-USD-perps' AND interval = '15m'",
            params=[files],
        ).fetchall()
    model_days = {date.fromisoformat(str(r[0])): tuple(int(v) for v in r[1:]) for r in rows}

    # the gap-repair sensor: which (series, day) it backfills
    requests = tick(gap_repair, instance, resources).run_requests
    chosen: set[date] = set()
    for request in requests:
        start = request.tags[RANGE_START_TAG].split("|")
        end = request.tags[RANGE_END_TAG].split("|")
        assert start[1] == end[1] == BTC_15M
        day = date.fromisoformat(start[0])
        while day <= date.fromisoformat(end[0]):
            chosen.add(day)
            day += timedelta(days=1)

    assert api == planted
    assert status_days == planted
    assert dagster == planted
    assert model_days == planted
    assert chosen == {d for d, n in planted.items() if n[4] or n[5]}
    assert _failed_days(evaluation) == chosen
    assert statuses == {
        days["complete"]: "complete",
        days["no_trades"]: "no_trades",
        days["outage"]: "outage",
        days["unexplained"]: "partial",
        days["unavailable"]: "unavailable_at_source",
    }


def _failed_days(evaluation: dg.AssetCheckEvaluation) -> set[date]:
    failed = metadata_values(evaluation.metadata)["failed_partitions"]
    return {date.fromisoformat(p.split("|")[0]) for p in failed}
