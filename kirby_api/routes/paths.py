"""The path segments that name a series, documented once for every route that takes them."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import Example
from litestar.params import PathParameter

from kirby_api.errors import error_responses


def _segment(description: str, example: str) -> PathParameter:
    return PathParameter(
        description=f"{description} (case-insensitive)", examples=[Example(value=example)]
    )


Exchange = Annotated[str, _segment("Exchange", "hyperliquid")]
Coin = Annotated[str, _segment("Base asset", "BTC")]
Quote = Annotated[str, _segment("Quote currency", "USD")]
MarketType = Annotated[str, _segment("Market type", "perps")]
Interval = Annotated[str, _segment("Candle interval", "1m")]

SERIES_ERRORS = error_responses(400, 401, 404, 409, 429, 503)
"""What a route reading one series answers besides 200: a bad parameter or key, an unknown
(404) or inactive (409) series, the key's rate limit, the database gone."""
