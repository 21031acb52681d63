"""GET /starlistings and /starlistings/{id}: the catalog, answered from memory."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from kirby_api.errors import error_responses
from kirby_api.series import SeriesCatalog
from kirby_core.db.catalog_store import Starlisting


class Links(msgspec.Struct):
    candles: str
    funding: str
    open_interest: str
    coverage: str


class StarlistingOut(msgspec.Struct):
    id: int
    series: str
    """exchange/coin/quote/market_type/interval, e.g. hyperliquid/BTC/USD/perps/1m."""
    exchange: str
    coin: str
    quote: str
    trading_pair: str
    """coin/quote, e.g. BTC/USD."""
    market_type: str
    interval: str
    interval_seconds: int
    trading_pair_id: int
    active: bool
    """Inactive starlistings left the catalog: their data is kept but not served."""
    links: Links


class ListMetadata(msgspec.Struct):
    count: int


class StarlistingsPage(msgspec.Struct):
    data: list[StarlistingOut]
    metadata: ListMetadata


def describe(star: Starlisting) -> StarlistingOut:
    key = star.key
    pair = f"{key.exchange}/{key.coin}/{key.quote}/{key.market_type}"
    return StarlistingOut(
        id=star.id,
        series=str(key),
        exchange=key.exchange,
        coin=key.coin,
        quote=key.quote,
        trading_pair=f"{key.coin}/{key.quote}",
        market_type=key.market_type,
        interval=key.interval,
        interval_seconds=star.interval_seconds,
        trading_pair_id=star.trading_pair_id,
        active=star.active,
        links=Links(
            candles=f"/candles/{key}",
            funding=f"/funding/{pair}",
            open_interest=f"/open-interest/{pair}",
            coverage=f"/coverage/candles/{key}",
        ),
    )


Filter = Annotated[str | None, QueryParameter(description="Exact match, case-insensitive.")]


@get(
    "/starlistings",
    summary="List starlistings",
    description="Every starlisting the API knows, active or not, filtered by any of the "
    "parameters.",
    responses=error_responses(400, 401, 429),
    sync_to_thread=False,
)
def list_starlistings(
    catalog: NamedDependency[SeriesCatalog],
    exchange: Filter = None,
    coin: Filter = None,
    quote: Filter = None,
    market_type: Filter = None,
    interval: Filter = None,
    active: Annotated[bool | None, QueryParameter(description="true or false")] = None,
) -> StarlistingsPage:
    wanted = {
        "exchange": exchange,
        "coin": coin,
        "quote": quote,
        "market_type": market_type,
        "interval": interval,
    }
    wanted = {k: v.casefold() for k, v in wanted.items() if v is not None}
    found = [
        describe(s)
        for s in catalog.starlistings
        if (active is None or s.active == active)
        and all(getattr(s.key, k).casefold() == v for k, v in wanted.items())
    ]
    return StarlistingsPage(found, ListMetadata(len(found)))


@get(
    "/starlistings/{starlisting_id:int}",
    summary="One starlisting",
    responses=error_responses(400, 401, 404, 429),
    sync_to_thread=False,
)
def get_starlisting(
    catalog: NamedDependency[SeriesCatalog],
    starlisting_id: Annotated[int, PathParameter(ge=1, le=2**31 - 1)],
) -> StarlistingOut:
    return describe(catalog.starlisting_by_id(starlisting_id))
