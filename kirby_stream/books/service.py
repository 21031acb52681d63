"""The book collector: every book connection, the sampler and the book writer, run beside
the candle collector in one process (`Collector` starts it).

    exchange depth WS -> Feed -> its queue -> BookLane (books, rules, resyncs, outages)
                                                 | every books_sample_seconds
                                                 v
                                  BookCollector.sample -> samples, integrity minutes
                                                 | every stream_flush_seconds
                                                 v
                                  own DB connection: books, book_integrity (one transaction)

Separate from the candle path on purpose: own connections (a depth flood fills only its own
socket and queue; TCP pushes back on the exchange, not on candles), own parser tasks, own
database connection (a slow book write never holds the candle flush's). Outage rows of
books go through the shared `Buffers.record_outages` (a handful of rows, the one home of
outage recording) and are written by the candle flusher.

Sampling: each tick, per book that is whole (synced, no gap pending) and fresh (an update
applied within `books_stale_seconds`), its top `books_levels` a side with the exchange's
sequence, stamped with the tick's whole second; a crossed book is never stored. Sizes are
stored in the base coin: a book counting contracts (OKX swaps) has its sampled sizes
multiplied by the contract values the trades use (`kirby_stream.contracts`, read by the
collector's `ContractValues`); until its value is known such a book is not sampled.

Over 400 lines on purpose: running, sampling, writing and reporting all read the lanes and
the held samples; the per-connection work is `lane`, the planning `plan`. A book
that is not trustworthy adds the tick's elapsed time to its stale time (once it has been
whole before: a book not built yet is not stale). Per pair and minute the integrity
counters (updates, gaps, resyncs, crossed: differences of the rules' counters; stale_ms)
are upserted as that minute's running totals.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import aiohttp
import asyncpg

from kirby_core.db import books as book_store
from kirby_core.db import notify
from kirby_core.db.books import BookRow, IntegrityRow
from kirby_core.errors import StorageError
from kirby_core.exchanges.registry import EXCHANGES, feed_of
from kirby_core.models import BookReport
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.books.gates import SnapshotGates
from kirby_stream.books.lane import BookLane, BookState
from kirby_stream.books.plan import BookPlan, load_book_plans
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedKey
from kirby_stream.contracts import ContractValues, in_coin
from kirby_stream.database import SharedConnection
from kirby_stream.feed import Feed, FeedEvent, FeedHealth, Frame
from kirby_stream.outages import Outage
from kirby_stream.stats import Stats

log = logging.getLogger(__name__)

DEPTH_QUEUE_FRAMES = 10_000
"""Depth frames between a book socket and its lane: a second of a busy exchange's books."""
STALE_MS_MAX = 60_000
"""A minute's stale time is at most the minute (book_integrity's CHECK)."""


class _Minute:
    """A pair's integrity over the current minute: the totals of its book when it began."""

    __slots__ = ("base", "minute", "stale_base", "state")

    def __init__(
        self, state: BookState, minute: datetime, base: tuple[int, int, int, int], stale: int
    ) -> None:
        self.state, self.minute, self.base, self.stale_base = state, minute, base, stale


