"""Bybit v5 public WebSocket: `/v5/public/spot` and `/v5/public/linear`.

    {"op":"subscribe","req_id":"1","args":["kline.1.BTCUSDT","publicTrade.BTCUSDT"]}
      -> {"success":true,"ret_msg":"","conn_id":"...","req_id":"1","op":"subscribe"}
    {"op":"ping","req_id":"2"} -> {"success":true,"ret_msg":"pong","conn_id":"...",...}

Topics: kline.{1,3,5,15,30,60,120,240,360,720,D,W,M}.SYMBOL (every second the forming
candle with "confirm":false; at a close, the final candle with "confirm":true first),
publicTrade.SYMBOL (the trades since the previous push, consistent with the 1m candles),
orderbook.{1,50,200,1000}.SYMBOL (a snapshot, then deltas: `bybit_depth`),
tickers.SYMBOL (spot: a snapshot every push; linear: a snapshot, then deltas carrying only
the fields that changed since the last push that went out, fundingRate and openInterest
among them: a snapshot a stall held back comes once the stall ends). An unknown topic fails
the whole request ("success":false, "error:handler not found,topic:..."); spot takes at
most 10 args per request, and the args of one request may not exceed 21,000 characters.
Klines and tickers push every `CANDLE_PUSH_MS` simulated ms, trades and books every
`PUSH_MS`; clients should ping every 20 s and a connection
without any client message for 10 minutes is closed. At most 500 new connections per
5 minutes per IP.
"""

from __future__ import annotations

import json
from typing import Any

from kirby_sim import bybit, bybit_depth
from kirby_sim.bybit import INTERVALS, kline_row
from kirby_sim.candles import CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.depth import DepthFeed
from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import next_open
from kirby_sim.market import Market
from kirby_sim.prints import prints
from kirby_sim.universe import BYBIT_LINEAR_VENUE, BYBIT_SPOT_VENUE
from kirby_sim.venue_ws import CANDLE_PUSH_MS, VenueSession, VenueSocket, candle_updates

PATHS = {"/v5/public/spot": BYBIT_SPOT_VENUE, "/v5/public/linear": BYBIT_LINEAR_VENUE}
"""Simulated ms between kline and ticker pushes."""
PUSH_MS = 100
"""The pump's period: a book step (orderbook.50 pushes every 20 ms on Bybit, but the
simulated book changes once a step; a pump tick sends every step due, one push each)."""
NEW_CONNECTIONS = (500, 300.0)
"""(connections, real seconds) a client IP may open."""
SPOT_ARGS_PER_REQUEST = 10
ARGS_MAX_CHARS = 21_000
IDLE_TIMEOUT = 600.0


def _category(venue: str) -> str:
    return "spot" if venue == BYBIT_SPOT_VENUE else "linear"


