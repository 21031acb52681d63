"""One book connection's parsing stage: its depth frames and feed events in, local books,
integrity accounting, resync requests and `books` outages out.

Per connection one task consumes the frame queue of its own `Feed` (the collector's
connection class: connect, subscribe, ping, stall watchdog, reconnect with backoff). Each
depth frame goes through the wire module's `parse_depth` and the exchange's integrity rules
(`kirby_core.books`); anything else (acks, pongs, heartbeats, errors) through the
exchange's ordinary frame parser. After each frame every touched book is settled:

- whole (synced, no gap pending): an open outage closes at this frame's arrival;
- a gap (the rules dropped the book): an outage opens from the last applied update's
  arrival (the last moment the book is known right) and a resync is asked for: Binance
  fetches its REST depth snapshot (diffs meanwhile are buffered by the rules, then
  replayed; each snapshot first spends its weight from the process's REST budget and a
  429/418 holds them all for its Retry-After: `gates`), the others are resubscribed
  (unsubscribe, then subscribe: the exchange answers with a snapshot);
- a lost connection or a quiet symbol (`FeedLost`): the same outage from the last applied
  update; the book starts over (sequences restart with the next connection).

Counters (updates, gaps, resyncs, crossed) are the rules' own, summed over the books a
pair has had; `BookState` adds resyncs after a lost connection and the stale time (the
sampler measures it). Times are the data clock's (`received_at`), never the exchange's.

One module over 400 lines on purpose: frames, resyncs and feed events all change the same
`BookState`s and outages, and split apart each would reach into the others' state; what
stands alone (the snapshot budget and its holds) is `gates`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import aiohttp

from kirby_core.books import CoinbaseConnection, Counters, Outcome, SeriesBook, series_book
from kirby_core.errors import ExchangeProtocolError
from kirby_core.exchanges.base import parse_retry_after
from kirby_core.exchanges.feeds import ChannelError, DepthChannel, FrameGuard, SubscriptionAck
from kirby_core.exchanges.registry import StreamAdapter
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.books.gates import REFUSED_STATUSES, SnapshotGates
from kirby_stream.books.plan import BookPlan
from kirby_stream.feed import (
    CatalogReplaced,
    Connected,
    Feed,
    FeedEnded,
    FeedEvent,
    FeedHealth,
    FeedLost,
    Frame,
)
from kirby_stream.intake import LOG_EVERY, LOGGED_INVALID, YIELD_EVERY
from kirby_stream.outages import Outage

log = logging.getLogger(__name__)

DATASET = "books"
SNAPSHOT_TIMEOUT_SECONDS = 10.0
SNAPSHOT_SPACING_SECONDS = 1.0
"""At least this long between two REST snapshots of one book (Binance weighs a 1000-level
snapshot 50 of its 6000 a minute): a snapshot older than the buffered diffs asks for the
next one, never in a tight loop."""


@dataclass
class BookState:
    """One pair's book on its connection, and what it has cost so far."""

    symbol: str
    pair_id: int
    market_type: str
    book: SeriesBook
    carried: Counters = field(default_factory=Counters)
    """Counters of the books this pair had before (a lost connection starts a new one)."""
    reconnect_resyncs: int = 0
    down_since: datetime | None = None
    """The book is not trustworthy since then (an outage is open)."""
    down_reason: str = ""
    last_good_at: datetime | None = None
    """Arrival of the latest update the book applied."""
    ever_synced: bool = False
    stale_ms: int = 0
    """Cumulative milliseconds the book was not trustworthy (the sampler adds them)."""
    fetching: bool = False
    next_fetch: float = 0.0
    """time.monotonic() before which no REST snapshot is fetched again for this book."""

    def totals(self) -> tuple[int, int, int, int]:
        """(updates, gaps, resyncs, crossed) since the collector started."""
        now, before = self.book.counters, self.carried
        return (
            before.updates + now.updates,
            before.gaps + now.gaps,
            before.resyncs + now.resyncs + self.reconnect_resyncs,
            before.crossed + now.crossed,
        )

    @property
    def whole(self) -> bool:
        return self.book.synced and not self.book.needs_resync


