"""Hyperliquid-shaped JSON payloads built from the simulated market.

Shared by the REST handler (`POST /info`) and the WebSocket feed so that a candle pushed
live and the same candle served later by candleSnapshot are byte-for-byte the same values.
Shapes follow the recorded responses in tests/fixtures/hyperliquid and EXCHANGES.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kirby_sim import hashing
from kirby_sim.candles import Bar
from kirby_sim.intervals import next_open
from kirby_sim.market import Market
from kirby_sim.prices import MinuteEvents
from kirby_sim.universe import Instrument
from kirby_sim.wire import hl_decimal


def candle(instrument: Instrument, interval: str, bar: Bar) -> dict[str, Any]:
    return {
        "t": bar.open_ms,
        "T": next_open(interval, bar.open_ms) - 1,
        "s": instrument.symbol,
        "i": interval,
        "o": hl_decimal(bar.open, instrument.price_decimals),
        "c": hl_decimal(bar.close, instrument.price_decimals),
        "h": hl_decimal(bar.high, instrument.price_decimals),
        "l": hl_decimal(bar.low, instrument.price_decimals),
        "v": hl_decimal(bar.volume, instrument.size_decimals),
        "n": bar.trades,
    }


def meta(market: Market) -> dict[str, Any]:
    return {
        "universe": [
            {
                "maxLeverage": inst.max_leverage,
                "name": inst.symbol,
                "szDecimals": inst.size_decimals,
            }
            for inst in market.perps
        ]
    }


def asset_contexts(market: Market, now_ms: int) -> list[dict[str, Any]]:
    return [derivatives.asset_context(now_ms) for derivatives in market.all_derivatives()]


def all_mids(market: Market, now_ms: int) -> dict[str, str]:
    return {d.instrument.symbol: d.mid(now_ms) for d in market.all_derivatives()}


def trades(instrument: Instrument, events: MinuteEvents, step: int, seed: int) -> list[dict]:
    """The trades of one event: its trade count, at its price, sharing its volume."""
    before = events.cum_trades[step - 1] if step else 0
    count = events.cum_trades[step] - before
    volume = events.cum_volume[step] - (events.cum_volume[step - 1] if step else 0)
    time_ms = events.minute * 60_000 + events.offsets_ms[step]
    key = hashing.stream_key(seed, instrument.symbol, "trade-ids")
    ids = hashing.hash_indices(key, [events.minute * 64 + step])[0]
    rows = []
    for number in range(count):
        size = volume // count + (1 if number < volume % count else 0)
        tid = int(ids >> np.uint64(16)) + number
        rows.append(
            {
                "coin": instrument.symbol,
                "side": "B" if events.buy_side[step] else "A",
                "px": hl_decimal(events.prices[step], instrument.price_decimals),
                "sz": hl_decimal(max(size, 1), instrument.size_decimals),
                "time": time_ms,
                "hash": f"0x{tid:064x}",
                "tid": tid,
                "users": [f"0x{(tid * 7919) % 2**160:040x}", f"0x{(tid * 104729) % 2**160:040x}"],
            }
        )
    return rows
