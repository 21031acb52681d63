"""Checks shared by the order-book tests of every exchange against the simulator."""

from __future__ import annotations

import asyncio
from typing import Any


def assert_sane(book: dict[str, Any], at_least: int = 1) -> None:
    """A ccxt order book: both sides filled, sorted best first, not crossed."""
    bids, asks = book["bids"], book["asks"]
    assert len(bids) >= at_least and len(asks) >= at_least
    assert [row[0] for row in bids] == sorted((row[0] for row in bids), reverse=True)
    assert [row[0] for row in asks] == sorted(row[0] for row in asks)
    assert all(row[1] > 0 for row in bids + asks)
    assert bids[0][0] < asks[0][0], "crossed"


async def watch_updates(
    exchange: Any, symbol: str, updates: int, limit: int | None = None
) -> list[Any]:
    """watch_order_book until it has returned `updates` different books (ccxt validates
    the sequence itself and raises on a break); every one sane. Returns their nonces."""
    nonces: list[Any] = []
    seen: set[Any] = set()
    async with asyncio.timeout(30):
        while len(nonces) < updates:
            book = await exchange.watch_order_book(symbol, limit)
            assert_sane(book)
            key = (book["nonce"], book["timestamp"], book["bids"][0][0], book["asks"][0][0])
            if key not in seen:
                seen.add(key)
                nonces.append(book["nonce"])
    return nonces
