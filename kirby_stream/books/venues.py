"""Each exchange's depth channel, as the book collector needs it: the subscription of one
book, which URL carries it, its frame parser, and how a broken book is made whole again.

    BookVenue   one exchange's declaration
    VENUES      exchange name -> its declaration (the five of the registry)

The parsers are the wire modules' (`parse_depth`, `parse_depth_snapshot`); the requests
are built by each wire module's own `subscribe_frames`, within its connection limits. What
is declared here is only what the wire modules do not say yet: the depth channel's name
and the REST snapshot path. Resync: Binance fetches its REST depth snapshot (the diffs
carry no snapshot); Bybit, OKX and Coinbase answer a new subscription with a snapshot;
Hyperliquid sends nothing but snapshots. Depth rides each exchange's public endpoint, the
one its trades use (Binance USD-M `/public`, OKX `/ws/v5/public`), so the URL is the one
the registry gives for `trades`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kirby_core.books import BookUpdate
from kirby_core.exchanges import (
    binance_wire,
    bybit_wire,
    coinbase_wire,
    hyperliquid_wire,
    okx_wire,
)
from kirby_core.settings import Settings

URL_DATASET = "trades"
"""The dataset whose WebSocket URL carries depth too (see the docstring)."""
SNAPSHOT_LIMIT = 1000
"""Levels a REST depth snapshot asks for (Binance: weight 10 spot, 20 USD-M)."""


@dataclass(frozen=True)
class BookVenue:
    subscription: Callable[[str, str], Any]
    """(market type, wire symbol) -> the exchange's subscription of that book."""
    parse: Callable[[str | bytes, datetime], tuple[BookUpdate, ...]]
    snapshot_url: Callable[[Settings, str, str], str] | None = None
    """(settings, market type, wire symbol) -> the REST depth snapshot to fetch on a
    (re)sync; None: a new subscription brings the snapshot."""
    parse_snapshot: Callable[[object, str, datetime], BookUpdate] | None = None
    sequenced: bool = True
    """False: the exchange numbers no updates (Hyperliquid); samples store no sequence."""
    connection_sequence: str | None = None
    """The field every frame of the connection numbers (Coinbase `sequence_num`): frames
    that are not depth are counted too, or they would read as gaps."""


def _binance_snapshot(settings: Settings, market_type: str, symbol: str) -> str:
    if market_type == "spot":
        base, path = settings.binance_spot_url, "/api/v3/depth"
    else:
        base, path = settings.binance_futures_url, "/fapi/v1/depth"
    return f"{base.rstrip('/')}{path}?symbol={symbol}&limit={SNAPSHOT_LIMIT}"


VENUES: dict[str, BookVenue] = {
    "hyperliquid": BookVenue(
        subscription=lambda market_type, coin: {"type": "l2Book", "coin": coin},
        parse=hyperliquid_wire.parse_depth,
        sequenced=False,
    ),
    "binance": BookVenue(
        # `@depth`: diffs every 1000 ms (spot) / 250 ms (USD-M); sampled once a second, the
        # book needs no finer steps, and the frames are a tenth of `@depth@100ms`'s
        subscription=lambda market_type, symbol: f"{symbol.lower()}@depth",
        parse=binance_wire.parse_depth,
        snapshot_url=_binance_snapshot,
        parse_snapshot=binance_wire.parse_depth_snapshot,
    ),
    "bybit": BookVenue(
        subscription=lambda market_type, symbol: f"orderbook.50.{symbol}",
        parse=bybit_wire.parse_depth,
    ),
    "okx": BookVenue(
        subscription=lambda market_type, symbol: {"channel": "books", "instId": symbol},
        parse=okx_wire.parse_depth,
    ),
    "coinbase": BookVenue(
        subscription=lambda market_type, symbol: {"channel": "level2", "product_id": symbol},
        parse=coinbase_wire.parse_depth,
        connection_sequence="sequence_num",
    ),
}
