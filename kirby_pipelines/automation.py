"""What the schedule and sensors ask for, decided from plain data (tested without a daemon).

- `daily`: yesterday for every active series whose exchange serves it, one run per asset
  (and series block); trades only of pairs whose exchange keeps trade history.
- `new_series`: a series seen for the first time gets `backfill_new_series_days` of history,
  most recent first; only the days the series' exchange still serves (`still_served`).
- `repairs`: `collection_outages` rows and failed completeness checks become backfill runs for
  exactly the (series, day) partitions they touch, except days the coverage classifier
  (`kirby_core.db.coverage`, which the checks also use) finds nothing repairable in. A day
  that is not a partition yet (today) waits in the cursor until it is; a day the exchange no
  longer serves is dropped. Each request covers series of one exchange and carries its
  `kirby/exchange` tag (`runs.backfill_requests`).

Cursors are JSON, so a sensor restarted from its cursor neither forgets nor repeats work.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import cast

import dagster as dg

from kirby_core.datasets import DATASETS
from kirby_pipelines.catalogs import DatabaseSeries
from kirby_pipelines.partitions import (
    STARLISTINGS,
    TRADING_PAIRS,
    TRAINING_STARLISTINGS,
    current_key,
    name_of,
    parse_series,
    series_key,
)
from kirby_pipelines.runs import backfill_requests, recent_days, serves_none, still_served

PARTITIONS_OF = {
    "candles": name_of(STARLISTINGS),
    "funding_rates": name_of(TRADING_PAIRS),
    "open_interest": name_of(TRADING_PAIRS),
    "training_candles": name_of(TRAINING_STARLISTINGS),
    "trades": name_of(TRADING_PAIRS),
}
"""Backfill asset -> the dynamic partitions of its series."""
OUTAGE_ASSETS = {
    "candles": "candles",
    "funding_rates": "funding_rates",
    "open_interest": "open_interest",
    "trades": "trades",
}
"""collection_outages.dataset -> the asset that repairs it, for series of every exchange
(an exchange that publishes no history of the dataset: its days are not served, dropped).
A `trades` outage is repaired wherever the pair's exchange serves trade history (its
`TradeHistory`); the coverage classifier counts minute rows, not trades, so every day of a
trades outage is refetched (the trade backfill is idempotent)."""
CLASSIFIED = frozenset(DATASETS)
"""Datasets whose outage days the coverage classifier may settle (`settled_days`): the minute
tables. Not trades, though the classifier counts them: a minute holding some trades may still
miss others of an outage (it counts minutes, not trades), so a trades outage's days are
always refetched; books have no history to fetch."""
REPAIRED_CHECKS = {
    "candles": "candles_complete",
    "funding_rates": "funding_rates_settled_hourly",
    "open_interest": "open_interest_complete",
    "training_candles": "training_candles_complete",
}


def active_series(realtime: DatabaseSeries, training: DatabaseSeries) -> dict[str, list[str]]:
    """Active series keys by backfill asset."""
    return {
        "candles": [series_key(s.key) for s in realtime.starlistings],
        "funding_rates": [series_key(p.key) for p in realtime.trading_pairs],
        "training_candles": [series_key(s.key) for s in training.starlistings],
        "trades": [series_key(p.key) for p in realtime.trading_pairs],
    }


def daily(
    active: Mapping[str, Sequence[str]],
    order: Mapping[str, Sequence[str]],
    day: date,
    now: datetime,
) -> list[dg.RunRequest]:
    """`day` of each active series whose exchange still serves some of it at `now` (a pair
    of an exchange without trade history asks for no trades run)."""
    requests = []
    for asset, series in active.items():
        requests += backfill_requests(
            asset,
            [key for key in series if still_served(asset, key, [day], now)],
            [day],
            order=order[PARTITIONS_OF[asset]],
            reason="daily",
            run_key=f"daily:{asset}:{day}",
        )
    return requests


def new_series(
    active: Mapping[str, Sequence[str]],
    order: Mapping[str, Sequence[str]],
    known: Mapping[str, Sequence[str]],
    now: datetime,
    days: int,
) -> tuple[list[dg.RunRequest], dict[str, list[str]]]:
    """Requests for series not in `known`; returns them and the new `known`."""
    wanted = recent_days(now.date() - timedelta(days=1), days)
    requests = []
    for asset, series in active.items():
        for key in series:
            if key in known.get(asset, ()):
                continue
            key_days = still_served(asset, key, wanted, now)
            requests += backfill_requests(
                asset,
                [key],
                key_days,
                order=order[PARTITIONS_OF[asset]],
                reason="new series",
                run_key=f"new-series:{asset}",
                newest_first=True,
            )
    updated = {asset: sorted({*known.get(asset, ()), *series}) for asset, series in active.items()}
    return requests, updated


UNKNOWN_SERIES = "unknown-"
"""How `read_outages` names the series of an outage whose series id the catalog lacks."""


@dataclass(frozen=True)
class RecordedOutage:
    id: int
    dataset: str
    series: str
    """Partition key of the series (starlisting or trading pair)."""
    start_time: datetime
    end_time: datetime
    series_id: int = 0


@dataclass
class RepairCursor:
    outage_id: int = 0
    check_records: dict[str, int] = field(default_factory=dict)
    """Latest asset-check execution record id seen, by check name."""
    pending: list[tuple[str, str, str]] = field(default_factory=list)
    """(asset, series, ISO day) not yet a partition (today's), requested once it is."""

    @classmethod
    def parse(cls, cursor: str | None) -> RepairCursor:
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        return cls(
            raw.get("outage_id", 0),
            raw.get("check_records", {}),
            [(asset, current_key(series), day) for asset, series, day in raw.get("pending", [])],
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "outage_id": self.outage_id,
                "check_records": self.check_records,
                "pending": [list(item) for item in sorted(set(self.pending))],
            }
        )


