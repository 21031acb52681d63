"""`kirby backfill` and `kirby export`: the original Kirby's scripts, as Dagster runs in process.

Both run the same assets the Dagster UI and the daemon run (`kirby_pipelines`), in this
process, with a progress bar, so their runs, metadata and checks are the same whoever
launched them. With `DAGSTER_HOME` set, runs are recorded in that instance (and show in
the UI); otherwise in a throwaway one.

    kirby backfill [--coin BTC] [--exchange hyperliquid] [--days 30 | --start D --end D]
                   [--database realtime|training] [--dataset candles|funding_rates|trades|all]
    kirby export   [--coin BTC] [--intervals 1m,15m|all] [--days 30 | --start D --end D]
                   [--format csv|parquet|both] [--output exports]
                   [--database realtime|training]
                   [--dataset merged|candles|funding_rates|open_interest]

Dataset choices are the names `kirby_core.datasets` declares and the aliases it lists
(`funding`, `oi`); what each database can backfill or export is `kirby_pipelines`' to say.
Days are whole UTC days, from `--days` ago up to yesterday (today is still being collected;
it becomes a partition at midnight), or `--start` (inclusive) to `--end` (exclusive), as
the original's `--start-time/--end-time`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kirby_cli import failures
from kirby_cli.options import coin_option, database_option, exchange_option, intervals_option
from kirby_core.datasets import dataset_named, spellings
from kirby_core.db.trades import TRADES_TABLE as TRADES
from kirby_core.locations import lake_location
from kirby_core.settings import Database, Settings

MERGED = "merged"
"""The export of candles, funding and open interest on time; the other choices are datasets."""


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


def _waiting() -> Callable[[str], None]:
    """Says once per exchange that a run of it is in progress, then waits a poll."""
    import time

    from kirby_pipelines.backfill_plans import EXCHANGE_POLL_SECONDS

    said: set[str] = set()

    def wait(exchange: str) -> None:
        if exchange not in said:
            said.add(exchange)
            click.echo(f"\nwaiting: a {exchange} backfill run is in progress (one at a time)")
        time.sleep(EXCHANGE_POLL_SECONDS)

    return wait


def _resources(settings: Settings, progress: Any = None) -> dict[str, Any]:
    from kirby_pipelines.resources import KirbyResource

    return {"kirby": KirbyResource.of(settings), "progress": progress}


@click.command()
@coin_option
@exchange_option
@_days_options
@database_option
@click.option(
    "--dataset",
    type=click.Choice([*spellings(), TRADES, "all"]),
    default="all",
    show_default=True,
    help="What to fetch (all: every dataset the database is backfilled with; trades: the "
    "tape, from the exchanges that keep trade history).",
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
    active trading pair; trades (with --dataset trades or all) of every pair whose exchange
    keeps trade history (Binance, OKX spot). training: Binance spot and USD-M candles with
    trade counts. Re-running changes nothing; live values are never overwritten with NULLs.
    """
    from kirby_pipelines.backfill_plans import (
        BackfillRequest,
        backfilled_datasets,
        plan_backfill,
        run_backfill,
    )

    if dataset == "all":
        datasets = tuple(backfilled_datasets(database))
    elif dataset == TRADES:
        datasets = (TRADES,)
    else:
        datasets = (dataset_named(dataset).name,)
    request = BackfillRequest(
        database, datasets, tuple(resolve_days(days, start, end)), frozenset(coins), exchange
    )
    with _instance() as instance:
        plan = plan_backfill(request, instance, _resources(settings), datetime.now(UTC))
        for series, count in plan.not_served.items():
            click.echo(f"{series}: {count} day(s) are older than the exchange serves, skipped")
        for what, why in plan.no_history.items():
            click.echo(f"{what}: no history at the exchange ({why}), skipped")
        if not plan.series:
            raise click.ClickException("nothing to backfill: no active series matches")
        failed: dict[tuple[str, ...], list[str]] = {}
        fetched = written = missing = 0
        with click.progressbar(length=plan.series_days, label="backfill", show_pos=True) as bar:
            for outcome in run_backfill(
                plan, instance, _resources(settings, _Bar(bar)), _waiting()
            ):
                where = f"{outcome.series} {outcome.first}..{outcome.last}"
                if outcome.failure is not None:
                    exc = outcome.failure
                    reason = tuple(failures.explain(exc.step_error or exc, settings))
                    failed.setdefault(reason, []).append(where)
                    continue
                fetched += outcome.fetched
                written += outcome.written
                missing += outcome.missing
                if outcome.failed_checks:
                    click.echo(f"\n{where}: checks failed: {', '.join(outcome.failed_checks)}")
    click.echo(
        f"{database}: {len(plan.series)} series, {plan.series_days} series-days: "
        f"{fetched:,} rows fetched, {written:,} written (new or changed), "
        f"{missing:,} missing at source"
    )
    # one reason (say, the exchange is unreachable) fails many runs: say it once
    for reason, ranges in failed.items():
        more = f" and {len(ranges) - 1} more" if len(ranges) > 1 else ""
        click.echo(f"failed: {ranges[0]}{more}: {reason[0]}", err=True)
        click.echo("\n".join(reason[1:]), err=True)
    if failed:
        raise click.exceptions.Exit(1)


@click.command("export")
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
    type=click.Choice([MERGED, *spellings()]),
    default=MERGED,
    show_default=True,
    help="merged: candles + funding + open interest on time (ML-ready); or one table.",
)
@click.option(
    "--exact-decimals",
    is_flag=True,
    help="Prices, sizes and rates as exact decimals instead of float64.",
)
@click.pass_obj
def export_files(
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
        dataset=dataset if dataset == MERGED else dataset_named(dataset).name,
        database=database,
        coins=coins,
        intervals=intervals,
        days=resolve_days(days, start, end),
        formats=("csv", "parquet") if formats == "both" else (formats,),
        output=output,
        exact_decimals=exact_decimals,
    )
    with _instance() as instance:
        steps = 3 + len(request.days)
        with click.progressbar(length=steps, label="export", show_pos=True) as bar:
            files = run_export(
                request,
                instance,
                _resources(settings, _Bar(bar)),
                lambda label: _Bar(bar).advance(1, label),
                lake_location(settings),
            )
    if not files:
        raise click.ClickException("nothing exported: no series matches")
    for f in files:
        click.echo(f"{f['rows']:>10,} rows  {', '.join(f['files'])}")
