"""The short backfill a starting stack launches, through Dagster's GraphQL API.

First the history: one asset backfill per backfill asset (their series partitions differ,
and one backfill takes one partitioning) and exchange (a run fetches from one exchange:
Dagster cuts a backfill of fewer days than series into runs over a day's series, which
would span exchanges), for the last `days` whole days. Once all of them
have succeeded, the lake: the same days exported to Parquet and the merged training dataset
built over them, as one backfill. The lake's own automation would do the same, but like
every Kirby sensor it starts stopped; asking for it explicitly keeps the demo
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from kirby_cli.dagster_client import BACKFILL_DONE, BACKFILL_FAILED, DagsterClient
from kirby_pipelines.backfill_plans import LAKE_REFRESH_ASSETS, history_partitions
from kirby_pipelines.catalogs import DatabaseSeries
from kirby_pipelines.runs import by_exchange, recent_days


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
        self.days = sorted(recent_days(self.now.date() - timedelta(days=1), days))
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
            # one backfill per exchange: a run fetches from one exchange (see run_queue)
            for exchange, part in by_exchange(keys).items():
                title = f"{asset} {exchange} {self._span()}"
                self.history[title] = self.client.launch_backfill([asset], part, title)
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
            self.lake[title] = self.client.launch_backfill(list(LAKE_REFRESH_ASSETS), days, title)
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