class BybitStream(VenueSocket):
    push_ms = PUSH_MS
    new_connections = NEW_CONNECTIONS
    idle_timeout = IDLE_TIMEOUT

    def __init__(
        self, market: Market, clock: VirtualClock, faults: FaultInjector, rate_limits: bool
    ) -> None:
        super().__init__(clock, faults, rate_limits)
        self.market = market

    def _parse(self, venue: str, topic: Any) -> tuple[str, CandleBook, str | None] | None:
        if not isinstance(topic, str):
            return None
        parts = topic.split(".")
        if parts[0] == "kline" and len(parts) == 3 and parts[1] in INTERVALS:
            kind, interval, symbol = "kline", INTERVALS[parts[1]], parts[2]
        elif parts[0] in ("publicTrade", "tickers") and len(parts) == 2:
            kind, interval, symbol = parts[0], None, parts[1]
        elif (
            parts[0] == "orderbook"
            and len(parts) == 3
            and parts[1].isdigit()
            and int(parts[1]) in bybit_depth.DEPTHS[_category(venue)]
        ):
            kind, interval, symbol = "orderbook", parts[1], parts[2]
        else:
            return None
        book = self.market.book(venue, symbol)
        return None if book is None else (kind, book, interval)

    def on_text(self, session: VenueSession, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        conn_id = f"sim-{id(session):x}"
        if not isinstance(message, dict):
            session.send_json(
                {"success": False, "ret_msg": f"error:invalid request: {text}", "conn_id": conn_id}
            )
            return
        op = message.get("op")
        reply: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn_id}
        if "req_id" in message:
            reply["req_id"] = message["req_id"]
        reply["op"] = op
        if op == "ping":
            session.send_json({**reply, "ret_msg": "pong"})
            return
        args = message.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            session.send_json({**reply, "success": False, "ret_msg": f"error:invalid op {op}"})
            return
        venue = PATHS[session.path]
        if venue == BYBIT_SPOT_VENUE and len(args) > SPOT_ARGS_PER_REQUEST:
            session.send_json({**reply, "success": False, "ret_msg": "error:args size >10"})
            return
        if len(json.dumps(args)) > ARGS_MAX_CHARS:
            error = f"error:args length exceeds {ARGS_MAX_CHARS} characters"
            session.send_json({**reply, "success": False, "ret_msg": error})
            return
        parsed = [(topic, self._parse(venue, topic)) for topic in args]
        bad = [str(topic) for topic, target in parsed if target is None]
        if bad:
            error = f"error:handler not found,topic:{bad[0]}"
            session.send_json({**reply, "success": False, "ret_msg": error})
            return
        for topic, target in parsed:
            if op == "unsubscribe":
                session.subscriptions.pop(topic, None)
            elif topic not in session.subscriptions and target is not None:
                kind, book, interval = target
                session.subscriptions[topic] = {
                    "kind": kind, "book": book, "interval": interval, "last_open": None,
                    "sent": None, "feed": self._feed(venue, book, interval) if kind == "orderbook"
                    else None,
                }  # fmt: skip
        session.send_json(reply)

    def _feed(self, venue: str, book: CandleBook, depth: str | None) -> dict[str, Any]:
        assert depth is not None
        found = self.market.depth(venue, book.instrument.symbol)
        assert found is not None
        feed = bybit_depth.start_feed(found, self.clock.now_ms(), int(depth), _category(venue))
        return {"feed": feed, "u": feed.step, "fresh": True, "restarts": self.faults.book_restarts}

    def _orderbook(self, session: VenueSession, topic: str, state: dict[str, Any], now: int):
        feed: DepthFeed = state["feed"]
        coin = feed.book.instrument.coin
        if state["restarts"] != self.faults.book_restarts:  # Bybit restarted: u starts at 1
            state["restarts"] = self.faults.book_restarts
            state["u"], state["fresh"] = 1, True
        if state["fresh"]:
            feed.commit(feed.book.step(now), feed.book.view(feed.book.step(now), feed.depth))
            message = bybit_depth.snapshot_message(topic, feed, state["u"], now)
            state["fresh"] = not self.publish(session, coin, message)
            return
        for _, last, after, change in feed.pending(now):
            state["u"] += 1
            if not self.faults.take_book_gap("bybit"):
                data = bybit_depth.book_data(feed.book, change.bids, change.asks, state["u"], last)
                message = {"topic": topic, "type": "delta", "ts": now, "data": data,
                           "cts": feed.book.step_time(last)}  # fmt: skip
                if not self.publish(session, coin, message):
                    state["u"] -= 1
                    return  # stalled: the next push carries these steps
            feed.commit(last, after)

    def on_tick(self, session: VenueSession, before: int, now: int) -> None:
        venue = PATHS[session.path]
        candles_due = now // CANDLE_PUSH_MS != before // CANDLE_PUSH_MS
        for topic, sub in list(session.subscriptions.items()):
            book: CandleBook = sub["book"]
            inst = book.instrument
            if sub["kind"] == "orderbook":
                self._orderbook(session, topic, sub["feed"], now)
                continue
            if sub["kind"] != "publicTrade" and not candles_due:
                continue
            if sub["kind"] == "kline":
                interval = sub["interval"]
                updates, sub["last_open"] = candle_updates(book, interval, sub["last_open"], now)
                for bar, closed in updates:
                    row = kline_row(inst, bar)
                    data = {
                        "start": bar.open_ms,
                        "end": next_open(interval, bar.open_ms) - 1,
                        "interval": topic.split(".")[1],
                        "open": row[1], "close": row[4], "high": row[2], "low": row[3],
                        "volume": row[5], "turnover": row[6], "confirm": closed,
                        "timestamp": now,
                    }  # fmt: skip
                    self.publish(
                        session,
                        inst.coin,
                        {"topic": topic, "data": [data], "ts": now, "type": "snapshot"},
                    )
            elif sub["kind"] == "publicTrade":
                trades = prints(book, max(before, session.opened_ms), now)
                if not trades:
                    continue
                rows = [
                    {
                        "T": trade.time_ms,
                        "s": inst.symbol,
                        "S": "Buy" if trade.buy else "Sell",
                        "v": bybit.size(inst, trade.size),
                        "p": bybit.price(inst, trade.price),
                        "L": "ZeroPlusTick",
                        "i": str(trade.trade_id),
                        "BT": False,
                        "seq": trade.trade_id,
                    }
                    for trade in trades
                ]
                self.publish(
                    session,
                    inst.coin,
                    {"topic": topic, "type": "snapshot", "ts": now, "data": rows},
                )
            else:
                full = bybit.ticker(self.market, venue, inst, now)
                sent = sub["sent"]
                kind = "snapshot"
                data = full
                if venue == BYBIT_LINEAR_VENUE and sent is not None:
                    kind = "delta"
                    data = {k: v for k, v in full.items() if sent.get(k) != v}
                    data["symbol"] = inst.symbol
                document: dict[str, Any] = {"topic": topic, "ts": now, "type": kind, "data": data}
                if venue == BYBIT_LINEAR_VENUE:
                    document["cs"] = now
                if self.publish(session, inst.coin, document):
                    sub["sent"] = full  # deltas follow what the client got
