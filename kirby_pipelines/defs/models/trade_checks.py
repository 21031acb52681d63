"""Checks of the trade models, per day the run built (yesterday when run alone).

    trade_vwap_minutes_unique          one row per (exchange, symbol, minute)
    trade_vwap_minutes_matches_lake    its trades and volume add up to the lake's trades of
                                       the day, and every VWAP lies within its minute's
                                       low and high price
    trade_volume_profile_unique        one row per (exchange, symbol, minute, bucket)
    trade_volume_profile_adds_up       per pair-minute, the buckets' trades and volume are
                                       trade_vwap_minutes' (none lost, none invented), and
                                       each bucket holds only trades at or above its low

They read the models' output and the lake through the views a model run reads
(`sql_models.open_relations`).
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb

from kirby_core.locations import Location
from kirby_pipelines.defs.models.assets import MODEL_RELATIONS, MODELS
from kirby_pipelines.partition_checks import Finding, result, run_partitions
from kirby_pipelines.partitions import DAILY
from kirby_pipelines.resources import KirbyResource
from kirby_pipelines.sql_models import open_relations

VWAP = next(m for m in MODELS if m.name == "trade_vwap_minutes")
PROFILE = next(m for m in MODELS if m.name == "trade_volume_profile")

_LAKE_FIGURES = """
SELECT date, count(*), sum(CAST(CAST(size AS VARCHAR) AS DECIMAL(38, 12)))
FROM lake_trades WHERE date BETWEEN $start AND $end GROUP BY date
"""
_VWAP_FIGURES = """
SELECT date, count(*), count(*) - count(DISTINCT (exchange, symbol, time)), sum(trades),
       sum(volume), count(*) FILTER (WHERE vwap < low_price OR vwap > high_price)
FROM trade_vwap_minutes WHERE date BETWEEN $start AND $end GROUP BY date
"""
_PROFILE_FIGURES = """
WITH buckets AS (
    SELECT date, exchange, symbol, time, count(*) AS buckets,
           count(*) - count(DISTINCT bucket_low) AS duplicates,
           sum(trades) AS trades, sum(volume) AS volume
    FROM trade_volume_profile WHERE date BETWEEN $start AND $end
    GROUP BY date, exchange, symbol, time
), minutes AS (
    SELECT date, exchange, symbol, time, trades, volume
    FROM trade_vwap_minutes WHERE date BETWEEN $start AND $end
)
SELECT coalesce(b.date, m.date) AS day, sum(coalesce(b.buckets, 0)), sum(coalesce(b.duplicates, 0)),
       count(*) FILTER (WHERE b.trades IS DISTINCT FROM m.trades
                           OR b.volume IS DISTINCT FROM m.volume)
FROM buckets b FULL JOIN minutes m USING (date, exchange, symbol, time)
GROUP BY day
"""


def vwap_findings(lake: Location, days: list[date]) -> list[tuple[Finding, Finding]]:
    """(unique, matches lake) for each of `days`."""
    start, end = days[0], days[-1]
    refs = [*VWAP.refs, VWAP.name]
    params = {"start": start, "end": end}
    with open_relations(refs, MODEL_RELATIONS, lake, start, end, optional=[VWAP.name]) as con:
        in_lake = {d: (n, v) for d, n, v in con.execute(_LAKE_FIGURES, params).fetchall()}
        in_model = {}
        if _built(con, VWAP.name):
            in_model = {r[0]: r[1:] for r in con.execute(_VWAP_FIGURES, params).fetchall()}
    found = []
    for day in days:
        lake_trades, lake_volume = in_lake.get(day, (0, 0))
        rows_, duplicates, trades, volume, outside = in_model.get(day, (0, 0, 0, 0, 0))
        same_volume = (volume or 0) == (lake_volume or 0)
        key = day.isoformat()
        found.append(
            (
                Finding(key, duplicates == 0, {"rows": rows_, "duplicates": duplicates}),
                Finding(
                    key,
                    lake_trades == trades and same_volume and outside == 0,
                    {
                        "lake_trades": lake_trades,
                        "model_trades": trades,
                        "volume_matches": same_volume,
                        "vwap_outside_range": outside,
                    },
                ),
            )
        )
    return found


def profile_findings(lake: Location, days: list[date]) -> list[tuple[Finding, Finding]]:
    """(unique, adds up to trade_vwap_minutes) for each of `days`."""
    start, end = days[0], days[-1]
    refs = [VWAP.name, PROFILE.name]
    with open_relations(refs, MODEL_RELATIONS, lake, start, end, optional=refs) as con:
        rows = []
        if all(_built(con, name) for name in refs):
            rows = con.execute(_PROFILE_FIGURES, {"start": start, "end": end}).fetchall()
    by_day = {row[0]: row[1:] for row in rows}
    found = []
    for day in days:
        buckets, duplicates, differing = by_day.get(day, (0, 0, 0))
        key = day.isoformat()
        found.append(
            (
                Finding(key, duplicates == 0, {"rows": buckets, "duplicates": duplicates}),
                Finding(key, differing == 0, {"rows": buckets, "minutes_differing": differing}),
            )
        )
    return found


def _built(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = $name", {"name": name}
    ).fetchall()
    return found == [(1,)]


def _days(context: dg.AssetCheckExecutionContext) -> list[date]:
    keys = run_partitions(context, DAILY)
    if keys is not None:
        return sorted(date.fromisoformat(key) for key in keys)
    return [datetime.now(UTC).date() - timedelta(days=1)]


@dg.multi_asset_check(
    name="trade_vwap_minutes_checks",
    specs=[
        dg.AssetCheckSpec(
            "trade_vwap_minutes_unique",
            asset=VWAP.name,
            description="One row per pair and minute.",
        ),
        dg.AssetCheckSpec(
            "trade_vwap_minutes_matches_lake",
            asset=VWAP.name,
            description="Trades and volume add up to the lake's; every VWAP within low..high.",
        ),
    ],
)
def trade_vwap_minutes_checks(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    per_day = vwap_findings(kirby.lake(), _days(context))
    yield result(
        [d[0] for d in per_day],
        "one row per pair and minute",
        check=(VWAP.name, "trade_vwap_minutes_unique"),
    )
    yield result(
        [d[1] for d in per_day],
        "trades and volume are the lake's; VWAP within the minute's range",
        check=(VWAP.name, "trade_vwap_minutes_matches_lake"),
    )


@dg.multi_asset_check(
    name="trade_volume_profile_checks",
    specs=[
        dg.AssetCheckSpec(
            "trade_volume_profile_unique",
            asset=PROFILE.name,
            description="One row per pair, minute and bucket.",
        ),
        dg.AssetCheckSpec(
            "trade_volume_profile_adds_up",
            asset=PROFILE.name,
            description="Per pair-minute, buckets add up to trade_vwap_minutes' trades and volume.",
        ),
    ],
)
def trade_volume_profile_checks(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    per_day = profile_findings(kirby.lake(), _days(context))
    yield result(
        [d[0] for d in per_day],
        "one row per pair, minute and bucket",
        check=(PROFILE.name, "trade_volume_profile_unique"),
    )
    yield result(
        [d[1] for d in per_day],
        "buckets add up to the minute's trades and volume",
        check=(PROFILE.name, "trade_volume_profile_adds_up"),
    )