@dataclass(frozen=True)
class FailedCheck:
    record_id: int
    check: str
    asset: str
    partitions: tuple[str, ...]


def repairs(
    cursor: RepairCursor,
    outages: Sequence[RecordedOutage],
    failed_checks: Sequence[FailedCheck],
    order: Mapping[str, Sequence[str]],
    now: datetime,
    settled: Collection[tuple[str, str, date]] = (),
) -> tuple[list[dg.RunRequest], RepairCursor, list[str]]:
    """Requests for the partitions touched by new outages and newly failed checks, the next
    cursor, and notes on what was skipped (for the tick's log). `settled`: (asset, series,
    day) in which the coverage classifier finds nothing repairable (`settled_days`); an
    outage there needs no backfill."""
    last_day = now.date() - timedelta(days=1)
    wanted: set[tuple[str, str, date]] = set()
    notes: list[str] = []
    next_cursor = RepairCursor(cursor.outage_id, dict(cursor.check_records), [])
    for outage in outages:
        next_cursor.outage_id = max(next_cursor.outage_id, outage.id)
        asset = OUTAGE_ASSETS.get(outage.dataset)
        if asset is None:
            notes.append(f"outage {outage.id}: {outage.dataset} has no history to backfill")
            continue
        if outage.series.startswith(UNKNOWN_SERIES):
            notes.append(f"outage {outage.id}: series id {outage.series_id} is not in the catalog")
            continue
        if why := serves_none(asset, outage.series, now):
            notes.append(f"outage {outage.id} of {outage.series}: not repairable, {why}")
            continue
        day = outage.start_time.date()
        while day <= outage.end_time.date():
            if (asset, outage.series, day) in settled:
                notes.append(f"{outage.series} {day}: outage {outage.id} needs no backfill")
            else:
                wanted.add((asset, outage.series, day))
            day += timedelta(days=1)
    for failed in failed_checks:
        previous = next_cursor.check_records.get(failed.check, 0)
        next_cursor.check_records[failed.check] = max(previous, failed.record_id)
        for key in failed.partitions:
            day_text, series = key.split("|", 1)
            wanted.add((failed.asset, current_key(series), date.fromisoformat(day_text)))
    for asset, series, day_text in cursor.pending:
        day = date.fromisoformat(day_text)
        if (asset, series, day) in settled:  # e.g. `live_gap_repair` closed it the same day
            notes.append(f"{series} {day}: its outages need no backfill any more")
        else:
            wanted.add((asset, series, day))
    by_target: dict[tuple[str, str], list[date]] = {}
    for asset, series, day in sorted(wanted):
        if day > last_day:
            next_cursor.pending.append((asset, series, day.isoformat()))
        elif not still_served(asset, series, [day], now):
            notes.append(f"{series} {day}: no longer served by the exchange, not repairable")
        else:
            by_target.setdefault((asset, series), []).append(day)
    marker = f"{next_cursor.outage_id}:{sum(next_cursor.check_records.values())}"
    requests = []
    for (asset, series), days in by_target.items():
        requests += backfill_requests(
            asset,
            [series],
            days,
            order=order[PARTITIONS_OF[asset]],
            reason="gap repair",
            run_key=f"repair:{marker}:{asset}",
            priority=1,
        )
    return requests, next_cursor, notes


