"""Contract values: what turns a trade size counted in contracts into the base coin.

OKX's swap trades give `sz` in contracts and the wire carries no coin size (its candles
do: `volCcy`). The collector reads each such exchange's contract values from its REST API
(where its `StreamAdapter.contract_values` says, from its wire module's
`CONTRACT_VALUES`) when the catalog first names a symbol
that needs one, and hands them to the connections in their plans
(`FeedPlan.contract_values`); the intake multiplies. A symbol whose value could not be
read (the exchange unreachable) is asked for again at the next catalog poll; until then
its trades are not stored and its trades gap stays open, so what is lost is recorded as an
outage, like any other gap.
"""

from __future__ import annotations

import json
import logging
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

    async def attach(self, catalog: StreamCatalog) -> StreamCatalog:
        """`catalog` with each plan's `contract_values`, read first where one is missing."""
        needed = {key: _needs(plan) for key, plan in catalog.feeds.items()}
        for exchange in sorted({key[0] for key, symbols in needed.items() if symbols}):
            known = self.known.get(exchange, {})
            if any(needed[key] - known.keys() for key in needed if key[0] == exchange):
                await self._read(exchange)
        feeds = {
            key: replace(plan, contract_values=self._values(key[0], needed[key]))
            if needed[key]
            else plan
            for key, plan in catalog.feeds.items()
        }
        return replace(catalog, feeds=feeds)

    def _values(self, exchange: str, symbols: frozenset[str]) -> dict[str, Decimal]:
        known = self.known.get(exchange, {})
        return {symbol: known[symbol] for symbol in sorted(symbols) if symbol in known}

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


def _needs(plan: FeedPlan) -> frozenset[str]:
    """The symbols of `plan` whose trade sizes count contracts."""
    declared = source(plan.exchange)
    if declared is None:
        return frozenset()
    return frozenset(
        symbol
        for symbol in plan.trades
        if any(market in declared.market_types for market, _ in plan.subscriptions[symbol])
    )
