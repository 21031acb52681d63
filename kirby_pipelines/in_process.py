"""Runs the CLI executes in its own process: the daemon's assets, quiet on the console.

Dagster's console logger prints every event at DEBUG (a year-long lake export: ~400 lines
before the CLI's own summary, and each failed step as a page of stack traces). The CLI
shows a progress bar, that summary and a failed run's root cause (`RunFailed`) instead, so
the console gets nothing from Dagster, or everything when Kirby logs at DEBUG. The instance
records every event either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from kirby_core.errors import KirbyError

LAUNCHED_BY_TAG = "kirby/launched_by"


def materialize(
    assets: Sequence[Any],
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    selection: Any = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """`dg.materialize`, tagged as launched by the CLI; failures are in the result."""
    level = "DEBUG" if logging.getLogger().isEnabledFor(logging.DEBUG) else "CRITICAL"
    return dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        tags={**tags, LAUNCHED_BY_TAG: "cli"},
        selection=selection,
        run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
    )


class RunFailed(KirbyError):
    """A run launched in process failed; `step_error` is its first failed step's error
    (Dagster's serialized exception with its cause chain), None for a `dg.Failure`."""

    def __init__(self, message: str, step_error: Any = None) -> None:
        super().__init__(message)
        self.step_error = step_error


def raise_on_failure(result: dg.ExecuteInProcessResult, what: str) -> None:
    if result.success:
        return
    failures = result.get_step_failure_events()
    data = failures[0].step_failure_data if failures else None
    if data is not None and data.user_failure_data and data.user_failure_data.description:
        raise RunFailed(f"{what} failed: {data.user_failure_data.description}")
    raise RunFailed(f"{what} failed (run {result.run_id})", data.error if data else None)
