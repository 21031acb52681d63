"""The collector's parsing stage: queued frames and feed events in, buffered rows out.

One task consumes the frame queue in arrival order. A data frame goes through the shared
Hyperliquid parser (`parse_ws_message`), is matched to the catalog (coin and interval to a
starlisting, coin to a trading pair) and lands in the buffers. Anything that is not a
well-formed frame of a subscribed coin (bad JSON, non-numeric price, high below low, an
unknown coin or interval) is counted, logged and dropped: never written, never fatal.
Feed events open outage gaps (feed lost), reset the per-connection health the keeper reads
(connected), and swap the catalog (gaps of coins no longer collected are closed). The
buffers learn how far what they hold reaches (`received_through`, `gaps_since`), which a
flush turns into the heartbeat's `covered_through`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import cast

from kirby_core.errors import ExchangeProtocolError
from kirby_core.exchanges.feeds import ChannelError, SubscriptionAck
from kirby_core.exchanges.hyperliquid_wire import parse_ws_message
from kirby_core.models import (
    AssetContextUpdate,
    CandleRow,
    CandleUpdate,
    FundingRateRow,
    OpenInterestRow,
)
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import StreamCatalog
from kirby_stream.feed import (
    GREETING,
    CatalogReplaced,
    Connected,
    FeedEnded,
    FeedEvent,
    FeedHealth,
    FeedLost,
    Frame,
)
from kirby_stream.outages import FeedGaps, Outage
from kirby_stream.stats import Stats
from kirby_stream.succession import Predecessor

log = logging.getLogger(__name__)

YIELD_EVERY = 500
"""Frames handled before letting other tasks run, when the queue never empties."""
LOGGED_INVALID = 100
"""Every invalid frame is counted; the first ones are logged, then one in `LOG_EVERY`."""
LOG_EVERY = 1000


class Intake:
    def __init__(self, buffers: Buffers, health: FeedHealth, stats: Stats) -> None:
        self.buffers = buffers
        self.health = health
        self.stats = stats
        self.gaps = FeedGaps()
        self.catalog = StreamCatalog()
        self._retired: frozenset[str] = frozenset()
        self.last_message: float | None = None
        """time.monotonic() of the latest frame."""

    async def run(self, frames: asyncio.Queue[Frame | FeedEvent]) -> None:
        """Handle frames and events until the feed's `FeedEnded`."""
        handled = 0
        while True:
            item = await frames.get()
            if type(item) is tuple:
                self.frame(*item)
            elif isinstance(item, FeedEnded):
                return
            else:
                self.event(cast(FeedEvent, item))  # frames are the only tuples
            handled += 1
            if handled % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def frame(self, text: str | bytes, received_at: datetime, received: float) -> None:
        self.stats.messages_received += 1
        self.last_message = received
        self.buffers.received_through = received_at
        try:
            message = parse_ws_message(text, received_at)
        except ExchangeProtocolError as exc:
            if text != GREETING:
                self._invalid(str(exc))
            return
        except Exception:  # a frame the parser did not foresee must not end the collector
            log.exception("event=parser_failed frame=%r", text[:300])
            self._invalid("the parser failed on this frame")
            return
        if isinstance(message, CandleUpdate):
            coin = message.coin
            starlisting = self.catalog.candles.get((coin, message.interval))
            if starlisting is None:
                self._unknown(coin, f"candle {coin} {message.interval}")
                return
            self.buffers.add_candle(CandleRow(starlisting, *message.candle), received)
            self._data(coin, received_at, received)
        elif isinstance(message, AssetContextUpdate):
            coin = message.coin
            pair = self.catalog.pairs.get(coin)
            if pair is None:
                self._unknown(coin, f"activeAssetCtx {coin}")
                return
            self.buffers.add_context(
                FundingRateRow(pair, *message.funding),
                OpenInterestRow(pair, *message.open_interest),
            )
            self._data(coin, received_at, received)
        elif isinstance(message, SubscriptionAck):
            if message.method == "subscribe":
                self.health.acks += 1
        elif isinstance(message, ChannelError):
            log.warning("event=channel_error message=%r", message.message)

    def event(self, event: FeedEvent) -> None:
        if isinstance(event, Connected):
            self.health.generation = event.generation
            self.health.acks = 0
            self.health.data_seen = False
        elif isinstance(event, FeedLost):
            self.gaps.lost(event.coins, event.at, event.reason)
        elif isinstance(event, CatalogReplaced):
            removed = self.catalog.coins - event.catalog.coins
            self._retired = (self._retired | removed) - event.catalog.coins
            self._record(self.gaps.close(removed, event.at, self.catalog, "no longer collected"))
            self.catalog = event.catalog
        self.buffers.gaps_since = self.gaps.since

    def close_gaps(self, at: datetime) -> None:
        """The collector stops: gaps still open end now."""
        self._record(self.gaps.close(self.gaps.open_coins, at, self.catalog, "collector stopped"))
        self.buffers.gaps_since = self.gaps.since

    def inherit(self, predecessors: list[Predecessor]) -> None:
        """Take over from collectors that ended: what they did not store is an outage."""
        for old in predecessors:
            log.info(
                "event=predecessor_claimed collector_id=%s state=%s covered_through=%s",
                old.collector_id,
                old.state,
                old.covered_through.isoformat(),
            )
            coins = self.catalog.coins
            self._record(self.gaps.inherit(coins, old.covered_through, self.catalog, old.reason))
        self.buffers.gaps_since = self.gaps.since

    def _data(self, coin: str, received_at: datetime, received: float) -> None:
        health = self.health
        health.last_data[coin] = received
        health.data_seen = True
        outages = self.gaps.saw_data(coin, received_at, self.catalog)
        if outages:
            self._record(outages)
            self.buffers.gaps_since = self.gaps.since

    def _record(self, outages: list[Outage]) -> None:
        if not outages:
            return
        self.buffers.outages += outages
        first = outages[0]
        log.info(
            "event=outage_recorded series=%d start=%s end=%s seconds=%.3f reason=%r",
            len(outages),
            first.start_time.isoformat(),
            first.end_time.isoformat(),
            (first.end_time - first.start_time).total_seconds(),
            first.reason,
        )

    def _unknown(self, coin: str, what: str) -> None:
        if coin not in self._retired:  # late frames of a coin just unsubscribed are expected
            self._invalid(f"{what}: not a subscribed coin/interval of the catalog")

    def _invalid(self, reason: str) -> None:
        self.stats.invalid_messages += 1
        count = self.stats.invalid_messages
        if count <= LOGGED_INVALID or count % LOG_EVERY == 0:
            log.warning("event=invalid_message count=%d reason=%s", count, reason[:300])