async def settled_days(
    url: str, outages: Sequence[RecordedOutage], now: datetime
) -> set[tuple[str, str, date]]:
    """The past (asset, series, day)s of `outages` that `kirby_core.db.coverage` classifies
    as not repairable: their rows present, or missing for a known reason."""
    import asyncio

    from kirby_core.db import coverage
    from kirby_core.db.connection import connect

    settled: set[tuple[str, str, date]] = set()
    async with asyncio.timeout(20):
        conn = await connect(url)
        try:
            for outage in outages:
                asset = OUTAGE_ASSETS.get(outage.dataset)
                last = min(outage.end_time.date(), now.date() - timedelta(days=1))
                if (
                    asset is None
                    or outage.dataset not in CLASSIFIED
                    or outage.start_time.date() > last
                    or outage.series.startswith(UNKNOWN_SERIES)
                ):
                    continue
                key = parse_series(outage.series)
                interval = getattr(key, "interval", "1m")
                window = coverage.source_window(key.exchange, outage.dataset, interval, now)
                days = await coverage.classify_days(
                    conn,
                    outage.dataset,
                    outage.series_id,
                    interval,
                    key.exchange,
                    outage.start_time.date(),
                    last + timedelta(days=1),
                    now,
                    window.oldest,
                )
                settled |= {(asset, outage.series, d.day) for d in days if not d.repairable}
        finally:
            await conn.close()
    return settled


async def settled_pending(
    url: str, pending: Sequence[tuple[str, str, str]], now: datetime
) -> set[tuple[str, str, date]]:
    """The (asset, series, day)s waiting in the cursor, complete now, that the coverage
    classifier finds nothing repairable in (today's outages that `live_gap_repair` closed)."""
    import asyncio

    from kirby_core.catalog import StarlistingKey
    from kirby_core.db import catalog_store, coverage
    from kirby_core.db.connection import connect
    from kirby_core.errors import NotFound

    last = now.date() - timedelta(days=1)
    due = [(a, s, date.fromisoformat(d)) for a, s, d in pending if a in CLASSIFIED]
    due = [(a, s, d) for a, s, d in due if d <= last]
    settled: set[tuple[str, str, date]] = set()
    if not due:
        return settled
    async with asyncio.timeout(20):
        conn = await connect(url)
        try:
            for asset, series, day in due:
                key = parse_series(series)
                try:
                    if isinstance(key, StarlistingKey):
                        series_id = (await catalog_store.get_starlisting(conn, key)).id
                    else:
                        series_id = (await catalog_store.get_trading_pair(conn, key)).id
                except NotFound:
                    continue
                interval = getattr(key, "interval", "1m")
                window = coverage.source_window(key.exchange, asset, interval, now)
                [found] = await coverage.classify_days(
                    conn,
                    asset,
                    series_id,
                    interval,
                    key.exchange,
                    day,
                    day + timedelta(days=1),
                    now,
                    window.oldest,
                )
                if not found.repairable:
                    settled.add((asset, series, day))
        finally:
            await conn.close()
    return settled


async def read_outages(url: str, after_id: int, limit: int = 500) -> list[RecordedOutage]:
    """Outage rows recorded after `after_id`, with their series as partition keys."""
    import asyncio

    from kirby_core.db import catalog_store
    from kirby_core.db.connection import connect

    async with asyncio.timeout(10):
        conn = await connect(url)
        try:
            rows = await conn.fetch(
                "SELECT id, dataset, series_id, start_time, end_time FROM collection_outages"
                " WHERE id > $1 ORDER BY id LIMIT $2",
                after_id,
                limit,
            )
            if not rows:
                return []
            stars = {
                s.id: series_key(s.key)
                for s in await catalog_store.list_starlistings(conn, active_only=False)
            }
            pairs = {
                p.id: series_key(p.key)
                for p in await catalog_store.list_trading_pairs(conn, active_only=False)
            }
        finally:
            await conn.close()
    outages = []
    for row in rows:
        names = stars if row["dataset"] == "candles" else pairs
        series = names.get(row["series_id"], f"{UNKNOWN_SERIES}{row['series_id']}")
        outages.append(
            RecordedOutage(
                row["id"],
                row["dataset"],
                series,
                row["start_time"],
                row["end_time"],
                row["series_id"],
            )
        )
    return outages


def failed_checks(instance: dg.DagsterInstance, cursor: RepairCursor) -> list[FailedCheck]:
    """Failed evaluations of the completeness checks newer than the cursor."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    found = []
    for asset, check in REPAIRED_CHECKS.items():
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(asset), check),
            limit=50,
            status={AssetCheckExecutionRecordStatus.FAILED},
        )
        for record in records:
            if record.id <= cursor.check_records.get(check, 0) or record.event is None:
                continue
            evaluation = cast(
                dg.AssetCheckEvaluation, record.event.get_dagster_event().event_specific_data
            )
            failed = evaluation.metadata.get("failed_partitions")
            partitions = tuple(getattr(failed, "value", None) or ())
            found.append(FailedCheck(record.id, check, asset, partitions))
    return found


def json_cursor(cursor: str | None) -> dict[str, list[str]]:
    """`new_series_backfill`'s cursor (series seen, by asset), keys in today's spelling."""
    raw = json.loads(cursor) if cursor else {}
    return {asset: sorted({current_key(key) for key in keys}) for asset, keys in raw.items()}


def dump_cursor(value: Mapping[str, Sequence[str]]) -> str:
    return json.dumps({k: list(v) for k, v in value.items()}, sort_keys=True)
