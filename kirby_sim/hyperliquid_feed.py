"""The live feed: what the Hyperliquid WebSocket pushes, and when (in simulated time).

One task walks a timeline of timers for the coins somebody listens to:

    trade   each trade event of the coin (3-12 s apart for liquid coins): the cumulative
            candle of every subscribed interval, and the event's trades
    final   150 ms after each minute boundary: the final state of every subscribed candle
            that just closed (none if it had no trades)
    ctx     about once a second: activeAssetCtx
    book    about once a second: l2Book
    mids    about once a second: allMids

Payloads are computed for the timer's own simulated time, not for when the task got to
it, so a late push still carries exactly the state of its instant; candles pushed live
therefore equal what candleSnapshot serves later for the same minutes. Timers are in
simulated milliseconds and the task sleeps on the virtual clock; when it falls behind (a
high speed factor) it catches up without sleeping. A change of subscriptions wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from typing import Any

from kirby_sim import hashing
from kirby_sim import hyperliquid_payloads as payloads
from kirby_sim.candles import CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.hyperliquid_ws import ChannelKey, Connection, HyperliquidStream
from kirby_sim.intervals import MINUTE_MS, floor_open, shift_open
from kirby_sim.market import Market
from kirby_sim.universe import HYPERLIQUID_VENUE

log = logging.getLogger(__name__)

FINAL_DELAY_MS = 150
_PERIODIC = ("ctx", "book")


class HyperliquidFeed:
    def __init__(
        self,
        market: Market,
        clock: VirtualClock,
        stream: HyperliquidStream,
        *,
        context_interval_ms: int = 1000,
    ) -> None:
        self.market = market
        self.clock = clock
        self.stream = stream
        self.context_interval_ms = context_interval_ms
        self.pushed = 0
        self._timers: list[tuple[int, int, str, str | None, int]] = []
        self._sequence = 0
        self._generation: dict[str | None, int] = {}
        self._watching: set[str | None] = set()
        self._dirty = True
        self._wake = asyncio.Event()
        self._jitter_keys: dict[str | None, Any] = {}
        stream.listener = self

    # --- SubscriptionListener ---------------------------------------------------------

    def changed(self) -> None:
        self._dirty = True
        self._wake.set()

    def subscribed(self, connection: Connection, key: ChannelKey) -> None:
        """Send the snapshot a new subscriber gets right after the ack."""
        now = self.clock.now_ms()
        coin = key[1] if len(key) > 1 else None
        for channel, data in self._snapshot(key, now):
            self.stream.publish_to(connection, channel, data, coin)

    # --- the timeline -----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if self._dirty:
                self._sync(self.clock.now_ms())
            if not self._timers:
                await self._sleep(None)
                continue
            delay = self.clock.real_delay(self._timers[0][0])
            if delay > 0:
                await self._sleep(delay)
                continue
            at, _, kind, coin, generation = heapq.heappop(self._timers)
            if self._generation.get(coin) == generation:
                try:
                    self._fire(kind, coin, at)
                except Exception:
                    # One bad push must not end the feed of a long-running simulator.
                    log.exception("event=feed_push_failed kind=%s coin=%s at=%d", kind, coin, at)
                self._schedule(self._following(kind, coin, at), kind, coin)
            await asyncio.sleep(0)

    async def _sleep(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    def _schedule(self, at: int, kind: str, coin: str | None) -> None:
        self._sequence += 1
        heapq.heappush(self._timers, (at, self._sequence, kind, coin, self._generation[coin]))

    def _sync(self, now: int) -> None:
        """Start timers for newly watched coins, invalidate those of forgotten ones."""
        self._dirty = False
        watched = self.stream.watched()
        for coin in self._watching - watched:
            self._generation[coin] = self._generation.get(coin, 0) + 1
        for coin in watched - self._watching:
            self._generation[coin] = self._generation.get(coin, 0) + 1
            if coin is None:
                self._schedule(now + self.context_interval_ms, "mids", None)
                continue
            self._schedule(self._next_event(coin, now), "trade", coin)
            self._schedule((now // MINUTE_MS + 1) * MINUTE_MS + FINAL_DELAY_MS, "final", coin)
            for kind in _PERIODIC:
                self._schedule(now + self._period(now, coin), kind, coin)
        self._watching = watched

    def _period(self, at: int, coin: str | None) -> int:
        """About one context interval, with +-10% hashed jitter."""
        key = self._jitter_keys.get(coin)
        if key is None:
            key = self._jitter_keys[coin] = hashing.stream_key(self.market.seed, coin, "jitter")
        draw = hashing.uniform_one(key, at)
        return int(self.context_interval_ms * (0.9 + 0.2 * draw))

    def _next_event(self, coin: str, after: int) -> int:
        series = self._book(coin).series
        minute = after // MINUTE_MS
        for candidate in range(minute, minute + 32):
            for offset in series.events_of(candidate).offsets_ms:
                if candidate * MINUTE_MS + offset > after:
                    return candidate * MINUTE_MS + offset
        return (minute + 32) * MINUTE_MS

    def _book(self, coin: str) -> CandleBook:
        book = self.market.book(HYPERLIQUID_VENUE, coin)
        assert book is not None, coin
        return book

    # --- pushes -----------------------------------------------------------------------

    def _fire(self, kind: str, coin: str | None, at: int) -> None:
        """Push what timer `kind` stands for, as of `at`."""
        if coin is None:
            if ("allMids",) in self.stream.keys_of(None):
                self._push(("allMids",), "allMids", {"mids": payloads.all_mids(self.market, at)})
            return
        keys = self.stream.keys_of(coin)
        if kind == "trade":
            self._push_trade(coin, at, keys)
        elif kind == "final":
            self._push_finals(coin, at - FINAL_DELAY_MS, keys)
        else:
            channel = "activeAssetCtx" if kind == "ctx" else "l2Book"
            if (channel, coin) in keys:
                for _, data in self._snapshot((channel, coin), at):
                    self._push((channel, coin), channel, data)

    def _following(self, kind: str, coin: str | None, at: int) -> int:
        """When the timer after this one fires."""
        if kind == "trade" and coin is not None:
            return self._next_event(coin, at)
        if kind == "final":
            return at + MINUTE_MS
        return at + self._period(at, coin)

    def _push(self, key: ChannelKey, channel: str, data: Any) -> None:
        self.pushed += 1
        self.stream.publish(key, channel, data, key[1] if len(key) > 1 else None)

    def _push_trade(self, coin: str, at: int, keys: list[ChannelKey]) -> None:
        book = self._book(coin)
        for key in keys:
            if key[0] == "candle":
                bar = book.forming_bar(key[2], at)
                if bar is not None:
                    self._push(key, "candle", payloads.candle(book.instrument, key[2], bar))
        if ("trades", coin) in keys:
            minute = at // MINUTE_MS
            events = book.series.events_of(minute)
            step = events.offsets_ms.index(at - minute * MINUTE_MS)
            rows = payloads.trades(book.instrument, events, step, self.market.seed)
            self._push(("trades", coin), "trades", rows)

    def _push_finals(self, coin: str, boundary: int, keys: list[ChannelKey]) -> None:
        book = self._book(coin)
        for key in keys:
            if key[0] != "candle" or floor_open(key[2], boundary) != boundary:
                continue
            closed_open = floor_open(key[2], boundary - 1)
            for bar in book.closed_bars(key[2], closed_open, closed_open):
                if bar.traded:
                    self._push(key, "candle", payloads.candle(book.instrument, key[2], bar))

    def _snapshot(self, key: ChannelKey, now: int) -> list[tuple[str, Any]]:
        """The pushes a subscriber of `key` gets on subscribing (and ctx/book ticks)."""
        channel = key[0]
        if channel == "allMids":
            return [("allMids", {"mids": payloads.all_mids(self.market, now)})]
        coin = key[1]
        derivatives = self.market.derivatives(coin)
        assert derivatives is not None
        if channel == "activeAssetCtx":
            return [("activeAssetCtx", {"coin": coin, "ctx": derivatives.asset_context(now)})]
        if channel == "l2Book":
            return [("l2Book", derivatives.l2_book(now))]
        book = self._book(coin)
        if channel == "trades":
            minute = now // MINUTE_MS
            events = book.series.events_of(minute)
            done = events.count_until(now - minute * MINUTE_MS)
            rows = [
                row
                for step in range(done)
                for row in payloads.trades(book.instrument, events, step, self.market.seed)
            ]
            return [("trades", rows)] if rows else []
        interval = key[2]
        forming = floor_open(interval, now)
        lookback = 31 if interval == "1m" else 2
        bars = book.bars(interval, shift_open(interval, forming, -lookback), forming, now)
        latest = [bar for bar in bars if bar.traded][-1:]
        return [("candle", payloads.candle(book.instrument, interval, bar)) for bar in latest]
