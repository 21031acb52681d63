"""Catalogs: which starlistings and trading pairs a database holds, and the YAML they come from.

A catalog file declares reference data (exchanges, coins, quote currencies, market types)
and starlisting entries, each expanding to one starlisting per interval. Loading validates
everything before anything is written: an unknown field, exchange, market type or interval,
an undeclared coin or quote, or a duplicate starlisting raises `CatalogError` naming the
file, the entry and the allowed values. Syncing into PostgreSQL lives in
`kirby_core.db.catalog_store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kirby_core.errors import CatalogError


@dataclass(frozen=True, order=True)
class TradingPairKey:
    """exchange/coin/quote/market type, e.g. hyperliquid/BTC/USD/perps."""

    exchange: str
    coin: str
    quote: str
    market_type: str

    def __str__(self) -> str:
        return f"{self.exchange}/{self.coin}/{self.quote}/{self.market_type}"


@dataclass(frozen=True, order=True)
class StarlistingKey:
    """A trading pair at one candle interval, e.g. hyperliquid/BTC/USD/perps/1m."""

    exchange: str
    coin: str
    quote: str
    market_type: str
    interval: str

    @property
    def trading_pair(self) -> TradingPairKey:
        return TradingPairKey(self.exchange, self.coin, self.quote, self.market_type)

    def __str__(self) -> str:
        return f"{self.trading_pair}/{self.interval}"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeEntry(_Entry):
    name: str
    display_name: str | None = None
    active: bool = True


class CoinEntry(_Entry):
    symbol: str = Field(min_length=1)
    name: str | None = None
    active: bool = True


class QuoteEntry(_Entry):
    symbol: str = Field(min_length=1)
    name: str | None = None
    active: bool = True


class MarketTypeEntry(_Entry):
    name: str
    display_name: str | None = None
    active: bool = True


class StarlistingEntry(_Entry):
    exchange: str
    coin: str
    quote: str
    market_type: str
    intervals: list[str] = Field(min_length=1)
    active: bool = True


class CatalogFile(_Entry):
    exchanges: list[ExchangeEntry] = []
    coins: list[CoinEntry] = []
    quote_currencies: list[QuoteEntry] = []
    market_types: list[MarketTypeEntry] = []
    starlistings: list[StarlistingEntry] = []


@dataclass(frozen=True)
class Catalog:
    """A validated catalog: reference data plus the starlistings it expands to."""

    source: str
    exchanges: tuple[ExchangeEntry, ...]
    coins: tuple[CoinEntry, ...]
    quote_currencies: tuple[QuoteEntry, ...]
    market_types: tuple[MarketTypeEntry, ...]
    starlistings: tuple[StarlistingKey, ...]
    """Active starlistings, in file order."""

    @property
    def trading_pairs(self) -> tuple[TradingPairKey, ...]:
        return tuple(dict.fromkeys(s.trading_pair for s in self.starlistings))


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file; raise `CatalogError` naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalog(raw, source=str(path))


def parse_catalog(raw: Any, source: str) -> Catalog:
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'starlistings' list")
    try:
        parsed = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe(source, raw, exc)) from None
    return Catalog(
        source=source,
        exchanges=tuple(parsed.exchanges),
        coins=tuple(parsed.coins),
        quote_currencies=tuple(parsed.quote_currencies),
        market_types=tuple(parsed.market_types),
        starlistings=_expand(source, parsed),
    )


def _expand(source: str, parsed: CatalogFile) -> tuple[StarlistingKey, ...]:
    # Imported here: kirby_core.exchanges pulls in ccxt, which only validation needs.
    from kirby_core.exchanges.registry import EXCHANGES

    declared = {
        "exchange": {e.name for e in parsed.exchanges},
        "coin": {c.symbol for c in parsed.coins},
        "quote": {q.symbol for q in parsed.quote_currencies},
        "market_type": {m.name for m in parsed.market_types},
    }
    seen: dict[StarlistingKey, int] = {}
    keys: list[StarlistingKey] = []
    for index, entry in enumerate(parsed.starlistings):
        pair = f"{entry.exchange}/{entry.coin}/{entry.quote}/{entry.market_type}"
        where = f"{source}: starlistings[{index}] ({pair})"
        supported = EXCHANGES.get(entry.exchange)
        if supported is None:
            raise CatalogError(
                f"{where}: unknown exchange {entry.exchange!r}; allowed: {_list(EXCHANGES)}"
            )
        for field in ("exchange", "coin", "quote", "market_type"):
            value = getattr(entry, field)
            if value not in declared[field]:
                raise CatalogError(
                    f"{where}: {field} {value!r} is not declared in this file; "
                    f"declared: {_list(declared[field]) or 'none'}"
                )
        if entry.market_type not in supported.market_types:
            raise CatalogError(
                f"{where}: market_type {entry.market_type!r} is not supported on "
                f"{entry.exchange}; allowed: {_list(supported.market_types)}"
            )
        for interval in entry.intervals:
            if interval not in supported.intervals:
                raise CatalogError(
                    f"{where}: interval {interval!r} is not supported on {entry.exchange}; "
                    f"allowed: {_list(tuple(supported.intervals))}"
                )
            key = StarlistingKey(
                entry.exchange, entry.coin, entry.quote, entry.market_type, interval
            )
            if key in seen:
                raise CatalogError(
                    f"{where}: duplicate starlisting {key} (already in starlistings[{seen[key]}])"
                )
            seen[key] = index
            if entry.active:
                keys.append(key)
    return tuple(keys)


def _describe(source: str, raw: dict[str, Any], exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        where = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc)
        where = where.replace(".[", "[")
        if error["type"] == "extra_forbidden":
            model = _model_at(loc)
            allowed = _list(model.model_fields) if model else "see the documentation"
            lines.append(f"{source}: {where}: unknown field; allowed fields: {allowed}")
        elif error["type"] == "missing":
            lines.append(f"{source}: {where}: required field missing")
        else:
            lines.append(f"{source}: {where}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose field list applies at an error location, e.g. ('coins', 0, 'x')."""
    if len(loc) == 1:
        return CatalogFile
    annotation = CatalogFile.model_fields[str(loc[0])].annotation
    return getattr(annotation, "__args__", (None,))[0]


def _list(values: Any) -> str:
    """Tuples keep their meaningful order (intervals); sets and dicts are sorted."""
    return ", ".join(values if isinstance(values, tuple) else sorted(values))
