"""Backfills asked for outside the daemon: `kirby backfill` and the stack's start-up backfill.

The CLI only parses options and prints; what to run is decided here, from the maps the
schedule and sensors use (`automation`): which asset backfills a dataset of a database, the
dynamic partitions of its series, the days an exchange still serves, and the checks that
follow each asset (read from `defs/backfills/checks.py`, never listed again).

`kirby backfill` runs in this process (`plan_backfill`, then `run_backfill`, one run per
series and block of at most `MAX_DAYS_PER_RUN` days, tagged with the series' exchange and
started once no run of that exchange is in progress); the stack asks Dagster's webserver
for the same partitions (`history_partitions`) and for the lake (`LAKE_REFRESH_ASSETS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

import dagster as dg
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from kirby_core.datasets import DATASETS
from kirby_core.errors import InvalidRequest
from kirby_core.exchanges.registry import TRADES
from kirby_core.settings import Database
from kirby_pipelines.automation import PARTITIONS_OF, active_series
from kirby_pipelines.catalogs import DatabaseSeries
from kirby_pipelines.in_process import RunFailed, materialize, raise_on_failure
from kirby_pipelines.lake_export import LAKE_ASSETS
from kirby_pipelines.partitions import MAX_DAYS_PER_RUN, day_ranges, parse_series, partition_key
from kirby_pipelines.runs import (
    EXCHANGE_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    exchange_tags,
    serves_none,
    still_served,
)

BACKFILL_ASSETS: Mapping[tuple[Database, str], str] = {
    ("realtime", DATASETS["candles"].name): "candles",
    ("realtime", DATASETS["funding_rates"].name): "funding_rates",
    ("training", DATASETS["candles"].name): "training_candles",
}
"""(database, dataset) -> the asset that backfills it from the CLI and the stack (open
interest not yet: its asset is run by the gap-repair sensor and from the UI)."""
NAMED_ONLY: Mapping[tuple[Database, str], str] = {("realtime", TRADES): "trades"}
"""Backfilled by `kirby backfill --dataset trades` only, never by `all` or the stack's
start-up backfill: a day of a busy pair's tape is hundreds of thousands of rows."""
LAKE_REFRESH_ASSETS = (*LAKE_ASSETS, "merged_training_dataset")
"""What the stack runs once its history is in: every lake export, then the merged dataset."""


def backfilled_datasets(database: Database | None = None) -> list[str]:
    """Datasets some asset backfills (into `database`, or any), in declaration order."""
    found = {d for db, d in BACKFILL_ASSETS if database in (None, db)}
    return [name for name in DATASETS if name in found]


def checks_of(asset: str) -> list[dg.AssetChecksDefinition]:
    """The asset checks of a backfill asset, in the order `defs/backfills/checks.py` defines
    them."""
    from kirby_pipelines.defs.backfills import checks

    key = dg.AssetKey(asset)
    return [
        check
        for check in vars(checks).values()
        if isinstance(check, dg.AssetChecksDefinition)
        and any(check_key.asset_key == key for check_key in check.check_keys)
    ]


def history_partitions(
    asset: str,
    realtime: DatabaseSeries,
    training: DatabaseSeries,
    days: Sequence[date],
    now: datetime,
) -> list[str]:
    """Partition keys (day|series) of `asset` for its active series and the days each can
    still be fetched."""
    return [
        partition_key(day, key)
        for key in active_series(realtime, training)[asset]
        for day in still_served(asset, key, days, now)
    ]


@dataclass(frozen=True)
class BackfillRequest:
    database: Database
    datasets: tuple[str, ...]
    """Dataset names (`kirby_core.datasets`), each backfilled in `database`."""
    days: tuple[date, ...]
    coins: frozenset[str] = frozenset()
    """Empty: every coin."""
    exchange: str | None = None


@dataclass(frozen=True)
class PlannedSeries:
    asset: str
    series: str
    """Partition key of the series."""
    days: tuple[date, ...]


@dataclass
class BackfillPlan:
    series: list[PlannedSeries] = field(default_factory=list)
    not_served: dict[str, int] = field(default_factory=dict)
    """Series -> days asked for that its exchange no longer serves (skipped)."""
    no_history: dict[str, str] = field(default_factory=dict)
    """"dataset on exchange" -> why that exchange serves none of it (its series skipped)."""

    @property
    def series_days(self) -> int:
        return sum(len(s.days) for s in self.series)


@dataclass(frozen=True)
class RangeOutcome:
    """One run: a series over consecutive days, and what it found or why it failed."""

    series: str
    first: date
    last: date
    failure: RunFailed | None = None
    fetched: int = 0
    written: int = 0
    missing: int = 0
    """Rows missing at source (candles or funding settlements)."""
    failed_checks: tuple[str, ...] = ()


def _asset(database: Database, dataset: str) -> str | None:
    return BACKFILL_ASSETS.get((database, dataset)) or NAMED_ONLY.get((database, dataset))


