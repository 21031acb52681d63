"""The realtime catalog split the way the collector works: a plan per connection, a poll per
dataset a WebSocket lacks, every subscription once and on the right market type."""

from __future__ import annotations

import asyncpg

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.exchanges import binance_wire, bybit_wire, coinbase_wire, okx_wire
from kirby_core.settings import Settings
from kirby_stream.catalog import load_stream_catalog
from tests.conftest import REPO


async def test_the_five_exchange_catalog_splits_into_connections_and_polls(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / "starlistings.yaml"))
    settings = Settings(_env_file=None, **{**settings.model_dump(), "ws_origins": {}})
    catalog = await load_stream_catalog(conn, settings)
    ids = {str(s.key): s.id for s in await catalog_store.list_starlistings(conn)}
    pairs = {str(p.key): p.id for p in await catalog_store.list_trading_pairs(conn)}

    assert catalog.exchanges == ("binance", "bybit", "coinbase", "hyperliquid", "okx")
    assert {(exchange, url) for exchange, url in catalog.feeds} == {
        ("hyperliquid", settings.hyperliquid_ws_url),
        ("binance", binance_wire.url("spot", "candles")),
        ("binance", binance_wire.url("perps", "candles")),
        ("bybit", bybit_wire.url("spot", "candles")),
        ("bybit", bybit_wire.url("perps", "candles")),
        ("okx", okx_wire.url("spot", "candles")),
        ("okx", okx_wire.url("perps", "funding_rates")),
        ("binance", binance_wire.url("perps", "trades")),  # futures trades: /public
        ("coinbase", coinbase_wire.url("spot", "trades")),  # market_trades
    }
    # Bybit: funding and open interest share one tickers topic, subscribed once, as perps.
    linear = catalog.feeds["bybit", bybit_wire.url("perps", "candles")]
    assert [s for s in linear.subscriptions["BTCUSDT"] if "tickers" in str(s)] == [
        ("perps", "tickers.BTCUSDT")
    ]
    assert (
        linear.funding["BTCUSDT"]
        == linear.open_interest["BTCUSDT"]
        == pairs["bybit/BTC/USDT/perps"]
    )
    assert linear.candles["BTCUSDT", "1m"] == ids["bybit/BTC/USDT/perps/1m"]
    # OKX: candles of spot and swaps on /business, funding and OI on /public.
    business = catalog.feeds["okx", okx_wire.url("perps", "candles")]
    assert {"BTC-USDT", "BTC-USDT-SWAP"} <= business.symbols
    assert not business.funding and not business.open_interest
    public = catalog.feeds["okx", okx_wire.url("perps", "open_interest")]
    assert public.series("BTC-USDT-SWAP") == [
        ("funding_rates", pairs["okx/BTC/USDT/perps"]),
        ("open_interest", pairs["okx/BTC/USDT/perps"]),
        ("trades", pairs["okx/BTC/USDT/perps"]),
    ]
    # a swap's funding rows merge funding-rate, mark-price and its index's index-tickers
    swap_args = [sub for _, sub in public.subscriptions["BTC-USDT-SWAP"]]
    assert {"channel": "mark-price", "instId": "BTC-USDT-SWAP"} in swap_args
    assert {"channel": "index-tickers", "instId": "BTC-USDT"} in swap_args
    assert {"funding-rate", "open-interest"} <= {sub["channel"] for sub in swap_args}
    spot_args = [sub for _, sub in public.subscriptions["BTC-USDT"]]
    assert {sub["channel"] for sub in spot_args} == {"trades"}
    # What no WebSocket carries is polled: Binance's OI, Coinbase's candles but 5m.
    polled = {
        key: [str(t.pair) + f"/{t.interval}" for t in p.targets] for key, p in catalog.polls.items()
    }
    assert sorted(polled) == [("binance", "poll:open_interest"), ("coinbase", "poll:candles")]
    assert "binance/BTC/USDT/perps/None" in polled["binance", "poll:open_interest"]
    assert "coinbase/BTC/USD/spot/1m" in polled["coinbase", "poll:candles"]
    # Hyperliquid: the wire symbol is the bare coin.
    hyperliquid = catalog.feeds["hyperliquid", settings.hyperliquid_ws_url]
    assert hyperliquid.candles["BTC", "1m"] == ids["hyperliquid/BTC/USD/perps/1m"]
    # The trade tape of every pair, on the connection its exchange carries trades on.
    tapes = sorted(pair for plan in catalog.feeds.values() for pair in plan.trades.values())
    assert tapes == sorted(pairs.values())  # each once
    assert hyperliquid.trades["BTC"] == pairs["hyperliquid/BTC/USD/perps"]
    assert hyperliquid.series("BTC trades") == [("trades", pairs["hyperliquid/BTC/USD/perps"])]
    futures = catalog.feeds["binance", binance_wire.url("perps", "trades")]
    assert futures.subscriptions == {"BTCUSDT": (("perps", "btcusdt@trade"),)} | {
        symbol: subs for symbol, subs in futures.subscriptions.items() if symbol != "BTCUSDT"
    }
    assert futures.units(["BTCUSDT"]) == ["BTCUSDT trades"]
    # OKX swaps' trades ride /public with their funding and open interest.
    assert public.series("BTC-USDT-SWAP")[-1] == ("trades", pairs["okx/BTC/USDT/perps"])
