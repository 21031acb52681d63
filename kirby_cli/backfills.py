"""The short backfill a starting stack launches, through Dagster's GraphQL API.

First the history: one asset backfill per backfill asset (their series partitions differ,
and one backfill takes one partitioning), for the last `days` whole days. Once all of them
have succeeded, the lake: the same days exported to Parquet and the merged training dataset
built over them, as one backfill. The lake's own automation would do the same, but like
every Kirby sensor it starts stopped; asking for it explicitly keeps the demo
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from kirby_cli.dagster_client import BACKFILL_DONE, BACKFILL_FAILED, DagsterClient
from kirby_pipelines.catalogs import DatabaseSeries
from kirby_pipelines.partitions import partition_key, series_key
from kirby_pipelines.runs import still_served

LAKE_ASSETS = (
    "lake_candles",
    "lake_funding_rates",
    "lake_open_interest",
    "lake_training_candles",
    "merged_training_dataset",
)


def recent_days(days: int, today: date) -> list[date]:
    """The last `days` whole UTC days (Kirby's partitions end yesterday)."""
    return [today - timedelta(days=i) for i in range(days, 0, -1)]


def history_partitions(
    asset: str,
    realtime: DatabaseSeries,
    training: DatabaseSeries,
    days: Sequence[date],
    now: datetime,
) -> list[str]:
    """Partition keys (day|series) of `asset` for its active series, only for the days
    their exchange still serves."""
    if asset == "candles":
        series = [series_key(s.key) for s in realtime.starlistings]
    elif asset == "funding_rates":
        series = [series_key(p.key) for p in realtime.trading_pairs]
    else:
        series = [series_key(s.key) for s in training.starlistings]
    keys = []
    for key in series:
        keys += [partition_key(day, key) for day in still_served(asset, key, days, now)]
    return keys


class Backfills:
    def __init__(
        self,
        client: DagsterClient,
        series: Sequence[DatabaseSeries],
        days: int,
        assets: Sequence[str],
        export_lake: bool,
    ) -> None:
        self.client = client
        self.realtime, self.training = series
        self.now = datetime.now(UTC)
        self.days = recent_days(days, self.now.date())
        self.assets = assets
        self.export_lake = export_lake
        self.history: dict[str, str] = {}
        """Title -> backfill id."""
        self.lake: dict[str, str] = {}
        self.status: dict[str, str] = {}
        """Title -> last status read."""
        self.failures: dict[str, str] = {}
        """Title -> why a failed backfill failed (its root cause)."""

    def titles(self) -> list[str]:
        return [*self.history, *self.lake]

    def launch_history(self) -> None:
        for asset in self.assets:
            keys = history_partitions(asset, self.realtime, self.training, self.days, self.now)
            title = f"{asset} {self._span()}"
            self.history[title] = self.client.launch_backfill([asset], keys, title)
            self.status[title] = "REQUESTED"

    def step(self) -> None:
        """Read the unfinished backfills' status; launch the lake once the history is in."""
        for title, backfill_id in {**self.history, **self.lake}.items():
            if self.status[title] not in BACKFILL_DONE:
                self.status[title] = status = self.client.backfill_status(backfill_id)
                if status in BACKFILL_FAILED:
                    reason = self.client.backfill_failure(backfill_id)
                    self.failures[title] = reason or "no reason recorded"
        if self.export_lake and not self.lake and self._succeeded(self.history):
            title = f"lake + merged dataset {self._span()}"
            days = [day.isoformat() for day in self.days]
            self.lake[title] = self.client.launch_backfill(list(LAKE_ASSETS), days, title)
            self.status[title] = "REQUESTED"

    def done(self) -> bool:
        """Finished; the lake is skipped when a history backfill failed."""
        if not self._finished(self.history):
            return False
        lake_wanted = self.export_lake and self._succeeded(self.history)
        return not lake_wanted or self._finished(self.lake)

    def _finished(self, backfills: dict[str, str]) -> bool:
        return bool(backfills) and all(self.status[t] in BACKFILL_DONE for t in backfills)

    def _succeeded(self, backfills: dict[str, str]) -> bool:
        return bool(backfills) and all(self.status[t] == "COMPLETED_SUCCESS" for t in backfills)

    def _span(self) -> str:
        first, last = self.days[0], self.days[-1]
        return f"{first}" if first == last else f"{first}..{last}"
