"""Kirby's run coordinator: Dagster's run queue, with every backfill run tagged by exchange.

dagster.yaml lets one run per value of `kirby/exchange` (`runs.EXCHANGE_TAG`) be in
progress, so backfills of one exchange never add up past its REST weight limit, while the
other exchanges' runs go on. Kirby's own requests (sensors, schedules, `kirby backfill`, the
stack) carry the tag already; runs Dagster builds itself (a backfill launched from the UI,
the launchpad) get it here, from the series their partitions name, before they are queued.

A run never mixes exchanges: Dagster's multi-run backfill cuts a selection of fewer days
than series into one run per day over a range of series, which can span exchanges. Such a
run is failed here before it fetches anything, with a message saying how to launch it per
exchange; the series of one exchange are one range, so that backfill runs.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from kirby_pipelines.runs import EXCHANGE_TAG, exchange_of, run_series


class KirbyRunCoordinator(QueuedRunCoordinator):
    def submit_run(self, context: SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if EXCHANGE_TAG not in run.tags:
            exchanges = self._exchanges(run)
            if len(exchanges) == 1:
                self._instance.add_run_tags(run.run_id, {EXCHANGE_TAG: exchanges[0]})
            elif len(exchanges) > 1:
                self._instance.report_run_failed(
                    run,
                    f"this run covers series of {', '.join(exchanges)}; a backfill run fetches"
                    " from one exchange at a time. Launch the backfill once per exchange (filter"
                    " the series by `@<exchange>/`), or use `kirby backfill --exchange`.",
                )
                return self._instance.get_run_by_id(run.run_id) or run
        tagged = self._instance.get_run_by_id(run.run_id) or run
        return super().submit_run(context._replace(dagster_run=tagged))

    def _exchanges(self, run: dg.DagsterRun) -> list[str]:
        from kirby_pipelines.automation import PARTITIONS_OF

        names = {PARTITIONS_OF.get(key.to_user_string()) for key in run.asset_selection or ()}
        names.discard(None)
        order: list[str] = []
        for name in sorted(n for n in names if n is not None):
            order += self._instance.get_dynamic_partitions(name)
        try:
            return sorted({exchange_of(series) for series in run_series(run.tags, order)})
        except ValueError:
            return []  # an undeclared exchange: the run fails naming it, untagged
