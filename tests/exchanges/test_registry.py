"""The exchange registry declares what the exchange modules implement, once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kirby_core.db.coverage import source_window
from kirby_core.exchanges import binance, bybit, hyperliquid, hyperliquid_wire, okx
from kirby_core.exchanges.registry import (
    BINANCE,
    BYBIT,
    COINBASE,
    EXCHANGES,
    HYPERLIQUID,
    OKX,
    declaration,
    feed_of,
    live_collection,
)
from kirby_core.exchanges.weights import Burst
from kirby_core.settings import Settings
from kirby_core.timeutil import INTERVAL_SECONDS
from kirby_sim import SimulatorConfig
from kirby_sim import binance as sim_binance
from kirby_sim import binance_futures as sim_futures
from kirby_sim import bybit as sim_bybit
from kirby_sim import coinbase as sim_coinbase
from kirby_sim import hyperliquid as sim_hyperliquid
from kirby_sim import okx as sim_okx

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_exchange_is_registered_under_its_name() -> None:
    assert dict(EXCHANGES) == {
        "hyperliquid": HYPERLIQUID,
        "binance": BINANCE,
        "bybit": BYBIT,
        "okx": OKX,
        "coinbase": COINBASE,
    }
    assert declaration("hyperliquid") is HYPERLIQUID
    assert declaration("kraken") is None


def test_intervals_are_the_exchange_modules_own_and_known_to_kirby() -> None:
    assert tuple(HYPERLIQUID.intervals) == hyperliquid_wire.INTERVALS
    assert tuple(BINANCE.intervals) == binance.INTERVALS == tuple(INTERVAL_SECONDS)
    for exchange in EXCHANGES.values():
        assert set(exchange.intervals) <= set(INTERVAL_SECONDS)
        assert exchange.pool == exchange.name


def test_market_types_and_pages() -> None:
    assert HYPERLIQUID.market_types == ("perps",)
    assert BINANCE.market_types == ("spot", "perps")
    assert HYPERLIQUID.candle_page_rows == {"perps": hyperliquid.CANDLE_LIMIT}
    assert BINANCE.candle_page_rows == binance.KLINE_LIMIT
    for exchange in EXCHANGES.values():
        assert set(exchange.weights) == set(exchange.market_types) == set(exchange.candle_page_rows)


def test_history_clients() -> None:
    assert HYPERLIQUID.history_client is hyperliquid.HyperliquidHistory
    assert BINANCE.history_client is binance.BinanceHistory
    assert HYPERLIQUID.funding_history is hyperliquid.HyperliquidHistory
    assert BINANCE.funding_history is binance.BinanceHistory
    assert BINANCE.open_interest_history is binance.BinanceHistory
    assert HYPERLIQUID.open_interest_history is None
    assert COINBASE.funding_history is None and COINBASE.open_interest_history is None


def test_weights_are_the_exchange_modules_own() -> None:
    assert HYPERLIQUID.weights == {"perps": hyperliquid.WEIGHT}
    # /info weighs 20, plus one per 60 candles (a 5000-candle page) or 20 funding rows (500)
    assert (hyperliquid.WEIGHT.candle_page, hyperliquid.WEIGHT.funding_page) == (103, 45)
    assert BINANCE.weights == binance.WEIGHTS


def test_the_simulator_charges_what_the_registry_declares() -> None:
    assert HYPERLIQUID.candle_page_rows["perps"] == sim_hyperliquid.MAX_CANDLES
    assert HYPERLIQUID.weights["perps"].request == sim_hyperliquid.DEFAULT_WEIGHT
    assert SimulatorConfig().weight_per_minute == HYPERLIQUID.weights["perps"].per_minute
    for family, market_type in ((sim_binance.SPOT, "spot"), (sim_binance.USDM, "perps")):
        declared = BINANCE.weights[market_type]
        assert family.weight_per_minute == declared.per_minute
        assert family.max_limit == BINANCE.candle_page_rows[market_type]
        assert sim_binance._kline_weight(family, family.max_limit) == declared.candle_page


def test_symbols() -> None:
    assert HYPERLIQUID.symbol("BTC", "USD", "perps") == "BTC/USDC:USDC"
    assert BINANCE.symbol("BTC", "USDT", "spot") == binance.binance_symbol("BTC", "USDT")


def test_history_windows() -> None:
    candles = source_window("hyperliquid", "candles", "1h", NOW)
    expected = hyperliquid.candle_coverage("1h", NOW.replace(year=1970), NOW, NOW).available
    assert expected is not None and candles.oldest == expected.start
    assert source_window("hyperliquid", "open_interest", "1m", NOW).oldest == NOW
    assert source_window("hyperliquid", "funding_rates", "1h", NOW).oldest is None
    assert source_window("binance", "candles", "1m", NOW).oldest is None
    assert source_window("kraken", "candles", "1m", NOW).note.startswith("kraken:")


def test_each_feed_says_what_to_subscribe_where_to_dial_and_which_symbol_frames_carry() -> None:
    feed = feed_of(HYPERLIQUID)
    assert feed.subscription("perps", "candles", "BTC", "1m") == (
        hyperliquid_wire.candle_subscription("BTC", "1m")
    )
    assert feed.subscription("perps", "open_interest", "BTC", None) == (
        hyperliquid_wire.asset_context_subscription("BTC")
    )
    assert feed.keep_alive.ping_frame == hyperliquid_wire.ping_frame()
    settings = Settings(
        _env_file=None,
        hyperliquid_ws_url="ws://127.0.0.1:9/ws",
        ws_origins={"wss://fstream.binance.com": "ws://127.0.0.1:9/fstream/"},
    )
    assert feed.ws_url(settings, "perps", "candles") == "ws://127.0.0.1:9/ws"
    binance = feed_of(BINANCE)
    assert binance.ws_url(settings, "perps", "candles") == "ws://127.0.0.1:9/fstream/market/stream"
    assert binance.ws_url(settings, "spot", "candles") == "wss://stream.binance.com:9443/stream"
    assert feed.symbol(HYPERLIQUID, "BTC", "USD", "perps") == "BTC"
    assert feed_of(OKX).symbol(OKX, "BTC", "USDT", "perps") == "BTC-USDT-SWAP"
    assert binance.symbol(BINANCE, "BTC", "USDT", "perps") == "BTCUSDT"
    # What each feed carries live: pushed, polled from REST, or not at all.
    assert live_collection("binance", "perps", "open_interest", None) == "polled"
    assert live_collection("binance", "perps", "funding_rates", None) == "websocket"
    assert live_collection("coinbase", "spot", "candles", "1m") == "polled"
    assert live_collection("coinbase", "spot", "candles", "5m") == "websocket"
    assert live_collection("okx", "perps", "open_interest", None) == "websocket"
    assert live_collection("binance", "spot", "funding_rates", None) == "none"
    assert live_collection("kraken", "spot", "candles", "1m") == "none"
    with pytest.raises(ValueError, match="binance declares no live feed"):
        feed_of(replace(BINANCE, stream=None))


def test_the_new_venues_declare_what_the_simulator_serves() -> None:
    """Pages, limits and wire codes of Bybit, OKX, Coinbase and Binance's futures data, as
    declared in their modules, against the simulator's own numbers."""
    assert BYBIT.candle_page_rows == dict.fromkeys(("spot", "perps"), sim_bybit.KLINE_LIMIT)
    assert (bybit.FUNDING_LIMIT, bybit.OPEN_INTEREST_LIMIT) == (
        sim_bybit.FUNDING_LIMIT,
        sim_bybit.OPEN_INTEREST_LIMIT,
    )
    assert BYBIT.weights["perps"].burst == Burst(sim_bybit.REQUESTS_PER_5_SECONDS, 5.0)
    assert OKX.candle_page_rows["perps"] == sim_okx.HISTORY_CANDLES_LIMIT
    assert OKX.weights["spot"].burst == Burst(
        sim_okx.REQUESTS_PER_2_SECONDS[okx.CANDLE_ENDPOINT], 2.0
    )
    for endpoint, burst in okx.OTHER_ENDPOINTS.items():
        assert burst == Burst(sim_okx.REQUESTS_PER_2_SECONDS[endpoint], 2.0)
    assert (okx.FUNDING_LIMIT, okx.OPEN_INTEREST_LIMIT, okx.OPEN_INTEREST_KEPT) == (
        sim_okx.FUNDING_LIMIT,
        sim_okx.STATISTICS_LIMIT,
        sim_okx.STATISTICS_PERIODS,
    )
    assert COINBASE.candle_page_rows == {"spot": sim_coinbase.CANDLES_LIMIT}
    assert COINBASE.weights["spot"].burst == Burst(sim_coinbase.REQUESTS_PER_SECOND, 1.0)
    assert (binance.FUNDING_LIMIT, binance.OPEN_INTEREST_LIMIT) == (
        sim_futures.FUNDING_LIMIT,
        sim_futures.OPEN_INTEREST_LIMIT,
    )
    assert timedelta(days=sim_futures.OPEN_INTEREST_DAYS) == binance.OPEN_INTEREST_SPAN
    for declared, served in (
        (BYBIT, sim_bybit.INTERVALS),
        (OKX, sim_okx.BARS),
        (COINBASE, sim_coinbase.GRANULARITIES),
    ):
        assert {served[code]: code for code in declared.intervals.values()} == dict(
            declared.intervals
        )
        assert {"1m", "15m", "1d"} <= set(declared.intervals)
    assert "4h" in BYBIT.intervals and "4h" in OKX.intervals
    assert "4h" not in COINBASE.intervals  # Coinbase has no 4-hour candles


