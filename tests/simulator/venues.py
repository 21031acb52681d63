"""Helpers shared by the ccxt pro tests of every exchange against the simulator."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

MINUTE = 60_000


async def closed_candle(exchange: Any, symbol: str, within: float = 10.0) -> list[Any]:
    """The first 1m candle watch_ohlcv sees close (a newer candle followed it)."""
    async with asyncio.timeout(within):
        while True:
            candles = await exchange.watch_ohlcv(symbol, "1m")
            cache = exchange.ohlcvs[symbol]["1m"]
            if len(cache) >= 2:
                return list(cache[-2])
            del candles


async def candle_at(exchange: Any, symbol: str, open_ms: int) -> list[Any]:
    (row,) = await exchange.fetch_ohlcv(symbol, "1m", since=open_ms, limit=1)
    assert row[0] == open_ms
    return list(row)


async def collect_trades(exchange: Any, symbol: str, minutes: int) -> list[dict[str, Any]]:
    """Trades watched until `minutes` whole simulated minutes have been covered."""
    trades: dict[Any, dict[str, Any]] = {}
    first_ts: int | None = None
    async with asyncio.timeout(30):
        while True:
            for trade in await exchange.watch_trades(symbol):
                trades[trade["id"]] = trade
                first_ts = trade["timestamp"] if first_ts is None else first_ts
            latest = max(t["timestamp"] for t in trades.values())
            if first_ts is not None and latest // MINUTE - first_ts // MINUTE > minutes:
                return sorted(trades.values(), key=lambda t: (t["timestamp"], t["id"]))


def minute_volumes(trades: list[dict[str, Any]], whole_only: bool) -> dict[int, float]:
    """Summed amounts per minute; `whole_only` keeps minutes strictly between the first
    and the last trade's minute (fully watched)."""
    volumes: defaultdict[int, float] = defaultdict(float)
    for trade in trades:
        volumes[trade["timestamp"] // MINUTE * MINUTE] += trade["amount"]
    if whole_only:
        first, last = trades[0]["timestamp"] // MINUTE, trades[-1]["timestamp"] // MINUTE
        return {m: v for m, v in volumes.items() if first < m // MINUTE < last}
    return dict(volumes)
