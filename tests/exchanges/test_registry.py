"""The exchange registry declares what the exchange modules implement, once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kirby_core.db.coverage import source_window
from kirby_core.exchanges import binance, hyperliquid, hyperliquid_wire
from kirby_core.exchanges.registry import (
    BINANCE,
    EXCHANGES,
    HYPERLIQUID,
    STREAMED,
    declaration,
    feed_of,
)
from kirby_core.timeutil import INTERVAL_SECONDS
from kirby_sim import SimulatorConfig
from kirby_sim import binance as sim_binance
from kirby_sim import hyperliquid as sim_hyperliquid

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_exchange_is_registered_under_its_name() -> None:
    assert dict(EXCHANGES) == {"hyperliquid": HYPERLIQUID, "binance": BINANCE}
    assert declaration("hyperliquid") is HYPERLIQUID
    assert declaration("okx") is None


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
    assert BINANCE.funding_history is None


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
    assert source_window("okx", "candles", "1m", NOW).note.startswith("okx:")


def test_the_streamed_exchange_has_a_feed() -> None:
    feed = feed_of(STREAMED)
    assert feed.subscription("perps", "candles", "BTC", "1m") == (
        hyperliquid_wire.candle_subscription("BTC", "1m")
    )
    assert feed.subscription("perps", "open_interest", "BTC", None) == (
        hyperliquid_wire.asset_context_subscription("BTC")
    )
    assert feed.keep_alive.ping_frame == hyperliquid_wire.ping_frame()
    assert feed.market_type == "perps"
    with pytest.raises(ValueError, match="binance declares no live feed"):
        feed_of(replace(BINANCE, stream=None))
