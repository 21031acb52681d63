"""OKX v5 public WebSocket: `/ws/v5/public` and `/ws/v5/business`.

    {"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}
      -> {"event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"connId":"..."}
    ping (text) -> pong (text)

Channels: `candle<bar>` (business only: 1m..4H and the UTC bars 6Hutc..1Mutc; the forming
candle with confirm "0" on every push, the final one with "1" when it closes), `trades`,
`tickers`, `funding-rate` (about every 30 s), `mark-price` (swaps) and `index-tickers`
(the index of a swap: `BTC-USDT` for `BTC-USDT-SWAP`; a push at every simulated second,
when the simulator's mark and index change, with that second's price, the very value REST
public/mark-price and market/index-tickers give for it), `open-interest` (about every 3 s),
`books` (a snapshot, then updates every 100 ms chained by prevSeqId/seqId) and `books5` on
public (`okx_depth`).
A channel on the wrong URL or an unknown instrument answers event "error" with code 60018,
as OKX does. At most 480 subscribe/unsubscribe requests an hour per connection (beyond:
error 60014). A connection without any client message for 30 s is closed. Candles and
tickers push every `CANDLE_PUSH_MS` simulated ms, the rest every `PUSH_MS`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kirby_sim import okx, okx_depth
from kirby_sim.candles import CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.depth import DepthFeed
from kirby_sim.faults import FaultInjector
from kirby_sim.malform import malformed_text
from kirby_sim.market import Market
from kirby_sim.prints import prints
from kirby_sim.universe import OKX_SPOT_VENUE, OKX_SWAP_VENUE
from kirby_sim.venue_ws import VenueSession, VenueSocket, candle_updates
from kirby_sim.wire import encode

PUBLIC_PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"
PATHS = (PUBLIC_PATH, BUSINESS_PATH)
CANDLE_PUSH_MS = 1000
"""Simulated ms between candle and ticker pushes."""
PUSH_MS = 100
"""The pump's period: `books` pushes updates every 100 ms."""
NEW_CONNECTIONS = (3, 1.0)
"""(connections, real seconds) a client IP may open."""
IDLE_TIMEOUT = 30.0
FUNDING_EVERY_MS = 30_000
OPEN_INTEREST_EVERY_MS = 3_000
SUBSCRIBES_PER_HOUR = 480
"""Subscribe and unsubscribe requests a connection may send per real hour."""
PRICE_EVERY_MS = 1000
"""The simulator's mark and index prices change once a simulated second (OKX pushes a
changed mark at most every 200 ms, a changed index every 100 ms)."""
PRICE_CHANNELS = ("mark-price", "index-tickers")
"""The channels pushing a price every simulated second (`_prices`)."""
PUBLIC_CHANNELS = (
    "trades", "tickers", "funding-rate", "mark-price", "index-tickers", "open-interest",
    "books", "books5",
)  # fmt: skip
SWAP_ONLY = ("funding-rate", "mark-price", "open-interest")


