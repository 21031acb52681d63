"""Exchange adapters: REST history (paginated, retried) and Hyperliquid WS message parsing.

    HyperliquidHistory      candles (ccxt raw candleSnapshot) and settled funding (SDK)
    BinanceHistory          spot and USD-M klines (ccxt raw klines) with trade counts,
                            USD-M settled funding and 30 days of open interest
    BybitHistory            spot and linear klines, settled funding, open interest
    OkxHistory              spot and swap candles, settled funding, open interest
    CoinbaseHistory         spot candles
    parse_ws_message        one Hyperliquid WS text frame -> a typed message (pure)
    <exchange>_wire         each exchange's WebSocket subscriptions, frames and parser;
                            `feeds` holds the messages and connection rules they share
    candle_coverage         which part of a range Hyperliquid still serves
    open_interest_coverage  none of it: Hyperliquid has no open-interest history

Every request first spends its declared weight (`RequestWeight`) from the client's
`WeightBudget`. Values are exact Decimals from the exchanges' strings; times are UTC. Errors
are Kirby's (`ExchangeUnavailable` after the retry policy, `ExchangeProtocolError` for a bad
payload, `NotFound` for an unknown coin, `InvalidRequest` for a bad argument).
"""

from kirby_core.exchanges.base import RetryPolicy, SourceCoverage, TimeRange
from kirby_core.exchanges.binance import BinanceHistory, binance_symbol, parse_klines
from kirby_core.exchanges.bybit import BybitHistory, bybit_symbol
from kirby_core.exchanges.coinbase import CoinbaseHistory, coinbase_symbol
from kirby_core.exchanges.feeds import (
    ChannelError,
    FrameGuard,
    FundingUpdate,
    OpenInterestUpdate,
    Pong,
    SubscriptionAck,
    Trade,
    TradesUpdate,
    WsMessage,
)
from kirby_core.exchanges.hyperliquid import (
    CANDLE_LIMIT,
    FUNDING_PAGE_ROWS,
    HAS_OPEN_INTEREST_HISTORY,
    HyperliquidHistory,
    candle_coverage,
    ccxt_symbol,
    open_interest_coverage,
)
from kirby_core.exchanges.hyperliquid_wire import (
    asset_context_subscription,
    candle_subscription,
    parse_asset_context,
    parse_candle,
    parse_candle_snapshot,
    parse_funding_history,
    parse_ws_message,
    ping_frame,
    subscribe_frame,
    unsubscribe_frame,
)
from kirby_core.exchanges.okx import OkxHistory, okx_symbol
from kirby_core.exchanges.weights import Burst, RequestWeight, WeightBudget

__all__ = [
    "CANDLE_LIMIT",
    "FUNDING_PAGE_ROWS",
    "HAS_OPEN_INTEREST_HISTORY",
    "BinanceHistory",
    "Burst",
    "BybitHistory",
    "ChannelError",
    "CoinbaseHistory",
    "FrameGuard",
    "FundingUpdate",
    "HyperliquidHistory",
    "OkxHistory",
    "OpenInterestUpdate",
    "Pong",
    "RequestWeight",
    "RetryPolicy",
    "SourceCoverage",
    "SubscriptionAck",
    "TimeRange",
    "Trade",
    "TradesUpdate",
    "WeightBudget",
    "WsMessage",
    "asset_context_subscription",
    "binance_symbol",
    "bybit_symbol",
    "candle_coverage",
    "candle_subscription",
    "ccxt_symbol",
    "coinbase_symbol",
    "okx_symbol",
    "open_interest_coverage",
    "parse_asset_context",
    "parse_candle",
    "parse_candle_snapshot",
    "parse_funding_history",
    "parse_klines",
    "parse_ws_message",
    "ping_frame",
    "subscribe_frame",
    "unsubscribe_frame",
]
