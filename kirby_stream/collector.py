"""The collector: one process for every exchange. Per connection a feed and its intake, per
polled dataset a poller, all sharing the buffers, the flusher, the heartbeat and the catalog
poll, wired together for one `asyncio` run.

    exchange WS -> Feed.reader -> its frame queue -> its Intake --+
      (one per connection: Hyperliquid, Binance spot/futures,    |
       Bybit spot/linear, OKX public/business, Coinbase)          +-> Buffers -> Flusher -> DB
    exchange REST <- Poller (Binance OI, Coinbase 1m/15m/1d) -----+   Heartbeat -> DB
    catalog poll -> each Feed's / Poller's replace_plan                 (one connection)

Why one process: the database writes are one batch per flush for every exchange (one
connection, one transaction, one NOTIFY), the parsing of five exchanges' catalog fits one
core many times over (bench/stream), and one heartbeat with a `feeds` entry per exchange is
what the supervisor watches. Isolation comes from the layout: each connection has its own
queue, parser task, backoff and stall watchdog, so an exchange that is down, stalled,
flooding or malformed never delays another's frames; its outages are its own series'.

`Collector.run(stop)` loads the catalog (retrying while the database is unreachable), then
runs every part until `stop` is set. Stopping happens in order: each feed stops reading and
closes its connection, its intake drains its queue up to the feed's last frame and closes
open outage gaps, the pollers stop, the flusher writes everything (retrying for at most
`stream_shutdown_seconds`), the heartbeat writes its last row. An unexpected error in
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
from typing import Literal

import asyncpg

from kirby_core.db.urls import redact
from kirby_core.errors import StorageError
from kirby_core.exchanges.registry import EXCHANGES, feed_of
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.books import BookCollector
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedKey, FeedPlan, PollPlan, StreamCatalog, load_stream_catalog
from kirby_stream.contracts import ContractValues
from kirby_stream.database import SharedConnection
from kirby_stream.feed import Feed, FeedEvent, FeedHealth, Frame
from kirby_stream.flusher import Flusher
from kirby_stream.heartbeat import HeartbeatWriter, wall_time_of
from kirby_stream.intake import Intake
from kirby_stream.polls import Poller
from kirby_stream.stats import Stats
from kirby_stream.succession import Predecessor

log = logging.getLogger(__name__)

QUEUE_FRAMES = 10_000
"""Frames between one socket and its parser: a fraction of a second of a 200-coin feed."""
WORST_FIRST = ("degraded", "starting", "running")
State = Literal["starting", "running", "degraded"]


def wall_clock() -> datetime:
    return datetime.now(UTC)


def default_collector_id(started_at: datetime) -> str:
    """Unique per run, also for several runs in one process (a successor claims by id)."""
    return f"{socket.gethostname()}-{os.getpid()}-{started_at:%Y%m%dT%H%M%S.%f}"


class Lane:
    """One connection: its feed, its queue, its intake."""

    def __init__(self, feed: Feed, intake: Intake, frames: asyncio.Queue[Frame | FeedEvent]):
        self.feed, self.intake, self.frames = feed, intake, frames


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
        self.contracts = ContractValues(settings)
        self.lanes: dict[FeedKey, Lane] = {}
        self.pollers: dict[FeedKey, Poller] = {}
        self.books = BookCollector(
            settings, database_url, self.buffers, self.stats, clock, self.contracts
        )
        self._stop = asyncio.Event()
        self._lane_group: asyncio.TaskGroup | None = None
        self._stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        url = self.database_url
        database = SharedConnection(url, self.settings.stream_database_timeout_seconds)
        log.info(
            "event=collector_starting collector_id=%s database=%s",
            self.stats.collector_id,
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
        self._stop = stop
        flusher = Flusher(settings, self.buffers, database, self.stats, self.clock)
        heartbeat = HeartbeatWriter(
            database,
            self.stats,
            settings.stream_heartbeat_seconds,
            self.refresh_stats,
            timedelta(seconds=settings.stream_stale_seconds),
            self._succeed,
        )
        # Built before any task runs: predecessors' outages may come before a connection.
        for plan in catalog.feeds.values():
            self._add_feed(plan)
        for poll in catalog.polls.values():
            self._add_poll(poll)
        drained, flushed = asyncio.Event(), asyncio.Event()

        async def lanes() -> None:
            async with asyncio.TaskGroup() as group:
                self._lane_group = group
                for key in self.lanes:
                    self._start_feed(key)
                for key in self.pollers:
                    group.create_task(self.pollers[key].run(stop), name=f"poll {key}")
                group.create_task(self._poll_catalog(database, catalog, stop), name="catalog")
                group.create_task(self.books.run(stop), name="books")
            self._lane_group = None
            drained.set()

        async def flush() -> None:
            await flusher.run(drained)
            self._stopped = True
            flushed.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(lanes(), name="lanes")
            group.create_task(flush(), name="flusher")
            group.create_task(heartbeat.run(flushed), name="heartbeat")
        self.refresh_stats()

    def _add_feed(self, plan: FeedPlan) -> Lane:
        adapter = feed_of(EXCHANGES[plan.exchange])
        frames: asyncio.Queue[Frame | FeedEvent] = asyncio.Queue(QUEUE_FRAMES)
        health = FeedHealth()
        feed = Feed(self.settings, frames, health, self.clock, adapter, plan)
        lane = Lane(feed, Intake(self.buffers, health, self.stats, adapter, plan), frames)
        self.lanes[plan.key] = lane
        return lane

    def _start_feed(self, key: FeedKey) -> None:
        assert self._lane_group is not None
        lane = self.lanes[key]

        async def intake() -> None:
            await lane.intake.run(lane.frames)
            lane.intake.close_gaps(self.clock())

        self._lane_group.create_task(lane.feed.run(self._stop), name=f"feed {key}")
        self._lane_group.create_task(intake(), name=f"intake {key}")

    def _add_poll(self, plan: PollPlan) -> Poller:
        poller = Poller(self.settings, self.buffers, self.stats, plan, self.clock)
        self.pollers[plan.key] = poller
        return poller

    async def _first_catalog(
        self, database: SharedConnection, stop: asyncio.Event
    ) -> StreamCatalog | None:
        backoff = Backoff(self.settings.stream_database_backoff_max_seconds)
        while not stop.is_set():
            try:
                catalog = await database.run(self._load_catalog)
            except StorageError as exc:
                log.warning("event=catalog_unavailable cause=%s", exc)
                await pause(stop, backoff.next_delay())
                continue
            catalog = await self.contracts.attach(catalog)
            self._log_catalog("catalog_loaded", catalog)
            return catalog
        return None

    async def _load_catalog(self, conn: asyncpg.Connection) -> StreamCatalog:
        return await load_stream_catalog(conn, self.settings)

    @staticmethod
    def _log_catalog(event: str, catalog: StreamCatalog) -> None:
        log.info(
            "event=%s exchanges=%s connections=%d polls=%d subscriptions=%d series=%d",
            event,
            ",".join(catalog.exchanges) or "-",
            len(catalog.feeds),
            len(catalog.polls),
            catalog.subscriptions,
            catalog.series_count,
        )

    async def _poll_catalog(
        self, database: SharedConnection, catalog: StreamCatalog, stop: asyncio.Event
    ) -> None:
        while not await pause(stop, self.settings.stream_catalog_poll_seconds):
            try:
                latest = await database.run(self._load_catalog)
            except StorageError as exc:
                log.warning("event=catalog_poll_failed cause=%s", exc)
                continue
            latest = await self.contracts.attach(latest)
            if latest != catalog:
                self._log_catalog("catalog_changed", latest)
                catalog = latest
                self._apply(catalog)

    def _apply(self, catalog: StreamCatalog) -> None:
        """Hand every connection and poll its new plan; start the ones that are new."""
        for key, lane in self.lanes.items():
            lane.feed.replace_plan(catalog.feed(key))
        for key, plan in catalog.feeds.items():
            if key not in self.lanes:
                self._add_feed(plan)
                self._start_feed(key)
        for key, poller in self.pollers.items():
            poller.replace_plan(catalog.polls.get(key) or PollPlan(key[0], poller.plan.dataset, ()))
        for key, poll in catalog.polls.items():
            if key not in self.pollers and self._lane_group is not None:
                poller = self._add_poll(poll)
                self._lane_group.create_task(poller.run(self._stop), name=f"poll {key}")

    def _succeed(self, predecessors: list[Predecessor]) -> None:
        for old in predecessors:
            log.info(
                "event=predecessor_claimed collector_id=%s state=%s covered_through=%s",
                old.collector_id,
                old.state,
                old.covered_through.isoformat(),
            )
        for lane in self.lanes.values():
            lane.intake.inherit(predecessors)
        for poller in self.pollers.values():
            poller.inherit(predecessors)
        oldest = min(old.covered_through for old in predecessors)
        covered = self.stats.covered_through
        self.stats.covered_through = oldest if covered is None else min(covered, oldest)

    def refresh_stats(self) -> None:
        """Copy the parts' own counters into `stats` (they keep them where they are hot):
        per exchange the worst state of its connections and polls, then the collector's."""
        stats = self.stats
        self.books.refresh()
        parts: list[tuple[str, State, str | None, int]] = [
            (key[0], lane.feed.state, lane.feed.problem, lane.feed.reconnects)
            for key, lane in self.lanes.items()
        ]
        parts += [(key[0], p.state, p.problem, 0) for key, p in self.pollers.items()]
        for exchange in {part[0] for part in parts}:
            mine = [part for part in parts if part[0] == exchange]
            feed = stats.feed(exchange)
            worst = min(mine, key=lambda part: WORST_FIRST.index(part[1]))
            feed.state = "stopped" if self._stopped else worst[1]
            feed.last_error = None if self._stopped else worst[2]
            feed.reconnects = sum(part[3] for part in mine)
            feed.hand_overs = sum(
                lane.feed.hand_overs for key, lane in self.lanes.items() if key[0] == exchange
            )
            if feed.last_message is not None:
                feed.last_message_at = wall_time_of(feed.last_message)
        if self._stopped:
            stats.state, stats.last_error = "stopped", None
        elif parts:
            worst = min(parts, key=lambda part: WORST_FIRST.index(part[1]))
            stats.state = worst[1]
            troubled = sorted(
                f"{name}: {feed.last_error}"
                for name, feed in stats.feeds.items()
                if feed.state == "degraded" and feed.last_error
            )
            stats.last_error = "; ".join(troubled) or None
        stats.reconnects = sum(part[3] for part in parts)
        stats.dropped_rows = self.buffers.dropped
        stats.buffer_sizes = {
            **self.buffers.held(),
            "outages": len(self.buffers.outages),
            "frames": sum(lane.frames.qsize() for lane in self.lanes.values()),
        }
        latest = [lane.intake.last_message for lane in self.lanes.values()]
        latest += [f.last_message for f in stats.feeds.values()]
        seen = [moment for moment in latest if moment is not None]
        if seen:
            stats.last_message_at = wall_time_of(max(seen))

    def snapshot(self) -> Stats:
        """A copy of the counters, up to date; call it on the collector's event loop."""
        self.refresh_stats()
        return self.stats.snapshot()