@dataclass
class LaneCounters:
    messages: int = 0
    invalid: int = 0
    snapshots_fetched: int = 0
    snapshots_refused: int = 0
    """REST snapshots the exchange refused with 429/418 (retried after their Retry-After)."""
    resubscribes: int = 0


class BookLane:
    def __init__(
        self,
        settings: Settings,
        venue: DepthChannel,
        adapter: StreamAdapter,
        plan: BookPlan,
        feed: Feed,
        health: FeedHealth,
        record: Callable[[list[Outage]], None],
        clock: Callable[[], datetime],
        gates: SnapshotGates | None = None,
    ) -> None:
        """`gates`: the REST snapshot gates shared by the collector's book connections."""
        self.settings = settings
        self.venue = venue
        self.adapter = adapter
        self.plan = plan
        self.feed = feed
        self.health = health
        self.record = record
        self.clock = clock
        self.exchange = plan.feed.exchange
        self.counters = LaneCounters()
        self.gates = gates if gates is not None else SnapshotGates()
        self.books: dict[str, BookState] = {}
        self._connection = CoinbaseConnection() if venue.connection_sequence else None
        self._parse = FrameGuard(adapter.parser(), self.exchange)
        self._resubscribing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()
        for symbol in plan.pairs:
            self._add(symbol)

    # --- the books ---

    def _new_book(self, symbol: str, market_type: str) -> SeriesBook:
        if self._connection is not None:
            self._connection.books.pop(symbol, None)
            return self._connection.book(symbol)
        return series_book(self.exchange, market_type, symbol)

    def _add(self, symbol: str) -> None:
        market_type = self.plan.market_types[symbol]
        book = self._new_book(symbol, market_type)
        self.books[symbol] = BookState(symbol, self.plan.pairs[symbol], market_type, book)

    def _restart(self, state: BookState) -> None:
        """A new book for `state` (its counters carried over)."""
        counters = state.book.counters
        carried = state.carried
        for name in ("updates", "gaps", "resyncs", "stale", "restarts", "crossed"):
            setattr(carried, name, getattr(carried, name) + getattr(counters, name))
        state.book = self._new_book(state.symbol, state.market_type)

    # --- the queue ---

    async def run(
        self,
        frames: asyncio.Queue[Frame | FeedEvent],
        http: aiohttp.ClientSession,
        stop: asyncio.Event,
    ) -> None:
        """Handle frames and events until the feed's `FeedEnded`."""
        self._http, self._stop = http, stop
        handled = 0
        try:
            while True:
                item = await frames.get()
                if type(item) is tuple:
                    self.frame(*item)
                elif isinstance(item, FeedEnded):
                    return
                else:
                    self.event(cast(FeedEvent, item))
                handled += 1
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def frame(self, text: str | bytes, received_at: datetime, received: float) -> None:
        self.counters.messages += 1
        try:
            updates = self.venue.parse(text, received_at)
        except ExchangeProtocolError:
            self._control(text, received_at)
            return
        touched: list[BookState] = []
        for update in updates:
            state = self.books.get(update.symbol)
            if state is None:
                if update.symbol not in self._resubscribing:
                    self._invalid(f"book {update.symbol}: not a subscribed book of the catalog")
                continue
            outcome = (
                self._connection.feed(update)
                if self._connection is not None
                else state.book.feed(update)
            )
            if outcome is Outcome.APPLIED:
                state.last_good_at = received_at
            self.health.last_data[update.symbol] = received
            self.health.data_seen = True
            touched.append(state)
        self._settle(self.books.values() if self._connection is not None else touched, received_at)

    def _control(self, text: str | bytes, received_at: datetime) -> None:
        parse = self._parse
        errors = parse.errors
        messages = parse(text, received_at)
        if parse.errors != errors:
            self._invalid(parse.last_error or "malformed frame")
            return
        if self._connection is not None and self.venue.connection_sequence:
            sequence = _field(text, self.venue.connection_sequence)
            if isinstance(sequence, int):
                self._connection.note(sequence, received_at)
                self._settle(self.books.values(), received_at)
        for message in messages:
            if isinstance(message, SubscriptionAck) and message.method == "subscribe":
                self.health.acks += 1
            elif isinstance(message, ChannelError):
                log.warning(
                    "event=book_channel_error exchange=%s message=%r",
                    self.exchange,
                    message.message[:300],
                )

    def _settle(self, states: Any, at: datetime) -> None:
        resubscribe: list[str] = []
        for state in states:
            book = state.book
            if state.whole:
                state.ever_synced = True
                if state.down_since is not None:
                    self._close(state, at)
            elif book.needs_resync and state.down_since is None:
                gap = book.gaps[-1] if book.gaps else None
                reason = f"sequence gap: {gap.expected}, got {gap.got}" if gap else "sequence gap"
                self._open(state, at, reason)
                log.warning(
                    "event=book_gap exchange=%s symbol=%s reason=%r",
                    self.exchange,
                    state.symbol,
                    reason,
                )
                if self.venue.snapshot_url is None:
                    resubscribe.append(state.symbol)
            if (
                not state.whole
                and self.venue.snapshot_url is not None
                and not state.fetching
                and (book.needs_resync or not book.synced)
            ):
                self._fetch(state)
        if resubscribe:
            self._resubscribe(resubscribe)

    def _open(self, state: BookState, at: datetime, reason: str) -> None:
        state.down_since = state.last_good_at or at
        state.down_reason = reason

    def _close(self, state: BookState, at: datetime) -> None:
        start = state.down_since
        assert start is not None
        state.down_since = None
        if at > start:
            self.record([Outage(DATASET, state.pair_id, start, at, f"book {state.down_reason}")])

    def close_outages(self, at: datetime, reason: str) -> None:
        """The collector stops: open outages end now."""
        for state in self.books.values():
            if state.down_since is not None:
                state.down_reason = f"{state.down_reason}; then {reason}"
                self._close(state, at)

    # --- resync ---

    def _resubscribe(self, symbols: list[str]) -> None:
        """Unsubscribe then subscribe again: the feed applies the first plan, says so with
        `CatalogReplaced`, and the full plan goes back (`event`)."""
        fresh = set(symbols) - self._resubscribing
        if not fresh:
            return
        self._resubscribing |= fresh
        self.counters.resubscribes += 1
        self.feed.replace_plan(self.plan.without(self._resubscribing))

    def _fetch(self, state: BookState) -> None:
        state.fetching = True
        task = asyncio.create_task(self._snapshot(state), name=f"book snapshot {state.symbol}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, state: BookState) -> None:
        """Fetch the REST depth snapshot until one arrives (backoff between tries), then feed
        it to the rules; a snapshot that still leaves a gap asks for the next one."""
        venue = self.venue
        assert venue.snapshot_url is not None and venue.parse_snapshot is not None
        assert self._http is not None
        url = venue.snapshot_url(self.settings, state.market_type, state.symbol)
        spend = (
            None
            if venue.snapshot_spend is None
            else venue.snapshot_spend(self.settings, state.market_type, self.gates.clock)
        )
        gate = None if spend is None else self.gates.gate(spend[0])
        backoff = Backoff(self.settings.stream_reconnect_backoff_max_seconds)
        fed = False
        try:
            while not self._stop.is_set():
                wait = state.next_fetch - time.monotonic()
                if wait > 0 and await pause(self._stop, wait):
                    return
                if gate is not None and spend is not None:
                    await gate.enter(spend[1])
                state.next_fetch = time.monotonic() + SNAPSHOT_SPACING_SECONDS
                try:
                    async with asyncio.timeout(SNAPSHOT_TIMEOUT_SECONDS):
                        async with self._http.get(url) as response:
                            if response.status in REFUSED_STATUSES:
                                retry_after = parse_retry_after(response.headers)
                                raise _Refused(response.status, retry_after)
                            response.raise_for_status()
                            payload = await response.json(content_type=None)
                    update = venue.parse_snapshot(payload, state.symbol, self.clock())
                except _Refused as exc:
                    self.counters.snapshots_refused += 1
                    delay = backoff.next_delay()
                    if gate is not None:  # every snapshot of the budget waits it out
                        delay = gate.refused(exc.retry_after, delay)
                    log.warning(
                        "event=book_snapshot_refused exchange=%s symbol=%s status=%d "
                        "retry_after_s=%s hold_s=%.3f refused=%d",
                        self.exchange,
                        state.symbol,
                        exc.status,
                        exc.retry_after,
                        delay,
                        self.counters.snapshots_refused,
                    )
                    if gate is None and await pause(self._stop, delay):
                        return
                    continue
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning(
                        "event=book_snapshot_failed exchange=%s symbol=%s cause=%r",
                        self.exchange,
                        state.symbol,
                        str(exc) or type(exc).__name__,
                    )
                    if await pause(self._stop, backoff.next_delay()):
                        return
                    continue
                except ExchangeProtocolError as exc:
                    self._invalid(str(exc))
                    if await pause(self._stop, backoff.next_delay()):
                        return
                    continue
                self.counters.snapshots_fetched += 1
                fed, state.fetching = True, False  # `_settle` may start the next one
                if self.books.get(state.symbol) is state:
                    at = self.clock()
                    if state.book.feed(update) is Outcome.APPLIED and state.book.synced:
                        state.last_good_at = at
                    self._settle([state], at)  # may ask for the next snapshot
                return
        finally:
            if not fed:  # stopped, cancelled or failed: no fetch is under way for it
                state.fetching = False

    # --- feed events ---

    def event(self, event: FeedEvent) -> None:
        if isinstance(event, Connected):
            self.health.generation = event.generation
            self.health.acks = 0
            self.health.data_seen = False
            self._parse = FrameGuard(self.adapter.parser(), self.exchange)
            if self._connection is not None:  # its numbers count this connection's frames
                self._connection = CoinbaseConnection()
                for state in self.books.values():
                    self._restart(state)
        elif isinstance(event, FeedLost):
            for symbol in event.symbols:
                lost = self.books.get(symbol)
                if lost is None:
                    continue
                state = lost
                if state.down_since is None and state.ever_synced:
                    self._open(state, event.at, f"feed lost: {event.reason}")
                    state.reconnect_resyncs += 1  # the next snapshot makes it whole again
                self._restart(state)
        elif (
            isinstance(event, CatalogReplaced)
            and self._resubscribing
            and not (self._resubscribing & event.plan.symbols)
        ):
            self._resubscribing.clear()  # unsubscribed: now subscribe them again
            self.feed.replace_plan(self.plan.feed)

    def replace_plan(self, plan: BookPlan) -> None:
        """The catalog changed: books of new pairs start, those of removed pairs end."""
        at = self.clock()
        for symbol in set(self.books) - set(plan.pairs):
            state = self.books.pop(symbol)
            if state.down_since is not None:
                state.down_reason = f"{state.down_reason}; then no longer collected"
                self._close(state, at)
        self.plan = plan
        for symbol in set(plan.pairs) - set(self.books):
            self._add(symbol)
        self.feed.replace_plan(plan.without(self._resubscribing))

    def _invalid(self, reason: str) -> None:
        self.counters.invalid += 1
        if self.counters.invalid <= LOGGED_INVALID or self.counters.invalid % LOG_EVERY == 0:
            log.warning(
                "event=invalid_book_message exchange=%s count=%d reason=%s",
                self.exchange,
                self.counters.invalid,
                reason[:300],
            )


class _Refused(Exception):
    """The exchange refused a REST snapshot: over its limits (429) or banned (418)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def _field(text: str | bytes, name: str) -> object:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message.get(name) if isinstance(message, dict) else None
