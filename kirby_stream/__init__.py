"""Kirby's live collector: every exchange's WebSocket (and REST where a WebSocket lacks a
series) -> realtime PostgreSQL, around the clock.

    run_until_signalled   `kirby stream`: collect until SIGTERM/SIGINT, then flush and exit
    collector_thread      the same in a background thread (the Dagster `stream` job's op)
    Collector             one collector run on the caller's event loop (tests, benchmarks)
    read_heartbeats       the `stream_heartbeats` rows the Dagster supervisor judges by

What it keeps: candles of every active starlisting of an exchange that declares a live feed
(latest state per open time, flushed every `stream_flush_seconds`), and one funding-rate
and one open-interest row per trading pair per minute (latest value of the minute, flushed
when it closes), each flush with one NOTIFY per table. Gaps in what it saw are recorded in
`collection_outages`, the gap a killed predecessor left included (`succession`); its state
and each exchange's (degraded: why) in `stream_heartbeats`. See `collector` for how the
parts fit.
"""

from kirby_stream.collector import Collector
from kirby_stream.heartbeat import Heartbeat, read_heartbeats
from kirby_stream.runner import RunningCollector, collector_thread, run_until_signalled
from kirby_stream.stats import Stats, TableStats

__all__ = [
    "Collector",
    "Heartbeat",
    "RunningCollector",
    "Stats",
    "TableStats",
    "collector_thread",
    "read_heartbeats",
    "run_until_signalled",
]
