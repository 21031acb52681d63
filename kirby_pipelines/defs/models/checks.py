"""Checks of `cross_exchange_minutes`, per day the run built (yesterday when run alone).

    cross_exchange_minutes_unique            one row per (coin, time)
    cross_exchange_minutes_nulls_follow_legs a basis is NULL exactly when the venue's spot or
                                             perps close is; a funding spread exactly when
                                             the venue's or the reference venue's rate is
    cross_exchange_minutes_values_match_lake every venue column holds as many values as the
                                             lake has rows for it: each 1m candle of the
                                             venue's series, each settled funding rate of
                                             its perps; none invented, none dropped

They read the model's output and the lake through the same views a model run reads
(`sql_models.open_relations`); venue columns are named from the exchange registry as the
model's `venues(...)` names them.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from kirby_core.locations import Location
from kirby_pipelines.defs.models.assets import MODEL_RELATIONS, MODELS
from kirby_pipelines.partition_checks import Finding, result, run_partitions
from kirby_pipelines.partitions import DAILY
from kirby_pipelines.resources import KirbyResource
from kirby_pipelines.sql_models import SqlModel, declared_venues, open_relations, venue_names

MODEL = next(m for m in MODELS if m.name == "cross_exchange_minutes")
SPOT, PERPS = "spot", "perps"
"""The market types the model pairs for a basis (its `venues('spot', 'perps')`)."""


def _legs() -> list[tuple[str, str]]:
    return [(exchange, market_type) for exchange, market_type, _ in declared_venues()]


def _columns(model: SqlModel) -> dict[str, str]:
    """Figure name -> a DuckDB aggregate over the model's rows of one day. Names come from
    the registry (lowercase identifiers, `sql_models.declared_venues` checks them)."""
    reference = model.header["reference_venue"]
    legs_null = [
        f'("{e}_basis" IS NULL) <> ("{e}_spot_close" IS NULL OR "{e}_perps_close" IS NULL)'
        for e in venue_names([SPOT, PERPS])
    ]
    legs_null += [
        f'("{e}_funding_spread" IS NULL) <> '
        f'("{e}_funding_per_hour" IS NULL OR "{reference}_funding_per_hour" IS NULL)'
        for e in venue_names([PERPS])
    ]
    return {
        "rows": "count(*)",
        "duplicates": "count(*) - count(DISTINCT (coin, time))",
        "null_mismatches": " + ".join(f"count(*) FILTER (WHERE {c})" for c in legs_null),
        **{f"{e}/{m}": f'count("{e}_{m}_close")' for e, m in _legs()},
        **{f"{e}/funding": f'count("{e}_funding_per_hour")' for e in venue_names([PERPS])},
    }


LAKE_COUNTS = """
WITH series AS (
    SELECT DISTINCT dataset, exchange, symbol, market_type FROM lake_series
    WHERE database = 'realtime' AND dataset IN ('candles', 'funding_rates')
)
SELECT c.date, c.exchange || '/' || s.market_type AS figure, count(*) AS n
FROM lake_candles c JOIN series s USING (exchange, symbol)
WHERE s.dataset = 'candles' AND c.interval = '1m' AND c.date BETWEEN $start AND $end
GROUP BY ALL
UNION ALL
SELECT f.date, f.exchange || '/funding', count(*)
FROM lake_funding_rates f JOIN series s USING (exchange, symbol)
WHERE s.dataset = 'funding_rates' AND f.settled_funding_rate IS NOT NULL
  AND f.date BETWEEN $start AND $end
GROUP BY ALL
"""


def findings(lake: Location, days: list[date]) -> list[tuple[Finding, Finding, Finding]]:
    """(unique, nulls follow legs, values match lake) for each of `days`."""
    start, end = days[0], days[-1]
    columns = _columns(MODEL)
    refs = [*MODEL.refs, MODEL.name]
    with open_relations(refs, MODEL_RELATIONS, lake, start, end, optional=[MODEL.name]) as con:
        params = {"start": start, "end": end}
        built = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = $name", {"name": MODEL.name}
        ).fetchall() == [(1,)]
        in_lake: dict[tuple[date, str], int] = {
            (day, figure): n for day, figure, n in con.execute(LAKE_COUNTS, params).fetchall()
        }
        in_model: dict[date, dict[str, Any]] = {}
        if built:
            select = ", ".join(f'{sql} AS "{name}"' for name, sql in columns.items())
            for row in con.execute(
                f'SELECT date, {select} FROM "{MODEL.name}"'  # noqa: S608  # names: registry
                " WHERE date BETWEEN $start AND $end GROUP BY date",
                params,
            ).fetchall():
                in_model[row[0]] = dict(zip(columns, row[1:], strict=True))
    found = []
    for day in days:
        figures = in_model.get(day) or dict.fromkeys(columns, 0)
        key = day.isoformat()
        unique = Finding(
            key,
            figures["duplicates"] == 0,
            {"rows": figures["rows"], "duplicates": figures["duplicates"]},
        )
        nulls = Finding(
            key,
            figures["null_mismatches"] == 0,
            {"rows": figures["rows"], "mismatches": figures["null_mismatches"]},
        )
        venues = [name for name in columns if "/" in name]
        differ = [v for v in venues if figures[v] != in_lake.get((day, v), 0)]
        values = Finding(
            key,
            not differ and not ({f for d, f in in_lake if d == day} - set(venues)),
            {
                "model_values": sum(figures[v] for v in venues),
                "lake_rows": sum(n for (d, _), n in in_lake.items() if d == day),
                "venues_differing": ", ".join(differ) or "-",
            },
        )
        found.append((unique, nulls, values))
    return found


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(f"{MODEL.name}_{name}", asset=MODEL.name, description=description)


@dg.multi_asset_check(
    name=f"{MODEL.name}_checks",
    specs=[
        _spec("unique", "One row per coin and minute."),
        _spec(
            "nulls_follow_legs",
            "A basis or funding spread is NULL exactly when one of its legs is.",
        ),
        _spec(
            "values_match_lake",
            "Each venue column holds as many values as the lake has rows for that venue.",
        ),
    ],
)
def cross_exchange_minutes_checks(context: dg.AssetCheckExecutionContext, kirby: KirbyResource):
    keys = run_partitions(context, DAILY)
    if keys is not None:
        days = sorted(date.fromisoformat(key) for key in keys)
    else:
        days = [datetime.now(UTC).date() - timedelta(days=1)]
    per_day = findings(kirby.lake(), days)
    for index, (name, what) in enumerate(
        (
            ("unique", "one row per coin and minute"),
            ("nulls_follow_legs", "basis and spread NULL exactly when a leg is"),
            ("values_match_lake", "every venue's values are the lake's rows, none invented"),
        )
    ):
        yield result(
            [day[index] for day in per_day],
            what,
            check=(MODEL.name, f"{MODEL.name}_{name}"),
        )
