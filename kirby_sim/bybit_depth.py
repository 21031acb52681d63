"""Bybit v5 order books: REST `/v5/market/orderbook` and the `orderbook.{depth}.{symbol}` topic.

    GET /v5/market/orderbook?category=spot|linear&symbol=&limit=
        spot limit 1..200 (default 1), linear 1..500 (default 25); result
        {"s","b":[[price,size]],"a":[...],"ts","u","seq","cts"}
    orderbook.{1|50|200|1000}.{SYMBOL}
        {"topic","type":"snapshot","ts","data":{"s","b","a","u","seq"},"cts"} on subscribe,
        then "delta" pushes of the levels that changed within the top `depth` (size "0":
        delete, including a level pushed out of the top `depth`)

`u` counts the pushes of one subscription: the snapshot's `u` is the book's step number
(as REST's), each delta's the previous `u` + 1; `u` = 1 (a `book_restart`, Bybit's
service restart) is a snapshot that overwrites the book. `seq` is the book's update id
(comparable across depths). A planted `book_gap` leaves one delta out, so the next `u`
skips one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kirby_sim import bybit
from kirby_sim.bybit import Bybit, BybitError
from kirby_sim.depth import DepthBook, DepthFeed, Levels
from kirby_sim.market import Market
from kirby_sim.universe import BYBIT_SPOT_VENUE, Instrument

DEPTHS: dict[str, dict[int, int]] = {
    "spot": {1: 10, 50: 20, 200: 200, 1000: 200},
    "linear": {1: 10, 50: 20, 200: 100, 1000: 200},
}
"""Depths of the orderbook topic and their push interval (ms) per category."""
REST_LIMITS = {"spot": (1, 200), "linear": (25, 500)}
"""(default, maximum) limit of the REST order book per category."""


def _levels(inst: Instrument, rows: list[tuple[int, int]]) -> list[list[str]]:
    return [[bybit.price(inst, price), bybit.size(inst, lots)] for price, lots in rows]


def book_data(book: DepthBook, bids: Any, asks: Any, u: int, step: int) -> dict[str, Any]:
    inst = book.instrument
    return {
        "s": inst.symbol,
        "b": _levels(inst, bids),
        "a": _levels(inst, asks),
        "u": u,
        "seq": book.update_id(step),
    }


def start_feed(book: DepthBook, now: int, depth: int, category: str) -> DepthFeed:
    every = max(1, DEPTHS[category][depth] // book.update_ms)
    return DepthFeed.start(book, now, depth, every)


def snapshot_message(topic: str, feed: DepthFeed, u: int, now: int) -> dict[str, Any]:
    view: Levels = feed.view
    return {
        "topic": topic,
        "type": "snapshot",
        "ts": now,
        "data": book_data(feed.book, view.bids, view.asks, u, feed.step),
        "cts": feed.book.step_time(feed.step),
    }


class BybitDepth:
    """The REST order book, served through `Bybit`'s wrapper (rate limit, envelope)."""

    def __init__(self, market: Market, exchange: Bybit) -> None:
        self.market = market
        self.exchange = exchange

    def routes(self) -> list[web.RouteDef]:
        return [web.get(f"{bybit.PREFIX}market/orderbook", self.exchange._wrap(self._orderbook))]

    def _orderbook(self, query: Any, now: int) -> dict[str, Any]:
        venue = self.exchange._venue(query)
        category = "spot" if venue == BYBIT_SPOT_VENUE else "linear"
        book = self.market.depth(venue, query.get("symbol", ""))
        if book is None:
            raise BybitError(10001, "params error: Symbol Invalid")
        default, maximum = REST_LIMITS[category]
        limit = self.exchange._int(query, "limit", default)
        assert limit is not None
        if not 1 <= limit <= maximum:
            raise BybitError(10001, f"params error: limit must be in [1, {maximum}]")
        step = book.step(now)
        view = book.view(step, limit)
        return {
            **book_data(book, view.bids, view.asks, step, step),
            "ts": now,
            "cts": book.step_time(step),
        }
