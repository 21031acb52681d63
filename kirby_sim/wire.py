"""How the simulated venues write numbers and documents on the wire.

Numbers are integer units turned into decimal strings. Hyperliquid prints numbers the way
Rust prints floats: no trailing zeros, but always one digit after the point ("67123.0",
"0.001604", "520665683.0"). Binance prints a fixed number of decimals ("67123.45000000"
on spot, "67123.40" on USD-M). Documents are compact JSON.
"""

from __future__ import annotations

import json
from typing import Any


def encode(document: Any) -> str:
    """Compact JSON, as both exchanges send it."""
    return json.dumps(document, separators=(",", ":"))


def _split(units: int, decimals: int) -> tuple[str, str, str]:
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals + 1, "0")
    if decimals == 0:
        return sign, digits, ""
    return sign, digits[:-decimals], digits[-decimals:]


def hl_decimal(units: int, decimals: int) -> str:
    """`units` x 10**-decimals, Hyperliquid style."""
    sign, whole, fraction = _split(units, decimals)
    return f"{sign}{whole}.{fraction.rstrip('0') or '0'}"


def fixed_decimal(units: int, decimals: int, shown: int) -> str:
    """`units` x 10**-decimals printed with exactly `shown` (>= decimals) decimals."""
    sign, whole, fraction = _split(units, decimals)
    fraction = fraction.ljust(shown, "0")
    return f"{sign}{whole}.{fraction}" if shown else f"{sign}{whole}"


def plain_decimal(units: int, decimals: int) -> str:
    """`units` x 10**-decimals without trailing zeros or a bare point ("0.0001", "67123")."""
    sign, whole, fraction = _split(units, decimals)
    fraction = fraction.rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def ratio(numerator: int, denominator: int, decimals: int) -> str:
    """numerator / denominator rounded half away from zero to `decimals`, fixed."""
    scaled = abs(numerator) * 10**decimals * 2 // abs(denominator or 1)
    units = (scaled + 1) // 2
    sign = -1 if (numerator < 0) != (denominator < 0) and units else 1
    return fixed_decimal(sign * units, decimals, decimals)
