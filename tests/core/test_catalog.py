import copy
from pathlib import Path

import pytest
import yaml

from kirby_core.catalog import StarlistingKey, load_catalog, parse_catalog
from kirby_core.errors import CatalogError
from kirby_core.exchanges.registry import EXCHANGES
from tests.conftest import REPO

HYPERLIQUID_ONLY = REPO / "config" / "starlistings.hyperliquid.yaml"
TRAINING = REPO / "config" / "training_stars.yaml"
REALTIME = REPO / "config" / "starlistings.yaml"


def test_five_exchange_catalog() -> None:
    """The five-exchange catalog validates against every exchange's declaration: BTC, ETH and
    SOL on each market type the exchange declares, at 1m/15m/4h/1d where offered."""
    five = load_catalog(REALTIME)
    by_exchange: dict[str, set[str]] = {}
    for key in five.starlistings:
        by_exchange.setdefault(key.exchange, set()).add(key.interval)
    assert by_exchange == {
        "hyperliquid": {"1m", "15m", "4h", "1d"},
        "binance": {"1m", "15m", "4h", "1d"},
        "bybit": {"1m", "15m", "4h", "1d"},
        "okx": {"1m", "15m", "4h", "1d"},
        "coinbase": {"1m", "15m", "1d"},  # Coinbase has no 4-hour candles
    }
    assert len(five.starlistings) == 8 + 3 * 24 + 9
    pairs = {str(p) for p in five.trading_pairs}
    for exchange in ("binance", "bybit", "okx"):
        declared = EXCHANGES[exchange]
        assert set(declared.market_types) == {"spot", "perps"}
        for coin in ("BTC", "ETH", "SOL"):
            assert {f"{exchange}/{coin}/USDT/spot", f"{exchange}/{coin}/USDT/perps"} <= pairs
        assert declared.funding_history is not None
        assert declared.open_interest_history is not None
    assert {p for p in pairs if p.startswith("coinbase/")} == {
        "coinbase/BTC/USD/spot",
        "coinbase/ETH/USD/spot",
        "coinbase/SOL/USD/spot",
    }
    realtime = load_catalog(HYPERLIQUID_ONLY)
    assert set(realtime.starlistings) < set(five.starlistings)


def test_shipped_catalogs() -> None:
    realtime = load_catalog(HYPERLIQUID_ONLY)
    assert len(realtime.starlistings) == 8
    assert [str(p) for p in realtime.trading_pairs] == [
        "hyperliquid/BTC/USD/perps",
        "hyperliquid/SOL/USD/perps",
    ]
    assert realtime.starlistings[0] == StarlistingKey("hyperliquid", "BTC", "USD", "perps", "1m")
    training = load_catalog(TRAINING)
    assert len(training.starlistings) == 24
    assert {str(p) for p in training.trading_pairs} == {
        "binance/BTC/USDT/perps",
        "binance/BTC/USDT/spot",
        "binance/ETH/USDT/perps",
        "binance/SOL/USDT/perps",
    }
    assert {s.interval for s in training.starlistings} == {"1m", "5m", "15m", "1h", "4h", "1d"}


def _broken(mutate) -> str:
    raw = yaml.safe_load(HYPERLIQUID_ONLY.read_text())
    raw = copy.deepcopy(raw)
    mutate(raw)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(raw, source="config/starlistings.hyperliquid.yaml")
    return str(caught.value)


def test_unknown_exchange_names_entry_and_allowed_values() -> None:
    message = _broken(lambda r: r["starlistings"][1].update(exchange="binanse"))
    assert message == (
        "config/starlistings.hyperliquid.yaml: starlistings[1] (binanse/SOL/USD/perps): "
        "unknown exchange 'binanse'; allowed: binance, bybit, coinbase, hyperliquid, okx"
    )


def test_unsupported_interval() -> None:
    message = _broken(lambda r: r["starlistings"][0]["intervals"].append("6h"))
    assert "starlistings[0] (hyperliquid/BTC/USD/perps): interval '6h' is not supported" in message
    assert "allowed: 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 3d, 1w" in message


def test_unsupported_market_type() -> None:
    def spot(raw):
        raw["market_types"].append({"name": "spot"})
        raw["starlistings"][0]["market_type"] = "spot"

    assert "market_type 'spot' is not supported on hyperliquid; allowed: perps" in _broken(spot)


def test_duplicate_starlisting() -> None:
    message = _broken(lambda r: r["starlistings"].append(copy.deepcopy(r["starlistings"][0])))
    assert "starlistings[2]" in message
    assert "duplicate starlisting hyperliquid/BTC/USD/perps/1m (already in starlistings[0])" in (
        message
    )


def test_unknown_field() -> None:
    message = _broken(lambda r: r["starlistings"][0].update(colour="red"))
    assert message == (
        "config/starlistings.hyperliquid.yaml: starlistings[0].colour: unknown field; "
        "allowed fields: active, coin, exchange, intervals, market_type, quote"
    )
    assert "top_level: unknown field; allowed fields: coins, exchanges" in _broken(
        lambda r: r.update(top_level=1)
    )


def test_undeclared_coin_and_missing_field() -> None:
    assert "coin 'ETH' is not declared in this file; declared: BTC, SOL" in _broken(
        lambda r: r["starlistings"][0].update(coin="ETH")
    )
    assert "starlistings[0].quote: required field missing" in _broken(
        lambda r: r["starlistings"][0].pop("quote")
    )


def test_inactive_entries_are_left_out() -> None:
    raw = yaml.safe_load(HYPERLIQUID_ONLY.read_text())
    raw["starlistings"][1]["active"] = False
    loaded = parse_catalog(raw, source="x")
    assert {s.coin for s in loaded.starlistings} == {"BTC"}


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog file not found"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("starlistings: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(CatalogError, match="expected a mapping"):
        load_catalog(bad)
