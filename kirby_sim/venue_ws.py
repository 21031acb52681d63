"""What the Binance, Bybit, OKX and Coinbase WebSocket servers share.

A `VenueSocket` accepts connections on its paths and runs, per connection, a reader (the
venue's `on_text` answers subscribes, pings...) and a pump: every `push_ms` simulated
milliseconds it calls the venue's `on_tick(session, before, now)`, which pushes what
happened in (before, now] (trades, candle updates, closed candles, tickers). When the pump
falls behind (a high speed factor) it ticks once for the whole lag, so nothing happened
is skipped but updates are coarser. Every payload is computed from the market at `now`,
so a candle pushed live equals the candle REST serves for the same minute.

Connection rules shared by the venues: new connections per IP and window (HTTP 429 on
the upgrade beyond it), an optional maximum connection age on the virtual
clock (Binance's 24 h disconnect), optional WebSocket-level pings from the server
(`heartbeat`, real seconds), and an idle timeout (real seconds without a client message;
OKX's 30 s, Bybit's ping rule). Faults: `drop_all` cuts every connection without a close
frame; a stalled coin pushes nothing; a pending `malformed` ws fault with the `bad_json`
variant cuts the next data frame in half.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import floor_open, shift_open
from kirby_sim.malform import cut
from kirby_sim.venue_limits import RequestWindow
from kirby_sim.wire import encode

CANDLE_PUSH_MS = 1000
"""Simulated ms between two kline/ticker pushes on Bybit, OKX and Coinbase (trades and books
push more often, each venue at its own `PUSH_MS`)."""

log = logging.getLogger(__name__)

_OUTBOX_LIMIT = 100_000
_CLOSE_TIMEOUT = 1.0
MIN_REAL_TICK = 0.02
"""Real seconds between pump ticks at least, whatever the speed factor."""


@dataclass(eq=False)
class VenueSession:
    """One client connection: its subscriptions (venue-defined keys and state)."""

    ws: web.WebSocketResponse
    client: str
    path: str
    transport: asyncio.Transport | None
    opened_ms: int
    request: web.Request
    """The upgrade request (its path parameters and query string)."""
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(_OUTBOX_LIMIT))
    subscriptions: dict[Any, Any] = field(default_factory=dict)
    sequence: int = 0
    """Messages sent so far (Coinbase numbers them per connection)."""
    state: dict[str, Any] = field(default_factory=dict)
    """Venue bookkeeping that is not a subscription (message rate, heartbeats...)."""

    def send(self, text: str) -> None:
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.abort()

    def send_json(self, document: Any) -> None:
        self.send(encode(document))

    def abort(self) -> None:
        """Cut the TCP connection without a close frame, as a network failure does."""
        if self.transport is not None:
            self.transport.abort()


class VenueSocket:
    """Subclasses set the class attributes and implement `on_text` and `on_tick`."""

    push_ms = 1000
    heartbeat: float | None = None
    idle_timeout: float | None = None
    max_age_ms: int | None = None
    new_connections: tuple[int, float] | None = None
    """(count, real seconds): connections a client IP may open per window; beyond, the
    upgrade is refused with HTTP 429."""

    def __init__(self, clock: VirtualClock, faults: FaultInjector, rate_limits: bool) -> None:
        self.clock = clock
        self.faults = faults
        self.sessions: set[VenueSession] = set()
        self.pushed = 0
        limit, window = self.new_connections or (None, 1.0)
        self._dials = RequestWindow(limit if rate_limits else None, window)

    # --- for subclasses ---------------------------------------------------------------

    def greet(self, session: VenueSession) -> None:
        """Called once a connection is open."""

    def on_text(self, session: VenueSession, text: str) -> None:
        raise NotImplementedError

    def on_tick(self, session: VenueSession, before: int, now: int) -> None:
        raise NotImplementedError

    def publish(self, session: VenueSession, coin: str, document: Any) -> bool:
        """Send a data push unless the coin is stalled (then False: the venue must not
        count it as sent, e.g. a snapshot its deltas build on); a pending bad_json fault
        cuts it."""
        if self.faults.is_stalled(coin):
            return False
        text = encode(document)
        if self.faults.take_malformation("ws", lambda variant: variant == "bad_json"):
            text = cut(text)
        self.pushed += 1
        session.sequence += 1
        session.send(text)
        return True

    # --- connections ------------------------------------------------------------------

    def drop_all(self) -> None:
        for session in list(self.sessions):
            session.abort()

    async def close_all(self) -> None:
        closing = [s.ws.close(code=1001, message=b"server shutdown") for s in list(self.sessions)]
        await asyncio.gather(*closing, return_exceptions=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._dials.acquire(request.remote or "unknown") is not None:
            return web.Response(status=429, text="Too many connection attempts")
        ws = web.WebSocketResponse(autoping=True, heartbeat=self.heartbeat, timeout=_CLOSE_TIMEOUT)
        await ws.prepare(request)
        session = VenueSession(
            ws,
            request.remote or "unknown",
            request.path,
            request.transport,
            self.clock.now_ms(),
            request,
        )
        self.sessions.add(session)
        tasks = [
            asyncio.create_task(self._write(session)),
            asyncio.create_task(self._pump(session)),
        ]
        self.greet(session)
        try:
            await self._read(session)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.sessions.discard(session)
        return ws

    async def _read(self, session: VenueSession) -> None:
        while True:
            try:
                message = await session.ws.receive(timeout=self.idle_timeout)
            except TimeoutError:
                await session.ws.close(code=1000, message=b"idle timeout")
                return
            if message.type != WSMsgType.TEXT:
                return
            self.on_text(session, message.data)

    async def _write(self, session: VenueSession) -> None:
        while True:
            text = await session.outbox.get()
            try:
                await session.ws.send_str(text)
            except ConnectionError:
                return

    async def _pump(self, session: VenueSession) -> None:
        before = session.opened_ms
        while True:
            due = (before // self.push_ms + 1) * self.push_ms
            await asyncio.sleep(max(self.clock.real_delay(due), MIN_REAL_TICK))
            now = self.clock.now_ms()
            if self.max_age_ms is not None and now - session.opened_ms >= self.max_age_ms:
                await session.ws.close(code=1000, message=b"connection lifetime reached")
                return
            if session.subscriptions:
                try:
                    self.on_tick(session, before, now)
                except Exception:
                    # One bad push must not end the connection of a long-running simulator.
                    log.exception("event=venue_push_failed path=%s at=%d", session.path, now)
            before = now


def routes_for(socket: VenueSocket, paths: tuple[str, ...]) -> list[web.RouteDef]:
    return [web.get(path, socket.handle) for path in paths]


MAX_CLOSED_REPLAY = 5
"""Closed candles pushed at most after a lag; older ones are REST's business."""


def candle_updates(
    book: CandleBook, interval: str, last_open: int | None, now: int
) -> tuple[list[tuple[Bar, bool]], int]:
    """Candles to push at `now` for a watcher that last saw the candle opening at
    `last_open`: the candles that closed since (final, closed=True), then the forming one.
    Returns them with the new `last_open`."""
    forming_open = floor_open(interval, now)
    updates: list[tuple[Bar, bool]] = []
    if last_open is not None and last_open < forming_open:
        first = max(last_open, shift_open(interval, forming_open, -MAX_CLOSED_REPLAY))
        last = shift_open(interval, forming_open, -1)
        updates.extend((bar, True) for bar in book.closed_bars(interval, first, last))
    forming = book.forming_bar(interval, now)
    if forming is not None:
        updates.append((forming, False))
    return updates, forming_open
