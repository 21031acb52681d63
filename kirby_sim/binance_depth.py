"""Binance order books: the REST depth snapshot and the diff-depth stream's events.

    GET /api/v3/depth?symbol=&limit=    spot: limit 1..5000 (default 100; more is cut to
                                        5000), weight 5 / 25 / 50 / 250 by limit
    GET /fapi/v1/depth?symbol=&limit=   USD-M: limit 5, 10, 20, 50, 100, 500 or 1000
                                        (default 500), weight 2 / 5 / 10 / 20; adds E, T
    <symbol>@depth[@100ms|@1000ms]      spot diffs every 1000 ms (@100ms: 100 ms)
    <symbol>@depth[@100ms|@250ms|@500ms]  USD-M diffs every 250 ms by default, with "pu"

The snapshot's `lastUpdateId` is the last update id of the book's current step, and a
diff covering steps a..b has `U` = the first id of step a, `u` = the last of step b,
(futures) `pu` = the last of step a - 1: the documented sync procedure ("How to manage a
local order book correctly") works on any snapshot taken while the stream runs. A planted
`book_gap` fault leaves one diff out (the next one's `U` / `pu` then breaks the chain).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kirby_sim import binance_futures as fmt
from kirby_sim.binance import SPOT, USDM, Binance, BinanceError, Family, _integer, _required
from kirby_sim.depth import DepthBook, Diff, Levels
from kirby_sim.market import Market
from kirby_sim.universe import Instrument

SPOT_DEFAULT_LIMIT = 100
SPOT_MAX_LIMIT = 5000
FUTURES_DEFAULT_LIMIT = 500
FUTURES_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
SPOT_STREAM_MS = {"depth": 1000, "depth@1000ms": 1000, "depth@100ms": 100}
FUTURES_STREAM_MS = {"depth": 250, "depth@100ms": 100, "depth@250ms": 250, "depth@500ms": 500}


def stream_ms(stream: str, futures: bool) -> int | None:
    """The push interval of a diff-depth stream name (after "<symbol>@"); None: not one."""
    return (FUTURES_STREAM_MS if futures else SPOT_STREAM_MS).get(stream)


def _levels(inst: Instrument, rows: list[tuple[int, int]]) -> list[list[str]]:
    return [[fmt.price(inst, price), fmt.size(inst, lots)] for price, lots in rows]


def diff_event(
    book: DepthBook, first: int, last: int, change: Diff, futures: bool, now: int
) -> dict[str, Any]:
    """The depthUpdate event of steps first..last."""
    inst = book.instrument
    event_ms = min(now, max(book.step_time(last), 0))
    event: dict[str, Any] = {"e": "depthUpdate", "E": event_ms}
    if futures:
        event["T"] = event_ms
    event.update({"s": inst.symbol, "U": book.update_id(first - 1) + 1, "u": book.update_id(last)})
    if futures:
        event["pu"] = book.update_id(first - 1)
    event["b"] = _levels(inst, change.bids)
    event["a"] = _levels(inst, change.asks)
    return event


def snapshot_document(book: DepthBook, view: Levels, step: int, futures: bool, now: int) -> Any:
    inst = book.instrument
    document: dict[str, Any] = {"lastUpdateId": book.update_id(step)}
    if futures:
        document.update({"E": now, "T": now})
    document["bids"] = _levels(inst, view.bids)
    document["asks"] = _levels(inst, view.asks)
    return document


class BinanceDepth:
    """The two REST depth endpoints, served through `Binance`'s wrapper (weights, errors)."""

    def __init__(self, market: Market, exchange: Binance) -> None:
        self.market = market
        self.exchange = exchange

    def routes(self) -> list[web.RouteDef]:
        wrap = self.exchange._wrap
        return [
            web.get(f"{SPOT.prefix}/depth", wrap(SPOT, self._depth)),
            web.get(f"{USDM.prefix}/depth", wrap(USDM, self._depth)),
        ]

    def _depth(self, request: web.Request, now: int, family: Family) -> Any:
        query = request.query
        symbol = _required(query, "symbol")
        book = self.market.depth(family.venue or "", symbol)
        if book is None:
            raise BinanceError(-1121, "Invalid symbol.")
        limit = _integer(query, "limit")
        futures = family is USDM
        if futures:
            limit = FUTURES_DEFAULT_LIMIT if limit is None else limit
            if limit not in FUTURES_LIMITS:
                raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        else:
            limit = SPOT_DEFAULT_LIMIT if limit is None else limit
            if limit < 1:
                raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
            limit = min(limit, SPOT_MAX_LIMIT)
        step = book.step(now)
        return snapshot_document(book, book.view(step, limit), step, futures, now)
