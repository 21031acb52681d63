"""Coinbase Advanced Trade market data WebSocket (`/advanced-trade-ws`; ccxt's
`urls['api']['ws']` is the whole URL).

    {"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}
      -> {"channel":"subscriptions","client_id":"","timestamp":"...","sequence_num":N,
          "events":[{"subscriptions":{"market_trades":["BTC-USD"]}}]}

Every message is {"channel","client_id","timestamp","sequence_num","events"}; sequence_num
counts the messages of the connection (not per product). Channels: `heartbeats` (one a
second, heartbeat_counter per connection), `candles` (5-minute buckets only: a snapshot of
the forming bucket, then updates every push; the final state of a bucket is pushed once
after it closes; no closed flag, as on Coinbase), `market_trades` (a snapshot of the
latest 50 trades, then updates newest first, consistent with the 1m candles), `ticker`,
`level2` (frames of channel "l2_data": the whole book, then the levels that changed at each
book step: `coinbase_depth`). Heartbeats, candles and tickers go out every
`CANDLE_PUSH_MS`, trades and books every `PUSH_MS`.
Without a `heartbeats` subscription a connection that got no data for `CHANNEL_IDLE_MS`
simulated ms is closed, as Coinbase closes quiet channels after 60-90 s.
"""

from __future__ import annotations

import json
from typing import Any

from kirby_sim import coinbase, coinbase_depth
from kirby_sim.candles import CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.depth import DepthFeed
from kirby_sim.faults import FaultInjector
from kirby_sim.market import Market
from kirby_sim.prints import prints
from kirby_sim.universe import COINBASE_VENUE
from kirby_sim.venue_ws import CANDLE_PUSH_MS, VenueSession, VenueSocket, candle_updates

PATHS = ("/advanced-trade-ws",)
"""Simulated ms between heartbeat, candle and ticker pushes."""
PUSH_MS = 100
"""The pump's period: level2 updates go out at each book step."""
NEW_CONNECTIONS = (8, 1.0)
"""(connections, real seconds) a client IP may open."""
CANDLE_INTERVAL = "5m"
SNAPSHOT_TRADES = 50
CHANNEL_IDLE_MS = 75_000
STREAM_CHANNELS = ("heartbeats", "candles", "market_trades", "ticker", "level2")


