"""The exchange registry: one declaration per exchange, every fact Kirby relies on, once.

    ExchangeDeclaration  name, market types, intervals and their wire codes, what history it
                         serves per dataset and interval, candle page sizes and request
                         weights, symbol mapping, its REST history client, its concurrency
                         pool, its WebSocket adapter
    HistoryClient        what a REST candle history client offers (`async with`, fetch_candles)
    FundingHistoryClient what a REST funding history client offers (fetch_funding_rates)
    OpenInterestHistoryClient  what a REST open-interest history client offers
                         (fetch_open_interest)
    TradeHistoryClient   what a REST trade history client offers (fetch_trades)
    TradeHistory         what trade history an exchange serves (market types, how far
                         back, whether its trade ids are sequential) and its client
    OpenInterestNowClient what the live collector polls where the WebSocket carries no open
                         interest (fetch_open_interest_now)
    RequestWeight        an exchange's REST budget per minute and the weight of a page
                         (`weights`; each history client spends them from its budget)
    StreamAdapter        a live feed: URLs, subscriptions and frames per market type and
                         dataset, a parser per connection, keep-alive rule, connection
                         limits, what is polled from REST instead
    EXCHANGES            name -> declaration; `declaration(name)` looks one up; the
                         collector (`kirby_stream`) listens to every one that declares a
                         `stream`

Catalog validation (`kirby_core.catalog`), the backfill's source (`kirby_core.backfill`),
"unavailable at source" (`kirby_core.db.coverage.source_window`), the collector's catalog
(`kirby_stream.catalog`), the Dagster backfills (their pools, the clients they open, the days
they schedule) and the simulator (`kirby_sim`: page sizes and weights) read these
declarations; nothing else compares exchange names (`tests/core/test_exchange_names.py`).
The facts themselves stay next to the code that speaks each exchange's protocol
(`hyperliquid.py`, `binance.py`, `bybit.py`, `okx.py`, `coinbase.py` and each exchange's
`<name>_wire.py`) and are referenced here, not copied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType, ModuleType, TracebackType
from typing import Any, Final, Literal, Protocol, Self

from kirby_core import datasets
from kirby_core.db import trades as trade_store
from kirby_core.db.coverage import SourceWindow
from kirby_core.exchanges import (
    binance,
    binance_wire,
    bybit,
    bybit_wire,
    coinbase,
    coinbase_wire,
    hyperliquid,
    hyperliquid_wire,
    okx,
    okx_wire,
)
from kirby_core.exchanges.base import SourceCoverage
from kirby_core.exchanges.feeds import (
    ConnectionLimits,
    ContractValueSource,
    DepthChannel,
    FrameParser,
    KeepAlive,
    Trade,
)
from kirby_core.exchanges.weights import RequestWeight
from kirby_core.models import Candle, FundingRate, OpenInterest
from kirby_core.settings import Settings
from kirby_core.timeutil import EPOCH

LiveCollection = Literal["websocket", "polled", "none"]
TRADES: Final = trade_store.TRADES_TABLE
"""The trade tape's dataset name."""