def test_new_venue_symbols() -> None:
    assert BYBIT.symbol("BTC", "USDT", "perps") == "BTCUSDT"
    assert BYBIT.symbol("ETH", "USDT", "spot") == "ETHUSDT"
    assert OKX.symbol("BTC", "USDT", "perps") == "BTC-USDT-SWAP"
    assert OKX.symbol("BTC", "USDT", "spot") == "BTC-USDT"
    assert COINBASE.symbol("BTC", "USD", "spot") == "BTC-USD"


def test_new_venue_history_windows() -> None:
    """What each exchange still serves, per dataset ("unavailable at source" beyond it)."""
    month = source_window("binance", "open_interest", "1m", NOW)
    assert month.oldest == NOW - timedelta(days=30) and "30 days" in month.note
    assert source_window("binance", "funding_rates", "1h", NOW).oldest is None
    assert source_window("bybit", "open_interest", "1m", NOW).oldest is None
    assert source_window("okx", "open_interest", "1m", NOW).oldest == NOW - timedelta(days=5)
    assert source_window("okx", "funding_rates", "1h", NOW).oldest == NOW - timedelta(days=90)
    assert source_window("okx", "candles", "1m", NOW).oldest is None
    assert source_window("coinbase", "candles", "1m", NOW).oldest is None
    nothing = source_window("coinbase", "open_interest", "1m", NOW)
    assert nothing.oldest == NOW and "publishes no open_interest" in nothing.note
