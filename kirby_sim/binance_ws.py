"""Binance market streams, spot and USD-M futures, raw and combined:

    spot     /ws/<stream>            /stream, /stream/<n>        (?streams=a/b on any)
    USD-M    /fstream/ws/<stream>    /fstream/stream             and the same under
             /fstream/public/... and /fstream/market/... (Binance's 2026 futures split)

Point ccxt's `urls['api']['ws']` at `ws://host:port/stream` (spot: ccxt tells spot from
futures by "/stream" in the URL) and `ws://host:port/fstream/ws` (linear: ccxt rewrites a
base ending in /ws to .../public/ws or .../market/ws, Binance's 2026 futures split: depth,
bookTicker and trade on public; kline, aggTrade, markPrice and tickers on market).

    {"method":"SUBSCRIBE","params":["btcusdt@kline_1m","btcusdt@trade"],"id":1}
      -> {"result":null,"id":1}
    {"method":"LIST_SUBSCRIPTIONS","id":2} -> {"result":["btcusdt@kline_1m",...],"id":2}

Combined (`.../stream...`) paths wrap every event as {"stream":"btcusdt@trade","data":{...}};
raw (`.../ws/...`) paths send the bare event. A raw path's last segment and the `streams`
query parameter (names joined by "/") subscribe at connect; anything else there (ccxt
dials `.../ws/0`) is ignored. Streams: <symbol>@kline_<interval> (spot every
`SPOT_PUSH_MS`, futures every `FUTURES_PUSH_MS`, "x": true on the final push of a candle),
@trade, @aggTrade (one per trade, consistent with the 1m candles), @ticker and
@miniTicker (24 h), @bookTicker (best bid/ask a tick around the last price; no depth),
@markPrice and @markPrice@1s (futures: funding rate "r", next funding time "T"; every 3 s
or 1 s), @depth / @depth@100ms (diffs of the order book, `binance_depth`: one event
per 100 ms / 250 ms / 1000 ms step as named; the pump runs every `DEPTH_PUSH_MS`).
Unknown streams answer {"error":{"code":2,"msg":"Invalid request: ..."},"id":N}.
Rules: 300 new connections per 5 minutes per IP, at most 1024 streams a connection, at
most 5 (spot) / 10 (futures) client messages a second (beyond: the connection is closed),
a WebSocket ping every 20 s (spot) / 180 s (futures), and a disconnect after 24 h on the
virtual clock.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kirby_sim import binance_depth
from kirby_sim import binance_futures as fmt
from kirby_sim.candles import Bar, CandleBook
from kirby_sim.clock import VirtualClock
from kirby_sim.depth import DepthFeed
from kirby_sim.faults import FaultInjector
from kirby_sim.intervals import BINANCE_INTERVALS, MINUTE_MS, next_open
from kirby_sim.market import Market
from kirby_sim.prints import first_id, last_id_before, prints
from kirby_sim.universe import BINANCE_SPOT_VENUE, BINANCE_USDM_VENUE
from kirby_sim.venue_ws import VenueSession, VenueSocket, candle_updates

SPOT_PATHS = ("/ws/{stream}", "/stream", "/stream/{stream}")
FUTURES_PATHS = tuple(
    f"/fstream{category}{kind}"
    for category in ("", "/public", "/market")
    for kind in ("/ws/{stream}", "/stream", "/stream/{stream}")
)
SPOT_PUSH_MS = 2000
FUTURES_PUSH_MS = 250
DEPTH_PUSH_MS = 100
"""The pump's period: the fastest diff-depth stream; klines and tickers keep their own."""
STREAMS_PER_CONNECTION = 1024
SPOT_MESSAGES_PER_SECOND = 5
FUTURES_MESSAGES_PER_SECOND = 10
SPOT_PING_SECONDS = 20.0
FUTURES_PING_SECONDS = 180.0
MAX_AGE_MS = 24 * 3_600_000
NEW_CONNECTIONS = (300, 300.0)
"""300 connections per 5 minutes per IP."""
PUBLIC_FUTURES_STREAMS = ("trade", "depth", "bookTicker")
FUTURES_ONLY = ("markPrice", "markPrice@1s")


def _category(path: str) -> str | None:
    for category in ("public", "market"):
        if path.startswith(f"/fstream/{category}/"):
            return category
    return None


