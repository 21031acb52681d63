"""ccxt's hyperliquid and binance classes, unchanged but for their URLs, against the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import ccxt
import pytest

from kirby_sim import SimulatorServer, run_simulator_in_thread
from tests.simulator.conftest import point_binance

MINUTE = 60_000
HOUR = 3_600_000


def test_hyperliquid_markets_candles_and_funding(
    hyperliquid: ccxt.hyperliquid, threaded_sim: SimulatorServer
) -> None:
    markets = hyperliquid.load_markets()
    btc = markets["BTC/USDC:USDC"]
    assert (btc["baseName"], btc["swap"], btc["limits"]["leverage"]["max"]) == ("BTC", True, 50)
    assert len([m for m in markets.values() if m["swap"]]) == 28
    now = threaded_sim.clock.now_ms()
    since = now - 40 * MINUTE
    candles = hyperliquid.fetch_ohlcv("BTC/USDC:USDC", "1m", since=since)
    assert candles[0][0] >= since and candles[-1][0] == now // MINUTE * MINUTE
    assert all(row[3] <= min(row[1], row[4]) <= max(row[1], row[4]) <= row[2] for row in candles)
    funding = hyperliquid.fetch_funding_rate_history("BTC/USDC:USDC", since=now - 24 * HOUR)
    assert len(funding) == 24
    assert all(isinstance(entry["fundingRate"], float) for entry in funding)


def test_binance_markets_include_spot_and_usdm_perps(binance: ccxt.binance) -> None:
    markets = binance.load_markets()
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        assert markets[symbol]["spot"] and markets[symbol]["precision"]["price"] == 0.01
    perp = markets["BTC/USDT:USDT"]
    assert (perp["swap"], perp["linear"], perp["id"]) == (True, True, "BTCUSDT")
    assert perp["precision"]["price"] == 0.1 and perp["precision"]["amount"] == 0.001
    assert markets["BTC/USD:BTC"]["inverse"]


def test_binance_fetch_ohlcv_spot_and_perps(binance: ccxt.binance, threaded_sim: SimulatorServer):
    now = threaded_sim.clock.now_ms()
    latest = binance.fetch_ohlcv("BTC/USDT", "1m")
    assert len(latest) == 500 and latest[-1][0] == now // MINUTE * MINUTE
    since = now - 30 * HOUR - 123
    hourly = binance.fetch_ohlcv("ETH/USDT:USDT", "1h", since=since, limit=10)
    assert [row[0] for row in hourly] == [since // HOUR * HOUR + (i + 1) * HOUR for i in range(10)]


def test_binance_raw_klines_keep_every_field_and_limits(
    binance: ccxt.binance, threaded_sim: SimulatorServer
) -> None:
    spot = binance.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1000})
    perps = binance.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1500})
    assert (len(spot), len(perps)) == (1000, 1500)
    assert len(binance.publicGetKlines({"symbol": "BTCUSDT", "interval": "5m"})) == 500
    row = spot[-2]
    assert len(row) == 12 and isinstance(row[8], int) and row[11] == "0"
    assert row[6] == row[0] + MINUTE - 1
    assert all(len(value.split(".")[1]) == 8 for value in row[1:6] + row[7:8] + row[9:11])
    assert len(perps[-2][1].split(".")[1]) == 2 and len(perps[-2][5].split(".")[1]) == 3
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        binance.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1001})
    with pytest.raises(ccxt.BadRequest, match="-1130"):
        binance.fapiPublicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1501})


def test_binance_quiet_minutes_are_flat_with_zero_volume(binance: ccxt.binance) -> None:
    rows = binance.publicGetKlines({"symbol": "DOGEUSDT", "interval": "1m", "limit": 1000})
    quiet = [row for row in rows[:-1] if row[8] == 0]
    assert quiet, "DOGE has minutes without trades"
    for row in quiet:
        previous = rows[rows.index(row) - 1]
        assert row[1] == row[2] == row[3] == row[4] == previous[4]
        assert float(row[5]) == 0 and row[5] == "0.00000000"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120),
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "soon"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 5, "endTime": 4}, -1023),
    ],
)
def test_binance_errors(threaded_sim: SimulatorServer, params: dict, code: int) -> None:
    import requests

    with requests.Session() as session:
        response = session.get(f"{threaded_sim.base_url}/api/v3/klines", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["msg"]


@pytest.fixture
def live_sim() -> Iterator[SimulatorServer]:
    """Simulated time = real time: ccxt's own clock-based defaults line up."""
    with run_simulator_in_thread() as server:
        yield server


def test_ccxt_defaults_work_when_the_simulator_runs_in_real_time(live_sim: SimulatorServer):
    hyperliquid = ccxt.hyperliquid({"enableRateLimit": False})
    hyperliquid.urls["api"] = {"public": live_sim.base_url, "private": live_sim.base_url}
    recent = hyperliquid.fetch_ohlcv("SOL/USDC:USDC", "5m", limit=12)
    funding = hyperliquid.fetch_funding_rate_history("SOL/USDC:USDC")
    hyperliquid.session.close()
    binance = ccxt.binance({"enableRateLimit": False})
    point_binance(binance, live_sim.base_url)
    server_time = binance.fetch_time()
    since = live_sim.clock.now_ms() - 2500 * MINUTE
    paged = binance.fetch_ohlcv("SOL/USDT", "1m", since=since, params={"paginate": True})
    binance.session.close()
    assert 11 <= len(recent) <= 13
    assert len(funding) in (499, 500)
    assert abs(server_time - live_sim.clock.now_ms()) < 5_000
    opens = [row[0] for row in paged]
    assert opens == sorted(set(opens)) and opens[0] >= since
    assert opens == list(range(opens[0], opens[-1] + 1, MINUTE)) and len(opens) >= 2499
