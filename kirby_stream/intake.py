"""The collector's parsing stage of one feed: its queued frames and events in, buffered rows
out.

One task per connection consumes that connection's frame queue in arrival order, so a slow,
flooding or malformed exchange never holds up another's rows. A data frame goes through the
exchange's own parser (a fresh one per connection, guarded by `FrameGuard`: a malformed
frame is counted, never raised), is matched to the connection's plan (symbol and interval to
a starlisting, symbol to a trading pair) and lands in the shared buffers; a push of trades
lands there whole, each trade keyed by its exchange id. Anything that is
not a well-formed frame of a subscribed series (bad JSON, non-numeric price, high below low,
an unknown symbol or interval) is counted, logged and dropped: never written, never fatal.
Feed events open outage gaps (feed lost), reset the per-connection health the keeper reads
(connected), and swap the plan (gaps of symbols no longer collected are closed). The buffers
learn how far what this feed delivered reaches (`received`, `gaps`), which a flush turns
into the heartbeat's `covered_through`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import cast

from kirby_core.db.trades import TradeRow
from kirby_core.exchanges.feeds import (
    ChannelError,
    FrameGuard,
    FundingUpdate,
    OpenInterestUpdate,
    SubscriptionAck,
    TradesUpdate,
)
from kirby_core.exchanges.registry import StreamAdapter
from kirby_core.models import (
    AssetContextUpdate,
    CandleRow,
    CandleUpdate,
    FundingRate,
    FundingRateRow,
    OpenInterest,
    OpenInterestRow,
)
from kirby_stream.buffers import Buffers
from kirby_stream.catalog import FeedKey, FeedPlan
from kirby_stream.contracts import in_coin
from kirby_stream.feed import (
    CatalogReplaced,
    Connected,
    FeedEnded,
    FeedEvent,
    FeedHealth,
    FeedLost,
    Frame,
)
from kirby_stream.outages import FeedGaps, Outage
from kirby_stream.stats import FeedStats, Stats
from kirby_stream.succession import Predecessor

log = logging.getLogger(__name__)

YIELD_EVERY = 50
"""Frames handled before letting other tasks run, when the queue never empties: a few
milliseconds, so a flush (some 25 round trips to PostgreSQL, each waiting for its turn in
the event loop) is not held up for seconds by a firehose on several connections."""
LOGGED_INVALID = 100
"""Every invalid frame is counted; the first ones are logged, then one in `LOG_EVERY`."""
LOG_EVERY = 1000


class Intake:
    def __init__(
        self,
        buffers: Buffers,
        health: FeedHealth,
        stats: Stats,
        adapter: StreamAdapter,
        plan: FeedPlan,
    ) -> None:
        self.buffers = buffers
        self.health = health
        self.stats = stats
        self.feed_stats: FeedStats = stats.feed(plan.exchange)
        self.adapter = adapter
        self.key: FeedKey = plan.key
        self.gaps = FeedGaps()
        self.plan = plan
        """Until the feed's first `CatalogReplaced`: what a predecessor's outages cover."""
        self._parse = FrameGuard(adapter.parser(), plan.exchange)
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
        self.feed_stats.messages_received += 1
        self.last_message = received
        self.feed_stats.last_message = received
        self.buffers.received[self.key] = received_at
        parse = self._parse
        errors = parse.errors
        messages = parse(text, received_at)
        if parse.errors != errors:
            self._invalid(parse.last_error or "malformed frame")
            return
        plan, buffers = self.plan, self.buffers
        for message in messages:
            if isinstance(message, CandleUpdate):
                symbol = message.coin
                starlisting = plan.candles.get((symbol, message.interval))
                if starlisting is None:
                    self._unknown(symbol, f"candle {symbol} {message.interval}")
                    continue
                buffers.add_candle(CandleRow(starlisting, *message.candle), received)
                self._data(symbol, "candles", received_at, received)
            elif isinstance(message, TradesUpdate):
                self._trades(message, received_at, received)
            elif isinstance(message, AssetContextUpdate):
                self._pair(
                    message.coin, message.funding, message.open_interest, received_at, received
                )
            elif isinstance(message, FundingUpdate):
                self._pair(message.symbol, message.funding, None, received_at, received)
            elif isinstance(message, OpenInterestUpdate):
                self._pair(message.symbol, None, message.open_interest, received_at, received)
            elif isinstance(message, SubscriptionAck):
                if message.method == "subscribe":
                    self.health.acks += 1
            elif isinstance(message, ChannelError):
                self.feed_stats.channel_errors += 1
                log.warning(
                    "event=channel_error exchange=%s message=%r",
                    plan.exchange,
                    message.message[:300],
                )

    def _trades(self, update: TradesUpdate, received_at: datetime, received: float) -> None:
        symbol = update.symbol
        pair = self.plan.trades.get(symbol)
        if pair is None:
            self._unknown(symbol, f"trades {symbol}")
            return
        trades = update.trades
        if not trades:
            return
        times = [trade.time for trade in trades]
        if update.contracts:
            value = self.plan.contract_values.get(symbol)
            if value is None:
                self._no_contract_value(symbol, min(times))
                return
            trades = tuple(trade._replace(size=in_coin(trade.size, value)) for trade in trades)
        added = self.buffers.add_trades([TradeRow(pair, *trade) for trade in trades])
        self.feed_stats.trades += added
        self.stats.duplicate_trades += len(trades) - added  # repeats of trades buffered
        self._data(symbol, "trades", min(times), received, max(times))

    def _no_contract_value(self, symbol: str, at: datetime) -> None:
        """Trades counted in contracts of unknown value cannot be stored: a gap until the
        value is known (`kirby_stream.contracts`) and the next trade arrives."""
        unit = f"{symbol} trades"
        if unit not in self.gaps.open_coins:
            log.warning(
                "event=trades_skipped exchange=%s symbol=%s reason=no contract value",
                self.plan.exchange,
                symbol,
            )
            self.gaps.lost([unit], at, "no contract value for its trade sizes")
            self.buffers.gaps[self.key] = self.gaps.since

    def _pair(
        self,
        symbol: str,
        funding: FundingRate | None,
        interest: OpenInterest | None,
        received_at: datetime,
        received: float,
    ) -> None:
        """A trading pair's funding and/or open interest, stored where the plan says this
        connection carries them."""
        plan, buffers = self.plan, self.buffers
        pair_funding = plan.funding.get(symbol) if funding is not None else None
        pair_interest = plan.open_interest.get(symbol) if interest is not None else None
        if pair_funding is None and pair_interest is None:
            self._unknown(symbol, f"funding/open interest {symbol}")
            return
        if pair_funding is not None and funding is not None:
            buffers.add_funding(FundingRateRow(pair_funding, *funding))
            self._data(symbol, "funding_rates", received_at, received)
        if pair_interest is not None and interest is not None:
            buffers.add_open_interest(OpenInterestRow(pair_interest, *interest))
            self._data(symbol, "open_interest", received_at, received)

    def event(self, event: FeedEvent) -> None:
        if isinstance(event, Connected):
            self.health.generation = event.generation
            self.health.acks = 0
            self.health.data_seen = False
            self._parse = FrameGuard(self.adapter.parser(), self.plan.exchange)
        elif isinstance(event, FeedLost):
            self.gaps.lost(self.plan.units(event.symbols), event.at, event.reason)
        elif isinstance(event, CatalogReplaced):
            removed = self.plan.symbols - event.plan.symbols
            self._retired = (self._retired | removed) - event.plan.symbols
            gone = set(self.plan.units(self.plan.symbols)) - set(
                event.plan.units(event.plan.symbols)
            )
            self._record(self.gaps.close(gone, event.at, self.plan, "no longer collected"))
            self.plan = event.plan
        self.buffers.gaps[self.key] = self.gaps.since

    def close_gaps(self, at: datetime) -> None:
        """The collector stops: gaps still open end now."""
        self._record(self.gaps.close(self.gaps.open_coins, at, self.plan, "collector stopped"))
        self.buffers.gaps[self.key] = self.gaps.since

    def inherit(self, predecessors: list[Predecessor]) -> None:
        """Take over from collectors that ended: what they did not store is an outage."""
        for old in predecessors:
            units = self.plan.units(self.plan.symbols)
            self._record(self.gaps.inherit(units, old.covered_through, self.plan, old.reason))
        self.buffers.gaps[self.key] = self.gaps.since

    def _data(
        self,
        symbol: str,
        dataset: str,
        at: datetime,
        received: float,
        through: datetime | None = None,
    ) -> None:
        """Data of `symbol`'s `dataset` arrived: its time (a trade push's times: `at` through
        `through`) ends an open gap."""
        health = self.health
        health.last_data[symbol] = received
        health.data_seen = True
        outages = self.gaps.saw_data(f"{symbol} {dataset}", at, self.plan, through)
        if outages:
            self._record(outages)
            self.buffers.gaps[self.key] = self.gaps.since

    def _record(self, outages: list[Outage]) -> None:
        self.buffers.record_outages(self.plan.exchange, outages)
        self.feed_stats.outages += len(outages)

    def _unknown(self, symbol: str, what: str) -> None:
        if symbol not in self._retired:  # late frames of a symbol just unsubscribed are expected
            self._invalid(f"{what}: not a subscribed series of the catalog")

    def _invalid(self, reason: str) -> None:
        self.stats.invalid_messages += 1
        self.feed_stats.invalid_messages += 1
        count = self.stats.invalid_messages
        if count <= LOGGED_INVALID or count % LOG_EVERY == 0:
            log.warning(
                "event=invalid_message exchange=%s count=%d reason=%s",
                self.plan.exchange,
                count,
                reason[:300],
            )
