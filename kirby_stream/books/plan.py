"""Which books the collector keeps: every active trading pair of the realtime catalog on an
exchange whose live feed declares a depth channel (`StreamAdapter.depth`, from its wire
module's `DEPTH`) for its market type.

One `BookPlan` per book connection (exchange, URL): the `FeedPlan` its `Feed` subscribes
(symbol -> the depth subscription) and, per symbol, the trading pair and market type whose
book rules apply; the symbols whose sizes count contracts (`kirby_stream.contracts`, the
rule trades follow) and, once read, their contract values. Book connections are never
the candle connections (see `kirby_stream.books`), even where the URL is the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

import asyncpg

from kirby_core.db import catalog_store
from kirby_core.exchanges.registry import EXCHANGES
from kirby_core.settings import Settings
from kirby_stream.catalog import FeedKey, FeedPlan
from kirby_stream.contracts import counts_contracts

URL_DATASET = "trades"
"""The dataset whose WebSocket URL carries depth too (`DepthChannel`)."""


@dataclass(frozen=True)
class BookPlan:
    feed: FeedPlan
    pairs: Mapping[str, int] = field(default_factory=dict)
    """symbol -> trading pair id."""
    market_types: Mapping[str, str] = field(default_factory=dict)
    """symbol -> market type (which book rules apply)."""
    contract_values: Mapping[str, Decimal] = field(default_factory=dict)
    """symbol -> base coin per contract, for the `contracts` symbols whose value is known
    (set by the book collector from the collector's `ContractValues`)."""

    @cached_property
    def contracts(self) -> frozenset[str]:
        """The symbols whose book sizes count contracts (OKX swaps)."""
        exchange = self.feed.exchange
        kinds = self.market_types.items()
        return frozenset(s for s, kind in kinds if counts_contracts(exchange, kind))

    @property
    def key(self) -> FeedKey:
        return self.feed.key

    def without(self, symbols: Iterable[str]) -> FeedPlan:
        """The feed plan minus `symbols` (a resubscription's first step)."""
        gone = set(symbols)
        kept = {s: subs for s, subs in self.feed.subscriptions.items() if s not in gone}
        return FeedPlan(self.feed.exchange, self.feed.url, kept)


def build_book_plans(
    settings: Settings, pairs: Iterable[catalog_store.TradingPair]
) -> dict[FeedKey, BookPlan]:
    found: dict[FeedKey, tuple[dict[str, tuple[tuple[str, object], ...]], dict[str, int],
                               dict[str, str]]] = {}  # fmt: skip
    for pair in pairs:
        key = pair.key
        declared = EXCHANGES.get(key.exchange)
        stream = declared.stream if declared is not None else None
        if declared is None or stream is None or stream.depth is None:
            continue
        venue = stream.depth
        if key.market_type not in stream.market_types:
            continue
        symbol = stream.symbol(declared, key.coin, key.quote, key.market_type)
        url = stream.ws_url(settings, key.market_type, URL_DATASET)
        subscriptions, ids, market_types = found.setdefault((key.exchange, url), ({}, {}, {}))
        subscriptions[symbol] = ((key.market_type, venue.subscription(key.market_type, symbol)),)
        ids[symbol] = pair.id
        market_types[symbol] = key.market_type
    return {
        (exchange, url): BookPlan(FeedPlan(exchange, url, dict(sorted(subs.items()))), ids, kinds)
        for (exchange, url), (subs, ids, kinds) in sorted(found.items())
    }


async def load_book_plans(conn: asyncpg.Connection, settings: Settings) -> dict[FeedKey, BookPlan]:
    return build_book_plans(settings, await catalog_store.list_trading_pairs(conn))
