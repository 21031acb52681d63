"""Corrupted copies of exchange payloads, for the `malformed` fault.

`malformed_text` asks the fault injector whether a message must be damaged and, if so,
returns the text to send instead. `corrupt(kind, data, variant)` returns a damaged copy
of a payload, or None when the variant does not fit it (a funding row has no high and
low); `bad_json` is the encoded text cut in half. Kinds are the payloads the simulator
sends: Hyperliquid `candle` (one candle object), `candles` (candleSnapshot list),
`activeAssetCtx`, `trades`, `l2Book`, `allMids`, `funding` (fundingHistory list),
Binance `klines` rows and OKX `mark-price` / `index-tickers` pushes (the whole
`{"arg","data"}` frame).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kirby_sim.faults import FaultInjector

NOT_A_NUMBER = "not-a-number"
UNKNOWN_COIN = "NOSUCHCOIN"


def cut(text: str) -> str:
    """Invalid JSON: the first half of a document."""
    return text[: max(1, len(text) // 2)]


def _doubled(value: str) -> str:
    return str(Decimal(value) * 2)


def _candle(candle: dict[str, Any], variant: str) -> dict[str, Any] | None:
    if variant == "non_numeric_price":
        return {**candle, "c": NOT_A_NUMBER}
    if variant == "high_below_low":
        return {**candle, "l": _doubled(candle["h"])}
    if variant == "unknown_coin":
        return {**candle, "s": UNKNOWN_COIN}
    return None


def _first(rows: list[Any], change: Any) -> list[Any] | None:
    if not rows:
        return None
    changed = change(rows[0])
    return None if changed is None else [changed, *rows[1:]]


def corrupt(kind: str, data: Any, variant: str) -> Any | None:
    data = copy.deepcopy(data)
    if kind == "candle":
        return _candle(data, variant)
    if kind == "candles":
        return _first(data, lambda candle: _candle(candle, variant))
    if kind == "klines":
        if variant == "non_numeric_price":
            return _first(data, lambda row: [*row[:4], NOT_A_NUMBER, *row[5:]])
        if variant == "high_below_low":
            return _first(data, lambda row: [*row[:3], _doubled(row[2]), *row[4:]])
        return None
    if variant == "high_below_low":
        return None
    if kind == "activeAssetCtx":
        if variant == "non_numeric_price":
            data["ctx"]["markPx"] = NOT_A_NUMBER
        else:
            data["coin"] = UNKNOWN_COIN
        return data
    if kind in ("trades", "funding"):
        field = "px" if kind == "trades" else "fundingRate"
        new_value = {
            "non_numeric_price": (field, NOT_A_NUMBER),
            "unknown_coin": ("coin", UNKNOWN_COIN),
        }
        key, value = new_value[variant]
        return _first(data, lambda row: {**row, key: value})
    if kind in ("mark-price", "index-tickers"):
        row = data["data"][0]
        if variant == "non_numeric_price":
            row["markPx" if kind == "mark-price" else "idxPx"] = NOT_A_NUMBER
        else:
            suffix = "-SWAP" if kind == "mark-price" else ""
            row["instId"] = data["arg"]["instId"] = f"{UNKNOWN_COIN}-USDT{suffix}"
        return data
    if kind == "l2Book":
        if variant == "non_numeric_price":
            data["levels"][0][0]["px"] = NOT_A_NUMBER
        else:
            data["coin"] = UNKNOWN_COIN
        return data
    if kind == "allMids" and variant == "non_numeric_price" and data["mids"]:
        first = next(iter(data["mids"]))
        data["mids"][first] = NOT_A_NUMBER
        return data
    return None


def malformed_text(
    faults: FaultInjector, target: str, kind: str, data: Any, encode: Callable[[Any], str]
) -> str | None:
    """The text to send instead of `encode(data)` if a malformed fault is due, else None."""
    damaged: dict[str, Any] = {}

    def fits(variant: str) -> bool:
        if variant == "bad_json":
            return True
        damaged[variant] = corrupt(kind, data, variant)
        return damaged[variant] is not None

    variant = faults.take_malformation(target, fits)
    if variant is None:
        return None
    if variant == "bad_json":
        return cut(encode(data))
    return encode(damaged[variant])