class OkxStream(VenueSocket):
    push_ms = PUSH_MS
    new_connections = NEW_CONNECTIONS
    idle_timeout = IDLE_TIMEOUT

    def __init__(
        self, market: Market, clock: VirtualClock, faults: FaultInjector, rate_limits: bool
    ) -> None:
        super().__init__(clock, faults, rate_limits)
        self.market = market

    def _target(self, path: str, arg: Any) -> CandleBook | None:
        if not isinstance(arg, dict):
            return None
        channel, inst_id = arg.get("channel"), arg.get("instId")
        if not isinstance(channel, str) or not isinstance(inst_id, str):
            return None
        if channel == "index-tickers":  # an index, served for the swaps it prices
            if path != PUBLIC_PATH:
                return None
            return self.market.book(OKX_SWAP_VENUE, f"{inst_id}-SWAP")
        venue = OKX_SWAP_VENUE if inst_id.endswith("-SWAP") else OKX_SPOT_VENUE
        if channel.startswith("candle"):
            if path != BUSINESS_PATH or channel.removeprefix("candle") not in okx.BARS:
                return None
        elif path != PUBLIC_PATH or channel not in PUBLIC_CHANNELS:
            return None
        if channel in SWAP_ONLY and venue != OKX_SWAP_VENUE:
            return None
        return self.market.book(venue, inst_id)

    def on_text(self, session: VenueSession, text: str) -> None:
        conn_id = f"{id(session) & 0xFFFFFFFF:08x}"
        if text == "ping":
            session.send("pong")
            return
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        op = message.get("op") if isinstance(message, dict) else None
        args = message.get("args") if isinstance(message, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            session.send_json(
                {"event": "error", "code": "60012", "msg": f"Invalid request: {text}",
                 "connId": conn_id}
            )  # fmt: skip
            return
        sent = session.state.setdefault("subscribes", [])
        hour_ago = time.monotonic() - 3600.0
        sent[:] = [at for at in sent if at > hour_ago]
        if len(sent) >= SUBSCRIBES_PER_HOUR:
            session.send_json(
                {"event": "error", "code": "60014", "msg": "Requests too frequent.",
                 "connId": conn_id}
            )  # fmt: skip
            return
        sent.append(time.monotonic())
        for arg in args:
            book = self._target(session.path, arg)
            if book is None:
                shown = (
                    ",".join(f"{k}:{v}" for k, v in arg.items()) if isinstance(arg, dict) else arg
                )
                session.send_json(
                    {
                        "event": "error",
                        "code": "60018",
                        "msg": f"Wrong URL or channel:{shown} doesn't exist. Please use the "
                        "correct URL, channel and parameters referring to API document.",
                        "connId": conn_id,
                    }
                )
                continue
            key = (arg["channel"], arg["instId"])
            if op == "subscribe":
                state: dict[str, Any] = {"book": book, "last_open": None}
                if arg["channel"] == "books":
                    depth = okx_depth.depth_of(self.market, arg["instId"])
                    assert depth is not None
                    state["feed"] = DepthFeed.start(
                        depth, self.clock.now_ms(), okx_depth.BOOKS_DEPTH
                    )
                    state["fresh"] = True
                session.subscriptions.setdefault(key, state)
            else:
                session.subscriptions.pop(key, None)
            session.send_json({"event": op, "arg": dict(arg), "connId": conn_id})

    def _books(self, session: VenueSession, arg: dict[str, str], state: dict[str, Any], now: int):
        feed: DepthFeed = state["feed"]
        coin = feed.book.instrument.coin
        if state["fresh"]:
            feed.resync(now)
            message = {"arg": arg, "action": "snapshot", "data": [okx_depth.snapshot_row(feed)]}
            state["fresh"] = not self.publish(session, coin, message)
            return
        for first, last, after, change in feed.pending(now):
            if not self.faults.take_book_gap("okx"):
                previous = feed.book.update_id(first - 1)
                row = okx_depth.books_row(
                    feed.book, after, change.bids, change.asks, last, previous
                )
                if not self.publish(session, coin, {"arg": arg, "action": "update", "data": [row]}):
                    return  # stalled: the next push carries these steps
            feed.commit(after)

    def _prices(
        self, session: VenueSession, arg: dict[str, str], state: dict[str, Any], now: int
    ) -> None:
        """One push per simulated second crossed since the last (the first: the price at
        subscribing), each stamped with its second, so every second's price is sent."""
        book: CandleBook = state["book"]
        perp = self.market.perp(OKX_SWAP_VENUE, book.instrument.symbol)
        assert perp is not None
        last = state["last_open"]
        if last is None:
            seconds = [now]
        else:
            first = max(last + PRICE_EVERY_MS, session.opened_ms) // PRICE_EVERY_MS
            seconds = [s * PRICE_EVERY_MS for s in range(first, now // PRICE_EVERY_MS + 1)]
        coin = perp.instrument.coin
        if self.faults.is_stalled(coin):  # what a stall withholds is never sent late
            state["last_open"] = now // PRICE_EVERY_MS * PRICE_EVERY_MS
            return
        for at in seconds:
            row = (
                okx.mark_price(perp, at)
                if arg["channel"] == "mark-price"
                else okx.index_ticker(self.market, perp, at)
            )
            document = {"arg": arg, "data": [row]}
            broken = malformed_text(self.faults, "ws", arg["channel"], document, encode)
            if broken is None:
                self.publish(session, coin, document)
            else:
                session.send(broken)
            state["last_open"] = at // PRICE_EVERY_MS * PRICE_EVERY_MS

    def on_tick(self, session: VenueSession, before: int, now: int) -> None:
        candles_due = now // CANDLE_PUSH_MS != before // CANDLE_PUSH_MS
        for (channel, inst_id), sub in list(session.subscriptions.items()):
            book: CandleBook = sub["book"]
            inst = book.instrument
            arg = {"channel": channel, "instId": inst_id}
            data: list[Any]
            if channel == "books":
                self._books(session, arg, sub, now)
                continue
            if channel == "books5":
                depth = okx_depth.depth_of(self.market, inst_id)
                assert depth is not None
                step = depth.step(now)
                if sub["last_open"] != step:
                    sub["last_open"] = step
                    self.publish(
                        session,
                        inst.coin,
                        {"arg": arg, "data": [okx_depth.books5_row(depth, step)]},
                    )
                continue
            if (channel == "tickers" or channel.startswith("candle")) and not candles_due:
                continue
            if channel.startswith("candle"):
                interval = okx.BARS[channel.removeprefix("candle")]
                updates, sub["last_open"] = candle_updates(book, interval, sub["last_open"], now)
                for bar, closed in updates:
                    row = okx.candle_row(inst, bar, closed)
                    self.publish(session, inst.coin, {"arg": arg, "data": [row]})
                continue
            if channel in PRICE_CHANNELS:
                self._prices(session, arg, sub, now)
                continue
            if channel == "trades":
                data = [
                    {
                        "instId": inst_id,
                        "tradeId": str(trade.trade_id),
                        "px": okx.price(inst, trade.price),
                        "sz": okx.size(inst, trade.size),
                        "side": "buy" if trade.buy else "sell",
                        "ts": str(trade.time_ms),
                        "count": "1",
                    }
                    for trade in prints(book, max(before, session.opened_ms), now)
                ]
            elif channel == "tickers":
                data = [okx.ticker(self.market, inst, now)]
            else:
                every = FUNDING_EVERY_MS if channel == "funding-rate" else OPEN_INTEREST_EVERY_MS
                if sub["last_open"] is not None and sub["last_open"] == now // every:
                    continue
                sub["last_open"] = now // every
                perp = self.market.perp(inst.venue, inst.symbol)
                assert perp is not None
                if channel == "funding-rate":
                    data = [okx.funding_rate(perp, now)]
                else:
                    data = [okx.open_interest_document(perp, now)]
            if data:
                self.publish(session, inst.coin, {"arg": arg, "data": data})
