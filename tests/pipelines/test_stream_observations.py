"""A stream run's observations say the collector's state, and why it is degraded."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from kirby_pipelines.defs.stream.jobs import observations
from kirby_stream import Stats

REASON = "cannot reach api.hyperliquid.xyz: [Errno -3] Temporary failure in name resolution"


def test_observations_carry_the_collector_state_and_its_error() -> None:
    stats = Stats("dagster-run-1", datetime(2026, 12, 6, tzinfo=UTC))
    stats.state, stats.last_error = "degraded", REASON
    found = list(observations(stats, None))
    assert {o.asset_key for o in found} == {
        dg.AssetKey(name) for name in ("live_candles", "live_funding_rates", "live_open_interest")
    }
    for observation in found:
        assert observation.metadata["collector_state"].value == "degraded"
        assert observation.metadata["collector_error"].value == REASON


def test_a_running_collector_has_no_error_in_its_observations() -> None:
    stats = Stats("dagster-run-1", datetime(2026, 12, 6, tzinfo=UTC))
    stats.state = "running"
    for observation in observations(stats, None):
        assert observation.metadata["collector_state"].value == "running"
        assert "collector_error" not in observation.metadata
