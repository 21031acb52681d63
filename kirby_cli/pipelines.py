"""`kirby backfill` and `kirby export`: the original Kirby's scripts, as Dagster runs in process.

Both run the same assets the Dagster UI and the daemon run (`kirby_pipelines`), in this
process, with a progress bar, so their runs, metadata and checks are the same whoever
launched them. With `DAGSTER_HOME` set, runs are recorded in that instance (and show in
the UI); otherwise in a throwaway one.

    kirby backfill [--coin BTC] [--exchange hyperliquid] [--days 30 | --start D --end D]
                   [--database realtime|training] [--dataset candles|funding|all]
    kirby export   [--coin BTC] [--intervals 1m,15m|all] [--days 30 | --start D --end D]
                   [--format csv|parquet|both] [--output exports]
                   [--database realtime|training] [--dataset merged|candles|funding|oi]

Days are whole UTC days, from `--days` ago up to yesterday (today is still being collected;
it becomes a partition at midnight), or `--start` (inclusive) to `--end` (exclusive), as
the original's `--start-time/--end-time`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import click

from kirby_cli import failures
from kirby_cli.options import coin_option, database_option, exchange_option, intervals_option
from kirby_core.settings import Database, Settings

EXPORT_DATASETS = {"merged", "candles", "funding", "oi"}


def _days_options(fn):
    fn = click.option(
        "--end",
        "--end-time",
        "end",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="First day NOT included (YYYY-MM-DD); default: today.",
    )(fn)
    fn = click.option(
        "--start",
        "--start-time",
        "start",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="First day included (YYYY-MM-DD); with --end instead of --days.",
    )(fn)
    return click.option(
        "--days",
        type=click.IntRange(min=1),
        default=None,
        help="Whole days up to yesterday (default 30).",
    )(fn)


def resolve_days(days: int | None, start: datetime | None, end: datetime | None) -> list[date]:
    """The complete UTC days asked for, oldest first; a `UsageError` names what is wrong."""
    today = datetime.now(UTC).date()
    if days is not None and (start or end):
        raise click.UsageError("use either --days or --start/--end, not both")
    if start is None:
        if end is not None:
            raise click.UsageError("--end needs --start")
        last = today - timedelta(days=1)
        return [last - timedelta(days=i) for i in reversed(range(days or 30))]
    first, stop = start.date(), (end.date() if end else today)
    if stop > today:
        click.echo(f"note: days from {today} on are not complete yet; stopping at {today}")
        stop = today
    if first >= stop:
        raise click.UsageError(f"--start {first} must be before --end {stop} (exclusive)")
    return [first + timedelta(days=i) for i in range((stop - first).days)]


class _Bar:
    """The `progress` resource of the assets: moves a click progress bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def advance(self, steps: int, label: str) -> None:
        self.bar.label = label[:60]
        self.bar.update(steps)


@contextmanager
def _instance() -> Iterator[Any]:
    import dagster as dg
    from dagster._core.errors import DagsterHomeNotSetError

    try:
        instance = dg.DagsterInstance.get()
    except DagsterHomeNotSetError:
        instance = dg.DagsterInstance.ephemeral()
    try:
        yield instance
    finally:
        instance.dispose()


def _resources(settings: Settings, progress: Any = None) -> dict[str, Any]:
    from kirby_pipelines.resources import KirbyResource

    return {"kirby": KirbyResource.of(settings), "progress": progress}


def _check(result, settings: Settings) -> tuple[str, ...] | None:
    """None if the run succeeded, else what to tell the user (its root cause)."""
    from kirby_pipelines.in_process import RunFailed, raise_on_failure

    try:
        raise_on_failure(result, "run")
    except RunFailed as exc:
        return tuple(failures.explain(exc.step_error or exc, settings))
    return None


