"""Runs the CLI executes in its own process: the daemon's assets, quiet on the console.

Dagster's console logger prints every event at DEBUG (a year-long lake export: ~400 lines
before the CLI's own summary). The CLI shows a progress bar and that summary instead, so
the console gets Dagster's warnings and errors only, or everything when Kirby logs at
DEBUG. The instance records every event either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

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
    level = "DEBUG" if logging.getLogger().isEnabledFor(logging.DEBUG) else "WARNING"
    return dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        tags={**tags, LAUNCHED_BY_TAG: "cli"},
        selection=selection,
        run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}},
        raise_on_error=False,
    )
