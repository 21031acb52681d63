"""The catalog in memory: every lookup of a series by path or id is a dict lookup.

The API reads starlistings and trading pairs (active and inactive) at startup and again
every `api_catalog_refresh_seconds`, so a request never touches the database to find out
what `/candles/hyperliquid/BTC/USD/perps/1m` means. Lookups ignore case (`btc` finds
`BTC`) and answer with the catalog's spelling. An unknown series raises `NotFound` naming
it; an inactive one raises `InactiveSeries`. If a refresh fails the previous catalog stays
in use and the failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TypeVar

from kirby_api.database import ConnectionPool
from kirby_api.errors import InactiveSeries, shorten
from kirby_core.catalog import StarlistingKey, TradingPairKey
from kirby_core.db import catalog_store
from kirby_core.db.catalog_store import Starlisting, TradingPair
from kirby_core.errors import KirbyError, NotFound

log = logging.getLogger(__name__)

_Series = TypeVar("_Series", Starlisting, TradingPair)


@dataclass(frozen=True)
class Snapshot:
    starlistings: tuple[Starlisting, ...]
    trading_pairs: tuple[TradingPair, ...]


def _fold(*parts: str) -> tuple[str, ...]:
    return tuple(part.casefold() for part in parts)


class SeriesCatalog:
    def __init__(self, database: ConnectionPool, refresh_seconds: float) -> None:
        self._database = database
        self._refresh_seconds = refresh_seconds
        self._by_key: dict[tuple[str, ...], Starlisting] = {}
        self._by_id: dict[int, Starlisting] = {}
        self._pairs_by_key: dict[tuple[str, ...], TradingPair] = {}
        self._pairs_by_id: dict[int, TradingPair] = {}
        self._starlistings: tuple[Starlisting, ...] = ()

    async def load(self) -> None:
        async with self._database.connection() as conn:
            stars = await catalog_store.list_starlistings(conn, active_only=False)
            pairs = await catalog_store.list_trading_pairs(conn, active_only=False)
        self.replace(Snapshot(tuple(stars), tuple(pairs)))

    def replace(self, snapshot: Snapshot) -> None:
        """Swap in a new catalog at once (readers never see half of one)."""
        by_key = {_fold(*_key_parts(s.key)): s for s in snapshot.starlistings}
        pairs_by_key = {_fold(*_pair_parts(p.key)): p for p in snapshot.trading_pairs}
        self._by_key, self._by_id = by_key, {s.id: s for s in snapshot.starlistings}
        self._pairs_by_key = pairs_by_key
        self._pairs_by_id = {p.id: p for p in snapshot.trading_pairs}
        self._starlistings = snapshot.starlistings

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.load()
            except KirbyError as exc:
                log.warning("catalog refresh failed, keeping the previous one error=%s", exc)

    @property
    def starlistings(self) -> tuple[Starlisting, ...]:
        return self._starlistings

    @property
    def trading_pairs(self) -> tuple[TradingPair, ...]:
        return tuple(self._pairs_by_id.values())

    def starlisting(
        self, exchange: str, coin: str, quote: str, market_type: str, interval: str
    ) -> Starlisting:
        """The active starlisting at this path; NotFound / InactiveSeries otherwise."""
        found = self._by_key.get(_fold(exchange, coin, quote, market_type, interval))
        if found is None:
            path = shorten(f"{exchange}/{coin}/{quote}/{market_type}/{interval}")
            raise NotFound(f"unknown starlisting {path}; GET /starlistings lists them")
        return _active(found, "starlisting", str(found.key))

    def trading_pair(self, exchange: str, coin: str, quote: str, market_type: str) -> TradingPair:
        found = self._pairs_by_key.get(_fold(exchange, coin, quote, market_type))
        if found is None:
            path = shorten(f"{exchange}/{coin}/{quote}/{market_type}")
            raise NotFound(f"unknown trading pair {path}; GET /starlistings lists them")
        return _active(found, "trading pair", str(found.key))

    def find_starlisting(self, starlisting_id: int) -> Starlisting | None:
        return self._by_id.get(starlisting_id)

    def starlisting_by_id(self, starlisting_id: int) -> Starlisting:
        """Active or not: the caller decides what inactive means for it."""
        found = self._by_id.get(starlisting_id)
        if found is None:
            raise NotFound(f"unknown starlisting id {starlisting_id}; GET /starlistings lists them")
        return found

    def trading_pair_by_id(self, trading_pair_id: int) -> TradingPair:
        found = self._pairs_by_id.get(trading_pair_id)
        if found is None:
            raise NotFound(f"unknown trading pair id {trading_pair_id}")
        return found


def _active(found: _Series, kind: str, name: str) -> _Series:
    if not found.active:
        raise InactiveSeries(
            f"{kind} {name} is inactive: it was removed from the catalog; its stored data "
            "is kept but no longer served"
        )
    return found


def _key_parts(key: StarlistingKey) -> tuple[str, str, str, str, str]:
    return key.exchange, key.coin, key.quote, key.market_type, key.interval


def _pair_parts(key: TradingPairKey) -> tuple[str, str, str, str]:
    return key.exchange, key.coin, key.quote, key.market_type