class CoinbaseStream(VenueSocket):
    push_ms = PUSH_MS
    new_connections = NEW_CONNECTIONS

    def __init__(
        self, market: Market, clock: VirtualClock, faults: FaultInjector, rate_limits: bool
    ) -> None:
        super().__init__(clock, faults, rate_limits)
        self.market = market

    def _envelope(self, session: VenueSession, channel: str, events: list[Any], now: int) -> dict:
        return {
            "channel": channel,
            "client_id": "",
            "timestamp": coinbase.timestamp(now),
            "sequence_num": session.sequence,
            "events": events,
        }

    def _reply(self, session: VenueSession, document: dict[str, Any]) -> None:
        session.sequence += 1
        session.send_json(document)

    def on_text(self, session: VenueSession, text: str) -> None:
        now = self.clock.now_ms()
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        channel = message.get("channel") if isinstance(message, dict) else None
        products = message.get("product_ids", []) if isinstance(message, dict) else []
        if kind not in ("subscribe", "unsubscribe") or channel not in STREAM_CHANNELS:
            self._reply(session, {"type": "error", "message": f"Failed to subscribe: {text}"})
            return
        books: list[CandleBook] = []
        for product in products if isinstance(products, list) else [None]:
            book = self.market.book(COINBASE_VENUE, product) if isinstance(product, str) else None
            if book is None:
                self._reply(
                    session,
                    {"type": "error", "message": f"Failed to subscribe: bad product {product}"},
                )
                return
            books.append(book)
        session.state.setdefault("last_data", now)
        if channel == "heartbeats":
            books = []  # one heartbeat stream a connection, whatever the products
            if kind == "subscribe":
                session.subscriptions.setdefault(("heartbeats", None), {"counter": 0})
            else:
                session.subscriptions.pop(("heartbeats", None), None)
        for book in books:
            key = (channel, book.instrument.symbol)
            if kind == "unsubscribe":
                session.subscriptions.pop(key, None)
                continue
            if key in session.subscriptions:
                continue
            state: dict[str, Any] = {"book": book, "last_open": None, "fresh": True}
            if channel == "level2":
                depth = self.market.depth(COINBASE_VENUE, book.instrument.symbol)
                assert depth is not None
                state["feed"] = DepthFeed.start(depth, now)
            session.subscriptions[key] = state
        listed: dict[str, list[str]] = {}
        for name, symbol in session.subscriptions:
            listed.setdefault(name, [])
            if symbol is not None:
                listed[name].append(symbol)
        self._reply(
            session,
            self._envelope(session, "subscriptions", [{"subscriptions": listed}], now),
        )

    def _level2(self, session: VenueSession, state: dict[str, Any], now: int) -> None:
        feed: DepthFeed = state["feed"]
        coin = feed.book.instrument.coin
        if state["fresh"]:
            step = feed.book.step(now)
            feed.commit(step, feed.book.view(step))
            event = coinbase_depth.l2_event(
                feed.book, "snapshot", feed.view.bids, feed.view.asks, step
            )
            frame = self._envelope(session, coinbase_depth.DATA_CHANNEL, [event], now)
            state["fresh"] = not self.publish(session, coin, frame)
            session.state["last_data"] = now
            return
        for _, last, after, change in feed.pending(now):
            if self.faults.take_book_gap("coinbase"):
                session.sequence += 1  # the frame is lost: its number is skipped
            else:
                event = coinbase_depth.l2_event(feed.book, "update", change.bids, change.asks, last)
                frame = self._envelope(session, coinbase_depth.DATA_CHANNEL, [event], now)
                if not self.publish(session, coin, frame):
                    return  # stalled: the next push carries these steps
                session.state["last_data"] = now
            feed.commit(last, after)

    def on_tick(self, session: VenueSession, before: int, now: int) -> None:
        heartbeats = ("heartbeats", None) in session.subscriptions
        if not heartbeats and now - session.state.get("last_data", now) >= CHANNEL_IDLE_MS:
            session.abort()
            return
        slow_due = now // CANDLE_PUSH_MS != before // CANDLE_PUSH_MS
        for (channel, symbol), sub in list(session.subscriptions.items()):
            if channel == "level2":
                self._level2(session, sub, now)
                continue
            if channel != "market_trades" and not slow_due:
                continue
            if channel == "heartbeats":
                sub["counter"] += 1
                event = {
                    "current_time": coinbase.timestamp(now),
                    "heartbeat_counter": sub["counter"],
                }
                self.publish(session, "", self._envelope(session, channel, [event], now))
                continue
            book: CandleBook = sub["book"]
            inst = book.instrument
            fresh = sub.pop("fresh", False)
            kind = "snapshot" if fresh else "update"
            events: list[Any]
            if channel == "candles":
                updates, sub["last_open"] = candle_updates(
                    book, CANDLE_INTERVAL, sub["last_open"], now
                )
                rows = [{**coinbase.candle(inst, bar), "product_id": symbol} for bar, _ in updates]
                events = [{"type": kind, "candles": rows}]
            elif channel == "market_trades":
                latest = (
                    coinbase.recent_trades(book, now, SNAPSHOT_TRADES)
                    if fresh
                    else prints(book, before, now)[::-1]
                )
                if not latest:
                    continue
                events = [{"type": kind, "trades": [coinbase.trade(inst, r) for r in latest]}]
            else:
                events = [{"type": kind, "tickers": [coinbase.ticker(self.market, inst, now)]}]
            session.state["last_data"] = now
            self.publish(session, inst.coin, self._envelope(session, channel, events, now))
