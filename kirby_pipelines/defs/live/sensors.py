"""`live_data`: reports the live tables as materialized whenever newer rows have landed.

One short query per table a minute; the cursor holds the newest row time already reported,
so a collector that stops writing stops the materializations and the freshness policy
fails. On by default: it only reads.
"""

import asyncio
import json
from datetime import UTC, datetime

import dagster as dg

from kirby_pipelines import live
from kirby_pipelines.defs.catalog.sensors import UNREACHABLE
from kirby_pipelines.resources import KirbyResource


@dg.sensor(
    name="live_data",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes live_* when the collector has written newer rows.",
)
def live_data(
    context: dg.SensorEvaluationContext, kirby: KirbyResource
) -> dg.SensorResult | dg.SkipReason:
    try:
        latest = asyncio.run(live.read_latest(kirby.url("realtime")))
    except UNREACHABLE as exc:
        return dg.SkipReason(f"database unreachable: {exc}")
    reported = json.loads(context.cursor) if context.cursor else {}
    now = datetime.now(UTC)
    events = []
    for found in latest:
        if found.last_time is None or found.last_time.isoformat() <= reported.get(found.asset, ""):
            continue
        reported[found.asset] = found.last_time.isoformat()
        events.append(
            dg.AssetMaterialization(
                asset_key=found.asset,
                metadata={
                    "last_time": dg.MetadataValue.timestamp(found.last_time),
                    "lag_seconds": round((now - found.last_time).total_seconds(), 1),
                    "rows_last_hour": found.rows_last_hour,
                },
            )
        )
    return dg.SensorResult(asset_events=events, cursor=json.dumps(reported, sort_keys=True))