@click.command()
@coin_option
@exchange_option
@_days_options
@database_option
@click.option(
    "--dataset",
    type=click.Choice(["candles", "funding", "all"]),
    default="all",
    show_default=True,
    help="realtime only: candles (ccxt), funding rates (SDK), or both.",
)
@click.pass_obj
def backfill(
    settings: Settings,
    coins: set[str],
    exchange: str | None,
    days: int | None,
    start: datetime | None,
    end: datetime | None,
    database: Database,
    dataset: str,
) -> None:
    """Fetch history from the exchanges into a database, day by day, idempotently.

    realtime: Hyperliquid candles of every active starlisting (only the days Hyperliquid
    still serves: its last 5000 candles per interval) and settled funding rates of every
    active trading pair. training: Binance spot and USD-M candles with trade counts.
    Re-running changes nothing; live values are never overwritten with NULLs.
    """
    from kirby_pipelines.defs.backfills import assets as backfill_assets
    from kirby_pipelines.defs.backfills import checks
    from kirby_pipelines.defs.catalog.assets import realtime_catalog, training_catalog
    from kirby_pipelines.in_process import materialize, raise_on_failure
    from kirby_pipelines.partitions import (
        MAX_DAYS_PER_RUN,
        day_ranges,
        parse_series,
        partition_key,
    )
    from kirby_pipelines.runs import RANGE_END_TAG, RANGE_START_TAG, still_served

    wanted_days = resolve_days(days, start, end)
    catalog = realtime_catalog if database == "realtime" else training_catalog
    if database == "training":
        jobs = {
            "training_candles": [
                backfill_assets.training_candles,
                checks.training_candles_complete,
                checks.training_candles_sanity,
            ]
        }
    else:
        jobs = {}
        if dataset in ("candles", "all"):
            jobs["candles"] = [
                backfill_assets.candles,
                checks.candles_complete,
                checks.candles_sanity,
                checks.candles_live_agrees,
            ]
        if dataset in ("funding", "all"):
            jobs["funding_rates"] = [
                backfill_assets.funding_rates,
                checks.funding_rates_settled_hourly,
            ]
    now = datetime.now(UTC)
    with _instance() as instance:
        synced = materialize([catalog], instance, _resources(settings), {})
        raise_on_failure(synced, "catalog sync")
        # the catalog asset has registered every active series as a partition
        plan: list[tuple[str, str, list[date]]] = []
        for asset in jobs:
            name = {
                "candles": "starlistings",
                "funding_rates": "trading_pairs",
                "training_candles": "training_starlistings",
            }[asset]
            for series in instance.get_dynamic_partitions(name):
                key = parse_series(series)
                if (coins and key.coin not in coins) or (exchange and key.exchange != exchange):
                    continue
                series_days = still_served(asset, series, wanted_days, now)
                if len(series_days) < len(wanted_days):
                    click.echo(
                        f"{series}: {len(wanted_days) - len(series_days)} day(s) are older "
                        f"than {key.exchange} still serves, skipped"
                    )
                if series_days:
                    plan.append((asset, series, series_days))
        if not plan:
            raise click.ClickException("nothing to backfill: no active series matches")
        total = sum(len(d) for _, _, d in plan)
        failed: dict[tuple[str, ...], list[str]] = {}
        rows = {"fetched": 0, "written": 0, "missing": 0}
        with click.progressbar(length=total, label="backfill", show_pos=True) as bar:
            resources = _resources(settings, _Bar(bar))
            for asset, series, series_days in plan:
                for first, last in day_ranges(series_days, MAX_DAYS_PER_RUN):
                    tags = {
                        RANGE_START_TAG: partition_key(first, series),
                        RANGE_END_TAG: partition_key(last, series),
                    }
                    result = materialize(jobs[asset], instance, resources, tags)
                    if reason := _check(result, settings):
                        failed.setdefault(reason, []).append(f"{series} {first}..{last}")
                        continue
                    meta = result.asset_materializations_for_node(asset)[0].metadata
                    # row counts, as the backfill assets record them
                    rows["fetched"] += cast(int, meta["rows_fetched"].value)
                    rows["written"] += cast(int, meta["rows_written"].value)
                    rows["missing"] += cast(
                        int, (meta.get("missing_candles") or meta["missing_settlements"]).value
                    )
                    failed_checks = [
                        e.check_name for e in result.get_asset_check_evaluations() if not e.passed
                    ]
                    if failed_checks:
                        click.echo(
                            f"\n{series} {first}..{last}: checks failed: {', '.join(failed_checks)}"
                        )
    click.echo(
        f"{database}: {len(plan)} series, {total} series-days: {rows['fetched']:,} rows fetched, "
        f"{rows['written']:,} written (new or changed), {rows['missing']:,} missing at source"
    )
    # one reason (say, the exchange is unreachable) fails many runs: say it once
    for reason, where in failed.items():
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        click.echo(f"failed: {where[0]}{more}: {reason[0]}", err=True)
        click.echo("\n".join(reason[1:]), err=True)
    if failed:
        raise click.exceptions.Exit(1)


@click.command()
@coin_option
@intervals_option
@_days_options
@click.option(
    "--format",
    "formats",
    type=click.Choice(["csv", "parquet", "both"]),
    default="both",
    show_default=True,
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exports"),
    show_default=True,
    help="Directory for the files and their .json metadata.",
)
@database_option
@click.option(
    "--dataset",
    type=click.Choice(sorted(EXPORT_DATASETS)),
    default="merged",
    show_default=True,
    help="merged: candles + funding + open interest on time (ML-ready); or one table.",
)
@click.option(
    "--exact-decimals",
    is_flag=True,
    help="Prices, sizes and rates as exact decimals instead of float64.",
)
@click.pass_obj
def export(
    settings: Settings,
    coins: set[str],
    intervals: set[str] | None,
    days: int | None,
    start: datetime | None,
    end: datetime | None,
    formats: str,
    output: Path,
    database: Database,
    dataset: str,
    exact_decimals: bool,
) -> None:
    """Export candles, funding, open interest or the merged dataset to CSV and/or Parquet.

    Runs the lake exports (and for `merged` the merged_training_dataset SQL model) for the
    days asked, then writes one file per starlisting (or trading pair) with a .json file of
    parameters and figures. The merged dataset keeps NULLs where a minute has no funding or
    open interest: nothing is forward-filled.
    """
    from kirby_pipelines.series_files import ExportRequest, run_export

    request = ExportRequest(
        dataset=dataset,
        database=database,
        coins=coins,
        intervals=intervals,
        days=resolve_days(days, start, end),
        formats=("csv", "parquet") if formats == "both" else (formats,),
        output=output,
        exact_decimals=exact_decimals,
    )
    if database == "training" and dataset in ("funding", "oi"):
        raise click.UsageError("the training database holds candles only (Binance klines)")
    with _instance() as instance:
        steps = 3 + len(request.days)
        with click.progressbar(length=steps, label="export", show_pos=True) as bar:
            files = run_export(
                request,
                instance,
                _resources(settings, _Bar(bar)),
                lambda label: _Bar(bar).advance(1, label),
                settings.lake_dir,
            )
    if not files:
        raise click.ClickException("nothing exported: no series matches")
    for f in files:
        click.echo(f"{f['rows']:>10,} rows  {', '.join(f['files'])}")
