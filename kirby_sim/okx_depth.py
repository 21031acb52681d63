"""OKX v5 order books: REST `/api/v5/market/books` and the `books` / `books5` channels.

    GET /api/v5/market/books?instId=&sz=    sz 1..400 (default 1): [{"asks","bids","ts"}]
    books     400 levels: {"arg","action":"snapshot","data":[{"asks","bids","ts",
              "checksum","prevSeqId":-1,"seqId"}]} on subscribe, then "update" pushes
              every 100 ms (changed levels; size "0" deletes, also a level pushed out of
              the top 400) with prevSeqId = the previous push's seqId
    books5    the top 5 levels a side, whole, every push ({"asks","bids","instId","ts",
              "seqId"}, no action)

Levels are [price, size, "0", number of orders]; swap sizes count contracts. `seqId` is
the book's update id (increasing, not by one). `checksum` is OKX's documented CRC32 of the
book after the push: the best 25 bids and asks interleaved as
"bid1px:bid1sz:ask1px:ask1sz:bid2px:...", a side that runs out left out, as a signed
32-bit integer (OKX announced that production sends 0 from 23 June 2026; a client must
chain prevSeqId/seqId either way). A planted `book_gap` leaves one update out, so the next
one's prevSeqId is not the previous seqId.
"""

from __future__ import annotations

import zlib
from typing import Any

from aiohttp import web

from kirby_sim import okx
from kirby_sim.depth import DepthBook, DepthFeed, SimBookState
from kirby_sim.market import Market
from kirby_sim.universe import OKX_SPOT_VENUE, OKX_SWAP_VENUE, Instrument
from kirby_sim.venue_limits import RequestWindow
from kirby_sim.wire import encode

BOOKS_DEPTH = 400
BOOKS5_DEPTH = 5
CHECKSUM_LEVELS = 25
REST_MAX = 400
BOOKS_REQUESTS_PER_2_SECONDS = 40
"""GET /api/v5/market/books per IP."""
Row = list[str]


def _orders(price: int, lots: int) -> str:
    """A plausible order count of a level, the same whenever it is shown."""
    return str(1 + (price * 31 + lots) % 9) if lots else "0"


def levels(inst: Instrument, rows: list[tuple[int, int]]) -> list[Row]:
    return [[okx.price(inst, p), okx.size(inst, lots), "0", _orders(p, lots)] for p, lots in rows]


def checksum(bids: list[Row], asks: list[Row]) -> int:
    """OKX's CRC32 of the best 25 levels a side, as a signed 32-bit integer."""
    parts: list[str] = []
    for number in range(CHECKSUM_LEVELS):
        for side in (bids, asks):
            if number < len(side):
                parts.extend(side[number][:2])
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def books_row(
    book: DepthBook, after: SimBookState, bids: Any, asks: Any, step: int, prev: int
) -> Any:
    """One `books` data row: `bids`/`asks` the levels sent, `after` the book after them."""
    inst = book.instrument
    top = book.levels_of(after, CHECKSUM_LEVELS)
    return {
        "asks": levels(inst, asks),
        "bids": levels(inst, bids),
        "ts": str(book.step_time(step)),
        "checksum": checksum(levels(inst, top.bids), levels(inst, top.asks)),
        "prevSeqId": prev,
        "seqId": book.update_id(step),
    }


def snapshot_row(feed: DepthFeed) -> Any:
    view = feed.view
    return books_row(feed.book, feed.state, view.bids, view.asks, feed.step, -1)


def books5_row(book: DepthBook, step: int) -> Any:
    inst = book.instrument
    view = book.view(step, BOOKS5_DEPTH)
    return {
        "asks": levels(inst, view.asks),
        "bids": levels(inst, view.bids),
        "instId": inst.symbol,
        "ts": str(book.step_time(step)),
        "seqId": book.update_id(step),
    }


def depth_of(market: Market, inst_id: str) -> DepthBook | None:
    venue = OKX_SWAP_VENUE if inst_id.endswith("-SWAP") else OKX_SPOT_VENUE
    return market.depth(venue, inst_id)


class OkxDepth:
    """GET /api/v5/market/books, with OKX's envelope, errors and per-endpoint rate limit."""

    def __init__(self, market: Market, clock: Any, rate_limits: bool) -> None:
        self.market = market
        self.clock = clock
        self._window = RequestWindow(BOOKS_REQUESTS_PER_2_SECONDS if rate_limits else None, 2.0)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(f"{okx.PREFIX}market/books", self._books)]

    async def _books(self, request: web.Request) -> web.Response:
        if self._window.acquire(request.remote or "unknown") is not None:
            return okx.rate_limited()
        try:
            data = self._rows(request.query, self.clock.now_ms())
            document = {"code": "0", "msg": "", "data": data}
        except okx.OkxError as exc:
            document = {"code": exc.code, "msg": exc.msg, "data": []}
        return web.Response(text=encode(document), content_type="application/json")

    def _rows(self, query: Any, now: int) -> list[Any]:
        inst_id = query.get("instId", "")
        if not inst_id:
            raise okx.OkxError("50014", "Parameter instId can not be empty.")
        book = depth_of(self.market, inst_id)
        if book is None:
            raise okx.OkxError("51001", "Instrument ID does not exist.")
        size = query.get("sz", "1")
        if not size.isdigit() or not 1 <= int(size) <= REST_MAX:
            raise okx.OkxError("51000", "Parameter sz error")
        step = book.step(now)
        view = book.view(step, int(size))
        inst = book.instrument
        return [
            {
                "asks": levels(inst, view.asks),
                "bids": levels(inst, view.bids),
                "ts": str(book.step_time(step)),
            }
        ]