def _unknown(request: BackfillRequest) -> list[str]:
    return [d for d in request.datasets if _asset(request.database, d) is None]


def plan_backfill(
    request: BackfillRequest,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    now: datetime,
) -> BackfillPlan:
    """Sync the database's catalog (registering its series as partitions), then choose the
    series and days to fetch."""
    from kirby_pipelines.defs.catalog.assets import realtime_catalog, training_catalog

    if unknown := _unknown(request):
        raise InvalidRequest(
            f"{request.database}: no backfill for {', '.join(unknown)}; "
            f"expected {', '.join(backfilled_datasets(request.database))}"
            + "".join(f" or {d}" for db, d in NAMED_ONLY if db == request.database)
        )
    catalog = realtime_catalog if request.database == "realtime" else training_catalog
    raise_on_failure(materialize([catalog], instance, resources, {}), "catalog sync")
    plan = BackfillPlan()
    for dataset in request.datasets:
        wanted = (request.database, dataset)
        asset = BACKFILL_ASSETS.get(wanted) or NAMED_ONLY[wanted]
        for series in instance.get_dynamic_partitions(PARTITIONS_OF[asset]):
            key = parse_series(series)
            if request.coins and key.coin not in request.coins:
                continue
            if request.exchange and key.exchange != request.exchange:
                continue
            if why := serves_none(asset, series, now):
                plan.no_history[f"{dataset} on {key.exchange}"] = why
                continue
            days = still_served(asset, series, request.days, now)
            if len(days) < len(request.days):
                plan.not_served[series] = len(request.days) - len(days)
            if days:
                plan.series.append(PlannedSeries(asset, series, tuple(days)))
    if not plan.series and plan.no_history:
        raise InvalidRequest(
            "nothing to backfill: "
            + "; ".join(f"{what} has no history ({why})" for what, why in plan.no_history.items())
            + "; exchanges with trade history: "
            + ", ".join(trade_history_exchanges())
        )
    return plan


def trade_history_exchanges() -> list[str]:
    """Exchanges whose declaration serves trade history (market types in brackets)."""
    from kirby_core.exchanges.registry import EXCHANGES

    return [
        f"{e.name} ({', '.join(sorted(e.trade_history.market_types))})"
        for e in EXCHANGES.values()
        if e.trade_history.client is not None
    ]


def run_backfill(
    plan: BackfillPlan,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    wait: Callable[[str], None] = lambda _: time.sleep(EXCHANGE_POLL_SECONDS),
) -> Iterator[RangeOutcome]:
    """Run the plan, one in-process run (asset and its checks) per series and day block.
    In-process runs bypass the queue: each first waits (`wait(exchange)`) while a run of
    its exchange is in progress, as the queue would make it."""
    from kirby_pipelines.defs.backfills import assets

    for planned in plan.series:
        for first, last in day_ranges(planned.days, MAX_DAYS_PER_RUN):
            exchange = exchange_tags([planned.series])
            tags = {
                RANGE_START_TAG: partition_key(first, planned.series),
                RANGE_END_TAG: partition_key(last, planned.series),
                **exchange,
            }
            wait_for_exchange(instance, exchange[EXCHANGE_TAG], wait)
            job = [getattr(assets, planned.asset), *checks_of(planned.asset)]
            result = materialize(job, instance, resources, tags)
            try:
                raise_on_failure(result, "run")
            except RunFailed as exc:
                yield RangeOutcome(planned.series, first, last, failure=exc)
                continue
            yield _outcome(planned, first, last, result)


EXCHANGE_POLL_SECONDS = 5.0
"""How often `kirby backfill` looks whether the exchange's run in progress has ended."""


def wait_for_exchange(
    instance: dg.DagsterInstance, exchange: str, wait: Callable[[str], None]
) -> None:
    """Return once no run of `exchange` (its `EXCHANGE_TAG`) is in progress."""
    busy = dg.RunsFilter(tags={EXCHANGE_TAG: exchange}, statuses=list(IN_PROGRESS_RUN_STATUSES))
    while instance.get_runs_count(busy) > 0:
        wait(exchange)


def _outcome(
    planned: PlannedSeries, first: date, last: date, result: dg.ExecuteInProcessResult
) -> RangeOutcome:
    meta = result.asset_materializations_for_node(planned.asset)[0].metadata
    # row counts, as the backfill assets record them (trades: none is "missing")
    missing = meta.get("missing_candles") or meta.get("missing_settlements")
    return RangeOutcome(
        planned.series,
        first,
        last,
        fetched=cast(int, meta["rows_fetched"].value),
        written=cast(int, meta["rows_written"].value),
        missing=0 if missing is None else cast(int, missing.value),
        failed_checks=tuple(
            e.check_name for e in result.get_asset_check_evaluations() if not e.passed
        ),
    )
