"""Contract values: what turns a size counted in contracts into the base coin.

OKX's swap trades give `sz` in contracts and the wire carries no coin size (its candles
do: `volCcy`); its swap books count contracts too. One rule for both: the market types its
wire module's `CONTRACT_VALUES` lists (`StreamAdapter.contract_values`) count contracts,
and one `ContractValues` (the collector's, shared by the trade connections and the book
collector) reads their values from the exchange's REST API when the catalog first names a
symbol that needs one, and hands them to the connections in their plans
(`FeedPlan.contract_values`, `BookPlan.contract_values`); the trade intake multiplies each
trade's size, the book sampler each sampled level's (`in_coin`), so every stored size is
in the base coin. A symbol whose value could not be read (the exchange unreachable) is
asked for again at the next catalog poll; until then its trades are not stored and its
trades gap stays open, so what is lost is recorded as an outage, like any other gap, and
its book is not sampled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

import aiohttp

from kirby_core.errors import ExchangeProtocolError
from kirby_core.exchanges.feeds import ContractValueSource
from kirby_core.exchanges.registry import EXCHANGES
from kirby_core.settings import Settings
from kirby_stream.catalog import FeedPlan, StreamCatalog

log = logging.getLogger(__name__)


def source(exchange: str) -> ContractValueSource | None:
    """What `exchange`'s live feed declares about contract-sized trades, if anything."""
    declared = EXCHANGES.get(exchange)
    stream = declared.stream if declared is not None else None
    return stream.contract_values if stream is not None else None


class ContractValues:
    """The contract values read so far, per exchange and symbol."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.known: dict[str, dict[str, Decimal]] = {}
        self._reading: dict[str, asyncio.Lock] = {}

    async def attach(self, catalog: StreamCatalog) -> StreamCatalog:
        """`catalog` with each plan's `contract_values`, read first where one is missing."""
        needed = {key: _needs(plan) for key, plan in catalog.feeds.items()}
        feeds = {
            key: replace(plan, contract_values=await self.values(key[0], needed[key]))
            if needed[key]
            else plan
            for key, plan in catalog.feeds.items()
        }
        return replace(catalog, feeds=feeds)

    async def values(self, exchange: str, symbols: Iterable[str]) -> dict[str, Decimal]:
        """The values of `symbols` of `exchange` known, read first if one is missing (one
        read at a time: the trade connections and the book collector ask at once)."""
        wanted = sorted(set(symbols))
        if not wanted:
            return {}
        lock = self._reading.setdefault(exchange, asyncio.Lock())
        async with lock:
            if any(symbol not in self.known.get(exchange, {}) for symbol in wanted):
                await self._read(exchange)
        known = self.known.get(exchange, {})
        return {symbol: known[symbol] for symbol in wanted if symbol in known}

    async def _read(self, exchange: str) -> None:
        found = source(exchange)
        assert found is not None  # only exchanges with a source need values
        host = str(getattr(self.settings, found.url_setting)).rstrip("/")
        url = host + found.path
        timeout = aiohttp.ClientTimeout(total=self.settings.stream_connect_timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url) as response,
            ):
                response.raise_for_status()
                text = await response.text()
            values = found.parse(json.loads(text, parse_float=Decimal))
        except (aiohttp.ClientError, TimeoutError, ValueError, ExchangeProtocolError) as exc:
            log.warning(
                "event=contract_values_failed exchange=%s url=%s cause=%s", exchange, url, exc
            )
            return
        self.known[exchange] = values
        log.info("event=contract_values_read exchange=%s contracts=%d", exchange, len(values))


def counts_contracts(exchange: str, market_type: str) -> bool:
    """Do sizes of `exchange`'s `market_type` (trades and books) count contracts?"""
    declared = source(exchange)
    return declared is not None and market_type in declared.market_types


def in_coin(size: Decimal, value: Decimal) -> Decimal:
    """A size counted in contracts of `value` coin each, in the coin (exact)."""
    return size * value


def _needs(plan: FeedPlan) -> frozenset[str]:
    """The symbols of `plan` whose trade sizes count contracts."""
    return frozenset(
        symbol
        for symbol in plan.trades
        if any(counts_contracts(plan.exchange, market) for market, _ in plan.subscriptions[symbol])
    )
