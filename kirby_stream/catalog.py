"""What the collector listens to: every active series of the realtime catalog on an
exchange that declares a live feed (`ExchangeDeclaration.stream`).

A `StreamCatalog` is an immutable snapshot read from the database, split the way the
collector works:

- `FeedPlan`: one WebSocket connection's share (an exchange's URL: Hyperliquid has one,
  Binance one for spot and two for USD-M futures, OKX `/public` and `/business`...): per
  wire symbol, the subscriptions to send and the series its frames land in (candles by
  starlisting; funding, open interest and the trade tape by trading pair: every active
  pair on an exchange whose WebSocket carries `trades` for its market type, unless
  `stream_trades` is off);
- `PollPlan`: what an exchange's WebSocket does not carry and the collector polls from REST
  instead (Binance's open interest, Coinbase's 1m/15m/1d candles).

Subscriptions, URLs and symbols come from the exchange's declaration; nothing here knows an
exchange by name. The collector re-reads the catalog every `stream_catalog_poll_seconds`
and hands each connection its new plan, which it applies without reconnecting.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import asyncpg

from kirby_core.catalog import TradingPairKey
from kirby_core.db import catalog_store
from kirby_core.exchanges.registry import EXCHANGES, ExchangeDeclaration, StreamAdapter
from kirby_core.settings import Settings

Subscription = tuple[str, Any]
"""(market type, the exchange's subscription of one series)."""
FeedKey = tuple[str, str]
"""(exchange, URL): one connection."""


@dataclass(frozen=True)
class FeedPlan:
    """One connection's series, by the symbol its frames carry."""

    exchange: str
    url: str
    subscriptions: Mapping[str, tuple[Subscription, ...]] = field(default_factory=dict)
    """symbol -> its subscriptions on this connection (one per channel, never twice)."""
    candles: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(symbol, interval) -> starlisting id."""
    funding: Mapping[str, int] = field(default_factory=dict)
    """symbol -> trading pair id, where this connection carries its funding."""
    open_interest: Mapping[str, int] = field(default_factory=dict)
    """symbol -> trading pair id, where this connection carries its open interest."""
    trades: Mapping[str, int] = field(default_factory=dict)
    """symbol -> trading pair id, where this connection carries its trade tape."""
    contract_values: Mapping[str, Decimal] = field(default_factory=dict)
    """symbol -> base coin per contract, where its trade sizes count contracts (OKX swaps;
    set by `kirby_stream.contracts`)."""

    @property
    def key(self) -> FeedKey:
        return (self.exchange, self.url)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self.subscriptions)

    def series(self, unit: str) -> list[tuple[str, int]]:
        """(dataset, series id) of what a gap unit covers: `"<symbol> <dataset>"` (see
        `units`), or every dataset this connection carries for a bare `"<symbol>"`."""
        symbol, _, dataset = unit.partition(" ")
        found = [("candles", sid) for sid in self._candles_of.get(symbol, ())]
        if symbol in self.funding:
            found.append(("funding_rates", self.funding[symbol]))
        if symbol in self.open_interest:
            found.append(("open_interest", self.open_interest[symbol]))
        if symbol in self.trades:
            found.append(("trades", self.trades[symbol]))
        return [item for item in found if not dataset or item[0] == dataset]

    @cached_property
    def _candles_of(self) -> dict[str, list[int]]:
        """symbol -> its starlisting ids, in (symbol, interval) order."""
        found: dict[str, list[int]] = defaultdict(list)
        for (symbol, _), sid in sorted(self.candles.items()):
            found[symbol].append(sid)
        return found

    def units(self, symbols: Iterable[str]) -> list[str]:
        """The gap units of `symbols`: one per dataset this connection carries for each
        (`"BTCUSDT funding_rates"`), so a channel that comes back without another (tickers
        refused while candles flow) keeps its own gap open."""
        return sorted(
            {f"{symbol} {dataset}" for symbol in symbols for dataset, _ in self.series(symbol)}
        )


@dataclass(frozen=True)
class PollTarget:
    pair: TradingPairKey
    interval: str | None
    """The candle interval (None for open interest)."""
    series_id: int

    @property
    def unit(self) -> str:
        """What an outage of this poll is tracked by, e.g. binance/BTC/USDT/perps."""
        return str(self.pair) if self.interval is None else f"{self.pair}/{self.interval}"


@dataclass(frozen=True)
class PollPlan:
    """One exchange's series the collector polls from REST once a minute."""

    exchange: str
    dataset: str
    targets: tuple[PollTarget, ...]

    @property
    def key(self) -> FeedKey:
        return (self.exchange, f"poll:{self.dataset}")

    @property
    def units(self) -> frozenset[str]:
        return frozenset(target.unit for target in self.targets)

    def series(self, unit: str) -> list[tuple[str, int]]:
        return [(self.dataset, t.series_id) for t in self.targets if t.unit == unit]


@dataclass(frozen=True)
class StreamCatalog:
    feeds: Mapping[FeedKey, FeedPlan] = field(default_factory=dict)
    polls: Mapping[FeedKey, PollPlan] = field(default_factory=dict)

    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(sorted({key[0] for key in (*self.feeds, *self.polls)}))

    @property
    def subscriptions(self) -> int:
        return sum(
            len(subs) for plan in self.feeds.values() for subs in plan.subscriptions.values()
        )

    @property
    def series_count(self) -> int:
        feeds = sum(
            len(plan.series(symbol)) for plan in self.feeds.values() for symbol in plan.symbols
        )
        return feeds + sum(len(plan.targets) for plan in self.polls.values())

    def feed(self, key: FeedKey) -> FeedPlan:
        """The plan of connection `key` (an empty one once the catalog no longer has it)."""
        return self.feeds.get(key) or FeedPlan(*key)


class _FeedBuilder:
    def __init__(self, exchange: str, url: str) -> None:
        self.exchange, self.url = exchange, url
        self.subscriptions: dict[str, dict[str, Subscription]] = defaultdict(dict)
        self.candles: dict[tuple[str, str], int] = {}
        self.funding: dict[str, int] = {}
        self.open_interest: dict[str, int] = {}
        self.trades: dict[str, int] = {}

    def add(self, symbol: str, market_type: str, subscription: Any) -> None:
        # Funding and open interest often share one channel (activeAssetCtx, tickers).
        self.subscriptions[symbol].setdefault(
            json.dumps(subscription, sort_keys=True), (market_type, subscription)
        )

    def plan(self) -> FeedPlan:
        return FeedPlan(
            self.exchange,
            self.url,
            {symbol: tuple(subs.values()) for symbol, subs in sorted(self.subscriptions.items())},
            self.candles,
            self.funding,
            self.open_interest,
            self.trades,
        )


def build_catalog(
    settings: Settings,
    starlistings: Iterable[catalog_store.Starlisting],
    pairs: Iterable[catalog_store.TradingPair],
) -> StreamCatalog:
    """The collector's catalog from the realtime catalog's active series."""
    feeds: dict[FeedKey, _FeedBuilder] = {}
    polls: dict[tuple[str, str], list[PollTarget]] = defaultdict(list)

    def collect(pair: TradingPairKey, dataset: str, interval: str | None, series: int) -> None:
        """Put one series on the connection (or poll) its exchange declares for it."""
        found = _streamed(pair.exchange, pair.market_type)
        if found is None:
            return
        exchange, stream = found
        how = stream.collection(pair.market_type, dataset, interval)
        if how == "polled":
            polls[exchange.name, dataset].append(PollTarget(pair, interval, series))
            return
        if how == "none":
            return
        symbol = stream.symbol(exchange, pair.coin, pair.quote, pair.market_type)
        url = stream.ws_url(settings, pair.market_type, dataset)
        feed = feeds.setdefault((exchange.name, url), _FeedBuilder(exchange.name, url))
        for subscription in stream.subscriptions(pair.market_type, dataset, symbol, interval):
            feed.add(symbol, pair.market_type, subscription)
        if interval is not None:
            feed.candles[symbol, interval] = series
        elif dataset == "funding_rates":
            feed.funding[symbol] = series
        elif dataset == "trades":
            feed.trades[symbol] = series
        else:
            feed.open_interest[symbol] = series

    for listing in starlistings:
        collect(listing.key.trading_pair, "candles", listing.key.interval, listing.id)
    pair_datasets: tuple[str, ...] = ("funding_rates", "open_interest")
    if settings.stream_trades:
        pair_datasets += ("trades",)
    for trading_pair in pairs:
        for dataset in pair_datasets:
            collect(trading_pair.key, dataset, None, trading_pair.id)
    return StreamCatalog(
        feeds={key: builder.plan() for key, builder in sorted(feeds.items())},
        polls={
            (exchange, f"poll:{dataset}"): PollPlan(exchange, dataset, tuple(targets))
            for (exchange, dataset), targets in sorted(polls.items())
        },
    )


def _streamed(exchange: str, market_type: str) -> tuple[ExchangeDeclaration, StreamAdapter] | None:
    declared = EXCHANGES.get(exchange)
    if declared is None or declared.stream is None:
        return None
    if market_type not in declared.stream.market_types:
        return None
    return declared, declared.stream


async def load_stream_catalog(conn: asyncpg.Connection, settings: Settings) -> StreamCatalog:
    return build_catalog(
        settings,
        await catalog_store.list_starlistings(conn),
        await catalog_store.list_trading_pairs(conn),
    )
