"""The exchange registry: one declaration per exchange, every fact Kirby relies on, once.

    ExchangeDeclaration  name, market types, intervals and their wire codes, what history it
                         serves per dataset and interval, candle page sizes and request
                         weights, symbol mapping, its REST history client, its concurrency
                         pool, its WebSocket adapter
    HistoryClient        what a REST history client offers (`async with`, fetch_candles)
    RequestWeight        an exchange's REST budget per minute and the weight of a page
    StreamAdapter        a live feed: subscription and frame builders, parser, ping rule
    EXCHANGES            name -> declaration; `declaration(name)` looks one up
    STREAMED             the exchange the collector (`kirby_stream`) listens to

Catalog validation (`kirby_core.catalog`), the backfill's source (`kirby_core.backfill`),
"unavailable at source" (`kirby_core.db.coverage.source_window`), the collector's catalog
(`kirby_stream.catalog`) and the Dagster backfill pools read these declarations; nothing else
compares exchange names (`tests/core/test_exchange_names.py`). The facts themselves stay next
to the code that speaks each exchange's protocol (`hyperliquid.py`, `hyperliquid_wire.py`,
`binance.py`) and are referenced here, not copied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Final, Protocol, Self

from kirby_core.db.coverage import SourceWindow
from kirby_core.exchanges import binance, hyperliquid, hyperliquid_wire
from kirby_core.exchanges.base import SourceCoverage
from kirby_core.exchanges.hyperliquid_wire import WsMessage
from kirby_core.models import Candle
from kirby_core.settings import Settings
from kirby_core.timeutil import EPOCH


@dataclass(frozen=True)
class StreamAdapter:
    """An exchange's live WebSocket feed, by reference to its wire functions."""

    market_type: str
    """The market type the feed carries."""
    candle_subscription: Callable[[str, str], dict[str, str]]
    """(coin, interval) -> the subscription of one candle series."""
    asset_context_subscription: Callable[[str], dict[str, str]]
    """coin -> the subscription of its funding and open interest."""
    subscribe_frame: Callable[[dict[str, str]], str]
    unsubscribe_frame: Callable[[dict[str, str]], str]
    ping_frame: Callable[[], str]
    parse: Callable[[str | bytes, datetime], WsMessage]
    """One text frame -> a typed message (pure)."""
    idle_close_seconds: int
    """The exchange closes a connection after this long without a client message: the
    collector pings more often (`Settings.stream_ping_seconds`)."""


class HistoryClient(Protocol):
    """An exchange's REST candle history, used as an async context manager."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]: ...


@dataclass(frozen=True)
class RequestWeight:
    """An exchange's REST budget for one market type's history (per client IP); Kirby stays
    under it by running one backfill per exchange at a time (its Dagster `pool`)."""

    per_minute: int
    """Weight the exchange allows per minute."""
    candle_page: int
    """Weight of one full page of candles (`candle_page_rows`)."""


@dataclass(frozen=True)
class ExchangeDeclaration:
    name: str
    """The catalog's exchange name; also the Dagster concurrency pool of its backfills."""
    market_types: tuple[str, ...]
    """Market types Kirby collects from it."""
    intervals: Mapping[str, str]
    """Kirby interval -> the exchange's wire code, for every interval Kirby handles there."""
    every_interval: bool
    """True when it has a candle for every interval, quiet ones included (Binance); False
    when minutes without trades have none (Hyperliquid)."""
    candle_page_rows: Mapping[str, int]
    """Most candles one history request returns, per market type."""
    weights: Mapping[str, RequestWeight]
    """Its request weights, per market type."""
    symbol: Callable[[str, str, str], str]
    """(coin, quote, market type) -> the exchange's symbol."""
    history_client: Callable[[Settings], HistoryClient]
    """The REST history client's class: `async with history_client(settings) as client:`."""
    candle_coverage: Callable[[str, datetime, datetime, datetime], SourceCoverage] | None = None
    """Which part of a candle range it still serves at `now`; None: all of it."""
    history_window: Callable[[str, str, datetime], SourceWindow] | None = None
    """(dataset, interval, now) -> what it still serves; None: its whole history."""
    stream: StreamAdapter | None = None
    """Its live feed, when Kirby collects one."""

    @property
    def pool(self) -> str:
        """Dagster concurrency pool of its backfills (dagster.yaml: one run at a time)."""
        return self.name

    def source_window(self, dataset: str, interval: str, now: datetime) -> SourceWindow:
        """What it still serves of `dataset` at `now` (`interval`: the series' own)."""
        if self.history_window is None:
            return SourceWindow(None, f"{self.name}: assumed to serve its whole history")
        return self.history_window(dataset, interval, now)


