"""Which rows coverage expects of a series: one rule per dataset.

What "expected" means is declared once per dataset (`EXPECTED`) and computed by one
function, `expected_rows`; the classifier `kirby_core.db.coverage.classify_days` (which
every coverage surface calls) and the funding asset check ask it. Candles expect one row per
interval once it has closed; open interest one per point of the exchange's history
(`open_interest_interval`: 5 minutes on Binance, Bybit and OKX, so a backfilled day reads
288 of 288 and a live one too; a minute where no history exists), any row inside the
interval counting for it; funding expects one *settled* rate per settlement of the series'
exchange (its declared `funding_interval`: hourly on Hyperliquid, every 8 h on Binance, Bybit
and OKX; the rows the funding history backfills and the only ones any source can re-fetch),
counted once the settlement is a minute old, so a day of backfilled Hyperliquid funding
reads 24 of 24 and of Binance funding 3 of 3, not 24 of 1440 minutes.

Pages of rows are read where they are served: the API's `kirby_api.market_data` (prepared
statements that build JSON in the database) and the exports' `kirby_core.db.copy_reader` (COPY).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kirby_core.datasets import RECORDED_DATASETS
from kirby_core.timeutil import expected_count, floor_time, interval_delta


@dataclass(frozen=True)
class Expected:
    """Which rows of a dataset coverage expects."""

    interval: str | None
    """One row per this interval; None: the series' own interval (candles), or with
    `per_settlement` the exchange's declared `funding_interval`."""
    counted: str
    """SQL condition a stored row must meet to count (fixed text, never from a request)."""
    due_after: timedelta | None
    """How long after its time a row can exist; None: one interval (the row has closed)."""
    per_settlement: bool = False
    """One row per settlement of the series' exchange (`funding_interval`)."""
    per_history_point: bool = False
    """One row per point of the exchange's open-interest history (`open_interest_interval`
    where it publishes one, else a minute): any row inside the interval counts for it."""


EXPECTED = {
    "candles": Expected(None, "true", None),
    "funding_rates": Expected(
        None, "settled_funding_rate IS NOT NULL", timedelta(minutes=1), per_settlement=True
    ),
    "open_interest": Expected(None, "true", None, per_history_point=True),
}
# The recorded datasets that are not minute tables (the trade tape, the book samples) are
# counted by the minute: a minute with a trade (a sample) is present, and
# `kirby_core.db.coverage` explains the others.
EXPECTED |= {
    name: Expected("1m", "true", None) for name in RECORDED_DATASETS if name not in EXPECTED
}


def coverage_interval(dataset: str, interval: str, exchange: str) -> str:
    """The interval coverage counts `dataset` in for a series of `exchange` (`interval`: the
    series' own)."""
    rule = EXPECTED[dataset]
    if rule.per_settlement:
        # Imported here: kirby_core.exchanges pulls in ccxt, which only this answer needs.
        from kirby_core.exchanges.registry import funding_interval

        return funding_interval(exchange)
    if rule.per_history_point:
        from kirby_core.exchanges.registry import open_interest_interval

        return open_interest_interval(exchange)
    return rule.interval or interval


def expected_rows(
    dataset: str, interval: str, exchange: str, start: datetime, end: datetime, now: datetime
) -> int:
    """Rows of `dataset` that a series of `exchange` should have with start <= time < end
    as of `now` (`interval`: the series' own)."""
    rule = EXPECTED[dataset]
    step = coverage_interval(dataset, interval, exchange)
    due = floor_time(now - (rule.due_after or interval_delta(step)), step) + interval_delta(step)
    end = min(end, due)
    return expected_count(start, end, step) if end > start else 0
