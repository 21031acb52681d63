"""What the collector listens to: the active Hyperliquid perps of the realtime catalog.

A `StreamCatalog` is an immutable snapshot read from the database: which candle intervals
each coin has (starlisting ids) and which coins have a trading pair (funding and open
interest). It yields the WebSocket subscriptions (one `candle` per starlisting, one
`activeAssetCtx` per trading pair) and the series an outage of a coin affects. The
collector re-reads it every `stream_catalog_poll_seconds` and applies the difference
without reconnecting. Other exchanges and market types in the catalog are ignored: this
collector speaks Hyperliquid's perp feed only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from kirby_core.db import catalog_store
from kirby_core.exchanges.registry import STREAMED, feed_of

_FEED = feed_of(STREAMED)
EXCHANGE = STREAMED.name
MARKET_TYPE = _FEED.market_type

Subscription = dict[str, str]


@dataclass(frozen=True)
class StreamCatalog:
    candles: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(coin, interval) -> starlisting id."""
    pairs: Mapping[str, int] = field(default_factory=dict)
    """coin -> trading pair id."""

    @property
    def coins(self) -> frozenset[str]:
        return frozenset(self.pairs) | {coin for coin, _ in self.candles}

    def subscriptions(self, coin: str) -> list[Subscription]:
        subs = [
            _FEED.subscription(MARKET_TYPE, "candles", coin, interval)
            for (name, interval) in sorted(self.candles)
            if name == coin
        ]
        if coin in self.pairs:
            subs.append(_FEED.subscription(MARKET_TYPE, "funding_rates", coin, None))
        return subs

    def series(self, coin: str) -> list[tuple[str, int]]:
        """(dataset, series id) of everything collected for `coin`."""
        found = [
            ("candles", sid) for (name, _), sid in sorted(self.candles.items()) if name == coin
        ]
        if coin in self.pairs:
            found += [("funding_rates", self.pairs[coin]), ("open_interest", self.pairs[coin])]
        return found


async def load_stream_catalog(conn: asyncpg.Connection) -> StreamCatalog:
    starlistings = await catalog_store.list_starlistings(conn)
    pairs = await catalog_store.list_trading_pairs(conn)
    return StreamCatalog(
        candles={
            (s.key.coin, s.key.interval): s.id
            for s in starlistings
            if (s.key.exchange, s.key.market_type) == (EXCHANGE, MARKET_TYPE)
        },
        pairs={
            p.key.coin: p.id
            for p in pairs
            if (p.key.exchange, p.key.market_type) == (EXCHANGE, MARKET_TYPE)
        },
    )
