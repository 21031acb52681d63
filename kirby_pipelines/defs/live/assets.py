"""What the live collector (kirby_stream) writes, as external assets with freshness policies.

Dagster does not produce these: the collector does, run by the `stream` job or by `kirby
stream`. The `live_data` sensor reports a materialization whenever newer rows have landed,
so the freshness policy says whether live data is flowing: warn after 3 minutes without a
new row, fail after 10. `live_books` (order-book samples and integrity counters) has no
freshness policy: it carries the two book checks (`checks.py`).
"""

from datetime import timedelta

import dagster as dg

from kirby_pipelines.defs.catalog.assets import realtime_catalog

LIVE_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(minutes=10), warn_window=timedelta(minutes=3)
)


def _live(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        group_name="live",
        kinds={"postgres"},
        deps=[realtime_catalog],
        description=description,
        freshness_policy=LIVE_FRESHNESS,
        metadata={"table": name.removeprefix("live_"), "written_by": "kirby_stream"},
    )


live_candles = _live(
    "live_candles", "Candles pushed by Hyperliquid's WebSocket, written as they form."
)
live_funding_rates = _live(
    "live_funding_rates",
    "The current hour's predicted funding (activeAssetCtx), one row per pair and minute.",
)
live_open_interest = _live(
    "live_open_interest",
    "Open interest and day volumes, one row per pair and minute (Hyperliquid has no history).",
)

live_books = dg.AssetSpec(
    "live_books",
    group_name="live",
    kinds={"postgres"},
    deps=[realtime_catalog],
    description=(
        "Order-book samples (top levels every second per pair) and the integrity counters "
        "per pair and minute that the collector keeps (tables books and book_integrity); "
        "checked by live_books_never_crossed and live_books_integrity_gaps."
    ),
    metadata={"table": "books", "written_by": "kirby_stream"},
)
