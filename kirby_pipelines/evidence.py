"""What a backfill saw, per partition, shown in Dagster as an AssetObservation.

The facts coverage classifies with live in the database (`backfill_reports`, see
`kirby_core.db.coverage`); the observation repeats them for the UI and adds the comparison
with stored live rows, which `candles_live_agrees` reads back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import dagster as dg

from kirby_core.backfill import DayReport

SOURCE = "kirby/backfill"


def day_metadata(report: DayReport, at: datetime) -> dict[str, dg.RawMetadataValue]:
    metadata: dict[str, dg.RawMetadataValue] = {
        "source": SOURCE,
        "backfilled_at": dg.MetadataValue.timestamp(at),
        "status": report.status,
        "expected": report.expected,
        "rows_fetched": report.fetched,
        "missing": report.missing,
        "unavailable_at_source": report.unavailable,
        "live_compared": report.compared,
        "live_disagreeing": report.disagreeing,
        "live_max_price_diff": report.max_price_diff,
    }
    if report.first_time is not None and report.last_time is not None:
        metadata["first_time"] = report.first_time.isoformat()
        metadata["last_time"] = report.last_time.isoformat()
    return metadata


def observation(asset_key: dg.AssetKey, partition: str, report: DayReport, at: datetime):
    return dg.AssetObservation(
        asset_key=asset_key, partition=partition, metadata=day_metadata(report, at)
    )


def latest(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Iterable[str]
) -> dict[str, Mapping[str, Any]]:
    """The latest backfill metadata (plain values) of each partition that has one."""
    found: dict[str, Mapping[str, Any]] = {}
    for partition in partitions:
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=5
        ).records
        for record in records:
            event = record.asset_observation
            if event is not None and _value(event.metadata.get("source")) == SOURCE:
                found[partition] = {k: _value(v) for k, v in event.metadata.items()}
                break
    return found


def _value(value: object) -> object:
    return getattr(value, "value", value)
