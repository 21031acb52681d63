"""Coinbase Advanced Trade order books: REST `market/product_book` and the `level2` channel.

    GET /api/v3/brokerage/market/product_book?product_id=&limit=
        {"pricebook":{"product_id","bids":[{"price","size"}],"asks":[...],"time"},
         "last","mid_market","spread_bps","spread_absolute"}   (no limit: the whole book)
    level2   frames of channel "l2_data": on subscribe an event {"type":"snapshot",
             "product_id","updates":[{"side":"bid"|"offer","event_time","price_level",
             "new_quantity"}]} with the whole book, then "update" events of the levels that
             changed (new_quantity "0": removed)

Coinbase has no per-product sequence: a frame's `sequence_num` counts the frames of its
connection (every channel), so a lost frame shows as a skipped number. A planted
`book_gap` skips one level2 frame's number without sending it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kirby_sim import coinbase
from kirby_sim.coinbase import Coinbase, CoinbaseError
from kirby_sim.depth import DepthBook
from kirby_sim.market import Market
from kirby_sim.universe import COINBASE_VENUE
from kirby_sim.wire import plain_decimal

DATA_CHANNEL = "l2_data"


def l2_event(book: DepthBook, kind: str, bids: Any, asks: Any, step: int) -> dict[str, Any]:
    inst = book.instrument
    at = coinbase.timestamp(book.step_time(step))
    updates = [
        {
            "side": side,
            "event_time": at,
            "price_level": coinbase.price(inst, price),
            "new_quantity": coinbase.size(inst, lots),
        }
        for side, rows in (("bid", bids), ("offer", asks))
        for price, lots in rows
    ]
    return {"type": kind, "product_id": inst.symbol, "updates": updates}


class CoinbaseDepth:
    """The public product book, served through `Coinbase`'s wrapper (rate limit, errors)."""

    def __init__(self, market: Market, exchange: Coinbase) -> None:
        self.market = market
        self.exchange = exchange

    def routes(self) -> list[web.RouteDef]:
        path = f"{coinbase.PREFIX}market/product_book"
        return [web.get(path, self.exchange._wrap(self._product_book))]

    def _product_book(self, request: web.Request, now: int) -> dict[str, Any]:
        product_id = request.query.get("product_id", "")
        book = self.market.depth(COINBASE_VENUE, product_id)
        if book is None:
            raise CoinbaseError("NOT_FOUND", f"product {product_id!r} not found", 404)
        limit_text = request.query.get("limit", "")
        if limit_text and not (limit_text.isdigit() and int(limit_text) > 0):
            raise CoinbaseError(
                "INVALID_ARGUMENT", f"limit must be a positive integer: {limit_text!r}"
            )
        step = book.step(now)
        view = book.view(step, int(limit_text) if limit_text else None)
        inst = book.instrument
        best_bid, best_ask = view.bids[0][0], view.asks[0][0]
        spread = best_ask - best_bid
        last = book.candles.forming_minute(book.step_time(step)).close
        return {
            "pricebook": {
                "product_id": inst.symbol,
                "bids": [
                    {"price": coinbase.price(inst, p), "size": coinbase.size(inst, s)}
                    for p, s in view.bids
                ],
                "asks": [
                    {"price": coinbase.price(inst, p), "size": coinbase.size(inst, s)}
                    for p, s in view.asks
                ],
                "time": coinbase.timestamp(now),
            },
            "last": coinbase.price(inst, last),
            "mid_market": plain_decimal((best_bid + best_ask) * 5, inst.price_decimals + 1),
            "spread_bps": plain_decimal(spread * 10_000_000 // max(best_bid, 1), 3),
            "spread_absolute": plain_decimal(spread, inst.price_decimals),
        }
