"""The collector: the feed, the intake, the flusher, the heartbeat and the catalog poll,
wired together for one `asyncio` run.

    Hyperliquid WS -> Feed.reader -> bounded frame queue -> Intake -> Buffers -> Flusher -> DB
                      Feed.keeper (ping, subscriptions, stall watchdog)      Heartbeat -> DB
                      catalog poll -> Feed.replace_catalog                      (one connection)

`Collector.run(stop)` loads the catalog (retrying while the database is unreachable), then
runs every part in one TaskGroup until `stop` is set. Stopping happens in order: the feed
stops reading and closes its connection, the intake drains the queue up to the feed's
last frame and closes open outage gaps, the flusher writes everything (retrying for at
most `stream_shutdown_seconds`), the heartbeat writes its last row. An unexpected error in
any part ends the run with that error (a supervisor restarts the collector); expected
failures (network, database, malformed frames) are handled where they happen. The heartbeat
says the collector's state (starting, running, degraded and why, stopped) and, through
`succession`, takes over from collectors that were killed or stopped before it.

Times of data (asset-context minutes, outage windows) come from `clock`, the wall clock
unless a test passes the simulator's virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kirby_core.db.urls import redact
from kirby_core.errors import StorageError
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import StreamCatalog, load_stream_catalog
from kirby_stream.database import SharedConnection
from kirby_stream.feed import Feed, FeedEvent, FeedHealth, Frame
from kirby_stream.flusher import Flusher
from kirby_stream.heartbeat import HeartbeatWriter, wall_time_of
from kirby_stream.intake import Intake
from kirby_stream.stats import Stats
from kirby_stream.succession import Predecessor

log = logging.getLogger(__name__)

QUEUE_FRAMES = 10_000
"""Frames between the socket and the parser: a fraction of a second of a 200-coin feed."""


def wall_clock() -> datetime:
    return datetime.now(UTC)


def default_collector_id(started_at: datetime) -> str:
    """Unique per run, also for several runs in one process (a successor claims by id)."""
    return f"{socket.gethostname()}-{os.getpid()}-{started_at:%Y%m%dT%H%M%S.%f}"


class Collector:
    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        collector_id: str | None = None,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        """`database_url`: the realtime database (`kirby_core.db.urls.resolve(...).realtime`)."""
        self.settings = settings
        self.database_url = database_url
        self.clock = clock
        started_at = datetime.now(UTC)
        self.stats = Stats(collector_id or default_collector_id(started_at), started_at)
        self.buffers = Buffers(settings.stream_max_buffered_rows)
        self.health = FeedHealth()
        self.intake = Intake(self.buffers, self.health, self.stats)
        self._feed: Feed | None = None
        self._frames: asyncio.Queue[Frame | FeedEvent] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        url = self.database_url
        database = SharedConnection(url, self.settings.stream_database_timeout_seconds)
        log.info(
            "event=collector_starting collector_id=%s ws=%s database=%s",
            self.stats.collector_id,
            self.settings.hyperliquid_ws_url,
            redact(url),
        )
        try:
            catalog = await self._first_catalog(database, stop)
            if catalog is not None:
                await self._run(database, catalog, stop)
        finally:
            await database.close()
        log.info("event=collector_stopped collector_id=%s", self.stats.collector_id)

    async def _run(
        self, database: SharedConnection, catalog: StreamCatalog, stop: asyncio.Event
    ) -> None:
        settings = self.settings
        frames: asyncio.Queue[Frame | FeedEvent] = asyncio.Queue(QUEUE_FRAMES)
        self._frames = frames
        self._feed = feed = Feed(settings, frames, self.health, self.clock, catalog)
        flusher = Flusher(settings, self.buffers, database, self.stats, self.clock)
        heartbeat = HeartbeatWriter(
            database,
            self.stats,
            settings.stream_heartbeat_seconds,
            self.refresh_stats,
            timedelta(seconds=settings.stream_stale_seconds),
            self._succeed,
        )
        self.intake.catalog = catalog  # predecessors' outages may come before a connection
        drained, flushed = asyncio.Event(), asyncio.Event()

        async def intake() -> None:
            await self.intake.run(frames)
            self.intake.close_gaps(self.clock())
            drained.set()

        async def flush() -> None:
            await flusher.run(drained)
            self._stopped = True
            flushed.set()

        async with asyncio.TaskGroup() as group:
            self._tasks = [
                group.create_task(feed.run(stop), name="feed"),
                group.create_task(intake(), name="intake"),
                group.create_task(flush(), name="flusher"),
                group.create_task(heartbeat.run(flushed), name="heartbeat"),
                group.create_task(self._poll_catalog(database, catalog, stop), name="catalog"),
            ]
        self.refresh_stats()

    async def _first_catalog(
        self, database: SharedConnection, stop: asyncio.Event
    ) -> StreamCatalog | None:
        backoff = Backoff(self.settings.stream_database_backoff_max_seconds)
        while not stop.is_set():
            try:
                catalog = await database.run(load_stream_catalog)
            except StorageError as exc:
                log.warning("event=catalog_unavailable cause=%s", exc)
                await pause(stop, backoff.next_delay())
                continue
            log.info(
                "event=catalog_loaded coins=%d starlistings=%d trading_pairs=%d",
                len(catalog.coins),
                len(catalog.candles),
                len(catalog.pairs),
            )
            return catalog
        return None

    async def _poll_catalog(
        self, database: SharedConnection, catalog: StreamCatalog, stop: asyncio.Event
    ) -> None:
        while not await pause(stop, self.settings.stream_catalog_poll_seconds):
            try:
                latest = await database.run(load_stream_catalog)
            except StorageError as exc:
                log.warning("event=catalog_poll_failed cause=%s", exc)
                continue
            if latest != catalog:
                log.info(
                    "event=catalog_changed coins=%d starlistings=%d trading_pairs=%d",
                    len(latest.coins),
                    len(latest.candles),
                    len(latest.pairs),
                )
                catalog = latest
                assert self._feed is not None
                self._feed.replace_catalog(catalog)

    def _succeed(self, predecessors: list[Predecessor]) -> None:
        self.intake.inherit(predecessors)
        oldest = min(old.covered_through for old in predecessors)
        covered = self.stats.covered_through
        self.stats.covered_through = oldest if covered is None else min(covered, oldest)

    def refresh_stats(self) -> None:
        """Copy the parts' own counters into `stats` (they keep them where they are hot)."""
        stats = self.stats
        if self._stopped:
            stats.state, stats.last_error = "stopped", None
        elif self._feed is not None:
            stats.state, stats.last_error = self._feed.state, self._feed.problem
        stats.dropped_rows = self.buffers.dropped
        stats.buffer_sizes = {
            **self.buffers.held(),
            "outages": len(self.buffers.outages),
            "frames": self._frames.qsize() if self._frames is not None else 0,
        }
        if self._feed is not None:
            stats.reconnects = self._feed.reconnects
        if self.intake.last_message is not None:
            stats.last_message_at = wall_time_of(self.intake.last_message)

    def snapshot(self) -> Stats:
        """A copy of the counters, up to date; call it on the collector's event loop."""
        self.refresh_stats()
        return self.stats.snapshot()