def _hyperliquid_window(dataset: str, interval: str, now: datetime) -> SourceWindow:
    if dataset == "candles":
        coverage = hyperliquid.candle_coverage(interval, EPOCH, now, now)
        oldest = coverage.available.start if coverage.available else now
        return SourceWindow(
            oldest, f"Hyperliquid serves only its latest {hyperliquid.CANDLE_LIMIT} candles"
        )
    if dataset == "open_interest" and not hyperliquid.HAS_OPEN_INTEREST_HISTORY:
        return SourceWindow(now, "Hyperliquid publishes no open-interest history")
    return SourceWindow(
        None,
        "coverage counts settled hours (settled_funding_rate); Hyperliquid's funding history "
        "serves every settled hour, the per-minute live fields cannot be re-fetched",
    )


def _binance_symbol(coin: str, quote: str, market_type: str) -> str:
    return binance.binance_symbol(coin, quote)


HYPERLIQUID: Final = ExchangeDeclaration(
    name="hyperliquid",
    market_types=("perps",),
    intervals=MappingProxyType({i: i for i in hyperliquid_wire.INTERVALS}),
    every_interval=False,
    candle_page_rows=MappingProxyType({"perps": hyperliquid.CANDLE_LIMIT}),
    # /info weighs 20, plus one per 60 candles returned (funding pages: one per 20 rows).
    weights=MappingProxyType(
        {"perps": RequestWeight(per_minute=1200, candle_page=20 + hyperliquid.CANDLE_LIMIT // 60)}
    ),
    symbol=hyperliquid.ccxt_symbol,
    history_client=hyperliquid.HyperliquidHistory,
    candle_coverage=hyperliquid.candle_coverage,
    history_window=_hyperliquid_window,
    stream=StreamAdapter(
        market_type="perps",
        candle_subscription=hyperliquid_wire.candle_subscription,
        asset_context_subscription=hyperliquid_wire.asset_context_subscription,
        subscribe_frame=hyperliquid_wire.subscribe_frame,
        unsubscribe_frame=hyperliquid_wire.unsubscribe_frame,
        ping_frame=hyperliquid_wire.ping_frame,
        parse=hyperliquid_wire.parse_ws_message,
        idle_close_seconds=60,
    ),
)

BINANCE: Final = ExchangeDeclaration(
    name="binance",
    market_types=binance.MARKET_TYPES,
    intervals=MappingProxyType({i: i for i in binance.INTERVALS}),
    every_interval=True,
    candle_page_rows=MappingProxyType(dict(binance.KLINE_LIMIT)),
    # /api/v3/klines weighs 2 at any limit; /fapi/v1/klines 10 above 1000 rows.
    weights=MappingProxyType(
        {
            "spot": RequestWeight(per_minute=6000, candle_page=2),
            "perps": RequestWeight(per_minute=2400, candle_page=10),
        }
    ),
    symbol=_binance_symbol,
    history_client=binance.BinanceHistory,
)

EXCHANGES: Final[Mapping[str, ExchangeDeclaration]] = MappingProxyType(
    {d.name: d for d in (HYPERLIQUID, BINANCE)}
)
"""Every exchange Kirby knows, by catalog name."""

STREAMED: Final = HYPERLIQUID
"""The exchange whose live feed `kirby_stream` collects."""


def declaration(name: str) -> ExchangeDeclaration | None:
    """The declaration of exchange `name`, or None for an exchange Kirby does not know."""
    return EXCHANGES.get(name)


def feed_of(exchange: ExchangeDeclaration) -> StreamAdapter:
    """`exchange`'s live feed; ValueError when it declares none."""
    if exchange.stream is None:
        raise ValueError(f"{exchange.name} declares no live feed")
    return exchange.stream
