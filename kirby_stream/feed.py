"""One exchange WebSocket connection: connect, subscribe, read, keep alive, watch, retry.

`Feed.run` keeps one connection open until the collector stops; it speaks whatever exchange
its `StreamAdapter` declares (URL, subscribe requests within the connection's limits, the
client ping, a greeting frame) and subscribes what its `FeedPlan` lists. Per connection two
tasks run side by side:

- the reader stamps each text frame with its arrival (data clock and monotonic) and puts
  it on the bounded frame queue; when the parser falls behind, `put` waits and TCP pushes
  back on the exchange instead of memory growing;
- the keeper, about once a second: applies catalog changes (subscribe/unsubscribe without
  reconnecting), pings as the exchange asks (Hyperliquid closes a connection after 60 s
  without a client message; Binance pings itself and `websockets` answers), reports the
  connection healthy once every subscribe request is acknowledged and data flows (which
  resets the reconnect backoff), and runs the stall watchdog on
  `time.monotonic()`: with no data from any symbol for `stream_stall_seconds` the connection
  is replaced; a single symbol that quiet while the others flow is resubscribed. Only
  silence this process was awake to see counts: when the keeper itself wakes a quarter of
  the stall window late or more (the host or process was paused: a VM's CPU stolen, a
  SIGSTOP), what came meanwhile is still unread in the socket, so the watch starts over. A
  trade tape is quiet whenever nobody trades, so only symbols that also carry a steady
  channel here (candles, funding, open interest) are watched; a connection carrying trades
  alone (Binance futures' `/public`, Coinbase) is replaced when none of its symbols traded
  for that long.

A lost connection (dropped, refused, stalled) is retried with exponential backoff and jitter
and every subscription is sent again. Until the next connection is healthy the feed is
`degraded` and `problem` says why ("cannot reach <host>: <error>", a stall, a close).
Besides frames, the queue carries `FeedEvent`s in arrival order (connected, feed lost for
some symbols, plan replaced), so the parser attributes each frame to the right side of a
gap. The feed itself never parses data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from kirby_core.exchanges.registry import StreamAdapter
from kirby_core.settings import Settings
from kirby_stream.backoff import Backoff, pause
from kirby_stream.catalog import FeedPlan, Subscription

log = logging.getLogger(__name__)

KEEPER_TICK_SECONDS = 1.0
"""The keeper wakes at least this often (more often if the ping or stall settings are short)."""
CLOSE_TIMEOUT_SECONDS = 1.0
MAX_FRAME_BYTES = 4 * 2**20
HAND_OVER_MARGIN_SECONDS = 600.0
"""How long before an exchange's scheduled disconnect (Binance, Bybit, OKX: 24 h) the next
connection is opened (on the data clock; a tenth of the limit when that is shorter)."""
HAND_OVER_OVERLAP_SECONDS = 2.0
"""How long both connections are read before the old one closes."""

Frame = tuple[str | bytes, datetime, float]
"""(text (bytes for a binary frame), received_at on the data clock, received on time.monotonic())"""


@dataclass(frozen=True)
class Connected:
    generation: int


@dataclass(frozen=True)
class FeedLost:
    symbols: frozenset[str]
    at: datetime
    reason: str


@dataclass(frozen=True)
class CatalogReplaced:
    plan: FeedPlan
    at: datetime


@dataclass(frozen=True)
class FeedEnded:
    """The last item the feed queues: the collector is stopping."""


FeedEvent = Connected | FeedLost | CatalogReplaced | FeedEnded


@dataclass
class FeedHealth:
    """What the parser saw on the current connection; read by the keeper."""

    generation: int = 0
    acks: int = 0
    data_seen: bool = False
    last_data: dict[str, float] = field(default_factory=dict)
    """symbol -> time.monotonic() of its latest data frame."""


class HandOver(Exception):
    """The keeper opened and subscribed the next connection: switch to it."""

    def __init__(self, ws: ClientConnection, reader: asyncio.Task[None], opened_at: datetime):
        super().__init__("hand over to the next connection")
        self.ws, self.reader, self.opened_at = ws, reader, opened_at


async def _close(ws: ClientConnection) -> None:
    with contextlib.suppress(OSError, TimeoutError, WebSocketException):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await ws.close()


class FeedStalled(Exception):
    """Every subscribed symbol went quiet: the connection is replaced."""


class Feed:
    def __init__(
        self,
        settings: Settings,
        frames: asyncio.Queue[Frame | FeedEvent],
        health: FeedHealth,
        clock: Callable[[], datetime],
        adapter: StreamAdapter,
        plan: FeedPlan,
    ) -> None:
        self.url = plan.url
        self.exchange = plan.exchange
        self.adapter = adapter
        self.settings = settings
        self.frames = frames
        self.health = health
        self.clock = clock
        self.reconnects = 0
        self.state: Literal["starting", "running", "degraded"] = "starting"
        self.problem: str | None = None
        """Why the feed is degraded (how the last connection ended or failed)."""
        self._plan = plan
        self._plan_changed = False
        self._generation = 0
        self._subscribed: dict[str, list[Subscription]] = {}
        self._tape_only: tuple[FeedPlan | None, frozenset[str]] = (None, frozenset())
        self._watch_from: dict[str, float] = {}
        self._sent = 0
        self._request_id = 0
        self._next_send = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.hand_overs = 0
        """Connections replaced before the exchange's scheduled disconnect, nothing lost."""
        self._opened_at = clock()
        declared = adapter.limits.values()
        self._max_connection_seconds = min(
            (x.max_connection_seconds for x in declared if x.max_connection_seconds), default=None
        )
        self._messages_per_second = min(
            (x.messages_per_second for x in declared if x.messages_per_second), default=None
        )

    def replace_plan(self, plan: FeedPlan) -> None:
        """Take effect on the live connection within a keeper tick."""
        self._plan = plan
        self._plan_changed = True

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop`; then close and queue `FeedEnded`."""
        backoff = Backoff(self.settings.stream_reconnect_backoff_max_seconds)
        await self._reconnect(stop, backoff)
        await self.frames.put(FeedEnded())

    async def _reconnect(self, stop: asyncio.Event, backoff: Backoff) -> None:
        while not stop.is_set():
            reason = await self._connection(stop, backoff)
            if stop.is_set():
                break
            self.state, self.problem = "degraded", reason
            lost = frozenset(self._subscribed)
            self._subscribed = {}
            await self.frames.put(FeedLost(lost, self.clock(), reason))
            if lost:
                self.reconnects += 1
            delay = backoff.next_delay()
            log.warning(
                "event=feed_lost exchange=%s url=%s reason=%r symbols=%d retry_in_s=%.2f",
                self.exchange,
                self.url,
                reason,
                len(lost),
                delay,
            )
            await pause(stop, delay)

    async def _open(self) -> ClientConnection:
        async with asyncio.timeout(self.settings.stream_connect_timeout_seconds):
            return await connect(
                self.url,
                ping_interval=None,  # client pings are the exchange's own frames (keeper)
                open_timeout=None,  # the asyncio.timeout above covers the handshake
                close_timeout=CLOSE_TIMEOUT_SECONDS,
                max_size=MAX_FRAME_BYTES,
            )

    async def _connection(self, stop: asyncio.Event, backoff: Backoff) -> str:
        """Serve one connection (and those it hands over to); the reason it ended ("" when
        stopped)."""
        try:
            ws = await self._open()
        except (OSError, TimeoutError, WebSocketException) as exc:
            host = urlsplit(self.url).hostname
            return f"cannot reach {host}: {str(exc) or type(exc).__name__}"
        self._generation += 1
        self._sent = 0
        await self.frames.put(Connected(self._generation))
        self._plan_changed = False
        await self.frames.put(CatalogReplaced(self._plan, self.clock()))
        handed: HandOver | None = None
        while True:
            current, handed = handed, None
            try:
                reason = await self._serve(ws, stop, backoff, current)
            except* HandOver as group:
                handed = cast(HandOver, group.exceptions[0])
            finally:
                await _close(ws)
            if handed is None:
                return reason
            ws, reason = handed.ws, ""
            handed.reader.cancel()  # the successor's own reader takes over (cancel is safe)
            with contextlib.suppress(asyncio.CancelledError):
                await handed.reader

    async def _serve(
        self,
        ws: ClientConnection,
        stop: asyncio.Event,
        backoff: Backoff,
        handed: HandOver | None,
    ) -> str:
        self._opened_at = self.clock() if handed is None else handed.opened_at
        reason = ""
        try:
            async with asyncio.TaskGroup() as group:
                self._tasks = [
                    group.create_task(self._read(ws), name="feed-reader"),
                    group.create_task(
                        self._keep(ws, stop, backoff, handed is not None), name="feed-keeper"
                    ),
                ]
        except* ConnectionClosed as closed:
            reason = f"connection closed: {closed.exceptions[0]}"
        except* FeedStalled as stalled:
            reason = str(stalled.exceptions[0])
        except* OSError as broken:
            reason = f"connection failed: {broken.exceptions[0]}"
        return reason

    async def _hand_over(self) -> None:
        """Open the next connection before the exchange ends this one (its
        `max_connection_seconds`), subscribe everything there, read both for
        `HAND_OVER_OVERLAP_SECONDS` (the same frames twice are harmless: rows keep the
        latest state), then raise `HandOver` so the old one closes. Nothing is lost, no
        gap is recorded. If the new connection cannot be opened, the next tick tries again;
        should the exchange close the old one first, it is an ordinary reconnect."""
        try:
            ws = await self._open()
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning(
                "event=hand_over_failed exchange=%s url=%s cause=%r",
                self.exchange,
                self.url,
                str(exc),
            )
            return
        opened_at = self.clock()
        reader = asyncio.create_task(self._read(ws), name="feed-reader-next")
        try:
            greeting = self.adapter.keep_alive.greeting
            if greeting is not None:
                await self._send(ws, greeting)
            subscriptions = [list(subs) for subs in self._subscribed.values()]
            for frame in self._requests(self.adapter.subscribe_frames, subscriptions):
                await self._send(ws, frame)
            await asyncio.sleep(HAND_OVER_OVERLAP_SECONDS)
        except BaseException:
            reader.cancel()
            await _close(ws)
            raise
        if reader.done():  # the new connection failed already: keep the old one
            failure = reader.exception() if not reader.cancelled() else None
            log.warning(
                "event=hand_over_failed exchange=%s url=%s cause=%r",
                self.exchange,
                self.url,
                str(failure),
            )
            await _close(ws)
            return
        self.hand_overs += 1
        log.info("event=connection_handed_over exchange=%s url=%s", self.exchange, self.url)
        raise HandOver(ws, reader, opened_at)

    def _hand_over_due(self) -> bool:
        limit = self._max_connection_seconds
        if limit is None:
            return False
        margin = min(HAND_OVER_MARGIN_SECONDS, limit / 10)
        return (self.clock() - self._opened_at).total_seconds() >= limit - margin

    async def _read(self, ws: ClientConnection) -> None:
        frames, clock, monotonic = self.frames, self.clock, time.monotonic
        while True:
            text = await ws.recv()
            frame = (text, clock(), monotonic())
            try:
                frames.put_nowait(frame)
            except asyncio.QueueFull:
                await frames.put(frame)

    async def _keep(
        self, ws: ClientConnection, stop: asyncio.Event, backoff: Backoff, handed: bool
    ) -> None:
        """`handed`: `ws` took over from the previous connection, already subscribed."""
        keep_alive = self.adapter.keep_alive
        if not handed:
            if keep_alive.greeting is not None:
                await self._send(ws, keep_alive.greeting)
            await self._subscribe(ws, self._plan.symbols)
        settings = self.settings
        healthy = handed
        stall = settings.stream_stall_seconds
        ping_every = keep_alive.ping_seconds or settings.stream_ping_seconds
        tick = min(KEEPER_TICK_SECONDS, ping_every, stall / 2)
        session_start = watching_since = time.monotonic()
        next_ping = session_start + ping_every
        while True:
            slept_at = time.monotonic()
            if await pause(stop, tick):
                await ws.close()  # the reader then ends with ConnectionClosedOK
                return
            now = time.monotonic()
            if now - slept_at > tick + stall / 4:
                watching_since = now
                log.warning(
                    "event=feed_watch_restarted exchange=%s paused_s=%.1f "
                    "reason='this process did not run; data sent meanwhile is still unread'",
                    self.exchange,
                    now - slept_at - tick,
                )
            if self._hand_over_due():
                await self._hand_over()
            if self._plan_changed:
                await self._apply_plan(ws)
            if now >= next_ping and keep_alive.ping_frame is not None:
                await self._send(ws, keep_alive.ping_frame)
                next_ping = now + ping_every
            health = self.health
            if (
                not healthy
                and health.generation == self._generation
                and health.acks >= self._sent
                and health.data_seen
            ):
                healthy = True
                self.state, self.problem = "running", None
                backoff.reset()
                log.info(
                    "event=feed_healthy exchange=%s url=%s symbols=%d requests=%d",
                    self.exchange,
                    self.url,
                    len(self._subscribed),
                    self._sent,
                )
            if self._subscribed and now - self._latest_data(watching_since) > stall:
                raise FeedStalled(f"stall: no data from any symbol for {stall:g} s")
            quiet = self._quiet(now, watching_since)
            if quiet:
                reason = f"stall: no data for {stall:g} s"
                await self.frames.put(FeedLost(quiet, self.clock(), reason))
                log.warning(
                    "event=feed_stalled exchange=%s symbols=%s action=resubscribe",
                    self.exchange,
                    ",".join(sorted(quiet)),
                )
                await self._unsubscribe(ws, quiet)
                await self._subscribe(ws, quiet)

    def _steady(self) -> list[str]:
        """The subscribed symbols with a steady channel here: all but those carried only as
        a trade tape (a book connection's plan names no series: every book is steady)."""
        plan = self._plan
        if self._tape_only[0] is not plan:
            candles = {symbol for symbol, _ in plan.candles}
            tape_only = set(plan.trades) - candles - set(plan.funding) - set(plan.open_interest)
            self._tape_only = (plan, frozenset(tape_only))
        return [symbol for symbol in self._subscribed if symbol not in self._tape_only[1]]

    def _latest_data(self, watching_since: float) -> float:
        """When data of any symbol the watchdog watches (see `_steady`) last arrived on this
        connection (else when the watch began: the connection's start or the end of a pause)."""
        last_data = self.health.last_data
        watched = self._steady() or self._subscribed  # a connection of trades alone
        return max([watching_since, *(last_data.get(sym, 0.0) for sym in watched)])

    def _quiet(self, now: float, watching_since: float) -> frozenset[str]:
        """Symbols without data for `stream_stall_seconds` while the others are flowing (data
        within half that time). Symbols do not go quiet at the same instant when the whole feed
        stalls: until the others are seen flowing, the whole-feed check decides."""
        stall = self.settings.stream_stall_seconds
        if now - self._latest_data(watching_since) > stall / 2:
            return frozenset()
        last_data = self.health.last_data
        return frozenset(
            symbol
            for symbol in self._steady()
            if now - max(last_data.get(symbol, 0.0), self._watch_from[symbol], watching_since)
            > stall
        )

    async def _apply_plan(self, ws: ClientConnection) -> None:
        self._plan_changed = False
        plan = self._plan
        await self.frames.put(CatalogReplaced(plan, self.clock()))
        changed = {
            symbol
            for symbol in plan.symbols | set(self._subscribed)
            if list(plan.subscriptions.get(symbol, ())) != self._subscribed.get(symbol, [])
        }
        await self._unsubscribe(ws, changed & set(self._subscribed))
        await self._subscribe(ws, changed & plan.symbols)
        log.info(
            "event=subscriptions_changed exchange=%s symbols=%s",
            self.exchange,
            ",".join(sorted(changed)) or "-",
        )

    async def _subscribe(self, ws: ClientConnection, symbols: Iterable[str]) -> None:
        now = time.monotonic()
        chosen = sorted(symbols)
        subscriptions = {
            symbol: list(self._plan.subscriptions.get(symbol, ())) for symbol in chosen
        }
        for frame in self._requests(self.adapter.subscribe_frames, subscriptions.values()):
            await self._send(ws, frame)
            self._sent += 1
        for symbol in chosen:
            self._subscribed[symbol] = subscriptions[symbol]
            self._watch_from[symbol] = now

    async def _unsubscribe(self, ws: ClientConnection, symbols: Iterable[str]) -> None:
        gone = [self._subscribed.pop(symbol, []) for symbol in sorted(symbols)]
        for frame in self._requests(self.adapter.unsubscribe_frames, gone):
            await self._send(ws, frame)

    def _requests(
        self,
        build: Callable[[str, Sequence[Any], int], list[str]],
        subscriptions: Iterable[list[Subscription]],
    ) -> list[str]:
        """The requests carrying `subscriptions`, per market type, within the exchange's
        per-request limits (`build` batches them)."""
        by_market: dict[str, list[Any]] = {}
        for subs in subscriptions:
            for market_type, subscription in subs:
                by_market.setdefault(market_type, []).append(subscription)
        frames: list[str] = []
        for market_type, batch in by_market.items():
            built = build(market_type, batch, self._request_id + 1)
            self._request_id += len(built)
            frames += built
        return frames

    async def _send(self, ws: ClientConnection, frame: str) -> None:
        """Send within the exchange's client messages per second (beyond, Binance closes
        the connection)."""
        rate = self._messages_per_second
        if rate:
            now = time.monotonic()
            if self._next_send > now:
                await asyncio.sleep(self._next_send - now)
            self._next_send = max(now, self._next_send) + 1.0 / rate
        await ws.send(frame)