class BookCollector:
    def __init__(
        self,
        settings: Settings,
        database_url: str,
        buffers: Buffers,
        stats: Stats,
        clock: Callable[[], datetime],
        contracts: ContractValues | None = None,
    ) -> None:
        """`contracts`: the collector's contract values (its trades use the same)."""
        self.settings = settings
        self.contracts = contracts if contracts is not None else ContractValues(settings)
        self.database_url = database_url
        self.buffers = buffers
        self.stats = stats
        self.clock = clock
        self.lanes: dict[FeedKey, tuple[Feed, BookLane, asyncio.Queue[Frame | FeedEvent]]] = {}
        self.samples: deque[BookRow] = deque()
        self.integrity: dict[tuple[int, datetime], IntegrityRow] = {}
        self.samples_taken: dict[str, int] = {}
        self.dropped_samples = 0
        self.unvalued_samples = 0
        """Samples not taken: the book counts contracts of a value not read yet."""
        self._unvalued: set[tuple[str, str]] = set()
        self._minutes: dict[int, _Minute] = {}
        self._last_tick: datetime | None = None
        self._last_second: datetime | None = None
        self._group: asyncio.TaskGroup | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopped = False
        self.snapshot_gates = SnapshotGates()
        """REST snapshots of every book connection spend the process's budgets through
        these (one a budget: a Retry-After holds them all)."""

    # --- running ---

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the books until `stop`; then close open outages and write what is held."""
        if not self.settings.books_enabled:
            return
        database = SharedConnection(
            self.database_url, self.settings.stream_database_timeout_seconds
        )
        try:
            plans = await self._first_plans(database, stop)
            if plans is None:
                return
            async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as group:
                self._http, self._group = http, group
                for plan in plans.values():
                    self._start(plan, stop)
                group.create_task(self._sample_loop(stop), name="books sampler")
                group.create_task(self._catalog_loop(database, plans, stop), name="books catalog")
                group.create_task(self._write_loop(database, stop), name="books writer")
        finally:
            self._stopped = True
            await database.close()

    def _start(self, plan: BookPlan, stop: asyncio.Event) -> None:
        assert self._group is not None and self._http is not None
        exchange = plan.feed.exchange
        adapter = feed_of(EXCHANGES[exchange])
        frames: asyncio.Queue[Frame | FeedEvent] = asyncio.Queue(DEPTH_QUEUE_FRAMES)
        health = FeedHealth()
        feed = Feed(self.settings, frames, health, self.clock, adapter, plan.feed)
        assert adapter.depth is not None  # only exchanges with a depth channel have plans
        lane = BookLane(
            self.settings,
            adapter.depth,
            adapter,
            plan,
            feed,
            health,
            lambda outages: self._record(exchange, outages),
            self.clock,
            self.snapshot_gates,
        )
        self.lanes[plan.key] = (feed, lane, frames)
        http = self._http

        async def intake() -> None:
            await lane.run(frames, http, stop)
            lane.close_outages(self.clock(), "collector stopped")

        self._group.create_task(feed.run(stop), name=f"book feed {plan.key}")
        self._group.create_task(intake(), name=f"book intake {plan.key}")

    def _record(self, exchange: str, outages: list[Outage]) -> None:
        self.buffers.record_outages(exchange, outages)
        self.stats.feed(exchange).outages += len(outages)

    async def _first_plans(
        self, database: SharedConnection, stop: asyncio.Event
    ) -> dict[FeedKey, BookPlan] | None:
        backoff = Backoff(self.settings.stream_database_backoff_max_seconds)
        while not stop.is_set():
            try:
                plans = await database.run(self._load)
            except StorageError as exc:
                log.warning("event=book_catalog_unavailable cause=%s", exc)
                await pause(stop, backoff.next_delay())
                continue
            plans = await self._valued(plans)
            log.info(
                "event=books_planned connections=%d books=%d",
                len(plans),
                sum(len(p.pairs) for p in plans.values()),
            )
            return plans
        return None

    async def _load(self, conn: asyncpg.Connection) -> dict[FeedKey, BookPlan]:
        return await load_book_plans(conn, self.settings)

    async def _valued(self, plans: dict[FeedKey, BookPlan]) -> dict[FeedKey, BookPlan]:
        """`plans` with the contract values of their `contracts` symbols (read first where
        one is missing; one not read yet is asked for again at the next catalog poll)."""
        valued = {}
        for key, plan in plans.items():
            if plan.contracts:
                values = await self.contracts.values(plan.feed.exchange, plan.contracts)
                plan = replace(plan, contract_values=values)
            valued[key] = plan
        return valued

    async def _catalog_loop(
        self, database: SharedConnection, plans: dict[FeedKey, BookPlan], stop: asyncio.Event
    ) -> None:
        while not await pause(stop, self.settings.stream_catalog_poll_seconds):
            try:
                latest = await database.run(self._load)
            except StorageError as exc:
                log.warning("event=book_catalog_poll_failed cause=%s", exc)
                continue
            latest = await self._valued(latest)
            if latest == plans:
                continue
            for key, (_, lane, _) in self.lanes.items():
                lane.replace_plan(latest.get(key) or BookPlan(lane.plan.without(lane.plan.pairs)))
            for key, plan in latest.items():
                if key not in self.lanes:
                    self._start(plan, stop)
            plans = latest

    # --- sampling ---

    async def _sample_loop(self, stop: asyncio.Event) -> None:
        every = self.settings.books_sample_seconds
        while True:
            now = self.clock()
            # wake at the next whole sample instant (on the wall clock: once a second)
            delay = every - (now.timestamp() % every)
            if await pause(stop, delay):
                return
            self.sample(self.clock())

    def sample(self, now: datetime) -> None:
        """One tick: stale time, samples of the trustworthy books, integrity minutes."""
        second = now.replace(microsecond=0)
        minute = second.replace(second=0)
        elapsed_ms = 0
        if self._last_tick is not None:
            elapsed_ms = max(0, int((now - self._last_tick) / timedelta(milliseconds=1)))
        self._last_tick = now
        fresh_second = second != self._last_second
        self._last_second = second
        stale_after = timedelta(seconds=self.settings.books_stale_seconds)
        levels = self.settings.books_levels
        for _, lane, _ in self.lanes.values():
            for state in lane.books.values():
                trustworthy = (
                    state.whole
                    and state.down_since is None
                    and state.last_good_at is not None
                    and now - state.last_good_at <= stale_after
                )
                if not trustworthy and (state.ever_synced or state.down_since is not None):
                    state.stale_ms += min(elapsed_ms, STALE_MS_MAX)
                if trustworthy and fresh_second:
                    self._take(state, second, levels, lane)
                self._account(state, minute)
        self._bound()

    def _take(self, state: BookState, second: datetime, levels: int, lane: BookLane) -> None:
        bids, asks = state.book.book.top(levels)
        if bids and asks and bids[0][0] >= asks[0][0]:
            return  # counted by the rules (`crossed`); never stored
        plan = lane.plan
        if state.symbol in plan.contracts:
            value = plan.contract_values.get(state.symbol)
            if value is None:
                self._no_contract_value(lane.exchange, state.symbol)
                return
            bids = tuple((price, in_coin(size, value)) for price, size in bids)
            asks = tuple((price, in_coin(size, value)) for price, size in asks)
        sequence = state.book.last_sequence if lane.venue.sequenced else None
        self.samples.append(BookRow(state.pair_id, second, sequence, bids, asks))
        self.samples_taken[lane.exchange] = self.samples_taken.get(lane.exchange, 0) + 1

    def _no_contract_value(self, exchange: str, symbol: str) -> None:
        self.unvalued_samples += 1
        if (exchange, symbol) not in self._unvalued:
            self._unvalued.add((exchange, symbol))
            log.warning(
                "event=book_samples_skipped exchange=%s symbol=%s reason=no contract value",
                exchange,
                symbol,
            )

    def _account(self, state: BookState, minute: datetime) -> None:
        """Count `state`'s totals into its pair's current minute. A book's first minute
        starts from zero: what happened before its first tick (a gap right after the first
        snapshot) is that minute's."""
        totals = state.totals()
        current = self._minutes.get(state.pair_id)
        if current is None or current.state is not state:
            current = self._minutes[state.pair_id] = _Minute(state, minute, (0, 0, 0, 0), 0)
        elif current.minute != minute:
            self._integrity(state.pair_id, current, totals, state.stale_ms)
            current = self._minutes[state.pair_id] = _Minute(state, minute, totals, state.stale_ms)
        self._integrity(state.pair_id, current, totals, state.stale_ms)

    def _integrity(
        self, pair: int, current: _Minute, totals: tuple[int, int, int, int], stale: int
    ) -> None:
        updates, gaps, resyncs, crossed = (
            now - then for now, then in zip(totals, current.base, strict=True)
        )
        stale_ms = min(STALE_MS_MAX, stale - current.stale_base)
        self.integrity[pair, current.minute] = IntegrityRow(
            pair, current.minute, updates, gaps, resyncs, stale_ms, crossed
        )

    def _bound(self) -> None:
        over = len(self.samples) - self.settings.stream_max_buffered_rows
        if over > 0:
            for _ in range(over):
                self.samples.popleft()
            self.dropped_samples += over
            log.warning(
                "event=book_samples_dropped dropped=%d total=%d", over, self.dropped_samples
            )

    # --- writing ---

    async def _write_loop(self, database: SharedConnection, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.stream_database_backoff_max_seconds)
        while not await pause(stop, self.settings.stream_flush_seconds):
            if await self._flush(database):
                backoff.reset()
            elif await pause(stop, backoff.next_delay()):
                break
        # the lanes end with the feeds; one last try for what is held
        deadline = asyncio.get_running_loop().time() + self.settings.stream_shutdown_seconds
        while not await self._flush(database):
            if asyncio.get_running_loop().time() >= deadline:
                log.warning(
                    "event=book_samples_lost_on_stop samples=%d minutes=%d",
                    len(self.samples),
                    len(self.integrity),
                )
                return
            await asyncio.sleep(0.2)

    async def _flush(self, database: SharedConnection) -> bool:
        samples = list(self.samples)
        integrity = dict(self.integrity)
        if not samples and not integrity:
            return True

        async def write(conn: asyncpg.Connection) -> book_store.BookWriteResult:
            async with conn.transaction():
                result = await book_store.write_books(conn, samples)
                await book_store.write_book_integrity(conn, list(integrity.values()))
                await notify.notify(conn, book_store.BOOKS_TABLE, _spans(samples))
                return result

        try:
            result = await database.run(write)
        except StorageError as exc:
            log.warning("event=book_flush_failed samples=%d cause=%s", len(samples), exc)
            return False
        for _ in range(len(samples)):
            self.samples.popleft()
        current = self.clock().replace(second=0, microsecond=0)
        for key, row in integrity.items():
            if key[1] < current and self.integrity.get(key) is row:
                del self.integrity[key]
        if result.rejected:
            self.stats.refused_rows += len(result.rejected)
        return True

    # --- reporting ---

    def refresh(self) -> None:
        """Each exchange's `books` report in the heartbeat's feeds."""
        # the collector's order of states; imported here, as the collector imports this module
        from kirby_stream.collector import WORST_FIRST

        by_exchange: dict[str, list[tuple[Feed, BookLane]]] = {}
        for feed, lane, _ in self.lanes.values():
            by_exchange.setdefault(lane.exchange, []).append((feed, lane))
        for exchange, parts in by_exchange.items():
            states = [state for _, lane in parts for state in lane.books.values()]
            totals = [state.totals() for state in states]
            worst = min((feed.state for feed, _ in parts), key=WORST_FIRST.index)
            self.stats.feed(exchange).books = BookReport(
                state="stopped" if self._stopped else worst,
                books=len(states),
                whole=sum(1 for s in states if s.whole and s.down_since is None),
                messages_received=sum(lane.counters.messages for _, lane in parts),
                invalid_messages=sum(lane.counters.invalid for _, lane in parts),
                updates=sum(t[0] for t in totals),
                gaps=sum(t[1] for t in totals),
                resyncs=sum(t[2] for t in totals),
                crossed=sum(t[3] for t in totals),
                stale_ms=sum(s.stale_ms for s in states),
                samples=self.samples_taken.get(exchange, 0),
                snapshots_refused=sum(lane.counters.snapshots_refused for _, lane in parts),
            )


def _spans(samples: list[BookRow]) -> dict[int, list[datetime]]:
    """Pair id -> [first, last] sample time written (the change event's payload)."""
    spans: dict[int, list[datetime]] = {}
    for row in samples:
        span = spans.get(row.trading_pair_id)
        if span is None:
            spans[row.trading_pair_id] = [row.time, row.time]
        else:
            span[0], span[1] = min(span[0], row.time), max(span[1], row.time)
    return spans