@dataclass(frozen=True)
class StreamAdapter:
    """An exchange's live WebSocket feed, by reference to its wire module (`<name>_wire`).

    Subscriptions are the exchange's own (a stream name, a topic, a channel argument): the
    caller builds them with `subscription`, batches them into requests with
    `subscribe_frames` (which keeps `limits`) and reads frames with a fresh `parser()` per
    connection. Datasets are the catalog's: candles, funding_rates, open_interest, trades.
    """

    market_types: tuple[str, ...]
    """The market types the feed carries."""
    streamed: Mapping[str, tuple[str, ...]]
    """Market type -> the datasets its WebSocket carries."""
    url: Callable[[str, str], str]
    """(market type, dataset) -> the exchange's WebSocket URL that carries it."""
    subscription: Callable[[str, str, str, str | None], Any]
    """(market type, dataset, symbol, interval or None) -> the subscription of one series;
    `InvalidRequest` for a dataset or interval the WebSocket does not carry."""
    subscribe_frames: Callable[[str, Sequence[Any], int], list[str]]
    """(market type, subscriptions, first request id) -> the requests to send, in order."""
    unsubscribe_frames: Callable[[str, Sequence[Any], int], list[str]]
    parser: Callable[[], FrameParser]
    """A fresh parser for one connection (Bybit's keeps the tickers state it merges)."""
    keep_alive: KeepAlive
    limits: Mapping[str, ConnectionLimits]
    """Market type -> what one connection may carry."""
    polled: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Market type -> datasets the collector polls from REST instead (Binance's open
    interest)."""
    polled_intervals: tuple[str, ...] = ()
    """Candle intervals the collector takes from REST at each minute's close, because the
    WebSocket does not carry them (Coinbase streams 5m only)."""
    url_setting: Callable[[Settings], str] | None = None
    """Where a setting gives the whole URL (Hyperliquid's `hyperliquid_ws_url`); None: the
    exchange's URL with its origin replaced as `ws_origins` says."""
    wire_symbol: Callable[[str, str, str], str] | None = None
    """(coin, quote, market type) -> the symbol frames carry; None: the declaration's
    `symbol`."""
    contract_values: ContractValueSource | None = None
    """Where trade sizes counted in contracts get their coin value (OKX swaps); None: the
    WebSocket's trade sizes are in the base coin."""
    depth: DepthChannel | None = None
    """The order-book channel the book collector subscribes; None: no books."""
    companions: Callable[[str, str, str], tuple[Any, ...]] | None = None
    """(market type, dataset, symbol) -> further subscriptions whose pushes the parser
    merges into that series' rows (OKX: a swap's funding row takes `mark-price` and its
    index's `index-tickers`); None: each series is its one `subscription`."""

    def subscriptions(
        self, market_type: str, dataset: str, symbol: str, interval: str | None
    ) -> tuple[Any, ...]:
        """Every subscription one series needs: its own, then its `companions`."""
        own = self.subscription(market_type, dataset, symbol, interval)
        if self.companions is None:
            return (own,)
        return (own, *self.companions(market_type, dataset, symbol))

    def collection(self, market_type: str, dataset: str, interval: str | None) -> LiveCollection:
        """How the collector takes `dataset` (at candle `interval`) of `market_type` live:
        pushed on the WebSocket, polled from REST once a minute, or not at all."""
        if market_type not in self.market_types:
            return "none"
        polled = self.polled.get(market_type, ())
        if dataset in polled or (dataset == "candles" and interval in self.polled_intervals):
            return "polled"
        return "websocket" if dataset in self.streamed.get(market_type, ()) else "none"

    def ws_url(self, settings: Settings, market_type: str, dataset: str) -> str:
        """The URL to dial for `dataset` of `market_type` under `settings`."""
        if self.url_setting is not None:
            return self.url_setting(settings)
        url = self.url(market_type, dataset)
        scheme, rest = url.split("://", 1)
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
        replaced = settings.ws_origins.get(origin)
        return url if replaced is None else replaced.rstrip("/") + url[len(origin) :]

    def symbol(self, exchange: ExchangeDeclaration, coin: str, quote: str, market_type: str) -> str:
        if self.wire_symbol is not None:
            return self.wire_symbol(coin, quote, market_type)
        return exchange.symbol(coin, quote, market_type)


def _stateless(parse: FrameParser) -> Callable[[], FrameParser]:
    return lambda: parse


def _feed(
    wire: ModuleType,
    *,
    market_types: tuple[str, ...] | None = None,
    parser: Callable[[], FrameParser] | None = None,
    polled_intervals: tuple[str, ...] = (),
    url_setting: Callable[[Settings], str] | None = None,
    wire_symbol: Callable[[str, str, str], str] | None = None,
) -> StreamAdapter:
    """The `StreamAdapter` of an exchange's `<name>_wire` module, which names its parts alike
    (`STREAMED_DATASETS`, `POLLED_DATASETS`, `url`, `subscription`, `subscribe_frames`,
    `unsubscribe_frames`, `parse_frame`, `KEEP_ALIVE`, `LIMITS`, `CONTRACT_VALUES`,
    `DEPTH`, `companions`); `parser`: a stateful one, built per connection, instead of
    `parse_frame`."""
    return StreamAdapter(
        market_types=market_types or tuple(wire.STREAMED_DATASETS),
        streamed=MappingProxyType(wire.STREAMED_DATASETS),
        polled=MappingProxyType(getattr(wire, "POLLED_DATASETS", {})),
        polled_intervals=polled_intervals,
        url_setting=url_setting,
        wire_symbol=wire_symbol,
        url=wire.url,
        subscription=wire.subscription,
        subscribe_frames=wire.subscribe_frames,
        unsubscribe_frames=wire.unsubscribe_frames,
        parser=parser or _stateless(wire.parse_frame),
        keep_alive=wire.KEEP_ALIVE,
        limits=MappingProxyType(wire.LIMITS),
        contract_values=getattr(wire, "CONTRACT_VALUES", None),
        depth=getattr(wire, "DEPTH", None),
        companions=getattr(wire, "companions", None),
    )


class _AsyncClient(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class HistoryClient(_AsyncClient, Protocol):
    """An exchange's REST candle history, used as an async context manager."""

    async def fetch_candles(
        self, coin: str, quote: str, market_type: str, interval: str, start: datetime, end: datetime
    ) -> list[Candle]: ...


class FundingHistoryClient(_AsyncClient, Protocol):
    """An exchange's REST history of settled funding rates, used as an async context manager."""

    async def fetch_funding_rates(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[FundingRate]: ...


class OpenInterestHistoryClient(_AsyncClient, Protocol):
    """An exchange's REST history of open interest, used as an async context manager."""

    async def fetch_open_interest(
        self, coin: str, quote: str, start: datetime, end: datetime
    ) -> list[OpenInterest]: ...


class TradeHistoryClient(_AsyncClient, Protocol):
    """An exchange's REST trade history, used as an async context manager."""

    async def fetch_trades(
        self, coin: str, quote: str, market_type: str, start: datetime, end: datetime
    ) -> list[Trade]: ...


@dataclass(frozen=True)
class TradeHistory:
    """What an exchange serves of its trades, and how its trade ids run."""

    note: str
    """What it serves, and what it does not: shown where a day is unavailable at source."""
    market_types: tuple[str, ...] = ()
    """Market types whose trade history Kirby fetches; empty: none (recent trades at most)."""
    span: timedelta | None = None
    """How far back it serves them; None: back to the listing."""
    client: Callable[[Settings], TradeHistoryClient] | None = None
    """The REST client (`fetch_trades`); None when it serves no history Kirby fetches."""
    sequential_ids: tuple[str, ...] = ()
    """Market types whose trade ids (live and history alike) are consecutive integers, one
    per trade: a gap between two ids is a missed trade."""

    def window(self, market_type: str | None, now: datetime) -> SourceWindow:
        """What it still serves of a series' trades at `now` (`market_type` None: of the
        exchange's best-served market type)."""
        served = (
            self.market_types
            if market_type is None
            else ((market_type,) if market_type in self.market_types else ())
        )
        if not served or self.client is None:
            return SourceWindow(now, self.note)
        return SourceWindow(None if self.span is None else now - self.span, self.note)


class OpenInterestNowClient(_AsyncClient, Protocol):
    """An exchange's REST open interest of this moment, used as an async context manager."""

    async def fetch_open_interest_now(self, coin: str, quote: str) -> OpenInterest: ...


@dataclass(frozen=True)
class ExchangeDeclaration:
    name: str
    """The catalog's exchange name; also its backfills' pool name (`pool`)."""
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
    """Its request weights, per market type: its history client spends them, the simulator
    charges them."""
    symbol: Callable[[str, str, str], str]
    """(coin, quote, market type) -> the exchange's symbol."""
    history_client: Callable[[Settings], HistoryClient]
    """The REST candle history client's class: `async with history_client(settings) as c:`."""
    funding_history: Callable[[Settings], FundingHistoryClient] | None = None
    """The REST client of its settled funding rates; None: Kirby fetches none there."""
    funding_interval: str = "1h"
    """How often its perps settle funding (Hyperliquid hourly, the others every 8 h)."""
    open_interest_history: Callable[[Settings], OpenInterestHistoryClient] | None = None
    """The REST client of its open-interest history; None: it publishes none (Hyperliquid,
    Coinbase)."""
    open_interest_now: Callable[[Settings], OpenInterestNowClient] | None = None
    """The REST client the live collector polls once a minute for open interest, where the
    WebSocket carries none (Binance: its feed's `polled`)."""
    open_interest_interval: str = "5m"
    """How far apart the points of its open-interest history are (5 minutes on Binance,
    Bybit and OKX)."""
    candle_coverage: Callable[[str, datetime, datetime, datetime], SourceCoverage] | None = None
    """Which part of a candle range it still serves at `now`; None: all of it."""
    history_window: Callable[[str, str, datetime], SourceWindow] | None = None
    """(dataset, interval, now) -> what it still serves; None: its whole history."""
    stream: StreamAdapter | None = None
    """Its live feed, when Kirby collects one."""
    trade_history: TradeHistory = TradeHistory("no trade history declared")
    """What it serves of its trades' history (`datasets` "trades")."""

    @property
    def pool(self) -> str:
        """The name its backfill runs are queued under: their `kirby/exchange` tag
        (dagster.yaml: one run in progress per exchange)."""
        return self.name

    def source_window(
        self, dataset: str, interval: str, now: datetime, market_type: str | None = None
    ) -> SourceWindow:
        """What it still serves of `dataset` at `now` (`interval`: the series' own;
        `market_type`: the series', where the exchange serves some and not others)."""
        if dataset == TRADES:
            return self.trade_history.window(market_type, now)
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


def _served(
    exchange: str, served: Mapping[str, tuple[timedelta | None, str]]
) -> Callable[[str, str, datetime], SourceWindow]:
    """A `history_window` from, per dataset the exchange serves, how far back (None: its
    whole history) and why; a dataset it does not serve is unavailable at source."""

    def window(dataset: str, interval: str, now: datetime) -> SourceWindow:
        if dataset not in served:
            return SourceWindow(now, f"{exchange} publishes no {dataset} history")
        span, note = served[dataset]
        return SourceWindow(None if span is None else now - span, note)

    return window


def _binance_symbol(coin: str, quote: str, market_type: str) -> str:
    return binance.binance_symbol(coin, quote)


HYPERLIQUID: Final = ExchangeDeclaration(
    name="hyperliquid",
    market_types=("perps",),
    intervals=MappingProxyType({i: i for i in hyperliquid_wire.INTERVALS}),
    every_interval=False,
    candle_page_rows=MappingProxyType({"perps": hyperliquid.CANDLE_LIMIT}),
    weights=MappingProxyType({"perps": hyperliquid.WEIGHT}),
    symbol=hyperliquid.ccxt_symbol,
    history_client=hyperliquid.HyperliquidHistory,
    funding_history=hyperliquid.HyperliquidHistory,
    candle_coverage=hyperliquid.candle_coverage,
    history_window=_hyperliquid_window,
    trade_history=TradeHistory(
        "Hyperliquid has no public trade-history endpoint: only the live tape Kirby records"
    ),
    stream=_feed(
        hyperliquid_wire,
        url_setting=lambda settings: settings.hyperliquid_ws_url,
        wire_symbol=lambda coin, quote, market_type: coin,
    ),
)

BINANCE: Final = ExchangeDeclaration(
    name="binance",
    market_types=binance.MARKET_TYPES,
    intervals=MappingProxyType({i: i for i in binance.INTERVALS}),
    every_interval=True,
    candle_page_rows=MappingProxyType(dict(binance.KLINE_LIMIT)),
    weights=MappingProxyType(dict(binance.WEIGHTS)),
    symbol=_binance_symbol,
    history_client=binance.BinanceHistory,
    funding_interval=binance.FUNDING_INTERVAL,
    funding_history=binance.BinanceHistory,
    open_interest_history=binance.BinanceHistory,
    open_interest_now=binance.BinanceHistory,
    history_window=_served(
        "Binance",
        {
            datasets.CANDLES.name: (None, "Binance serves klines back to the listing"),
            datasets.FUNDING_RATES.name: (None, "Binance serves every settled funding rate"),
            datasets.OPEN_INTEREST.name: (
                binance.OPEN_INTEREST_SPAN,
                "Binance serves open-interest history for the last 30 days only",
            ),
        },
    ),
    stream=_feed(binance_wire, market_types=binance.MARKET_TYPES),
    trade_history=TradeHistory(
        "Binance serves every trade back to the listing as aggregate trades (aggTrades, "
        "spot and USD-M; a taker's fills at one price are one row `first-last`)",
        market_types=binance.MARKET_TYPES,
        client=binance.BinanceHistory,
        sequential_ids=binance.MARKET_TYPES,
    ),
)

# The live feeds of the exchanges declared below (each is its declaration's `stream=`).
BYBIT_STREAM: Final = _feed(bybit_wire, parser=bybit_wire.BybitParser)
OKX_STREAM: Final = _feed(okx_wire, parser=okx_wire.OkxParser)
COINBASE_STREAM: Final = _feed(coinbase_wire, polled_intervals=coinbase_wire.POLLED_INTERVALS)

BYBIT: Final = ExchangeDeclaration(
    name="bybit",
    market_types=bybit.MARKET_TYPES,
    intervals=MappingProxyType({i: bybit.WIRE_INTERVALS[i] for i in bybit.INTERVALS}),
    every_interval=False,
    candle_page_rows=MappingProxyType(dict.fromkeys(bybit.MARKET_TYPES, bybit.KLINE_LIMIT)),
    weights=MappingProxyType(dict(bybit.WEIGHTS)),
    symbol=bybit.bybit_symbol,
    history_client=bybit.BybitHistory,
    stream=BYBIT_STREAM,
    trade_history=TradeHistory(
        "Bybit serves only its recent trades (/v5/market/recent-trade: the last 1000, spot "
        "60); older trades are unavailable at source"
    ),
    funding_interval=bybit.FUNDING_INTERVAL,
    funding_history=bybit.BybitHistory,
    open_interest_history=bybit.BybitHistory,
    history_window=_served(
        "Bybit",
        {
            datasets.CANDLES.name: (None, "Bybit serves klines back to the listing"),
            datasets.FUNDING_RATES.name: (None, "Bybit serves every settled funding rate"),
            datasets.OPEN_INTEREST.name: (
                None,
                "Bybit serves open interest every 5 minutes back to the listing; the "
                "per-minute live values cannot be re-fetched",
            ),
        },
    ),
)

OKX: Final = ExchangeDeclaration(
    name="okx",
    market_types=okx.MARKET_TYPES,
    intervals=MappingProxyType({i: okx.WIRE_INTERVALS[i] for i in okx.INTERVALS}),
    every_interval=False,
    candle_page_rows=MappingProxyType(dict.fromkeys(okx.MARKET_TYPES, okx.CANDLE_LIMIT)),
    weights=MappingProxyType(dict(okx.WEIGHTS)),
    symbol=okx.okx_symbol,
    history_client=okx.OkxHistory,
    stream=OKX_STREAM,
    trade_history=TradeHistory(
        "OKX serves spot trades of the last 3 months (market/history-trades); swap trades "
        "count contracts and are not taken",
        market_types=okx.TRADE_HISTORY_MARKET_TYPES,
        span=okx.TRADE_SPAN,
        client=okx.OkxHistory,
    ),
    funding_interval=okx.FUNDING_INTERVAL,
    funding_history=okx.OkxHistory,
    open_interest_history=okx.OkxHistory,
    history_window=_served(
        "OKX",
        {
            datasets.CANDLES.name: (None, "OKX's history-candles serve everything"),
            datasets.FUNDING_RATES.name: (
                okx.FUNDING_SPAN,
                "OKX serves the funding history of the last 3 months",
            ),
            datasets.OPEN_INTEREST.name: (
                okx.OPEN_INTEREST_SPAN,
                f"OKX's statistics endpoint keeps the latest {okx.OPEN_INTEREST_KEPT} "
                f"{okx.OPEN_INTEREST_PERIOD} periods of open interest",
            ),
        },
    ),
)

COINBASE: Final = ExchangeDeclaration(
    name="coinbase",
    market_types=coinbase.MARKET_TYPES,
    intervals=MappingProxyType({i: coinbase.WIRE_INTERVALS[i] for i in coinbase.INTERVALS}),
    every_interval=False,
    candle_page_rows=MappingProxyType({"spot": coinbase.CANDLE_LIMIT}),
    weights=MappingProxyType(dict(coinbase.WEIGHTS)),
    symbol=coinbase.coinbase_symbol,
    history_client=coinbase.CoinbaseHistory,
    stream=COINBASE_STREAM,
    trade_history=TradeHistory(
        "Coinbase serves only its recent trades (products/{id}/ticker: the latest 1000 at "
        "most); older trades are unavailable at source"
    ),
    history_window=_served(
        "Coinbase", {datasets.CANDLES.name: (None, "Coinbase serves candles back to the listing")}
    ),
)

EXCHANGES: Final[Mapping[str, ExchangeDeclaration]] = MappingProxyType(
    {d.name: d for d in (HYPERLIQUID, BINANCE, BYBIT, OKX, COINBASE)}
)
"""Every exchange Kirby knows, by catalog name."""


def declaration(name: str) -> ExchangeDeclaration | None:
    """The declaration of exchange `name`, or None for an exchange Kirby does not know."""
    return EXCHANGES.get(name)


def funding_interval(name: str) -> str:
    """How often exchange `name`'s perps settle funding (its declared `funding_interval`);
    an exchange Kirby does not know is assumed to settle hourly (the declaration's default)."""
    declared = declaration(name)
    return declared.funding_interval if declared else ExchangeDeclaration.funding_interval


def live_collection(
    exchange: str, market_type: str, dataset: str, interval: str | None
) -> LiveCollection:
    """How the collector takes a series of `exchange` live (see `StreamAdapter.collection`);
    "none" for an exchange Kirby does not know or collects no feed of."""
    declared = declaration(exchange)
    if declared is None or declared.stream is None:
        return "none"
    return declared.stream.collection(market_type, dataset, interval)


def open_interest_interval(name: str) -> str:
    """The interval coverage counts exchange `name`'s open interest in: its declared
    `open_interest_interval` where it publishes an open-interest history (what a backfill
    can fill: a day of 5-minute history is whole), the live feed's minute where it publishes
    none or Kirby does not know it."""
    declared = declaration(name)
    if declared is None or declared.open_interest_history is None:
        return "1m"
    return declared.open_interest_interval


def feed_of(exchange: ExchangeDeclaration) -> StreamAdapter:
    """`exchange`'s live feed; ValueError when it declares none."""
    if exchange.stream is None:
        raise ValueError(f"{exchange.name} declares no live feed")
    return exchange.stream
