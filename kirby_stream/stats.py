"""The collector's counters: what the heartbeat row and the Dagster observations report.

Counters only grow while the collector runs. The candle message-to-commit latency (from a
frame's arrival to the commit of a flush holding its state) is kept as a histogram of 10 ms
buckets (`latency`), so percentiles cost no memory per message. All updates happen on the
collector's event loop; `snapshot` returns a detached copy that other threads may read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import msgspec

from kirby_core.datasets import DATASETS
from kirby_core.models import FeedReport
from kirby_stream.buffers import TRADES
from kirby_stream.latency import BUCKET_SECONDS, BUCKETS, Arrivals


@dataclass
class TableStats:
    rows_written: int = 0
    """Rows inserted or changed (re-upserts of an unchanged row are not counted)."""
    rows_flushed: int = 0
    last_time: datetime | None = None
    """Latest row time (candle open time, funding/OI minute) committed."""
    last_commit_at: datetime | None = None
    """Wall-clock time of the latest commit that held rows of this table."""


class FeedStats(FeedReport, kw_only=True):
    """One exchange's share of the counters: its report, plus when its latest frame or poll
    answer arrived on `time.monotonic()`."""

    last_message: float | None = None

    def report(self) -> FeedReport:
        """What the heartbeat row keeps (`stream_heartbeats.feeds`)."""
        return FeedReport(**{name: getattr(self, name) for name in FeedReport.__struct_fields__})


@dataclass
class Stats:
    collector_id: str
    started_at: datetime
    messages_received: int = 0
    invalid_messages: int = 0
    reconnects: int = 0
    dropped_rows: int = 0
    refused_rows: int = 0
    """Rows the database refused (bad value, constraint): rejected and logged, not retried."""
    duplicate_trades: int = 0
    """Trades the feed delivered again (a reconnect's replay), whether still buffered or
    already stored: counted, not written twice."""
    flushes: int = 0
    failed_flushes: int = 0
    outages_recorded: int = 0
    last_message_at: datetime | None = None
    state: str = "starting"
    """starting (no healthy connection yet), running, degraded (see `last_error`), stopped."""
    last_error: str | None = None
    """Why the collector is degraded: the exchange cannot be reached, or sends nothing."""
    covered_through: datetime | None = None
    """Everything received before this data time is stored (see `succession`)."""
    tables: dict[str, TableStats] = field(
        default_factory=lambda: {t: TableStats() for t in DATASETS}
    )
    """The minute tables (each a `live_<table>` asset in Dagster)."""
    trades: TableStats = field(default_factory=TableStats)
    """The trade tape."""
    buffer_sizes: dict[str, int] = field(default_factory=dict)
    feeds: dict[str, FeedStats] = field(default_factory=dict)
    """Exchange -> its feeds' state and counters."""
    latency_histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS, repr=False)

    def table(self, name: str) -> TableStats:
        """The counters of table `name` (a minute table or `trades`)."""
        return self.trades if name == TRADES else self.tables[name]

    @property
    def rows_written(self) -> dict[str, int]:
        """Per table (the trade tape included), rows inserted or changed."""
        written = {name: table.rows_written for name, table in self.tables.items()}
        return {**written, TRADES: self.trades.rows_written}

    def feed(self, exchange: str) -> FeedStats:
        return self.feeds.setdefault(exchange, FeedStats())

    def record_latencies(self, committed: float, received: Arrivals) -> None:
        histogram = self.latency_histogram
        for bucket, count in received.latencies(committed):
            histogram[bucket] += count

    def latency_percentile(self, fraction: float) -> float | None:
        """Seconds within which `fraction` of the candle messages were committed."""
        return percentile(self.latency_histogram, fraction)

    def snapshot(self) -> Stats:
        return replace(
            self,
            tables={name: replace(table) for name, table in self.tables.items()},
            trades=replace(self.trades),
            buffer_sizes=dict(self.buffer_sizes),
            feeds={name: msgspec.structs.replace(feed) for name, feed in self.feeds.items()},
            latency_histogram=list(self.latency_histogram),
        )


def percentile(histogram: list[int], fraction: float) -> float | None:
    """Seconds within which `fraction` of a latency histogram's messages were committed
    (None when it holds none)."""
    total = sum(histogram)
    if not total:
        return None
    threshold, seen = fraction * total, 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= threshold:
            return (bucket + 1) * BUCKET_SECONDS
    return BUCKETS * BUCKET_SECONDS