class BinanceStream(VenueSocket):
    max_age_ms = MAX_AGE_MS
    new_connections = NEW_CONNECTIONS

    def __init__(
        self,
        market: Market,
        clock: VirtualClock,
        faults: FaultInjector,
        rate_limits: bool,
        *,
        futures: bool,
    ) -> None:
        super().__init__(clock, faults, rate_limits)
        self.market = market
        self.futures = futures
        self.venue = BINANCE_USDM_VENUE if futures else BINANCE_SPOT_VENUE
        self.candle_ms = FUTURES_PUSH_MS if futures else SPOT_PUSH_MS
        self.push_ms = min(self.candle_ms, DEPTH_PUSH_MS)
        self.heartbeat = FUTURES_PING_SECONDS if futures else SPOT_PING_SECONDS
        self.messages_per_second = (
            FUTURES_MESSAGES_PER_SECOND if futures else SPOT_MESSAGES_PER_SECOND
        )
        self._books = {inst.symbol.lower(): inst.symbol for inst in market.instruments[self.venue]}

    def _parse(self, path: str, name: Any) -> tuple[CandleBook, str, str | None] | None:
        if not isinstance(name, str) or "@" not in name:
            return None
        lower, stream = name.split("@", 1)
        symbol = self._books.get(lower)
        if symbol is None:
            return None
        book = self.market.book(self.venue, symbol)
        assert book is not None
        interval = None
        kind = stream
        if stream.startswith("kline_") and stream.removeprefix("kline_") in BINANCE_INTERVALS:
            kind, interval = "kline", stream.removeprefix("kline_")
        elif binance_depth.stream_ms(stream, self.futures) is not None:
            kind, interval = "depth", stream
        elif stream not in (
            "trade",
            "aggTrade",
            "ticker",
            "miniTicker",
            "bookTicker",
            *FUTURES_ONLY,
        ):
            return None
        if kind in FUTURES_ONLY and not self.futures:
            return None
        category = _category(path)
        if category is not None and (kind in PUBLIC_FUTURES_STREAMS) != (category == "public"):
            return None
        return book, kind, interval

    def on_text(self, session: VenueSession, text: str) -> None:
        second = int(time.monotonic())
        seen = session.state.setdefault("rate", [second, 0])
        if seen[0] != second:
            seen[0], seen[1] = second, 0
        seen[1] += 1
        if seen[1] > self.messages_per_second:
            session.abort()
            return
        try:
            message = json.loads(text)
        except ValueError:
            session.send_json({"error": {"code": 3, "msg": "Invalid JSON: expected value"}})
            return
        request_id = message.get("id") if isinstance(message, dict) else None
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params", []) if isinstance(message, dict) else []

        def error(msg: str) -> None:
            session.send_json(
                {"error": {"code": 2, "msg": f"Invalid request: {msg}"}, "id": request_id}
            )

        names = [key[0] for key in session.subscriptions]
        if method == "LIST_SUBSCRIPTIONS":
            session.send_json({"result": names, "id": request_id})
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            error(f"unknown variant {method}, expected one of SUBSCRIBE, UNSUBSCRIBE, "
                  "LIST_SUBSCRIPTIONS")  # fmt: skip
            return
        parsed = [(name, self._parse(session.path, name)) for name in params]
        unknown = [str(name) for name, target in parsed if target is None]
        if unknown:
            error(f"invalid stream name {unknown[0]}")
            return
        if method == "SUBSCRIBE" and len(set(names) | set(params)) > STREAMS_PER_CONNECTION:
            error(f"too many streams: at most {STREAMS_PER_CONNECTION} per connection")
            return
        for name, target in parsed:
            if method == "UNSUBSCRIBE":
                session.subscriptions.pop((name,), None)
            elif target is not None:
                self._add(session, name, target)
        session.send_json({"result": None, "id": request_id})

    def greet(self, session: VenueSession) -> None:
        request = session.request
        names = [name for name in request.query.get("streams", "").split("/") if name]
        if "/ws/" in request.path:
            names.append(request.match_info.get("stream", ""))
        for name in names:
            target = self._parse(session.path, name)
            if target is not None:
                self._add(session, name, target)

    def _add(self, session: VenueSession, name: str, target: tuple[CandleBook, str, str | None]):
        book, kind, interval = target
        feed = None
        if kind == "depth":
            assert interval is not None
            depth = self.market.depth(self.venue, book.instrument.symbol)
            every = binance_depth.stream_ms(interval, self.futures)
            assert depth is not None and every is not None
            feed = DepthFeed.start(
                depth, self.clock.now_ms(), every=max(1, every // depth.update_ms)
            )
        session.subscriptions.setdefault(
            (name,),
            {"book": book, "kind": kind, "interval": interval, "last_open": None,
             "last_push": None, "feed": feed},
        )  # fmt: skip

    def _send(self, session: VenueSession, name: str, coin: str, event: dict[str, Any]) -> None:
        combined = "/stream" in session.path
        self.publish(session, coin, {"stream": name, "data": event} if combined else event)

    def on_tick(self, session: VenueSession, before: int, now: int) -> None:
        candles_due = now // self.candle_ms != before // self.candle_ms
        for (name,), sub in list(session.subscriptions.items()):
            book: CandleBook = sub["book"]
            inst = book.instrument
            kind = sub["kind"]
            if kind in ("kline", "ticker", "miniTicker", "bookTicker") and not candles_due:
                continue
            if kind == "kline":
                interval = sub["interval"]
                updates, sub["last_open"] = candle_updates(book, interval, sub["last_open"], now)
                for bar, closed in updates:
                    event = {"e": "kline", "E": now, "s": inst.symbol,
                             "k": self._kline(book, interval, bar, closed, now)}  # fmt: skip
                    self._send(session, name, inst.coin, event)
            elif kind == "depth":
                self._depth(session, name, sub["feed"], now)
            elif kind in ("trade", "aggTrade"):
                for trade in prints(book, max(before, session.opened_ms), now, "sequential"):
                    event = {
                        "e": kind, "E": now, "s": inst.symbol,
                        "p": fmt.price(inst, trade.price), "q": fmt.size(inst, trade.size),
                        "T": trade.time_ms, "m": not trade.buy,
                    }  # fmt: skip
                    if kind == "trade":
                        event["t"] = trade.trade_id
                        event.update({"X": "MARKET"} if self.futures else {"M": True})
                    else:
                        event.update({"a": trade.trade_id, "f": trade.trade_id,
                                      "l": trade.trade_id})  # fmt: skip
                    self._send(session, name, inst.coin, event)
            elif kind == "bookTicker":
                perp = self.market.perp(self.venue, inst.symbol)
                last = book.forming_minute(now).close
                bid, ask = perp.quote(now) if perp else (last - inst.tick_units, last)
                event = {"u": now, "s": inst.symbol, "b": fmt.price(inst, bid),
                         "B": fmt.size(inst, 10**inst.size_decimals),
                         "a": fmt.price(inst, ask),
                         "A": fmt.size(inst, 10**inst.size_decimals)}  # fmt: skip
                if self.futures:
                    event = {"e": "bookTicker", "E": now, "T": now, **event}
                self._send(session, name, inst.coin, event)
            elif kind == "miniTicker":
                document = fmt.ticker_24h(self.market, inst, now)
                event = {"e": "24hrMiniTicker", "E": now, "s": inst.symbol,
                         "c": document["lastPrice"], "o": document["openPrice"],
                         "h": document["highPrice"], "l": document["lowPrice"],
                         "v": document["volume"], "q": document["quoteVolume"]}  # fmt: skip
                self._send(session, name, inst.coin, event)
            elif kind == "ticker":
                document = fmt.ticker_24h(self.market, inst, now)
                event = {"e": "24hrTicker", "E": now, "s": inst.symbol,
                         "p": document["priceChange"], "P": document["priceChangePercent"],
                         "w": document["weightedAvgPrice"], "c": document["lastPrice"],
                         "Q": document["lastQty"], "o": document["openPrice"],
                         "h": document["highPrice"], "l": document["lowPrice"],
                         "v": document["volume"], "q": document["quoteVolume"],
                         "O": document["openTime"], "C": document["closeTime"],
                         "F": document["firstId"], "L": document["lastId"],
                         "n": document["count"]}  # fmt: skip
                if not self.futures:
                    event.update({"x": document["prevClosePrice"], "b": document["bidPrice"],
                                  "B": document["bidQty"], "a": document["askPrice"],
                                  "A": document["askQty"]})  # fmt: skip
                self._send(session, name, inst.coin, event)
            else:
                every = 1000 if kind == "markPrice@1s" else 3000
                if sub["last_push"] == now // every:
                    continue
                sub["last_push"] = now // every
                perp = self.market.perp(self.venue, inst.symbol)
                assert perp is not None
                index = fmt.premium_index(perp, now)
                event = {"e": "markPriceUpdate", "E": now, "s": inst.symbol,
                         "p": index["markPrice"], "ap": index["markPrice"],
                         "P": index["estimatedSettlePrice"], "i": index["indexPrice"],
                         "r": index["lastFundingRate"], "T": index["nextFundingTime"]}  # fmt: skip
                self._send(session, name, inst.coin, event)

    def _depth(self, session: VenueSession, name: str, feed: DepthFeed, now: int) -> None:
        coin = feed.book.instrument.coin
        for first, last, after, change in feed.pending(now):
            if not self.faults.take_book_gap("binance"):
                event = binance_depth.diff_event(feed.book, first, last, change, self.futures, now)
                combined = "/stream" in session.path
                if not self.publish(
                    session, coin, {"stream": name, "data": event} if combined else event
                ):
                    return  # stalled: the next push carries these steps
            feed.commit(last, after)

    @staticmethod
    def _kline(book: CandleBook, interval: str, bar: Bar, closed: bool, now: int) -> dict[str, Any]:
        inst = book.instrument
        first_minute = bar.open_ms // MINUTE_MS
        last_minute = min(next_open(interval, bar.open_ms), now) // MINUTE_MS
        traded = bar.trades > 0
        first = first_id(book, first_minute, "sequential")
        last = last_id_before(book, first_minute, last_minute + (0 if closed else 1))
        return {
            "t": bar.open_ms, "T": next_open(interval, bar.open_ms) - 1, "s": inst.symbol,
            "i": interval,
            "f": first if traded else -1, "L": last if traded else -1,
            "o": fmt.price(inst, bar.open), "c": fmt.price(inst, bar.close),
            "h": fmt.price(inst, bar.high), "l": fmt.price(inst, bar.low),
            "v": fmt.size(inst, bar.volume), "n": bar.trades, "x": closed,
            "q": fmt.quote(inst, bar.quote), "V": fmt.size(inst, bar.taker_base),
            "Q": fmt.quote(inst, bar.taker_quote), "B": "0",
        }  # fmt: skip
